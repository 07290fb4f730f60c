"""What a simulated evaluation costs and returns: a table recorded from real runs, or a cost model.

Both answer `outcome(config, start, steps, rng)`: the fitness metric's values at steps start+1 .. start+steps
and the seconds that training took. `start` is the training an inherited state already had (Gen-Soup and
PBT children continue their better parent's progress: their curve goes on from the step it reached, on
their own configuration's curve; a model of inheritance, not a measurement of it).

A table (`popplast record-table`) replays real runs: a configuration it holds gets that run's curve and
seconds (the run with the individual's seed, where it holds several), any other the nearest recorded one's
(fewest categorical genes that differ, then the smallest distance over the encoded numeric genes), as
tabulated benchmarks are replayed (Syne Tune's simulator backend). A curve ends where its run ended (its
budget, or the step a stopper stopped it at): steps past it repeat the last value.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from popplast.core.names import check_name
from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.fields import Section, describe
from popplast.spec.space import SearchSpace

TABLE_FORMAT = "popplast-table/1"


@dataclass(frozen=True)
class Outcome:
    curve: tuple[float, ...]  # the metric after each step trained here
    seconds: float  # the whole of it, spread evenly over the steps
    metrics: dict[str, float] = field(default_factory=dict)  # the run's other final metrics
    step_seconds: tuple[float, ...] | None = None  # each step's share of `seconds` where they differ (LCDB)
    series: dict[str, tuple[float, ...]] = field(default_factory=dict)  # other metrics after each step

    def step_ends(self, steps: int) -> tuple[float, ...]:
        """Seconds from the start to the end of each of `steps` steps."""
        if self.step_seconds is None:
            each = self.seconds / max(1, steps)
            return tuple((k + 1) * each for k in range(steps))
        return tuple(float(t) for t in np.cumsum(self.step_seconds[:steps]))


def inherited_steps(parents: Any) -> int:
    """The steps the better parent's stand-in state says it trained ({"steps": [n]}, what a simulated or suite
    evaluation returns); 0 without a parent or such a state."""
    if not parents or not isinstance(parents[0][0], Mapping) or "steps" not in parents[0][0]:
        return 0
    return int(np.asarray(parents[0][0]["steps"]).ravel()[0])


@dataclass(frozen=True)
class TableRow:
    config: dict[str, Any]
    curve: tuple[float, ...]  # the metric at steps 1..n
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "ok"  # or stopped: its curve ends at the step its search's stopper stopped it
    seed: int | None = None  # the individual's seed it trained with

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "curve": [round(v, 6) for v in self.curve],
            "seconds": round(self.seconds, 4),
            "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            **({"status": self.status} if self.status != "ok" else {}),
            **({"seed": self.seed} if self.seed is not None else {}),
        }


@dataclass
class Table:
    """Recorded runs of one space: each row's configuration, its metric's curve, its training seconds."""

    metric: str
    mode: str
    rows: list[TableRow]
    source: str = ""  # what it was recorded from
    _index: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "metric": self.metric,
            "mode": self.mode,
            "source": self.source,
            "rows": [r.to_dict() for r in self.rows],
        }

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, separators=(",", ":"))
            f.write("\n")

    @classmethod
    def from_dict(cls, data: Any, where: str = "table") -> "Table":
        """The table `data` holds, checked whole (`where`: the file, named in errors with the key path): a bad
        value would otherwise fail mid-search, or a negative time run the virtual clock backwards."""
        top = Section(data, where, "")
        if top.data.get("format") != TABLE_FORMAT:
            raise top.error("format", f"expected {TABLE_FORMAT!r}, got {describe(top.data.get('format'))}.")
        top.take("format", "str")
        metric, mode = top.take("metric", "str"), top.take("mode", "str", "maximize")
        if mode not in ("maximize", "minimize"):
            raise top.error("mode", f"expected maximize or minimize, got {describe(mode)}.")
        source = top.take("source", "any", "")
        rows = [_row(row, where, f"rows[{i}]") for i, row in enumerate(top.take("rows", "list"))]
        top.finish()
        if not [r for r in rows if r.status == "ok" and r.curve]:
            raise SpecError(where, "rows", "expected at least one finished run with a curve, got none.")
        return cls(metric, mode, rows, str(source))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Table":
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError(COMMAND_LINE, "--simulate", f"cannot read the table {os.fspath(path)!r}: {e}.") from None
        except RecursionError:  # arrays nested thousands deep: no table, and Python's JSON reader recurses
            raise SpecError(
                COMMAND_LINE, "--simulate", f"cannot read the table {os.fspath(path)!r}: nested too deeply."
            ) from None
        return cls.from_dict(data, os.fspath(path))

    def check(self, space: SearchSpace, where: str = "table") -> None:
        """Every row has a usable value of every gene of `space` (the search's): a table of another space
        would fail at the first lookup, mid-search."""
        for i, row in enumerate(self.rows):
            for gene in space.genes:
                key = f"rows[{i}].config"
                if gene.name not in row.config:
                    raise SpecError(where, key, f"no gene {gene.name!r} of the space (a table of another space?).")
                value = row.config[gene.name]
                if gene.type != "categorical" and not finite(value, gene.log):
                    expected = "a number > 0 (a log-scale gene)" if gene.log else "a finite number"
                    raise SpecError(where, f"{key}.{gene.name}", f"expected {expected}, got {describe(value)}.")

    def nearest(self, space: SearchSpace, config: Mapping[str, Any], seed: int | None = None) -> TableRow:
        """The row of `config` (and of `seed` among several), else the nearest; on equal terms a finished
        run before a stopped one, then the first recorded."""
        if self._index is None:
            usable = [r for r in self.rows if r.curve]
            self._index = (
                usable,
                _coordinates(space, [r.config for r in usable]),
                np.array([r.status != "ok" for r in usable]),
                np.array([-1 if r.seed is None else r.seed for r in usable]),
            )
        usable, (categorical, numeric), stopped, seeds = self._index
        [c], [n] = _coordinates(space, [config])
        mismatches = (categorical != c).sum(axis=1) if categorical.size else np.zeros(len(usable))
        distance = np.abs(numeric - n).sum(axis=1) if numeric.size else np.zeros(len(usable))
        other_seed = seeds != (-1 if seed is None else seed)
        order = np.lexsort((np.arange(len(usable)), stopped, other_seed, distance, mismatches))
        return usable[int(order[0])]

    def outcome(
        self, space: SearchSpace, config: Mapping[str, Any], start: int, steps: int, rng: Any, seed: int | None = None
    ) -> Outcome:
        row = self.nearest(space, config, seed)
        n = len(row.curve)
        curve = tuple(row.curve[min(start + k, n) - 1] for k in range(1, steps + 1))
        return Outcome(curve, row.seconds * steps / n, row.metrics)


def _row(data: Any, where: str, path: str) -> TableRow:
    row = Section(data, where, path)
    config = row.take("config", "mapping")
    curve = row.take("curve", "list")
    for j, value in enumerate(curve):
        if not finite(value):
            raise SpecError(where, f"{path}.curve[{j}]", f"expected a finite number, got {describe(value)}.")
    seconds = row.take("seconds", "number")
    if seconds < 0:
        raise row.error("seconds", f"expected seconds >= 0, got {seconds}.")
    metrics = row.take("metrics", "mapping", {})
    for name, value in metrics.items():
        if not finite(value):
            raise row.error(f"metrics.{name}", f"expected a finite number, got {describe(value)}.")
        problem = check_name(name)
        if problem:  # logged as each simulated individual's metric: MLflow would refuse every run, after the search
            raise row.error("metrics", f"{problem}.")
    status = row.take("status", "str", "ok")
    if status not in ("ok", "stopped"):
        raise row.error("status", f"expected ok or stopped, got {describe(status)}.")
    seed = row.take("seed", "int", None)
    if seed is not None and seed < 0:
        raise row.error("seed", f"expected an integer >= 0, got {seed}.")
    row.finish()
    return TableRow(
        {str(k): v for k, v in config.items()},
        tuple(float(v) for v in curve),
        seconds,
        {str(k): float(v) for k, v in metrics.items()},
        status,
        seed,
    )


def finite(value: Any, positive: bool = False) -> bool:
    """A finite number (not a boolean), > 0 with `positive`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (not positive or value > 0)


def _coordinates(space: SearchSpace, configs: list[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Categorical genes as choice indices, numeric ones encoded to [0, 1] (log genes on the log scale)."""
    cats = [g for g in space.genes if g.type == "categorical"]
    nums = [g for g in space.genes if g.type != "categorical"]
    c = np.array([[g.choices.index(cfg[g.name]) if cfg[g.name] in g.choices else -1 for g in cats] for cfg in configs])
    n = np.array([[g.encode(cfg[g.name]) for g in nums] for cfg in configs], dtype=float)
    return c.reshape(len(configs), len(cats)), n.reshape(len(configs), len(nums))


@dataclass(frozen=True)
class CostModel:
    """Seconds and scores from a formula (a simulation file's `cost:` and `score:`):

    seconds = `seconds` × Π costs[gene][value] × exp(noise_seconds·N(0,1)), for the fidelity's steps;
    final score = base + Σ terms − |noise·N(0,1)|, a categorical term by choice (`{choice: value}`), a numeric one
    −weight·((x − best)/width)² on the encoded scale (log genes on the log scale, 0 to 1 over the gene's
    range); the value after s steps in all is final·(1 − exp(−rate·s)) / (1 − exp(−rate·steps)).
    """

    seconds: float = 1.0
    noise_seconds: float = 0.0
    costs: dict[str, dict[str, float]] = field(default_factory=dict)
    base: float = 0.5
    terms: dict[str, Any] = field(default_factory=dict)
    noise_score: float = 0.0
    rate: float = 1.0
    steps: int = 1

    def outcome(
        self, space: SearchSpace, config: Mapping[str, Any], start: int, steps: int, rng: Any, seed: int | None = None
    ) -> Outcome:
        factor = 1.0
        for gene, by_value in self.costs.items():
            factor *= float(by_value.get(str(config[gene]), 1.0))
        seconds = self.seconds * factor * math.exp(self.noise_seconds * rng.standard_normal()) * steps / self.steps
        final = self.base - abs(self.noise_score * rng.standard_normal())
        for gene, term in self.terms.items():
            if isinstance(term, Mapping) and "best" in term:
                g = space[gene]
                x, best = g.encode(config[gene]), g.encode(term["best"])
                final -= float(term.get("weight", 1.0)) * ((x - best) / float(term.get("width", 1.0))) ** 2
            else:
                final += float(term.get(str(config[gene]), 0.0))
        norm = 1 - math.exp(-self.rate * self.steps)
        curve = tuple(final * (1 - math.exp(-self.rate * s)) / norm for s in range(start + 1, start + steps + 1))
        return Outcome(curve, seconds)
