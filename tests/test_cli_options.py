"""`popplast run`'s flags and `popplast.run`'s keywords are one set of options (issue 32): each flag reaches
the option of its name, and each option the CLI does not offer is one only Python can pass."""

from __future__ import annotations

import dataclasses
import inspect

from popplast.cli.parser import build_parser
from popplast.search.plan import RunOptions
from popplast.search.run import run

PYTHON_ONLY = {"progress", "parent_run_id", "objective", "strategy"}  # --quiet sets progress
CLI_ONLY = {"space", "quiet", "command"}


def test_every_flag_is_an_option_and_every_option_a_flag_or_pythons():
    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    flags = {a.dest for a in run_parser._actions if a.dest != "help"}
    options = {f.name for f in dataclasses.fields(RunOptions)}
    assert flags - CLI_ONLY == options - PYTHON_ONLY


def test_run_takes_exactly_the_options():
    keywords = [p for p in inspect.signature(run).parameters if p != "space"]
    assert keywords == [f.name for f in dataclasses.fields(RunOptions)]
