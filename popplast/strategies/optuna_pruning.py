"""The stopper of an Optuna sampler with a `stopper:`: Optuna's own pruner for the rule, judging the
sampler's live trials, so that `tpe-hyperband` is TPE as Optuna runs it with `HyperbandPruner` (BOHB's
stand-in): every reported value is a trial's intermediate value, a stopped individual is told as a PRUNED
trial, and TPE samples each trial from the trials of its own bracket (Optuna filters the study by bracket
when its pruner is a `HyperbandPruner`).

The rules map onto Optuna's pruners: `asha` → `SuccessiveHalvingPruner` (rungs at min_steps·η^k; its
promotion rule is the one popplast's ASHA copies), `hyperband` → `HyperbandPruner` (brackets by a hash of the
study name and trial number), `median` → `MedianPruner` (the trial's best intermediate value so far against the
median of the finished trials' values at that very step, not against their running averages up to it as
popplast's rule does; its warm-up is popplast's `grace_steps`). Nobody is pruned at max_steps or
later: a trial that got there trained its budget and is told as complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import optuna

from popplast.spec.stopper import StopperSpec, grace_steps

if TYPE_CHECKING:
    from popplast.strategies.optuna_sampler import OptunaSampler


def optuna_pruner(spec: StopperSpec, max_steps: int) -> optuna.pruners.BasePruner:
    steps = spec.max_steps or max_steps
    if spec.rule == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.min_steps, reduction_factor=spec.reduction_factor, min_early_stopping_rate=0
        )
    if spec.rule == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_steps, max_resource=steps, reduction_factor=spec.reduction_factor
        )
    if spec.rule == "median":
        # Optuna prunes from step n_warmup_steps on; popplast's steps count from 1 and decide after the warm-up
        warmup = grace_steps(spec, steps) + 1
        return optuna.pruners.MedianPruner(n_startup_trials=spec.min_samples, n_warmup_steps=warmup)
    raise ValueError(f"no Optuna pruner for the rule {spec.rule!r}")


class PrunerStopper:
    """A popplast stopper (strategies/stoppers.py's protocol) over the sampler's trials: `judge` reports the value
    to the individual's live trial and asks its pruner. An individual that is not of the generation in flight
    (a resumed search's stopper log, replayed before the first ask) is already in the study: not judged."""

    def __init__(self, sampler: OptunaSampler, max_steps: int) -> None:
        self.sampler, self.max_steps = sampler, max_steps

    def judge(self, individual_id: str, step: int, score: float) -> bool:
        trial = self.sampler.live_trial(individual_id)
        if trial is None:
            return False
        self.sampler.reported(individual_id, step, score)
        trial.report(score, step)
        if step >= self.max_steps or not trial.should_prune():
            return False
        self.sampler.pruned(individual_id)
        return True

    def finished(self, individual_id: str) -> None:
        self.sampler.completed(individual_id)  # pruned too late to stop it: it trained its budget
