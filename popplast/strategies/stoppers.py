"""Early-stopping rules (ALGORITHMS.md §10): told every reported value, they answer "stop this individual".

Values are scores, higher better (a minimised metric is negated before it gets here); with several
objectives a score is the told vector (core/pareto.py: objectives maximised, then the constraint violation),
and ASHA and Hyperband rank a rung's vectors as MO-ASHA does (ALGORITHMS.md §11). A rule decides from
what has been reported so far, in the order it was reported: with several workers that order is the order
reports arrive, so which individuals stop can differ between runs of the same seed; one worker (the local
executor) reports in the order individuals are asked and stops the same individuals every time.

Every rule rebuilds its state from the reports alone (`judge` them again in order), which is how a resumed
search gets it back from the checkpoint's results.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence, Union

import numpy as np

from popplast.core import pareto

STOPPERS = ("none", "median", "asha", "hyperband")
SEVERAL = ("asha", "hyperband")  # the rules that judge vectors (MO-ASHA's promotion)
Score = Union[float, Sequence[float]]  # a scalar score, or a vector with several objectives


class Stopper(Protocol):
    def judge(self, individual_id: str, step: int, score: Score) -> bool:
        """Record `score` at `step` for the individual; True when it should stop now."""
        ...

    def finished(self, individual_id: str) -> None:
        """The individual trained its whole budget (the median rule compares with those alone)."""
        ...


def rungs(min_steps: int, reduction_factor: int, max_steps: int) -> tuple[int, ...]:
    """min_steps·η^k below max_steps: the steps at which successive halving judges (reaching max_steps is
    finishing, not a rung)."""
    out, step = [], min_steps
    while step < max_steps:
        out.append(step)
        step *= reduction_factor
    return tuple(out)


def promoted(score: Score, others: list[Score], reduction_factor: int) -> bool:
    """Whether `score` is in the top 1/η of `others` + itself: fewer than max(1, ⌊n/η⌋) strictly better.
    Vectors (MO-ASHA, Schmucker et al. 2021): better by non-dominated sorting of the rung's reports, then
    by crowding inside a front (the utility of core/pareto.py, over the rung's reports and this one).

    The max(1, ·) lets the first individuals at a rung through when they lead it (Optuna's successive halving
    does the same): with n < η there is no top n/η to be in, and stopping them all would stop everyone."""
    n = len(others) + 1
    if isinstance(score, (list, tuple)):
        u = pareto.order_scores([*others, score])  # type: ignore[list-item]
        better = int((u[:-1] > u[-1]).sum())
    else:
        better = sum(1 for s in others if s > score)  # type: ignore[operator,misc]
    return better < max(1, n // reduction_factor)


@dataclass
class ASHA:
    """Asynchronous successive halving (Li et al. 2020): at each rung an individual goes on only if it is in
    the top 1/η of every individual that has reached that rung so far. A report past a rung it skipped (an
    objective reporting every few steps) is judged at that rung with the value it reports then.

    `at`: the rungs, when not min_steps·η^k (a Hyperband bracket anchored at max_steps)."""

    min_steps: int = 1
    reduction_factor: int = 3
    max_steps: int = 1
    at: tuple[int, ...] | None = None
    recorded: dict[int, dict[str, Score]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rungs = self.at if self.at is not None else rungs(self.min_steps, self.reduction_factor, self.max_steps)
        for rung in self.rungs:
            self.recorded.setdefault(rung, {})

    def judge(self, individual_id: str, step: int, score: Score) -> bool:
        for rung in self.rungs:
            at = self.recorded[rung]
            if step < rung or individual_id in at:
                continue
            others = list(at.values())
            at[individual_id] = score
            if not promoted(score, others, self.reduction_factor):
                return True  # not promoted: it never reaches the rungs above, so it is recorded at none of them
        return False

    def finished(self, individual_id: str) -> None:
        pass


def bracket_sizes(s_max: int, reduction_factor: int) -> list[int]:
    """n_s = ⌈(s_max+1)·η^s/(s+1)⌉ for s = s_max .. 0 (Li et al. 2018, Algorithm 1; Optuna's HyperbandPruner
    allots its brackets the same shares)."""
    eta = reduction_factor
    return [-(-(s_max + 1) * eta**s // (s + 1)) for s in range(s_max, -1, -1)]


def bracket_rungs(s: int, reduction_factor: int, max_steps: int) -> tuple[int, ...]:
    """Bracket s's rungs: r_s·η^k below R, with r_s = R·η^(−s) (Algorithm 1), rounded down to whole steps."""
    eta = reduction_factor
    return tuple(max_steps * eta**k // eta**s for k in range(s))


@dataclass
class Hyperband:
    """Hyperband (Li et al. 2018, Algorithm 1) as brackets of ASHA, as in Optuna's HyperbandPruner: s_max =
    ⌊log_η(R/r)⌋ with r = min_steps and R = max_steps; bracket s (b = s_max − s = 0 .. s_max) starts at
    r_s = R·η^(−s) and judges at r_s·η^k below R, so bracket 0 trains everyone fully (random search) whatever
    R/r is. An individual's bracket follows from its id alone (so every run and every resume puts it in the
    same one), drawn in proportion to Hyperband's bracket sizes n_s.

    Deviation from Optuna: Optuna anchors bracket b at r·η^b (when R/r is no power of η, even its last bracket
    stops individuals); popplast anchors at R as the paper does."""

    min_steps: int = 1
    reduction_factor: int = 3
    max_steps: int = 1

    def __post_init__(self) -> None:
        eta, ratio = self.reduction_factor, self.max_steps / self.min_steps
        s_max = int(math.floor(math.log(ratio, eta) + 1e-9)) if ratio >= 1 else 0
        self.brackets = [
            ASHA(self.min_steps, eta, self.max_steps, at=bracket_rungs(s_max - b, eta, self.max_steps))
            for b in range(s_max + 1)
        ]
        self.sizes = bracket_sizes(s_max, eta)
        self.bounds = np.cumsum(self.sizes) / sum(self.sizes)

    def bracket_of(self, individual_id: str) -> int:
        digest = hashlib.sha256(individual_id.encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        return int(np.searchsorted(self.bounds, u, side="right"))

    def judge(self, individual_id: str, step: int, score: Score) -> bool:
        return self.brackets[self.bracket_of(individual_id)].judge(individual_id, step, score)

    def finished(self, individual_id: str) -> None:
        pass


@dataclass
class Median:
    """The median stopping rule (Golovin et al. 2017): after `grace_steps` steps of warm-up, stop an individual
    whose best score so far is below the median of the running averages at that step of the individuals that
    trained their whole budget (at least `min_samples` of them, else nobody stops). A finished individual
    that reported nothing up to the step is left out of that step's median; a tie with the median goes on.
    Nobody is stopped at `max_steps` or later: reaching it is finishing, and a finished individual joins the
    reference set (judged there, a plateau that trained its whole budget would stay out of it, and the
    reference would keep only finishers that beat the median)."""

    grace_steps: int = 1
    min_samples: int = 3
    max_steps: int | None = None
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    complete: list[str] = field(default_factory=list)

    def judge(self, individual_id: str, step: int, score: Score) -> bool:
        assert isinstance(score, float | int), "the median rule judges one metric (the spec refuses it otherwise)"
        curve = self.curves.setdefault(individual_id, [])
        curve.append((step, score))
        if step <= self.grace_steps or (self.max_steps is not None and step >= self.max_steps):
            return False
        averages = [a for a in (self._running_average(c, step) for c in self.complete) if a is not None]
        if len(averages) < self.min_samples:
            return False
        return max(s for _, s in curve) < float(np.median(averages))

    def _running_average(self, individual_id: str, step: int) -> float | None:
        values = [s for t, s in self.curves.get(individual_id, []) if t <= step]
        return sum(values) / len(values) if values else None

    def finished(self, individual_id: str) -> None:
        if individual_id not in self.complete:
            self.complete.append(individual_id)


def default_grace(max_steps: int) -> int:
    """The median rule's warm-up when the file gives none: the first tenth of the budget's steps, at least one
    (Vizier's default min_num_steps is a tenth of max_num_steps)."""
    return max(1, -(-max_steps // 10))
