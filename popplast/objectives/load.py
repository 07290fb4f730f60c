"""Finding an objective by name (`module:function`), importable from the search file's folder or the path."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable


class ObjectiveError(ValueError):
    """The objective a search names cannot be imported or is not callable."""


def load_objective(name: str, folder: str | None = None) -> Callable[..., Any]:
    """`mypkg.train:fit` → the function; `folder` (the search file's) is searched before the Python path,
    while the module is imported (what it imports then, beside it, comes from there too)."""
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ObjectiveError(f"expected 'module:function' (for example mypkg.train:fit), got {name!r}")
    # the folder is on the path only while the module is imported: a resumed search imports the folder its
    # MLflow run names, and the rest of the process should not import whatever else lies there
    added = folder if folder and folder not in sys.path else None
    if added:
        sys.path.insert(0, added)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # a missing module, or one whose own import raises
        where = f" (searched {folder} and the Python path)" if folder else ""
        raise ObjectiveError(f"cannot import {module_name!r}{where}: {type(e).__name__}: {e}") from None
    finally:
        if added and added in sys.path:
            sys.path.remove(added)
    fn: Any = module
    for part in attribute.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ObjectiveError(
                f"the module {module_name!r} ({getattr(module, '__file__', '?')}) has no {attribute!r}"
            )
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
