"""`--simulate PATH`: a table (.json, from `popplast record-table`), a suite task's table (.npz, from
`popplast suites import`; a task's own search file names it, and needs no --simulate) or a simulation file (YAML):

```yaml
table: demo-table.json      # or a suite task's .npz; or cost: {...} and score: {...} (models.py's CostModel)
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

from popplast.core.suite_table import SuiteTable
from popplast.errors import COMMAND_LINE, SpecError
from popplast.execution.simulated.models import CostModel, Table, finite
from popplast.execution.simulated.suite_model import SuiteModel
from popplast.spec.fields import Section, describe, load_yaml
from popplast.spec.space import SearchSpace


@dataclass(frozen=True)
class Simulation:
    model: Any  # Table, SuiteModel or CostModel
    failures: float = 0.0
    worker_losses: float = 0.0
    restart_seconds: float = 0.0
    dispatch_seconds: float = 0.0
    driver_time: bool = False
    seed: int = 0


def load_simulation(path: str | os.PathLike | Simulation, steps: int, space: SearchSpace | None = None) -> Simulation:
    """The simulation `path` describes; `steps`: the fidelity's (a cost model's seconds are for that many);
    `space`: the search's, which a table's rows and a cost model's genes must fit (checked here, so that a
    mismatch is an error before the search and not a KeyError in the middle of it)."""
    if isinstance(path, Simulation):
        if space is not None and isinstance(path.model, (Table, SuiteModel)):
            path.model.check(space, "the simulation's table")
        return path
    path = os.fspath(path)
    if path.endswith((".json", ".npz")):
        return Simulation(_table(path, space))
    if not os.path.exists(path):
        raise SpecError(COMMAND_LINE, "--simulate", f"no such file: {path!r} (a table .json or a simulation .yaml).")
    top = Section(load_yaml(path), path, "")
    if "table" in top.data:
        table = top.take("table", "str")
        model: Any = _table(os.path.join(os.path.dirname(os.path.abspath(path)), table), space)
    else:
        model = _cost_model(top, steps, space)
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


def _table(path: str, space: SearchSpace | None) -> Table | SuiteModel:
    table: Table | SuiteModel = SuiteModel(SuiteTable.load(path)) if path.endswith(".npz") else Table.load(path)
    if space is not None:
        table.check(space, path)
    return table


def _cost_model(top: Section, steps: int, space: SearchSpace | None) -> CostModel:
    cost, score = top.section("cost"), top.section("score", {})
    costs = cost.take("genes", "mapping", {})
    for gene, by_value in costs.items():
        key = f"genes.{gene}"
        _gene(cost, key, gene, space)
        if not isinstance(by_value, dict):
            raise cost.error(key, f"expected a mapping of the gene's values to cost factors, got {describe(by_value)}.")
        for value, factor in by_value.items():
            _value(cost, f"{key}.{value}", gene, value, space)
            if not finite(factor) or factor < 0:  # a negative factor is a negative time: the clock runs back
                raise cost.error(f"{key}.{value}", f"expected a cost factor >= 0, got {describe(factor)}.")
    terms = score.take("genes", "mapping", {})
    for gene, term in terms.items():
        _term(score, f"genes.{gene}", gene, term, space)
    model = CostModel(
        seconds=_at_least(cost, "seconds", 1.0, 0.0),
        noise_seconds=_at_least(cost, "noise", 0.0, 0.0),
        costs={str(g): {str(k): float(v) for k, v in m.items()} for g, m in costs.items()},
        base=score.take("base", "number", 0.5),
        terms={str(g): t if "best" in t else {str(k): float(v) for k, v in t.items()} for g, t in terms.items()},
        noise_score=_at_least(score, "noise", 0.0, 0.0),
        rate=score.take("rate", "number", 1.0),
        steps=steps,
    )
    if model.rate <= 0:  # the curve is normalised by 1 − exp(−rate·steps)
        raise score.error("rate", f"expected a number > 0, got {model.rate}.")
    cost.finish()
    score.finish()
    return model


def _term(score: Section, key: str, gene: Any, term: Any, space: SearchSpace | None) -> None:
    """A score term: {value: points} (by the gene's value), or {best, width, weight} (a numeric peak)."""
    _gene(score, key, gene, space)
    if not isinstance(term, dict):
        raise score.error(
            key, f"expected a mapping ({{value: term}} or {{best, width, weight}}), got {describe(term)}."
        )
    if "best" not in term:
        for value, points in term.items():
            _value(score, f"{key}.{value}", gene, value, space)
            if not finite(points):
                raise score.error(f"{key}.{value}", f"expected a finite number, got {describe(points)}.")
        return
    peak = Section(term, score.source, score.key(key))
    best = peak.take("best", "any")
    if space is not None:
        g = space[str(gene)]
        fits = best in g.choices if g.type == "categorical" else finite(best) and (not g.log or best > 0)
        if not fits:
            expected = f"one of {list(g.choices)}" if g.type == "categorical" else "a finite number of the gene"
            raise peak.error("best", f"expected {expected}, got {describe(best)}.")
    width = peak.take("width", "number", 1.0)
    if width <= 0:
        raise peak.error("width", f"expected a number > 0, got {width}.")
    peak.take("weight", "number", 1.0)
    peak.finish()


def _gene(section: Section, key: str, gene: Any, space: SearchSpace | None) -> None:
    if space is not None and str(gene) not in space.names:
        raise section.error(key, f"no gene {gene!r} in the search space; its genes: {', '.join(space.names)}.")


def _value(section: Section, key: str, gene: Any, value: Any, space: SearchSpace | None) -> None:
    """A categorical gene's value (keyed as text, as the model looks it up): one of its choices."""
    if space is None:
        return
    g = space[str(gene)]
    if g.type == "categorical" and str(value) not in {str(c) for c in g.choices}:
        raise section.error(key, f"not a choice of {gene!r}; expected one of {', '.join(map(str, g.choices))}.")


def _at_least(section: Section, key: str, default: float, low: float) -> float:
    value = float(section.take(key, "number", default))
    if value < low:
        raise section.error(key, f"expected a number >= {low:g}, got {value:g}.")
    return value
