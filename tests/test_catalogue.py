"""The catalogue of methods (strategies/catalogue.py) is the one place that knows what a method can do: no module
outside it and the builders compares against a method's name, and every entry is built, checked and budgeted
through it (issue 32)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from popplast.spec.strategy import STOPPING_BASELINES
from popplast.strategies.build import STRATEGIES
from popplast.strategies.catalogue import CATALOGUE, methods

ROOT = pathlib.Path(__file__).resolve().parent.parent / "popplast"
# where a method's name may be compared with: the catalogue, and the builders that make each method
BUILDERS = {
    "strategies/catalogue.py",
    "strategies/build.py",  # the registry of popplast-loop builders
    "strategies/optuna_sampler.py",  # an Optuna sampler by its name
    "integrations/tune.py",  # the Ray Tune methods' own loop
    "integrations/tune_trainable.py",
}
NAMES = set(CATALOGUE) | set(STOPPING_BASELINES) | {f"{m}-async" for m in methods(schedule="async")}


def _compared_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every comparison (==, !=, in, not in) with a method's name as a literal."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            literals = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            for literal in literals:
                if isinstance(literal, ast.Constant) and literal.value in NAMES:
                    found.append((node.lineno, literal.value))
    return found


def test_no_module_outside_the_catalogue_and_the_builders_compares_a_method_name():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in BUILDERS:
            continue
        for line, name in _compared_names(ast.parse(path.read_text(), str(path))):
            offenders.append(f"popplast/{relative}:{line} compares with {name!r}")
    assert offenders == [], "ask the catalogue what the method can do instead:\n" + "\n".join(offenders)


def test_the_check_finds_a_comparison():
    assert _compared_names(ast.parse('if method == "gensoup" or m in ("tpe", "x"): pass')) == [
        (1, "gensoup"),
        (1, "tpe"),
    ]


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_entry_is_built_by_its_loop(name):
    """A method of popplast's loop has a builder in the registry; one out of it (Ray Tune's) has none."""
    assert (name in STRATEGIES.names()) == CATALOGUE[name].in_loop


def test_capabilities_are_consistent():
    for entry in CATALOGUE.values():
        assert entry.budget in ("generations", "shrinking", "trials")
        assert set(entry.schedules) <= {"generational", "async"} and "generational" in entry.schedules
        assert not entry.islands or "async" in entry.schedules
        assert not entry.stopper_rules or not entry.in_loop  # in the loop, the loop's stopper judges
    assert [m for m in CATALOGUE.values() if m.reference] == [CATALOGUE["tpe"]]
