"""Every strategy keeps the same contract (as Optuna tests every sampler): popplast.testing's suite over every
catalogue entry popplast's loop runs (the asynchronous schedules and islands included; the Ray Tune entries run
in Tune's own loop and have no Strategy) and over the example of a user's own strategy, and the suite itself
catching strategies that break each promise. Below, what only some strategies promise: lineage pointing at the
previous generation, states inherited only from parents that succeeded, a sampler's budget in trials, a
resumed sampler replaying its study."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from popplast.core.loading import load_attribute
from popplast.spec.search import SearchSpec
from popplast.strategies.budget import generation_sizes, with_budget
from popplast.strategies.build import STRATEGIES, build_strategy
from popplast.strategies.catalogue import SAMPLER, methods
from popplast.strategies.catalogue import method as method_entry
from popplast.testing import check_strategy

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPACE = {
    "architecture": {"type": "categorical", "choices": ["lenet5", "small_vgg"]},
    "lr_scale": {"type": "float", "low": 0.1, "high": 3.0, "log": True},
    "batch_size": {"type": "int", "low": 16, "high": 64},
}
# every entry of the catalogue that popplast's loop runs, with each schedule it runs and with islands
ENTRIES = (
    [(m, "generational", 1) for m in methods(in_loop=True)]
    + [(m, "async", 1) for m in methods(schedule="async")]
    + [(m, "async", 2) for m in methods(schedule="async", islands=True)]
)
# Gaussian-process BO fits a GP per trial asked (and refits them all when a state is replayed): its suites take
# 18 s and, with two objectives, 74 s, so they run in the slow tier
SLOW = {"gp"}


def cases(entries):
    return [
        pytest.param(*e, marks=[pytest.mark.cluster] if e[0] in SLOW else [], id="-".join(map(str, e))) for e in entries
    ]


def spec_for(method: str, population: int = 6, generations: int = 4, schedule: str = "generational", islands: int = 1):
    strategy = {"method": method, "population": population, "generations": generations}
    if method == "gensoup" and schedule == "generational":
        strategy.update(population_step=1, min_population=3)
    if schedule == "async":
        strategy["schedule"] = "async"
    if islands > 1:
        strategy["islands"] = islands
    return SearchSpec.from_dict({"dataset": {"name": "digits"}, "fidelity": {}, "strategy": strategy, "space": SPACE})


@pytest.mark.parametrize("method, schedule, islands", cases(ENTRIES))
def test_every_method_passes_the_conformance_suite(method, schedule, islands):
    spec = spec_for(method, schedule=schedule, islands=islands)
    check_strategy(lambda: build_strategy(spec), n_genes=len(spec.space), population=6)


SEVERAL = [(m, s, k) for m, s, k in ENTRIES if method_entry(m).several]


@pytest.mark.parametrize("method, schedule, islands", cases(SEVERAL))
def test_every_method_with_several_objectives_passes_the_conformance_suite_told_vectors(method, schedule, islands):
    """The strategies that rank by Pareto fronts, told two objectives and a constraint's violation."""
    spec = spec_for(method, schedule=schedule, islands=islands)
    data = {**spec.to_dict(), "objective": "m:f", "fitness": [{"metric": "a"}, {"metric": "b"}]}
    data["constraints"] = ["a <= 0"]
    del data["dataset"]
    several = SearchSpec.from_dict(data)
    assert several.fitness.several
    check_strategy(lambda: build_strategy(several), n_genes=len(spec.space), population=6, objectives=2)


def differential_evolution():
    return load_attribute("de:DifferentialEvolution", str(EXAMPLES / "moons_mlp"))


def test_the_example_of_a_users_strategy_passes_the_conformance_suite():
    de = differential_evolution()
    check_strategy(lambda: de(n_genes=3, population=6, F=0.5), n_genes=3, population=6)


def _mutants():
    """Differential evolution, each time with one promise broken as a user's code might break it."""
    de = differential_evolution()

    class Unseeded(de):  # draws from a generator of its own, not the one it is given
        def ask(self, state, rng):
            return super().ask(state, np.random.default_rng())

    class Forgetful(de):  # its checkpoint leaves out the results told so far
        def state_from_dict(self, data):
            return super().state_from_dict({**data, "told": {}})

    class OrderBound(de):  # the first result told in a generation takes the place of the member in slot 0
        def tell(self, state, fitness):
            if not state.told and state.members:
                (first,) = fitness
                slot = next(i for i, a in enumerate(state.asked) if a.id == first)
                members = list(state.members)
                members[0], members[slot] = members[slot], members[0]
                state = dataclasses.replace(state, members=tuple(members))
            return super().tell(state, fitness)

    class FailureIsBest(de):  # a failed evaluation counts as the best possible
        def tell(self, state, fitness):
            return super().tell(state, {k: (1e9 if v is None else v) for k, v in fitness.items()})

    class ReusedIds(de):  # every generation's ids start again at g000
        def ask(self, state, rng):
            asked, state = super().ask(state, rng)
            asked = tuple(dataclasses.replace(a, id=f"g000-i{k:03d}", parent_ids=()) for k, a in enumerate(asked))
            return asked, dataclasses.replace(state, asked=asked)

    class Overrun(de):  # asks one individual more than its population
        def ask(self, state, rng):
            asked, state = super().ask(state, rng)
            extra = dataclasses.replace(asked[0], id=asked[0].id + "x")
            return asked + (extra,), dataclasses.replace(state, asked=asked + (extra,))

    class Lenient(de):  # takes results for ids it never asked
        def tell(self, state, fitness):
            known = {a.id for a in state.asked}
            return super().tell(state, {k: v for k, v in fitness.items() if k in known})

    return {
        "unseeded": (Unseeded, "the same seed asked other individuals"),
        "forgetful": (Forgetful, "state_survives_json: (the strategy raised RuntimeError|tell of .* returned no summ)"),
        "order-bound": (OrderBound, "told in reverse order, it asked other individuals"),
        "failure-is-best": (FailureIsBest, "became the best"),
        "reused-ids": (ReusedIds, "was asked twice"),
        "overrun": (Overrun, "asked 7 individuals; expected 1 to 6"),
        "lenient": (Lenient, "a result for an id never asked was taken"),
    }


@pytest.mark.parametrize(
    "mutant", ["unseeded", "forgetful", "order-bound", "failure-is-best", "reused-ids", "overrun", "lenient"]
)
def test_the_suite_catches_a_strategy_that_breaks_a_promise(mutant):
    cls, message = _mutants()[mutant]
    with pytest.raises(AssertionError, match=message):
        check_strategy(lambda: cls(n_genes=3, population=6), n_genes=3, population=6)


def fitness_of(individual, fails_above: float = 0.9) -> float | None:
    """Deterministic, with a failure now and then (a genome whose first gene is in the top tenth)."""
    return None if individual.genome[0] > fails_above else float(np.sum(individual.genome))


def drive(
    method: str,
    seed: int,
    round_trip: bool,
    reverse: bool,
    population: int = 6,
    generations: int = 4,
    fails_above: float = 0.9,
):
    spec = spec_for(method, population, generations)
    strategy, rng = build_strategy(spec), np.random.default_rng(seed)
    state = strategy.init()
    seen = []
    for generation, size in enumerate(generation_sizes(spec)):
        individuals, state = strategy.ask(state, rng)
        assert len(individuals) == size, (method, generation)
        assert {i.generation for i in individuals} == {generation}
        seen += [(i.id, i.genome, i.parent_ids, i.operator, i.fusion_weights, i.seed) for i in individuals]
        order = list(reversed(individuals)) if reverse else list(individuals)
        for individual in order:  # one result per call, in the order they "finish"
            state, _ = strategy.tell(state, {individual.id: fitness_of(individual, fails_above)})
        if round_trip:
            state = strategy.state_from_dict(json.loads(json.dumps(state.to_dict())))
    assert state.evaluations == sum(generation_sizes(spec))
    return seen


@pytest.mark.parametrize("method", STRATEGIES.names())
def test_parents_are_individuals_of_the_generation_before(method):
    rows = drive(method, 0, round_trip=False, reverse=False)
    generation_of = {row[0]: int(row[0][1:4]) for row in rows}
    for individual_id, _genome, parents, operator, weights, _seed in rows:
        generation = generation_of[individual_id]
        # a sampler draws every individual afresh ("sample"); an evolving strategy starts from "init"
        assert operator in ("sample", "es-sample") or (operator == "init") == (generation == 0)
        assert all(generation_of[p] == generation - 1 for p in parents)
        # weights sum to 1, or are all 0 when the child takes no state (every parent it was bred from failed)
        assert not weights or (len(weights) == len(parents) and sum(weights) in (pytest.approx(1.0), 0.0))


@pytest.mark.parametrize("method", ["gensoup", "pbt"])  # the strategies whose children inherit states
@pytest.mark.parametrize("seed", range(6))
def test_a_child_takes_weights_only_from_parents_that_succeeded(method, seed):
    """A failed evaluation has no state: a parent with a fusion weight above 0 was told a finite fitness, and a
    child whose parents all failed says so (weights 0) instead of naming a fusion or an inheritance. Half the
    evaluations fail, so tournaments between two failed parents and failed members outside PBT's bottom
    quantile happen."""
    rows = drive(method, seed, round_trip=False, reverse=False, fails_above=0.5)
    failed = {row[0] for row in rows if row[1][0] > 0.5}
    for individual_id, _genome, parents, operator, weights, _seed in rows:
        if operator == "init":
            continue
        donors = [p for p, w in zip(parents, weights) if w > 0]
        assert len(weights) == len(parents) and not set(donors) & failed, (individual_id, operator, parents, weights)
        if not any(weights):
            assert operator not in ("fusion", "inherit", "exploit", "elite"), (individual_id, operator)


@pytest.mark.parametrize("method", STRATEGIES.names())
def test_the_budget_is_what_the_strategy_asks_for(method):
    spec = with_budget(spec_for(method, population=6), 18)
    assert sum(generation_sizes(spec)) <= 18
    assert sum(generation_sizes(spec)) == 18 or method == "gensoup"  # a shrinking population may fall short


@pytest.mark.parametrize("method", methods(family=SAMPLER))
def test_a_sampler_spends_a_budget_that_is_no_multiple_of_its_population(method):
    spec = with_budget(spec_for(method, population=6), 14)
    strategy, rng = build_strategy(spec, 14), np.random.default_rng(0)
    state, sizes = strategy.init(), []
    for _ in generation_sizes(spec, 14):
        individuals, state = strategy.ask(state, rng)
        sizes.append(len(individuals))
        state, _ = strategy.tell(state, {i.id: fitness_of(i) for i in individuals})
    assert sizes == generation_sizes(spec, 14) == [6, 6, 2]
    with pytest.raises(RuntimeError, match="budget of 14 trials is spent"):
        strategy.ask(state, rng)


def test_a_resumed_sampler_replays_its_trials_and_goes_on_exactly():
    """A new strategy object (a new driver) meets a state it did not make: it rebuilds the study."""
    spec = spec_for("tpe", population=4, generations=5)
    reference = drive("tpe", 5, round_trip=False, reverse=False, population=4, generations=5)
    strategy, rng = build_strategy(spec), np.random.default_rng(5)
    state, seen = strategy.init(), []
    for generation in range(5):
        if generation == 3:
            strategy = build_strategy(spec)
            state = strategy.state_from_dict(json.loads(json.dumps(state.to_dict())))
        individuals, state = strategy.ask(state, rng)
        seen += [(i.id, i.genome, i.parent_ids, i.operator, i.fusion_weights, i.seed) for i in individuals]
        state, _ = strategy.tell(state, {i.id: fitness_of(i) for i in individuals})
    assert seen == reference[: len(seen)]


def test_a_replay_that_asks_other_trials_is_refused_not_followed():
    """A checkpoint whose trials the seeded sampler would not ask (another Optuna version, an edited file)."""
    from popplast.errors import SpecError

    spec = spec_for("tpe", population=3, generations=3)
    strategy, rng = build_strategy(spec), np.random.default_rng(0)
    state = strategy.init()
    for _ in range(2):
        individuals, state = strategy.ask(state, rng)
        state, _ = strategy.tell(state, {i.id: fitness_of(i) for i in individuals})
    data = json.loads(json.dumps(state.to_dict()))
    data["trials"][1][0][0][2] = 0.123  # one gene of one told trial
    with pytest.raises(SpecError, match="--resume: replaying the tpe study, generation 1 asked other trials"):
        build_strategy(spec).ask(strategy.state_from_dict(data), rng)


def drive_rules(method: str, seed: int, round_trip: bool, reverse: bool, generations: int = 4):
    """evolve-rules' strategy under the same contract: (genomes, shared batch) per generation."""
    from popplast.strategies.es import ES_STRATEGIES
    from popplast.strategies.rule_search import RuleSearch

    strategy = RuleSearch(ES_STRATEGIES[method](5, population=6), train_size=50, batch_size=8)
    rng, state, seen = np.random.default_rng(seed), strategy.init(), []
    for _ in range(generations):
        individuals, state = strategy.ask(state, rng)
        seen.append(([i.genome for i in individuals], strategy.context(state)["batch"]))
        for individual in reversed(individuals) if reverse else individuals:
            state, metrics = strategy.tell(state, {individual.id: fitness_of(individual)})
        assert "mean_update_norm" in metrics
        if round_trip:
            state = strategy.state_from_dict(json.loads(json.dumps(state.to_dict())))
    assert state.evaluations == 6 * generations
    return seen


@pytest.mark.parametrize("method", ["elitist", "openai", "snes"])
def test_the_rule_search_keeps_the_contract_and_evolve_rules_draws(method):
    """Its draws are the ones evolve-rules made before it ran in the one loop (ES init, then per generation
    the population and then the batch), so the seeds in docs/experiments.md still give its numbers."""
    from popplast.strategies.es import ES_STRATEGIES

    reference = drive_rules(method, 3, round_trip=False, reverse=False)
    assert drive_rules(method, 3, round_trip=True, reverse=True) == reference
    es, rng = ES_STRATEGIES[method](5, population=6), np.random.default_rng(3)
    state = es.init(rng)
    for genomes, batch in reference:
        population, state = es.ask(state, rng)
        assert [tuple(v) for v in population] == genomes
        assert tuple(rng.choice(50, size=8, replace=False)) == batch
        fitness = [fitness_of(SimpleNamespace(genome=tuple(v))) for v in population]
        state, _ = es.tell(state, np.array([np.nan if f is None else f for f in fitness]))
