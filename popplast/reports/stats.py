"""The numbers of a comparison report: per-method summaries, time to a target, paired tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from popplast.reports.comparison import Cell


def best_so_far(fitness: list[float | None]) -> np.ndarray:
    """Best fitness after each evaluation; NaN until the first success."""
    values = np.array([np.nan if f is None else f for f in fitness], dtype=float)
    out = np.full(len(values), np.nan)
    best = -np.inf
    for i, v in enumerate(values):
        if not np.isnan(v):
            best = max(best, v)
        out[i] = best if np.isfinite(best) else np.nan
    return out


def reach(cell: Cell, target: float) -> tuple[int, float, float] | None:
    """(evaluations, seconds, training epochs) when the cell's best first reached `target`, or None if it
    never did."""
    spent = np.cumsum(cell.costs) if cell.costs else np.zeros(len(cell.fitness))
    for i, value in enumerate(best_so_far(cell.fitness)):
        if not np.isnan(value) and value >= target - 1e-12:
            return i + 1, cell.seconds[i], float(spent[i])
    return None


def mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


@dataclass
class PairedTest:
    a: str
    b: str
    n: int
    mean_difference: float  # a − b
    p_value: float  # two-sided Wilcoxon signed-rank; NaN when every pair is tied
    rank_biserial: float  # matched-pairs rank-biserial correlation in [−1, 1]; positive: a is better


def wilcoxon(a_name: str, a: list[float], b_name: str, b: list[float]) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on paired scores, with the matched-pairs rank-biserial effect size.

    Zero differences are dropped (Wilcoxon's method), so the effect size uses only the informative pairs.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[~np.isnan(d)]
    mean = float(d.mean()) if d.size else math.nan
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return PairedTest(a_name, b_name, int(d.size), mean, math.nan, 0.0)
    ranks = stats.rankdata(np.abs(nonzero))
    plus, minus = float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())
    p = float(stats.wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedTest(a_name, b_name, int(d.size), mean, p, (plus - minus) / (plus + minus))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN: no test, left out of the family and NaN):
    the k-th smallest of m becomes max over j ≤ k of min(1, (m − j + 1)·p_(j))."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m, adjusted, running = len(order), [math.nan] * len(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def band(curves: np.ndarray, low: float = -1.0, high: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over rows and its 95% confidence band (Student's t), clipped to [low, high] (MCC's range).

    Only where every row has a value: a mean over the seeds that happen to have finished an evaluation would
    jump when a slower seed joins it.
    """
    rows = curves.shape[0]
    complete = np.all(~np.isnan(curves), axis=0)
    safe = np.where(complete, curves, 0.0)
    mean = safe.mean(axis=0)
    if rows > 1:
        half = stats.t.ppf(0.975, rows - 1) * safe.std(axis=0, ddof=1) / np.sqrt(rows)
    else:
        half = np.zeros(curves.shape[1])
    mean = np.where(complete, mean, np.nan)
    return mean, np.clip(mean - half, low, high), np.clip(mean + half, low, high)
