"""Evolution strategies of the core: fitness shaping by hand, antithetic sampling, elitism, and every
strategy improving a sphere, with a saveable state."""

import json

import numpy as np
import pytest

from popplast.strategies.es import ES_STRATEGIES, ElitistES, ESState, OpenAIES, centred_ranks


def test_centred_ranks_hand_worked():
    assert centred_ranks(np.array([0.1, 0.5, 0.3])) == pytest.approx([-0.5, 0.5, 0.0])
    # ranks: NaN → 0 (worst), 0.1 → 1, 0.2 → 2, 0.9 → 3; scaled as rank / 3 − 0.5
    assert centred_ranks(np.array([0.2, np.nan, 0.9, 0.1])) == pytest.approx([1 / 6, -0.5, 0.5, -1 / 6])


def test_openai_es_samples_antithetic_pairs():
    es = OpenAIES(dim=5, population=6, sigma=0.2)
    rng = np.random.default_rng(0)
    pop, state = es.ask(es.init(rng), rng)
    assert np.allclose(pop[:3] - state.mean, -(pop[3:] - state.mean))
    assert np.allclose(pop - state.mean, 0.2 * state.noise)


def test_openai_es_refuses_odd_population():
    with pytest.raises(ValueError, match="even"):
        OpenAIES(dim=3, population=5)


def test_elitist_keeps_the_parent_on_ties_and_takes_a_strictly_better_child():
    es = ElitistES(dim=4, population=4)
    rng = np.random.default_rng(0)
    state = es.init(rng)
    pop, state = es.ask(state, rng)
    state, _ = es.tell(state, np.array([0.5, 0.1, 0.2, 0.3]))  # generation 0: the best becomes the parent
    assert np.allclose(state.mean, pop[0])
    pop, state = es.ask(state, rng)
    assert np.allclose(pop[0], state.mean)  # the parent is re-evaluated beside its children
    tied, metrics = es.tell(state, np.array([0.4, 0.4, 0.1, np.nan]))
    assert np.allclose(tied.mean, pop[0]) and metrics["parent_replaced"] == 0
    better, metrics = es.tell(state, np.array([0.4, 0.1, 0.6, 0.2]))
    assert np.allclose(better.mean, pop[2]) and metrics["parent_replaced"] == 1


@pytest.mark.parametrize("name", sorted(ES_STRATEGIES))
def test_every_strategy_improves_a_sphere_and_its_state_round_trips(name):
    kwargs = {"openai": {"population": 20, "learning_rate": 0.1}, "elitist": {"sigma": 0.05}}.get(name, {})
    es = ES_STRATEGIES[name](dim=8, **kwargs)
    rng = np.random.default_rng(1)
    state = es.init(rng)
    start = np.sum((state.mean - 1) ** 2)
    for _ in range(200):
        pop, state = es.ask(state, rng)
        state, metrics = es.tell(state, -np.sum((pop - 1) ** 2, axis=1))
    distance = np.sum((state.mean - 1) ** 2)
    assert start > 2 and distance < 0.5 and metrics["best_ever"] > -0.5
    restored = ESState.from_dict(json.loads(json.dumps(state.to_dict())))
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert np.allclose(es.ask(state, a)[0], es.ask(restored, b)[0])


def test_same_seed_same_trajectory():
    def run(seed):
        es, rng = OpenAIES(dim=6, population=8), np.random.default_rng(seed)
        state = es.init(rng)
        for _ in range(10):
            pop, state = es.ask(state, rng)
            state, _ = es.tell(state, -np.abs(pop).sum(axis=1))
        return state.mean

    assert np.array_equal(run(3), run(3)) and not np.array_equal(run(3), run(4))


def test_an_es_as_a_search_strategy_climbs_a_genome_objective():
    """ESSearch (any space, through the one loop): SNES over the genes' logits finds the optimum of a smooth
    function of the genome, and its generation metrics carry the ES's own (σ)."""
    from popplast.strategies.es import SNES
    from popplast.strategies.es_search import ESSearch

    target = np.array([0.8, 0.2, 0.6])
    strategy, rng = ESSearch(SNES(3, population=8)), np.random.default_rng(0)
    state, firsts, metrics = strategy.init(), None, {}
    for _ in range(40):
        individuals, state = strategy.ask(state, rng)
        assert all(0 < g < 1 for i in individuals for g in i.genome) and {i.operator for i in individuals} == {
            "es-sample"
        }
        fitness = {i.id: -float(np.sum((np.array(i.genome) - target) ** 2)) for i in individuals}
        firsts = firsts if firsts is not None else max(fitness.values())
        state, metrics = strategy.tell(state, fitness)
    assert state.best_fitness > -1e-3 > firsts and "sigma" in metrics
