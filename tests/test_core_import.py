"""popplast.core, popplast.spec and popplast.strategies import without torch, ray, mlflow or optuna
(ARCHITECTURE.md); the one exception, the Optuna sampler adapter, loads optuna when it is built."""

import subprocess
import sys

FRAMEWORKS = ("torch", "ray", "mlflow", "optuna")


def _imported_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_core_spec_and_strategies_import_no_framework():
    modules = ["popplast.core.individual", "popplast.spec.search", "popplast.strategies.build"]
    assert _imported_after("; ".join(f"import {m}" for m in modules)) == []


def test_package_import_is_light():
    assert _imported_after("import popplast") == []


def test_core_works_with_frameworks_blocked():
    """Not just unimported: the core runs a GA generation when importing a framework would fail."""
    code = (
        "import sys\n"
        "for m in ('torch', 'ray', 'mlflow', 'optuna'): sys.modules[m] = None\n"
        "import numpy as np\n"
        "from popplast.strategies.ga import GenCNN\n"
        "ga = GenCNN(2, 4, [0.9, 0.9], [0.1, 0.1])\n"
        "pop, st = ga.ask(ga.init(), np.random.default_rng(0))\n"
        "st, m = ga.tell(st, {i.id: sum(i.genome) for i in pop})\n"
        "print(len(pop), m['generation'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["4", "0.0"]
