"""The early-stopping rules against hand-worked examples (ALGORITHMS.md §10), and the driver's judge."""

from __future__ import annotations

import pytest

from popplast.core.result import EvalResult
from popplast.errors import SpecError
from popplast.execution.stopping import LocalChannel, StopJudge, stop_judge
from popplast.spec.search import SearchSpec
from popplast.strategies.stoppers import ASHA, Hyperband, Median, promoted, rungs


def test_rungs_are_min_steps_times_powers_of_eta_below_the_budget():
    assert rungs(1, 3, 9) == (1, 3)
    assert rungs(1, 3, 10) == (1, 3, 9)
    assert rungs(2, 2, 16) == (2, 4, 8)
    assert rungs(5, 3, 5) == ()


def test_promotion_is_the_top_n_over_eta_and_the_leader_of_a_young_rung():
    assert promoted(0.5, [], 3)  # alone at the rung
    assert not promoted(0.4, [0.5], 3) and promoted(0.6, [0.5], 3)
    assert promoted(0.5, [0.5, 0.4], 3)  # a tie with the best is not beaten
    assert promoted(0.55, [0.5, 0.6, 0.4, 0.45, 0.3], 3)  # n = 6: the top 2
    assert not promoted(0.5, [0.55, 0.6, 0.4, 0.45, 0.3], 3)


def test_asha_by_hand():
    asha = ASHA(min_steps=1, reduction_factor=3, max_steps=9)
    # arrivals at rung 1: each goes on only if fewer than max(1, n // 3) of those there so far beat it
    expected = {"a": 0.5, "b": 0.4, "c": 0.6, "d": 0.55, "e": 0.52, "f": 0.7, "g": 0.58, "h": 0.65}
    stops = {k: asha.judge(k, 1, v) for k, v in expected.items()}
    assert stops == {"a": False, "b": True, "c": False, "d": True, "e": True, "f": False, "g": True, "h": False}
    assert not asha.judge("a", 2, 0.1)  # between rungs nothing is judged
    assert not asha.judge("a", 3, 0.8) and asha.judge("c", 3, 0.7)  # rung 3: c is second of two
    # an objective that skips the rung's step is judged at the next step it reports
    assert asha.judge("f", 5, 0.75) and asha.recorded[3]["f"] == 0.75
    # a first report past both rungs is recorded at both, with the same value
    assert not asha.judge("z", 4, 0.99) and asha.recorded[1]["z"] == asha.recorded[3]["z"] == 0.99
    assert asha.judge("z", 9, 0.1) is False  # the budget's end is no rung


def test_hyperband_brackets_by_id_with_hyperbands_sizes():
    hb = Hyperband(min_steps=1, reduction_factor=3, max_steps=9)
    assert [b.rungs for b in hb.brackets] == [(1, 3), (3,), ()]
    # n_s = ⌈(s_max+1)·η^s/(s+1)⌉ for s = 2, 1, 0 (Li et al. 2018, Algorithm 1)
    assert hb.sizes == [9, 5, 3]
    ids = [f"g{g:03d}-i{i:03d}" for g in range(100) for i in range(100)]
    counts = [0, 0, 0]
    for k in ids:
        counts[hb.bracket_of(k)] += 1
    assert [c / len(ids) for c in counts] == pytest.approx([9 / 17, 5 / 17, 3 / 17], abs=0.015)  # 10,000 draws
    assert hb.bracket_of("g001-i002") == Hyperband(1, 3, 9).bracket_of("g001-i002")
    never = next(k for k in ids if hb.bracket_of(k) == 2)
    late = next(k for k in ids if hb.bracket_of(k) == 1)
    first = next(k for k in ids if hb.bracket_of(k) == 0)
    hb.judge(first, 1, 0.9)
    assert not any(hb.judge(never, s, -1.0) for s in range(1, 10))  # full training, like random search
    assert not hb.judge(late, 1, -1.0)  # not judged before its bracket's first rung
    other = next(k for k in ids if hb.bracket_of(k) == 1 and k != late)
    hb.judge(other, 3, 0.5)
    assert hb.judge(late, 3, 0.1)


def test_hyperbands_published_allocation_for_r_81():
    """Li et al. 2018's example (R = 81, η = 3): 81, 34, 15, 8 and 5 configurations from r_s = 1, 3, 9, 27, 81."""
    hb = Hyperband(min_steps=1, reduction_factor=3, max_steps=81)
    assert hb.sizes == [81, 34, 15, 8, 5]
    assert [b.rungs for b in hb.brackets] == [(1, 3, 9, 27), (3, 9, 27), (9, 27), (27,), ()]


@pytest.mark.parametrize("min_steps,eta,max_steps", [(1, 3, 10), (1, 3, 20), (2, 2, 15), (1, 4, 30), (3, 3, 10)])
def test_hyperbands_last_bracket_never_stops_anyone_whatever_the_ratio(min_steps, eta, max_steps):
    """Brackets anchored at R (r_s = R·η^−s): with R/r no power of η the last bracket still trains everyone
    fully, and every bracket's rungs are at least min_steps and below R."""
    hb = Hyperband(min_steps, eta, max_steps)
    assert hb.brackets[-1].rungs == ()
    for bracket in hb.brackets:
        assert all(min_steps <= r < max_steps for r in bracket.rungs)
        assert list(bracket.rungs) == sorted(set(bracket.rungs))
    assert Hyperband(1, 3, 10).brackets[0].rungs == (1, 3)  # r_2 = 10/9, r_1 = 10/3, rounded down


def test_median_rule_by_hand_with_ties_and_missing_steps():
    m = Median(grace_steps=0, min_samples=3)
    curves = {  # binary fractions, so that the averages and medians are exact
        "A": [(1, 0.25), (2, 0.5), (3, 0.75)],
        "B": [(1, 0.5), (2, 0.75)],  # finished without reporting step 3
        "C": [(2, 0.0), (3, 0.5)],  # reported nothing at step 1: left out of step 1's median
        "D": [(1, 1.0), (2, 1.0), (3, 1.0)],
    }
    for k, curve in curves.items():
        for step, value in curve:
            m.judge(k, step, value)
        m.finished(k)
    # step 1: running averages A 0.25, B 0.5, D 1 → median 0.5
    assert m.judge("X", 1, 0.375)
    assert not m.judge("Y", 1, 0.5)  # a tie with the median goes on
    # step 2: A 0.375, B 0.625, C 0, D 1 → median 0.5; Y's best so far 0.5 ties it
    assert not m.judge("Y", 2, 0.25)
    # step 3: A 0.5, B 0.625, C 0.25, D 1 → median 0.5625; Y's best 0.5 is below
    assert m.judge("Y", 3, 0.5)
    # the best so far, not the last value, is compared
    assert not m.judge("W", 1, 0.9) and not m.judge("W", 2, 0.0)


def test_median_rule_waits_for_its_grace_period_and_its_samples():
    m = Median(grace_steps=2, min_samples=3)
    for k in ("A", "B", "C"):
        for step in (1, 2, 3):
            m.judge(k, step, 1.0)
    assert not m.judge("X", 3, 0.0)  # only finished individuals count: none yet
    m.finished("A"), m.finished("B")
    assert not m.judge("X", 4, 0.0)  # two samples are fewer than three
    m.finished("C")
    assert not m.judge("Z", 1, 0.0) and not m.judge("Z", 2, 0.0)  # two steps of warm-up
    assert m.judge("Z", 3, 0.0)


def test_median_rule_never_stops_at_the_last_step_and_every_finisher_joins_the_reference():
    """Finished curves 0.3, 0.5 and 0.9 and a plateau at 0.45 that trains its whole budget: at the last step it
    finished (not stopped), joins the reference, and the next individual is judged against all four."""
    m = Median(grace_steps=0, min_samples=3, max_steps=3)
    assert not m.judge("p", 1, 0.45) and not m.judge("p", 2, 0.45)  # nobody has finished yet
    for k, v in (("a", 0.3), ("b", 0.5), ("c", 0.9)):
        assert not any(m.judge(k, step, v) for step in (1, 2, 3))
        m.finished(k)
    assert m.judge("x", 1, 0.45)  # below the median 0.5 before the last step
    assert not m.judge("p", 3, 0.45)  # the plateau at step 3 = max_steps: never judged there
    m.finished("p")
    # the reference now holds 0.3, 0.45, 0.5, 0.9: median 0.475
    assert not m.judge("y", 1, 0.48) and m.judge("z", 1, 0.47)
    assert not m.judge("late", 7, 0.0)  # past the budget's end: never


def test_median_warm_up_defaults_to_a_tenth_of_the_budget_and_reaches_optunas_pruner():
    from popplast.spec.stopper import StopperSpec, build_stopper, grace_steps

    assert [grace_steps(StopperSpec("median"), n) for n in (1, 3, 10, 11, 30, 100)] == [1, 1, 1, 2, 3, 10]
    assert grace_steps(StopperSpec("median", grace_steps=0), 100) == 0
    assert build_stopper(StopperSpec("median"), 30).grace_steps == 3
    assert build_stopper(StopperSpec("median", max_steps=50), 30).grace_steps == 5
    assert build_stopper(StopperSpec("median"), 30).max_steps == 30


def test_the_judge_minimises_marks_the_stopped_and_ranks_them_by_their_last_value():
    judge = StopJudge(ASHA(1, 3, 9), "loss", maximize=False, fitness_metric="loss")
    channel = LocalChannel(judge)
    channel.report("a", 1, 0.2)
    assert not channel.should_stop("a")
    channel.report("b", 1, 0.3)  # a higher loss: worse
    assert channel.should_stop("b") and judge.stopped == {"b": 1}
    stopped = EvalResult("b", -0.25, {"loss": 0.25}, {"loss": [(1, 0.3)]}, stopped_at=1)  # as its trial stopped
    judge.settle(stopped)
    assert stopped.stopped_at == 1 and stopped.fitness == pytest.approx(-0.3)
    done = EvalResult("a", -0.1, {"loss": 0.1}, {"loss": [(1, 0.2), (9, 0.1)]})
    judge.settle(done)
    assert done.stopped_at is None and done.fitness == -0.1
    # evaluated again (lost weights): stopped again at the same step, not before
    assert not judge.judge("b", 0, 0.3) and judge.judge("b", 1, 0.3)
    again = StopJudge(ASHA(1, 3, 9), "loss", maximize=False, fitness_metric="loss")
    again.replay(judge.log)
    assert again.stopped == judge.stopped and again.stopper.recorded == judge.stopper.recorded


def base_spec(**extra):
    data = {
        "objective": "m:fit",
        "fitness": {"metric": "loss", "mode": "minimize"},
        "fidelity": {"epochs": 9},
        "strategy": {"method": "ga", "population": 4, "generations": 2},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        **extra,
    }
    return SearchSpec.from_dict(data, "s.yaml")


def test_the_stopper_section_its_shorthand_the_flag_and_the_method_names():
    assert base_spec().stopper.rule == "none" and stop_judge(base_spec()) is None
    spec = base_spec(stopper="asha")
    judge = stop_judge(spec)
    assert judge.metric == "loss" and judge.sign == -1.0 and judge.stopper.rungs == (1, 3)
    spec = base_spec(stopper={"rule": "hyperband", "min_steps": 2, "reduction_factor": 2, "max_steps": 8})
    assert [b.rungs for b in stop_judge(spec).stopper.brackets] == [(2, 4), (4,), ()]
    assert SearchSpec.from_dict(spec.to_dict(), "s.yaml") == spec  # a search run's copy resumes it
    assert base_spec().with_overrides(stopper="median").stopper.rule == "median"
    assert base_spec().with_overrides(method="ga+asha").stopper.rule == "asha"
    tpe = base_spec().with_overrides(method="tpe-hyperband")
    assert (tpe.strategy.method, tpe.stopper.rule) == ("tpe", "hyperband")
    cnn = SearchSpec.from_dict(
        {
            "dataset": {"name": "digits"},
            "fidelity": {"epochs": 3},
            "strategy": {"method": "ga"},
            "space": {"lr_scale": {"type": "float", "low": 0.5, "high": 2.0}},
            "stopper": "median",
        },
        "c.yaml",
    )
    assert stop_judge(cnn).metric == "val_mcc" and stop_judge(cnn).sign == 1.0


@pytest.mark.parametrize(
    "extra, key",
    [
        ({"stopper": "sha"}, "stopper"),
        ({"stopper": {"rule": "asha", "reduction_factor": 1}}, "stopper.reduction_factor"),
        ({"stopper": {"rule": "asha", "min_steps": 4, "max_steps": 2}}, "stopper.max_steps"),
        ({"stopper": {"rule": "median", "metric": "distance"}}, "stopper.mode"),
        ({"stopper": {"rule": "asha", "eta": 3}}, "stopper.eta"),
        ({"stopper": "asha", "strategy": {"method": "openai", "population": 4}}, "stopper"),
    ],
)
def test_a_bad_stopper_is_a_clear_error_naming_the_key(extra, key):
    with pytest.raises(SpecError) as e:
        base_spec(**extra)
    assert e.value.key == key and "s.yaml" in str(e.value)


def test_a_bad_stopper_flag_is_a_clear_error():
    with pytest.raises(SpecError, match="--stopper"):
        base_spec().with_overrides(stopper="sha")
    with pytest.raises(SpecError, match="--stopper"):
        base_spec().with_overrides(method="snes+asha")


class LateChannel(LocalChannel):
    """The Ray channel when the driver answers after VERDICT_WAIT (execution/ray_stopping.py): the trial hears
    "go on" for the report the rule stopped it at (the wait timed out), and the answer to a later report in
    time, or, with `never`, no answer in time at all."""

    def __init__(self, judge: StopJudge, never: bool = False) -> None:
        super().__init__(judge)
        self.never, self.missed = never, set()

    def should_stop(self, individual_id: str) -> bool:
        verdict = super().should_stop(individual_id)
        if verdict and (self.never or individual_id not in self.missed):
            self.missed.add(individual_id)
            return False
        return verdict


def curve_objective(config, trial):
    value = 0.0
    for step in range(1, 10):
        value = config["x"] + 0.01 * step
        trial.report(step, score=value)
        if trial.should_stop():
            break
    return {"score": value}


@pytest.mark.parametrize("never", [False, True])
def test_a_late_verdict_is_recorded_as_what_the_trial_did(never):
    """The rule stops b at step 1; its verdict misses the wait. It trains on and stops at step 2 when the next
    answer comes in time (recorded stopped at 2, with step 2's value), or trains all 9 steps when none does
    (recorded finished, its final value, and the rule told it finished)."""
    from popplast.core.individual import Individual
    from popplast.objectives.function import FunctionEvaluator
    from popplast.spec.fitness import FitnessSpec
    from popplast.spec.search import Fidelity

    judge = StopJudge(ASHA(1, 3, 9), "score", maximize=True, fitness_metric="score")
    channel = LateChannel(judge, never=never)
    evaluator = FunctionEvaluator(curve_objective, FitnessSpec("score", "maximize"), Fidelity(epochs=9))
    results = {}
    for name, x in (("a", 0.9), ("b", 0.1)):
        result = evaluator.evaluate(Individual(name, (x,), 0), {"x": x}, stops=channel)
        judge.settle(result)
        results[name] = result
    a, b = results["a"], results["b"]
    assert a.stopped_at is None and a.fitness == pytest.approx(0.99)
    steps = [s for s, _ in b.history["score"]]
    if never:
        assert steps == list(range(1, 10)) and b.stopped_at is None and b.fitness == pytest.approx(0.19)
        assert "b" not in judge.stopped and ["finished", "b"] in judge.log
    else:
        assert steps == [1, 2] and b.stopped_at == 2 and b.fitness == pytest.approx(0.12)
    again = StopJudge(ASHA(1, 3, 9), "score", maximize=True, fitness_metric="score")
    again.replay(judge.log)  # a resumed search's judge agrees
    assert again.stopped == judge.stopped


def test_a_late_verdicts_later_reports_reach_the_median_rule():
    """b is stopped at step 1 (0.1) but trains on to 1.0 at step 3 (the verdict came late): recorded finished,
    the rule's reference holds b's whole curve, not the step-1 value alone; a resumed judge agrees."""
    from popplast.core.individual import Individual
    from popplast.objectives.function import FunctionEvaluator
    from popplast.spec.fitness import FitnessSpec
    from popplast.spec.search import Fidelity

    def rising(config, trial):
        for step, value in enumerate((0.1, 0.6, 1.0), start=1):
            trial.report(step, score=value)
            if trial.should_stop():
                break
        return {"score": value}

    judge = StopJudge(Median(0, 1, 4), "score", maximize=True, fitness_metric="score")
    judge.stopper.judge("a", 1, 0.5)
    judge.stopper.judge("a", 2, 0.5)
    judge.stopper.judge("a", 3, 0.5)
    judge.stopper.finished("a")
    channel = LateChannel(judge, never=True)
    evaluator = FunctionEvaluator(rising, FitnessSpec("score", "maximize"), Fidelity(epochs=3))
    result = evaluator.evaluate(Individual("b", (0.0,), 0), {}, stops=channel)
    judge.settle(result)
    assert result.stopped_at is None and judge.stopper.curves["b"] == [(1, 0.1), (2, 0.6), (3, 1.0)]
    assert judge.stopper.complete == ["a", "b"] and "b" not in judge.stopped
    again = StopJudge(Median(0, 1, 4), "score", maximize=True, fitness_metric="score")
    again.stopper.judge("a", 1, 0.5), again.stopper.judge("a", 2, 0.5), again.stopper.judge("a", 3, 0.5)
    again.stopper.finished("a")
    again.replay(judge.log)
    assert again.stopper.curves["b"] == judge.stopper.curves["b"] and again.stopped == judge.stopped
