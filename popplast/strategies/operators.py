"""Gen-CNN's genetic operators (García Aguirre 2024, §3.3.2; ALGORITHMS.md §1).

Every function takes its randomness as a `numpy.random.Generator` argument. Failed evaluations are NaN
fitness: they get Ev = 0 for crossover weights and a selection score of −inf, so they lose every
tournament against a successful individual and are never elite.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from popplast.core import pareto


def normalise(fitness: np.ndarray) -> np.ndarray:
    """Min–max normalised evaluations Ev (eq. 3.4) over the successful individuals.

    Ev = (f − min) / (max − min); Ev = 1 for all when every successful fitness is equal; Ev = 0 for failures.
    """
    f = np.asarray(fitness, dtype=float)
    ok = np.isfinite(f)
    ev = np.zeros_like(f)
    if not ok.any():
        return ev
    lo, hi = f[ok].min(), f[ok].max()
    ev[ok] = 1.0 if hi == lo else (f[ok] - lo) / (hi - lo)
    return ev


def selection_score(fitness: np.ndarray) -> np.ndarray:
    """Ev for successful individuals, −inf for failed ones: the ranking used by selection and elitism."""
    f = np.asarray(fitness, dtype=float)
    return np.where(np.isfinite(f), normalise(f), -np.inf)


def tournament(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Algorithm 1: slot i meets one uniformly drawn opponent; i is selected only if strictly better.

    Returns the indices of the selected population PS (an individual may appear several times).
    """
    n = len(score)
    opponents = rng.integers(0, n, size=n)
    return np.where(score > score[opponents], np.arange(n), opponents)


def weighted_crossover(g1: np.ndarray, g2: np.ndarray, ev1: float, ev2: float) -> np.ndarray:
    """Fitness-weighted arithmetic crossover (eq. 3.5): (g1·Ev1 + g2·Ev2) / (Ev1 + Ev2).

    When Ev1 + Ev2 = 0 (both parents at the minimum, or failed) the plain mean is used.
    """
    total = ev1 + ev2
    if total == 0:
        return (np.asarray(g1) + np.asarray(g2)) / 2.0
    return (np.asarray(g1) * ev1 + np.asarray(g2) * ev2) / total


def uniform_mutation(
    genome: np.ndarray, probability: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene uniform mutation (eq. 3.6): with probability pm[gene], gene ← U(0, 1).

    Returns the new genome and the mask of mutated genes. Draws len(genome) decisions and len(genome)
    fresh values every call, whatever is mutated, so the generator advances the same way for every genome.
    """
    mutate = rng.random(len(genome)) < probability
    fresh = rng.random(len(genome))
    return np.where(mutate, fresh, genome), mutate


def best_index(score: np.ndarray) -> int | None:
    """Index of the best entry (the first on ties), or None when every entry failed."""
    score = np.asarray(score, dtype=float)
    if not np.isfinite(score).any():
        return None
    return int(np.argmax(score))


def as_told(value: Any) -> float | list[float] | None:
    """A told result as a state keeps it: a fitness, or a multi-objective vector (core/pareto.py) as a list;
    None for a failure (None, or anything not finite)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        vector = [float(v) for v in value]
        return vector if np.isfinite(vector).all() and vector[-1] >= 0 else None
    return float(value) if np.isfinite(value) else None


def several(values: Sequence[Any]) -> bool:
    return any(isinstance(v, (list, tuple)) for v in values)


def ranking(values: Sequence[Any]) -> np.ndarray:
    """What selection ranks by, NaN for failures: the fitness, or with several objectives NSGA-II's order
    over these values (front, then crowding; core/pareto.py order_scores)."""
    if several(values):
        return pareto.order_scores(values)
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def selection_and_ev(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(selection score, Ev): `selection_score` of the ranking, and the min–max normalised evaluations the
    crossover and fusion weights are made of: of the fitness, or with several objectives of §11's utility u."""
    order = ranking(values)
    return selection_score(order), normalise(pareto.utilities(values) if several(values) else order)


def first(value: Any, feasible: bool = False) -> float | None:
    """A told value's fitness, or a vector's first objective; None for a failure (with `feasible`, also for a
    vector that violates a constraint)."""
    if isinstance(value, (list, tuple)):
        return float(value[0]) if not feasible or value[-1] == 0 else None
    return None if value is None else float(value)


def answer_key(value: Any) -> tuple[bool, float, float] | None:
    """How the search's one answer, its best, is chosen (None: a failure): a feasible result before any
    infeasible one, the smaller violation between infeasible ones (Deb's constraint-domination), then the
    first objective, or the fitness."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return (value[-1] == 0, -float(value[-1]), float(value[0]))
    return (True, 0.0, float(value))


def improves(value: Any, best: Any) -> bool:
    """Whether `value` beats the best so far (told as it was; None: no best yet) as the answer."""
    key = answer_key(value)
    return key is not None and (best is None or key > answer_key(best))  # type: ignore[operator]


def best_held(state: Any) -> Any:
    """The best so far as it was told, for `improves`: its vector, else its fitness (None: no best yet)."""
    return state.best_told if state.best_told is not None else state.best_fitness


def kept_best(value: Any) -> Any:
    """What a state keeps of its best's told value: a vector (its violation decides the next comparison);
    a fitness is `best_fitness` already."""
    return list(value) if isinstance(value, (list, tuple)) else None


def summary_values(values: Sequence[Any]) -> list[float | None]:
    """What a generation's summary (best, median, mean) is over: the fitness, or with several objectives the
    first objective of the feasible results (an infeasible one is no candidate answer)."""
    return [first(v, feasible=True) for v in values]


def best_first(values: Sequence[Any], score: np.ndarray) -> list[int]:
    """Indices best first, failures last: by `score` (ties in order), or with several objectives as MO-PBT
    ranks (front by front, each in its greedy scattered order; ALGORITHMS.md §11)."""
    if several(values):
        return pareto.ranked(values)
    return [int(i) for i in np.argsort(-np.asarray(score, dtype=float), kind="stable")]
