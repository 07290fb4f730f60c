"""Finding a user's code by name (`module:attribute`): the search file's folder first, then the Python path.
Objectives (popplast.objectives.load) and strategies (strategies/user_strategy.py) are both named so."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class LoadError(ValueError):
    """What a search names cannot be imported, or is not there."""


def load_attribute(name: str, folder: str | None = None, example: str = "mypkg.train:fit") -> Any:
    """`mypkg.train:fit` → the object; `folder` (the search file's) is searched before the Python path while the
    module is imported (what it imports then, beside it, comes from there too)."""
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise LoadError(f"expected 'module:name' (for example {example}), got {name!r}")
    # the folder is on the path only while the module is imported: a resumed search imports the folder its
    # MLflow run names, and the rest of the process should not import whatever else lies there
    added = folder if folder and folder not in sys.path else None
    if added:
        sys.path.insert(0, added)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # a missing module, or one whose own import raises
        where = f" (searched {folder} and the Python path)" if folder else ""
        raise LoadError(f"cannot import {module_name!r}{where}: {type(e).__name__}: {e}") from None
    finally:
        if added and added in sys.path:
            sys.path.remove(added)
    found: Any = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise LoadError(f"the module {module_name!r} ({getattr(module, '__file__', '?')}) has no {attribute!r}")
    return found


def source_folder(source: str) -> str:
    """A search file's folder: where its relative paths and the modules it names are looked up."""
    return os.path.dirname(os.path.abspath(source)) if os.path.exists(source) else os.getcwd()
