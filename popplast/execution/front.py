"""The Pareto front of a search with several objectives (ALGORITHMS.md §11): its members, and the hypervolume
each generation's row records, against a reference point stated beside it.

The reference point is the search file's (`reference:` on every objective), else derived once from the first
generation's (an asynchronous search's first `population`) results: each objective's worst value there,
moved away by a tenth of that generation's range in it (by a tenth of the value, or 1, when the range is
0). Each row records the point in the metrics' own units (`hypervolume_reference_METRIC`), and a resumed
search reads it back from the first row, so it never moves. A later result worse than it in some objective
adds nothing to the hypervolume (it may still be on the front); a file that names the point chooses it.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from popplast.core import pareto
from popplast.core.result import EvalResult
from popplast.spec.fitness import FitnessSpec

REFERENCE = "hypervolume_reference_"  # + metric: a row's reference point, in the metric's units


def signs(fitness: FitnessSpec) -> np.ndarray:
    """+1 for a maximised objective, −1 for a minimised one: the file's units times the sign are maximised."""
    return np.array([1.0 if mode == "maximize" else -1.0 for _, mode in fitness.objectives])


def vectors(fitness: FitnessSpec, results: Iterable[EvalResult]) -> tuple[list[str], np.ndarray]:
    """The ids and told vectors (objectives maximised, then the violation) of the results that succeeded."""
    ok = [r for r in results if r.ok]
    table = np.array([fitness.vector(r.metrics) for r in ok], dtype=float).reshape(len(ok), -1)
    return [r.individual_id for r in ok], table


def derived_reference(fitness: FitnessSpec, first: Iterable[EvalResult]) -> tuple[float, ...]:
    """The reference point (maximised units) from the first generation's results: each objective's worst,
    less a tenth of the range (of the value, or 1, when the range is 0)."""
    _, table = vectors(fitness, first)
    if not len(table):
        raise ValueError("no result of the first generation succeeded: no reference point to derive")
    return tuple(float(v) for v in below(table[:, :-1]))


def below(objectives: np.ndarray) -> np.ndarray:
    """A point worse than every row of `objectives` (maximised): each objective's worst, less a tenth of its
    range there (of the value, or 1, when the range is 0)."""
    worst, best = objectives.min(axis=0), objectives.max(axis=0)
    span = best - worst
    return worst - np.where(span > 0, span, np.maximum(np.abs(worst), 1.0)) / 10.0


def reference_of(
    fitness: FitnessSpec, history: Sequence[Mapping[str, float]], first: Iterable[EvalResult]
) -> tuple[float, ...]:
    """The search's reference point in maximised units: the file's, the first row's, or derived now."""
    s = signs(fitness)
    if fitness.reference is not None:
        return tuple(float(v) for v in np.asarray(fitness.reference) * s)
    names = [REFERENCE + metric for metric, _ in fitness.objectives]
    for row in history:  # the first row that states one (a first generation that all failed states none)
        if all(n in row for n in names):
            return tuple(float(row[n] * sign) for n, sign in zip(names, s))
    return derived_reference(fitness, first)


def front_metrics(fitness: FitnessSpec, results: Iterable[EvalResult], reference: Sequence[float]) -> dict[str, float]:
    """A row's front measures over every result so far: the hypervolume of the feasible ones, how many are
    on the front, how many are feasible, and the reference point in the metrics' units."""
    _, table = vectors(fitness, results)
    feasible = table[table[:, -1] == 0, :-1] if len(table) else np.empty((0, len(reference)))
    front = pareto.first_front([list(row) for row in table]) if len(table) else []
    metrics = {
        "hypervolume": pareto.hypervolume(feasible, reference),
        "front_size": float(len(front)),
        "feasible": float(len(feasible)),
    }
    for (metric, _), value, sign in zip(fitness.objectives, reference, signs(fitness)):
        metrics[REFERENCE + metric] = float(value * sign)
    return metrics


def front_members(fitness: FitnessSpec, results: Iterable[EvalResult]) -> list[dict[str, Any]]:
    """The feasible non-dominated results, by the first objective's file value (best first): each one's id and
    objectives in the metrics' own units."""
    ids, table = vectors(fitness, results)
    front = sorted(pareto.first_front([list(row) for row in table]), key=lambda i: (-table[i, 0], ids[i]))
    names = [metric for metric, _ in fitness.objectives]
    return [
        {"id": ids[i], "objectives": {m: float(v * s) for m, v, s in zip(names, table[i], signs(fitness))}}
        for i in front
    ]
