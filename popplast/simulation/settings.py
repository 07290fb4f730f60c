"""`--simulate PATH`: a table (.json, from `popplast record-table`) or a simulation file (YAML):

```yaml
table: demo-table.json      # or cost: {...} and score: {...} (simulation/models.py's CostModel)
failures: 0.0               # chance an evaluation's objective raises (recorded as failed; the search goes on)
worker_losses: 0.0          # chance its worker dies during it (run again on another worker, as on Ray)
restart_seconds: 0.0        # before a lost worker's replacement takes work
dispatch_seconds: 0.0       # between a worker coming free and its next evaluation starting
driver_time: false          # true: the driver's own real time advances the virtual clock
seed: 0                     # of the noise and the injected faults
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from popplast.core.errors import COMMAND_LINE, SpecError
from popplast.core.fields import Section, load_yaml
from popplast.simulation.models import CostModel, Table


@dataclass(frozen=True)
class Simulation:
    model: Any  # Table or CostModel
    failures: float = 0.0
    worker_losses: float = 0.0
    restart_seconds: float = 0.0
    dispatch_seconds: float = 0.0
    driver_time: bool = False
    seed: int = 0


def load_simulation(path: str | os.PathLike | Simulation, steps: int) -> Simulation:
    """The simulation `path` describes; `steps`: the fidelity's (a cost model's seconds are for that many)."""
    if isinstance(path, Simulation):
        return path
    path = os.fspath(path)
    if path.endswith(".json"):
        return Simulation(Table.load(path))
    if not os.path.exists(path):
        raise SpecError(COMMAND_LINE, "--simulate", f"no such file: {path!r} (a table .json or a simulation .yaml).")
    top = Section(load_yaml(path), path, "")
    if "table" in top.data:
        table = top.take("table", "str")
        model: Any = Table.load(os.path.join(os.path.dirname(os.path.abspath(path)), table))
    else:
        model = _cost_model(top, steps)
    rates = {}
    for key in ("failures", "worker_losses"):
        rates[key] = top.take(key, "number", 0.0)
        if not 0.0 <= rates[key] <= 1.0:
            raise top.error(key, f"expected a chance from 0 to 1, got {rates[key]}.")
    for key in ("restart_seconds", "dispatch_seconds"):
        rates[key] = top.take(key, "number", 0.0)
        if rates[key] < 0:
            raise top.error(key, f"expected seconds >= 0, got {rates[key]}.")
    simulation = Simulation(
        model, driver_time=top.take("driver_time", "bool", False), seed=top.take("seed", "int", 0), **rates
    )
    top.finish()
    return simulation


def _cost_model(top: Section, steps: int) -> CostModel:
    cost, score = top.section("cost"), top.section("score", {})
    costs = cost.take("genes", "mapping", {})
    for gene, by_value in costs.items():
        if not isinstance(by_value, dict):
            expected = f"expected a mapping of the gene's values to cost factors, got {by_value!r}."
            raise cost.error(f"genes.{gene}", expected)
    model = CostModel(
        seconds=cost.take("seconds", "number", 1.0),
        noise_seconds=cost.take("noise", "number", 0.0),
        costs={str(g): {str(k): float(v) for k, v in m.items()} for g, m in costs.items()},
        base=score.take("base", "number", 0.5),
        terms=score.take("genes", "mapping", {}),
        noise_score=score.take("noise", "number", 0.0),
        rate=score.take("rate", "number", 1.0),
        steps=steps,
    )
    cost.finish()
    score.finish()
    return model
