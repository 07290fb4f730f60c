"""The Gen-CNN strategy: ask/tell by id in any order, failures, elitism, saveable state, golden values."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from popplast.strategies.ga import GAState, GenCNN

GOLDEN = Path(__file__).parent / "golden" / "ga_seed0.json"


def make_ga(**kw):
    settings = dict(n_genes=3, population=6, crossover=[0.0, 0.9, 0.9], mutation=[0.4, 0.2, 0.2])
    return GenCNN(**{**settings, **kw})


def fitness_of(individual):
    return -float(np.sum((np.array(individual.genome) - 0.3) ** 2))


def run(ga, seed, generations, fail=()):
    rng = np.random.default_rng(seed)
    state, populations = ga.init(), []
    for _ in range(generations):
        pop, state = ga.ask(state, rng)
        populations.append(pop)
        state, _ = ga.tell(state, {i.id: (None if i.id in fail else fitness_of(i)) for i in pop})
    return populations, state


def test_first_generation_is_uniform_init():
    pop, state = make_ga().ask(make_ga().init(), np.random.default_rng(0))
    assert [i.id for i in pop] == [f"g000-i00{k}" for k in range(6)]
    assert all(i.operator == "init" and i.parent_ids == () for i in pop)
    assert all(0 <= g <= 1 for i in pop for g in i.genome)
    assert state.generation == 0


def test_same_seed_same_genomes_and_lineage():
    a, _ = run(make_ga(), 3, 4)
    b, _ = run(make_ga(), 3, 4)
    assert a == b
    c, _ = run(make_ga(), 4, 4)
    assert a != c


def test_parents_are_members_of_the_previous_generation():
    populations, _ = run(make_ga(), 1, 4)
    for previous, current in zip(populations, populations[1:]):
        ids = {i.id for i in previous}
        for child in current:
            assert child.parent_ids and set(child.parent_ids) <= ids


def test_tell_in_any_order_and_in_pieces_gives_the_same_state():
    ga = make_ga()
    pop, state = ga.ask(ga.init(), np.random.default_rng(0))
    values = {i.id: fitness_of(i) for i in pop}
    at_once, m1 = ga.tell(state, values)
    pieces = state
    for key in reversed(list(values)):
        pieces, m2 = ga.tell(pieces, {key: values[key]})
    assert at_once == pieces and m1 == m2
    assert m1["best"] == pytest.approx(max(values.values()))


def test_tell_refuses_unknown_and_repeated_ids():
    ga = make_ga()
    pop, state = ga.ask(ga.init(), np.random.default_rng(0))
    with pytest.raises(KeyError):
        ga.tell(state, {"g009-i000": 1.0})
    state, _ = ga.tell(state, {pop[0].id: 1.0})
    with pytest.raises(ValueError):
        ga.tell(state, {pop[0].id: 1.0})


def test_ask_waits_for_the_whole_generation():
    ga = make_ga()
    pop, state = ga.ask(ga.init(), np.random.default_rng(0))
    state, metrics = ga.tell(state, {pop[0].id: 1.0})
    assert metrics == {}
    with pytest.raises(RuntimeError, match="not complete"):
        ga.ask(state, np.random.default_rng(0))


def test_elite_is_the_best_of_the_previous_generation():
    populations, _ = run(make_ga(), 5, 2)
    best = max(populations[0], key=fitness_of)
    elite = populations[1][-1]
    assert elite.operator == "elite" and elite.parent_ids == (best.id,) and elite.genome == best.genome


def test_no_elitism_when_switched_off():
    populations, _ = run(make_ga(elitism=False), 5, 3)
    assert all(i.operator != "elite" for pop in populations for i in pop)


def test_failed_individual_ranks_worst_and_is_never_elite_or_best():
    ga = make_ga()
    rng = np.random.default_rng(0)
    pop, state = ga.ask(ga.init(), rng)
    # the failed one would have had the best fitness; the others are all equal
    fails = pop[0].id
    state, metrics = ga.tell(state, {i.id: (None if i.id == fails else 0.5) for i in pop})
    assert metrics["failed"] == 1 and state.best.id != fails
    children, _ = ga.ask(state, rng)
    assert children[-1].operator == "elite" and children[-1].parent_ids != (fails,)


def test_all_failed_generation_has_no_elite_and_no_best():
    ga = make_ga()
    rng = np.random.default_rng(0)
    pop, state = ga.ask(ga.init(), rng)
    state, metrics = ga.tell(state, {i.id: float("nan") for i in pop})
    assert state.best is None and "best" not in metrics and metrics["failed"] == 6
    children, _ = ga.ask(state, rng)
    assert all(c.operator != "elite" for c in children)


def test_best_is_the_best_ever_evaluated():
    populations, state = run(make_ga(), 2, 5)
    everyone = [i for pop in populations for i in pop]
    assert state.best_fitness == pytest.approx(max(fitness_of(i) for i in everyone))
    assert fitness_of(state.best) == pytest.approx(state.best_fitness)


def test_categorical_gene_without_crossover_changes_only_by_mutation():
    ga = make_ga(mutation=[0.0, 0.2, 0.2])
    populations, _ = run(ga, 0, 4)
    first = {i.genome[0] for i in populations[0]}
    assert all(i.genome[0] in first for pop in populations for i in pop)


def test_state_round_trips_through_json():
    _, state = run(make_ga(), 0, 3, fail={"g002-i001"})
    restored = GAState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert make_ga().ask(state, rng_a) == make_ga().ask(restored, rng_b)


def test_golden_run():
    """A seeded run compared with a recorded file: any change to the operators' arithmetic or RNG use shows."""
    populations, state = run(make_ga(), 0, 4, fail={"g001-i002"})
    got = {
        "genomes": [[list(i.genome) for i in pop] for pop in populations],
        "lineage": [[[i.id, i.operator, list(i.parent_ids), i.seed] for i in pop] for pop in populations],
        "best": state.best.id,
    }
    if os.environ.get("POPPLAST_RECORD_GOLDEN"):  # after a deliberate change of the GA, and only then
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1))
    expected = json.loads(GOLDEN.read_text())
    assert got["lineage"] == expected["lineage"] and got["best"] == expected["best"]
    np.testing.assert_allclose(np.array(got["genomes"]), np.array(expected["genomes"]), rtol=0, atol=1e-12)
