"""The one way a line reaches the person running popplast: stderr, flushed, and nothing when they asked for
quiet (`--quiet`, `progress=False`)."""

from __future__ import annotations

import sys


def say(show: bool, line: str) -> None:
    if show:
        print(line, file=sys.stderr, flush=True)
