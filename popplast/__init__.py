"""popplast: population-based training on Ray, tracked in MLflow.

`import popplast` stays light: the API (and with it torch and ray) loads on first use of `popplast.run`.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "SearchResult", "SpecError"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from popplast.api import run

        return run
    if name == "SearchResult":
        from popplast.core.result import SearchResult

        return SearchResult
    if name == "SpecError":
        from popplast.core.errors import SpecError

        return SpecError
    raise AttributeError(f"module 'popplast' has no attribute {name!r}")
