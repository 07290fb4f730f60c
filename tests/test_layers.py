"""The layout of ARCHITECTURE.md holds (issue 32): no module of a lower layer imports a higher one, no two
modules import each other, and the layers below execution import no framework but numpy and PyYAML (the
Optuna sampler adapter imports optuna). Imports under `if TYPE_CHECKING:` are for the type checker only and
do not count; every other import does, a function's own included."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "popplast"
# the folders (and top modules) in the order a search flows through them; each may import only its own rank
# and the ranks below
RANKS = {
    "errors": 0,
    "console": 0,
    "defaults": 0,
    "core": 1,
    "spec": 2,  # spec and strategies are one layer: a spec is checked against the catalogue, and a
    "strategies": 2,  # strategy is built from its spec
    "training": 3,
    "plasticity": 3,
    "execution": 3,
    "objectives": 4,
    "tracking": 4,
    "reports": 4,
    "integrations": 5,
    "search": 6,
    "cli": 7,
    "testing": 7,
    "__init__": 8,
    "__main__": 8,
}
FRAMEWORKS = {"torch", "torchvision", "ray", "mlflow", "optuna", "matplotlib", "sqlalchemy"}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 2:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import that runs, popplast's resolved to a module of the package."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES]
            found.extend((node.lineno, m) for m in submodules or [node.module])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


IMPORTS = {m: _imports(ast.parse(p.read_text(), str(p))) for m, p in MODULES.items()}


def test_every_folder_has_a_rank():
    assert {_layer(m) for m in MODULES} <= set(RANKS)


def test_no_module_imports_a_higher_layer():
    offenders = [
        f"{m} (line {line}) imports {target}"
        for m, found in IMPORTS.items()
        for line, target in found
        if target in MODULES and RANKS[_layer(target)] > RANKS[_layer(m)]
    ]
    assert offenders == [], "\n".join(offenders)


def test_no_two_modules_import_each_other():
    edges = {m: {t for _, t in found if t in MODULES and t != m} for m, found in IMPORTS.items()}
    pairs = sorted(f"{a} <-> {b}" for a, targets in edges.items() for b in targets if a < b and a in edges[b])
    assert pairs == [], "\n".join(pairs)


def test_the_lowest_layers_import_no_framework():
    offenders = []
    for m, found in IMPORTS.items():
        if RANKS[_layer(m)] > 2 or m.startswith("popplast.strategies.optuna_"):
            continue
        offenders += [f"{m} (line {line}) imports {t}" for line, t in found if t.split(".")[0] in FRAMEWORKS]
    assert offenders == [], "\n".join(offenders)


def test_the_checks_find_what_they_look_for():
    tree = ast.parse("import torch\nif TYPE_CHECKING:\n    import ray\ndef f():\n    from popplast.search import run\n")
    assert _imports(tree) == [(1, "torch"), (5, "popplast.search.run")]
