"""Several objectives (ALGORITHMS.md §11): constraint-domination, NSGA-II's sorting and crowding, the scalar
utility Gen-Soup's fusion weights need, MO-PBT's scattered order, and the hypervolume.

A told vector is plain data, as a checkpoint holds it: the objectives, each maximised (a minimised metric
negated, as a single fitness is), then the total constraint violation (0: feasible). Non-dominated sorting
and the hypervolume are moocore's; what is built on them here is written out in §11.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Vector = Sequence[float]  # objectives (maximised), then the total violation


def split(values: Sequence[Vector | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(objectives n×k, violations n, ok n): a failed entry (None, or any value not finite) is not ok; its
    rows are NaN."""
    rows = [v for v in values if v is not None]
    width = len(rows[0]) if rows else 1
    table = np.full((len(values), width), np.nan)
    for i, v in enumerate(values):
        if v is not None and len(v) == width:
            table[i] = np.asarray(v, dtype=float)
    ok = np.isfinite(table).all(axis=1) & (table[:, -1] >= 0)
    return table[:, :-1], table[:, -1], ok


def dominates(a: Vector, b: Vector) -> bool:
    """Constraint-domination (Deb 2000): feasible beats infeasible, the smaller total violation between
    infeasible ones, else Pareto dominance (no worse in every objective, better in one)."""
    va, vb = a[-1], b[-1]
    if va > 0 or vb > 0:
        return va < vb
    x, y = np.asarray(a[:-1], dtype=float), np.asarray(b[:-1], dtype=float)
    return bool((x >= y).all() and (x > y).any())


def fronts(values: Sequence[Vector | None]) -> np.ndarray:
    """Each entry's front under constraint-domination, 0 first: the feasible ones by non-dominated sorting,
    then one front per distinct violation, smallest first; failed entries −1."""
    return _fronts(*split(values))


def _fronts(objectives: np.ndarray, violation: np.ndarray, ok: np.ndarray) -> np.ndarray:
    import moocore

    front = np.full(len(ok), -1, dtype=int)
    feasible = ok & (violation == 0)
    last = -1
    if feasible.any():
        front[feasible] = moocore.pareto_rank(objectives[feasible], maximise=True)
        last = int(front[feasible].max())
    infeasible = ok & (violation > 0)
    if infeasible.any():
        levels = np.unique(violation[infeasible])
        front[infeasible] = last + 1 + np.searchsorted(levels, violation[infeasible])
    return front


def crowding(objectives: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance inside one front: infinite at each objective's extremes, else the sum over
    objectives of the gap between the two neighbours over the front's range in that objective. An objective
    the whole front shares adds nothing (as Optuna's NSGA-II); a front of one point, or of copies of one point,
    is its own extreme."""
    n, k = objectives.shape
    if n == 1 or (objectives == objectives[0]).all():
        return np.full(n, np.inf)
    distance = np.zeros(n)
    for m in range(k):
        column = objectives[:, m]
        order = np.argsort(column, kind="stable")
        span = column[order[-1]] - column[order[0]]
        if span == 0:
            continue
        distance[order[0]] = distance[order[-1]] = np.inf
        distance[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / span
    return distance


def crowding_by_front(values: Sequence[Vector | None]) -> tuple[np.ndarray, np.ndarray]:
    """(front, crowding) of every entry; a failed entry's crowding is NaN."""
    objectives, violation, ok = split(values)
    front = _fronts(objectives, violation, ok)
    distance = np.full(len(values), np.nan)
    for f in np.unique(front[front >= 0]):
        members = np.flatnonzero(front == f)
        distance[members] = crowding(objectives[members])
    return front, distance


def _share(distance: np.ndarray) -> np.ndarray:
    """c/(1 + c), infinite c counted as 1."""
    finite = np.where(np.isinf(distance), 0.0, distance)
    return np.where(np.isinf(distance), 1.0, finite / (1.0 + finite))


def utilities(values: Sequence[Vector | None]) -> np.ndarray:
    """§11's u = −front + c/(1 + c), fronts counted from 1, infinite crowding c counted as 1; NaN for failed
    entries: what Gen-Soup's fusion weights and the crossover weights (Ev) are made from. It orders as the
    crowded tournament does except where a member of one front has crowding 0 and the next front's extreme
    infinite crowding: both get the same u. Selection orders by `order_scores`, which never ties them."""
    front, distance = crowding_by_front(values)
    return np.where(front >= 0, -(front + 1.0) + _share(distance), np.nan)


def order_scores(values: Sequence[Vector | None]) -> np.ndarray:
    """NSGA-II's crowded-comparison order as numbers, larger better: −2·front + c/(1 + c), so a lower front
    always wins and crowding decides inside a front; NaN for failed entries. What tournaments, survival,
    replacement, migration and MO-ASHA's promotion rank by."""
    front, distance = crowding_by_front(values)
    return np.where(front >= 0, -2.0 * front + _share(distance), np.nan)


def scattered(objectives: np.ndarray) -> list[int]:
    """MO-PBT's greedy scattered order of one front: the best in the first objective, then repeatedly the
    point farthest (Euclidean, objectives min–max normalised over the front) from those chosen; the first
    index wins ties."""
    n = len(objectives)
    if n == 0:
        return []
    lo, hi = objectives.min(axis=0), objectives.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    points = (objectives - lo) / span
    chosen = [int(np.argmax(objectives[:, 0]))]
    nearest = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < n:
        nearest[chosen] = -1.0
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[pick], axis=1))
    return chosen


def ranked(values: Sequence[Vector | None]) -> list[int]:
    """Every entry, best first, as MO-PBT ranks a population: front by front, each front in its scattered
    order; failed entries last, in their order."""
    objectives, violation, ok = split(values)
    front = _fronts(objectives, violation, ok)
    order: list[int] = []
    for f in np.unique(front[front >= 0]):
        members = np.flatnonzero(front == f)
        order += [int(members[i]) for i in scattered(objectives[members])]
    return order + [int(i) for i in np.flatnonzero(front < 0)]


def first_front(values: Sequence[Vector | None]) -> list[int]:
    """The indices of the feasible non-dominated entries (none when nothing feasible succeeded)."""
    objectives, violation, ok = split(values)
    front = _fronts(objectives, violation, ok)
    return [int(i) for i in np.flatnonzero((front == 0) & ok & (violation == 0))]


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """The volume the maximised `points` dominate above `reference` (points not better than it in every
    objective add nothing); moocore's exact algorithms."""
    import moocore

    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    ref = np.asarray(reference, dtype=float)
    inside = points[(points > ref).all(axis=1)]
    if not len(inside):
        return 0.0
    return float(moocore.hypervolume(inside, ref=ref, maximise=True))
