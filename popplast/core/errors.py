"""The one error type a user sees for bad input."""

from __future__ import annotations

COMMAND_LINE = "the command line"


class SpecError(ValueError):
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
