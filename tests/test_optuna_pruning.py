"""Optuna's pruners as the stopper of an Optuna sampler: stopped individuals are PRUNED trials with their
intermediate values, Hyperband's brackets filter what TPE samples from, and a state replayed into a new
study (a resume) asks what the running study would have."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from popplast.execution.stopping import StopJudge
from popplast.spec.space import Gene, SearchSpace
from popplast.spec.stopper import StopperSpec
from popplast.strategies.optuna_sampler import OptunaSampler
from popplast.strategies.stoppers import ASHA

SPACE = SearchSpace((Gene("x", "float", low=0.0, high=1.0), Gene("y", "float", low=0.0, high=1.0)))
MAX_STEPS = 9


def curve(genome, step):
    """A learning curve whose ranking changes over the steps: y leads early, x late."""
    x, y = genome
    return (1 - step / MAX_STEPS) * y + (step / MAX_STEPS) * x


def generation(sampler, state, rng, judge):
    """Ask, report every step in the individuals' order (as one worker would) until the judge stops each, tell."""
    individuals, state = sampler.ask(state, rng)
    stopped = {}
    for ind in individuals:
        for step in range(1, MAX_STEPS + 1):
            if judge.judge(ind.id, step, curve(ind.genome, step)):
                stopped[ind.id] = step
                break
    fitness = {ind.id: curve(ind.genome, stopped.get(ind.id, MAX_STEPS)) for ind in individuals}
    state, _ = sampler.tell(state, fitness)
    return state, individuals, stopped


def sampler_for(rule, method="tpe", seed=3):
    spec = StopperSpec(rule=rule, min_steps=1, reduction_factor=3)
    sampler = OptunaSampler(method, SPACE, 6, 60, seed, spec, MAX_STEPS)
    return sampler, StopJudge(sampler.stopper(), "score", True, "score")


def test_successive_halving_by_optuna_stops_whom_popplasts_asha_stops():
    """With reports in the individuals' order both rules see the same rung values and promote the top
    max(1, ⌊n/η⌋): the same individuals stop at the same steps."""
    sampler, judge = sampler_for("asha", method="random")
    state, rng = sampler.init(), np.random.default_rng(0)
    asha, expected, got = ASHA(1, 3, MAX_STEPS), {}, {}
    for _ in range(3):
        state, individuals, stopped = generation(sampler, state, rng, judge)
        got.update(stopped)
        for ind in individuals:
            for step in range(1, MAX_STEPS + 1):
                if asha.judge(ind.id, step, curve(ind.genome, step)):
                    expected[ind.id] = step
                    break
    assert got == expected and 6 <= len(got) < 18


def test_stopped_individuals_are_pruned_trials_with_their_values():
    sampler, judge = sampler_for("hyperband")
    state, rng = sampler.init(), np.random.default_rng(0)
    stopped_all = {}
    for _ in range(3):
        state, individuals, stopped = generation(sampler, state, rng, judge)
        stopped_all.update(stopped)
    sampler.ask(state, rng)  # tells the last generation to the study
    study = sampler._study
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    trials = study.get_trials(deepcopy=False)[:18]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(pruned) == len(stopped_all) > 0
    records = [r for told in state.trials for r in told]
    for trial, record in zip(trials, records):
        assert trial.intermediate_values == dict(record.curve)  # every step it reported
        assert (trial.state == TrialState.PRUNED) == record.pruned
        assert trial.value == pytest.approx(record.fitness)  # a pruned trial's value: its last report
        if record.pruned:
            assert max(trial.intermediate_values) < MAX_STEPS
        else:
            assert max(trial.intermediate_values) == MAX_STEPS
    # Hyperband: more than one bracket among the trials, and each bracket's study holds only its own trials
    pruner = study.pruner
    brackets = {t.number: pruner._get_bracket_id(study, t) for t in trials}
    assert len(set(brackets.values())) > 1
    for b in set(brackets.values()):
        own = pruner._create_bracket_study(study, b).get_trials(deepcopy=False)
        assert {t.number for t in own if t.number < 18} == {n for n, v in brackets.items() if v == b}


@pytest.mark.parametrize("rule", ["hyperband", "asha", "median"])
def test_a_state_replayed_into_a_new_study_asks_what_the_running_one_asks(rule):
    sampler, judge = sampler_for(rule)
    state, rng = sampler.init(), np.random.default_rng(1)
    for _ in range(3):
        state, _, _ = generation(sampler, state, rng, judge)
    saved, saved_rng = json.loads(json.dumps(state.to_dict())), dict(rng.bit_generator.state)
    going_on, _ = sampler.ask(state, rng)
    fresh, _ = sampler_for(rule)  # a resumed driver: a new sampler, the state from the checkpoint's JSON
    restored = np.random.default_rng()
    restored.bit_generator.state = saved_rng
    resumed, _ = fresh.ask(fresh.state_from_dict(saved), restored)
    assert [i.genome for i in resumed] == [i.genome for i in going_on]
    replayed, live = fresh._study.get_trials(deepcopy=False), sampler._study.get_trials(deepcopy=False)
    assert [(t.state, t.intermediate_values, t.system_attrs) for t in replayed[:18]] == [
        (t.state, t.intermediate_values, t.system_attrs) for t in live[:18]
    ]


def test_a_sampler_without_a_stopper_has_no_pruner_and_keeps_its_state_format():
    sampler = OptunaSampler("tpe", SPACE, 4, 8, 0)
    assert sampler.stopper() is None
    state, rng = sampler.init(), np.random.default_rng(0)
    individuals, state = sampler.ask(state, rng)
    state, _ = sampler.tell(state, {ind.id: 0.5 for ind in individuals})
    assert all(len(t) == 2 for t in state.to_dict()["trials"][0])  # genome and fitness, as before


def test_tpe_hyperband_end_to_end_records_pruned_trials_in_the_optuna_storage(tmp_path):
    """A user's objective through popplast.run: the individuals MLflow calls stopped are the storage's
    PRUNED trials, with the values they reported; the others are complete at the last step."""
    import textwrap

    import popplast
    from tests.helpers import write_spec

    (tmp_path / "curveobj.py").write_text(
        textwrap.dedent(
            """
            def fit(config, trial):
                for step in range(1, trial.fidelity.epochs + 1):
                    value = (1 - step / 9) * config["y"] + (step / 9) * config["x"]
                    trial.report(step, score=value)
                    if trial.should_stop():
                        break
                return {"score": value}, None
            """
        )
    )
    spec = write_spec(
        tmp_path,
        """
        objective: curveobj:fit
        fitness: {metric: score, mode: maximize}
        fidelity: {epochs: 9}
        strategy: {method: tpe, population: 6, generations: 3, seed: 2}
        space:
          x: {type: float, low: 0.0, high: 1.0}
          y: {type: float, low: 0.0, high: 1.0}
        """,
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = popplast.run(
        spec,
        method="tpe-hyperband",
        executor="local",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        optuna_storage=storage,
        progress=False,
    )
    from tests.helpers import individuals

    rows = {r["id"]: r for r in individuals(f"sqlite:///{tmp_path / 'mlflow.db'}", result.search_run_id)}
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    assert len(study.trials) == len(rows) == 18
    pruned = 0
    for trial in study.trials:
        row = rows[trial.user_attrs["popplast.individual"]["id"]]
        last = max(trial.intermediate_values)
        if trial.state == TrialState.PRUNED:
            pruned += 1
            assert row["status"] == "stopped" and last < 9
        else:
            assert trial.state == TrialState.COMPLETE and row["status"] == "ok" and last == 9
        assert trial.value == pytest.approx(trial.intermediate_values[last]) == pytest.approx(row["fitness"])
    assert pruned > 0
