"""Finding an objective by name (`module:function`), importable from the search file's folder or the path."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from popplast.core.loading import LoadError, load_attribute


class ObjectiveError(LoadError):
    """The objective a search names cannot be imported or is not callable."""


def load_objective(name: str, folder: str | None = None) -> Callable[..., Any]:
    """`mypkg.train:fit` → the function, found from `folder` (the search file's) first, then the Python path."""
    try:
        fn = load_attribute(name, folder, example="mypkg.train:fit")
    except LoadError as e:
        raise ObjectiveError(str(e)) from None
    if not callable(fn):
        raise ObjectiveError(f"{name!r} is a {type(fn).__name__}, not a function")
    return fn


def ships_by_value(fn: Callable[..., Any]) -> None:
    """Have Ray send the objective's module by value (its code, pickled with the function) when that module
    is not installed where workers could import it: a module beside the search file reaches every worker of
    a cluster so. Modules it imports itself must be importable on the workers."""
    from ray import cloudpickle  # Ray's own copy pickles its tasks and actors

    module = sys.modules.get(getattr(fn, "__module__", ""))
    path = getattr(module, "__file__", None) or ""
    installed = any(part in path.split(os.sep) for part in ("site-packages", "dist-packages"))
    if module is not None and not installed and module.__name__ != "__main__":
        cloudpickle.register_pickle_by_value(module)
