"""The errors a user sees: every one a PopplastError, which the CLI prints as one line and exits with its code.

SpecError is bad input (a file or a flag); the other kinds (a cluster that does not answer, a journal another
process ships, a search that failed, a driver taken over) live beside the code that raises them and derive
from PopplastError too, so that the CLI has one handler for all of them.
"""

from __future__ import annotations

COMMAND_LINE = "the command line"


class PopplastError(Exception):
    """An error popplast reports to its user as one line (`line()`), with `exit_code` (2: bad input or a
    setting to change; 1: the command ran and did not succeed)."""

    exit_code = 2

    def line(self) -> str:
        return f"error: {self}"


class SpecError(PopplastError, ValueError):
    """Invalid search specification or option.

    The message is one paragraph naming where the problem is (a file or the command line), the key path
    inside it, and what was expected, so that the CLI can print it as it is and exit with code 2.
    """

    def __init__(self, source: str, key: str, expected: str) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        if source == COMMAND_LINE:
            super().__init__(f"Invalid option {key}: {expected}")
        else:
            where = f"{source}, at {key}" if key else source
            super().__init__(f"Invalid search specification in {where}: {expected}")


class SearchFailed(PopplastError, RuntimeError):
    """The search ran but no individual could be evaluated (or the best could not be retrained)."""

    exit_code = 1

    def line(self) -> str:
        return f"the search failed: {self}"
