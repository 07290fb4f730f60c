"""The names MLflow takes for params, metrics and tags, checked before a search starts or an individual is
logged: MLflow refuses the others only when the tracking sender ships them, after the training. The core
imports no MLflow, so this is MLflow's rule (mlflow.utils.validation) written out; tests/test_names.py
checks it against MLflow's own validator."""

from __future__ import annotations

import posixpath
import re
from typing import Any

MAX_LENGTH = 250  # MLflow's MAX_ENTITY_KEY_LENGTH
_CHARACTERS = re.compile(r"[/\w.\- :]*")
RULE = "names may only contain letters, digits, underscores, dashes, periods, spaces, colons (:) and slashes (/)"


def name_problem(name: Any, prefix: str = "") -> str | None:
    """Why MLflow would refuse `name`, logged as itself and as `prefix` + name (popplast logs a gene as both
    `lr` and `gene.lr`); None when it takes both."""
    if not isinstance(name, str):
        return f"a name is text, got {type(name).__name__} {name!r} (write it in quotes)"
    if not name:
        return "a name is not empty"
    if not _CHARACTERS.fullmatch(name):
        return RULE
    # MLflow may store a name as a file path: one that is not its own normal form could clash with another
    normal = posixpath.normpath(name)
    if normal != name or normal == "." or normal.startswith(("..", "/")):
        return "it reads names as file paths, and this one is no plain relative path"
    if len(prefix + name) > MAX_LENGTH:
        return f"{prefix}NAME may have at most {MAX_LENGTH} characters"
    return None


def check_name(name: Any, prefix: str = "") -> str | None:
    """A sentence naming `name` and why MLflow refuses it, or None."""
    reason = name_problem(name, prefix)
    return None if reason is None else f"{name!r:.80} is no name MLflow takes: {reason}"
