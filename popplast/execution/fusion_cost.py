"""What a fusion cost its child, before any training (ALGORITHMS.md §12): the better parent's fitness minus
the fused child's, and the parents' fitness-weighted mean minus the child's (positive: the fusion lost
something; negative: a gain). Fitness as the strategies see it (maximised), so the sign reads the same for
a minimised metric."""

from __future__ import annotations

import statistics
from typing import Iterable, Mapping

from popplast.core.individual import Individual
from popplast.core.result import EvalResult


def fusion_barriers(individual: Individual, fused_fitness: float, parents: Mapping[str, float]) -> dict[str, float]:
    """`parents`: the fitness of the individual's parents that succeeded, by id. Empty unless at least two
    parents with positive fusion weights are known."""
    weights = individual.parent_factors()
    fused = [(parents[p], w) for p, w in zip(individual.parent_ids, weights) if w > 0 and p in parents]
    if len(fused) < 2:
        return {}
    total = sum(w for _, w in fused)
    mean = sum(f * w for f, w in fused) / total if total > 0 else sum(f for f, _ in fused) / len(fused)
    return {
        "fusion_barrier": max(f for f, _ in fused) - fused_fitness,
        "fusion_barrier_mean": mean - fused_fitness,
    }


def fusion_summary(results: Iterable[EvalResult]) -> dict[str, float]:
    """Over a search's fused children: how many, the median barrier against the better parent and against
    the weighted mean, and how many fusions gained on the better parent (a negative barrier). Empty
    without fusions."""
    barriers = [
        (r.metrics["fusion_barrier"], r.metrics["fusion_barrier_mean"])
        for r in results
        if "fusion_barrier" in r.metrics
    ]
    if not barriers:
        return {}
    return {
        "fusions": float(len(barriers)),
        "fusion_barrier_median": statistics.median(b for b, _ in barriers),
        "fusion_barrier_mean_median": statistics.median(m for _, m in barriers),
        "fusion_gains": float(sum(b < 0 for b, _ in barriers)),
    }
