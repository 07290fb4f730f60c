"""popplast's stopping rules against Optuna's pruners on the same random report sequences (hypothesis): the
same decisions where the rules are meant to agree, and the documented differences where they are not.

- ASHA = SuccessiveHalvingPruner (min_early_stopping_rate 0, no bootstrap): exactly, whatever the order in
  which trials report and whatever steps they skip.
- Hyperband = HyperbandPruner in its number of brackets and their sizes n_s; their rungs agree when R/r is a
  power of η. Where it is not, Optuna anchors bracket b at r·η^b and popplast at R·η^−s (Li et al. 2018).
- Median = MedianPruner when the finished curves are flat: Optuna compares the best value so far with the
  median of the finished trials' values at that step, popplast with the median of their running averages up
  to it, which is the same number for flat curves; popplast's `grace_steps` is Optuna's n_warmup_steps − 1
  (popplast's steps count from 1). Neither stops at the last step (the adapter refuses it for Optuna).
"""

from __future__ import annotations

import math

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from popplast.strategies.stoppers import ASHA, Hyperband, Median

optuna.logging.set_verbosity(optuna.logging.WARNING)

VALUES = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])  # few values: ties happen
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def asynchronous_reports(draw, max_steps: int):
    """Trials, each reporting increasing steps below max_steps (skipping some), interleaved at random."""
    n = draw(st.integers(2, 10))
    curves = []
    for _ in range(n):
        steps = sorted(draw(st.sets(st.integers(1, max_steps - 1), min_size=1, max_size=max_steps - 1)))
        curves.append([(s, draw(VALUES)) for s in steps])
    order = draw(st.permutations([i for i, c in enumerate(curves) for _ in c]))
    return curves, order


def optuna_study(pruner: optuna.pruners.BasePruner) -> optuna.Study:
    return optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(0))


@PROPERTY
@given(data=st.data(), eta=st.sampled_from([2, 3, 4]), min_steps=st.sampled_from([1, 2]))
def test_asha_decides_as_optunas_successive_halving(data, eta, min_steps):
    max_steps = min_steps * eta**2 + data.draw(st.integers(1, 4))
    curves, order = data.draw(asynchronous_reports(max_steps))
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min_steps, reduction_factor=eta, min_early_stopping_rate=0, bootstrap_count=0
    )
    study, asha = optuna_study(pruner), ASHA(min_steps, eta, max_steps)
    trials = [study.ask() for _ in curves]
    position, done = [0] * len(curves), [False] * len(curves)
    for i in order:
        if done[i]:
            continue
        step, value = curves[i][position[i]]
        position[i] += 1
        trials[i].report(value, step)
        pruned = trials[i].should_prune()
        assert asha.judge(f"t{i}", step, value) == pruned, (i, step, value)
        if pruned:
            study.tell(trials[i], state=TrialState.PRUNED)
            done[i] = True
        elif position[i] == len(curves[i]):
            study.tell(trials[i], value)
            done[i] = True


@PROPERTY
@given(min_steps=st.integers(1, 5), eta=st.integers(2, 5), ratio=st.floats(1.0, 300.0))
def test_hyperbands_brackets_and_their_sizes_are_optunas(min_steps, eta, ratio):
    max_steps = max(min_steps, int(min_steps * ratio))
    pruner = optuna.pruners.HyperbandPruner(min_resource=min_steps, max_resource=max_steps, reduction_factor=eta)
    pruner._try_initialization(optuna_study(pruner))  # Optuna sizes its brackets at the first prune
    hb = Hyperband(min_steps, eta, max_steps)
    assert hb.sizes == pruner._trial_allocation_budgets
    assert len(hb.brackets) == len(pruner._pruners)


@pytest.mark.parametrize("min_steps,eta,s_max", [(1, 3, 4), (2, 2, 3), (1, 4, 2), (3, 3, 2)])
def test_hyperbands_rungs_are_optunas_when_the_ratio_is_a_power_of_eta(min_steps, eta, s_max):
    max_steps = min_steps * eta**s_max
    hb = Hyperband(min_steps, eta, max_steps)
    for b, bracket in enumerate(hb.brackets):  # Optuna's bracket b: min_early_stopping_rate b
        optunas = tuple(min_steps * eta ** (b + k) for k in range(s_max + 1) if min_steps * eta ** (b + k) < max_steps)
        assert bracket.rungs == optunas


def test_hyperbands_rungs_differ_from_optunas_when_the_ratio_is_no_power_of_eta():
    """R = 10, η = 3: Optuna's last bracket (b = 2) still judges at step 9; popplast's trains everyone fully."""
    hb = Hyperband(1, 3, 10)
    assert [b.rungs for b in hb.brackets] == [(1, 3), (3,), ()]
    optunas = [tuple(3 ** (b + k) for k in range(3) if 3 ** (b + k) < 10) for b in range(3)]
    assert optunas == [(1, 3, 9), (3, 9), (9,)]


@PROPERTY
@given(
    finished=st.lists(VALUES, min_size=0, max_size=6),
    judged=st.lists(st.lists(VALUES, min_size=1, max_size=7), min_size=1, max_size=4),
    grace=st.integers(0, 3),
    min_samples=st.integers(1, 4),
)
def test_the_median_rule_decides_as_optunas_median_pruner_over_flat_finished_curves(
    finished, judged, grace, min_samples
):
    max_steps = 8
    pruner = optuna.pruners.MedianPruner(n_startup_trials=min_samples, n_warmup_steps=grace + 1)
    study, median = optuna_study(pruner), Median(grace, min_samples, max_steps)
    for k, value in enumerate(finished):
        trial = study.ask()
        for step in range(1, max_steps + 1):
            trial.report(value, step)
            median.judge(f"f{k}", step, value)
        study.tell(trial, value)
        median.finished(f"f{k}")
    for k, curve in enumerate(judged):
        trial = study.ask()
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            pruned = trial.should_prune()
            assert median.judge(f"j{k}", step, value) == pruned, (k, step, value)
            if pruned:
                study.tell(trial, state=TrialState.PRUNED)
                break


def test_the_median_rules_documented_difference_running_averages_against_values_at_the_step():
    """Finished curves that rise: at step 3 Optuna's reference is their values there (median 0.75), popplast's
    their running averages up to it (median 0.5). An individual at 0.625 goes on under popplast only."""
    curves = [[0.25, 0.5, 0.75], [0.25, 0.5, 0.75], [0.25, 0.5, 0.75]]
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    study, median = optuna_study(pruner), Median(0, 3, 10)
    for k, curve in enumerate(curves):
        trial = study.ask()
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            median.judge(f"f{k}", step, value)
        study.tell(trial, curve[-1])
        median.finished(f"f{k}")
    trial = study.ask()
    trial.report(0.625, 3)
    assert trial.should_prune() and not median.judge("x", 3, 0.625)
    assert math.isclose(sum(curves[0]) / 3, 0.5)
