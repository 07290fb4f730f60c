"""The conformance suite of the Strategy protocol (popplast.core.strategy), for a strategy of one's own as for
popplast's (as `optuna.testing` is for samplers). Each check drives the strategy with a synthetic fitness, as
popplast's loop does, and raises AssertionError naming the promise it broke:

    from popplast.testing import check_strategy
    check_strategy(lambda: MyStrategy(n_genes=3, population=6), n_genes=3, population=6)

A generational strategy is asked a whole generation at a time and told its results one by one; one whose
`schedule` is "async" is asked one individual at a time while at most `window` are in flight, and told one
result at a time. The checks: the same seed gives the same individuals; the state survives a JSON round
trip at any point, into a new strategy object (a resumed driver); results are taken in any order (a
generational strategy then asks the same individuals); failures (None, NaN) are taken and never become the
best; ids are unique and parents are individuals asked before; each ask keeps within the population and the
budget, genomes in [0, 1]; an unknown result is refused (KeyError), and a repeated one (ValueError or
KeyError). A broken promise, or an exception the strategy raises under a check, is an AssertionError that
names the check.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, NamedTuple

import numpy as np

Fail = Callable[[Any], bool]


class Run(NamedTuple):
    individuals: list[tuple]  # (id, genome, generation, parent_ids, operator, fusion_weights, seed) in asking order
    state: Any
    failed: set[str]
    told: int


def check_strategy(
    make: Callable[[], Any], n_genes: int, population: int, generations: int = 4, window: int = 3
) -> None:
    """Every check below, on fresh strategies from `make()`. `generations`: how many a generational strategy
    is asked (an asynchronous one is asked population × generations individuals); `window`: at most this many
    individuals of an asynchronous strategy in flight."""
    for check in CHECKS:
        try:
            check(make, n_genes, population, generations, window)
        except AssertionError as e:
            raise AssertionError(f"{check.__name__}: {e}") from None
        except Exception as e:  # the strategy itself broke under the check
            raise AssertionError(f"{check.__name__}: the strategy raised {type(e).__name__}: {e}") from e


def drive(
    make: Callable[[], Any],
    seed: int,
    *,
    generations: int = 4,
    population: int = 6,
    window: int = 3,
    order: str = "forward",
    round_trip: bool = False,
    fail: Fail = lambda individual: False,
) -> Run:
    """The loop's use of a strategy. `order`: forward (first asked, first told), reverse, or shuffled (a
    generator of its own); `round_trip`: after every result, the state goes through JSON into a new strategy
    object; `fail`: the individuals whose evaluation fails (told None)."""
    strategy, rng = make(), np.random.default_rng(seed)
    chooser = np.random.default_rng(10_000 + seed)
    state, asked, failed, told = strategy.init(), [], set(), 0

    def tell(individual: Any) -> None:
        nonlocal state, strategy, told
        if fail(individual):
            failed.add(individual.id)
        value = None if individual.id in failed else fitness(individual)
        state, metrics = strategy.tell(state, {individual.id: value})
        assert isinstance(metrics, dict), f"tell returned {type(metrics).__name__} as its metrics, not a dict"
        told += 1
        if round_trip:
            strategy = make()
            state = strategy.state_from_dict(json.loads(json.dumps(state.to_dict())))

    def pick(waiting: list) -> Any:
        if order == "forward":
            return waiting.pop(0)
        if order == "reverse":
            return waiting.pop()
        return waiting.pop(int(chooser.integers(len(waiting))))

    if getattr(strategy, "schedule", "generational") == "async":
        budget, flying = population * generations, []
        while len(asked) < budget or flying:
            individuals: tuple = ()
            if len(asked) < budget and len(flying) < window:
                individuals, state = strategy.ask(state, rng)
                assert len(individuals) <= 1, f"an asynchronous ask returned {len(individuals)} individuals, not 0 or 1"
                _check_asked(individuals, asked)
                asked += [_row(i) for i in individuals]
                flying += list(individuals)
            if not individuals:
                assert flying, "an asynchronous strategy asked nothing with no result outstanding"
                tell(pick(flying))
        return Run(asked, state, failed, told)
    for generation in range(generations):
        individuals, state = strategy.ask(state, rng)
        assert 1 <= len(individuals) <= population, (
            f"generation {generation}: asked {len(individuals)} individuals; expected 1 to {population}"
        )
        assert {i.generation for i in individuals} == {generation} == {state.generation}, (
            f"generation {generation}: individuals of generations {sorted({i.generation for i in individuals})}, "
            f"state.generation {state.generation}"
        )
        _check_asked(individuals, asked)
        asked += [_row(i) for i in individuals]
        waiting = list(individuals)
        while waiting:
            tell(pick(waiting))
    return Run(asked, state, failed, told)


def fitness(individual: Any) -> float:
    """A synthetic fitness: a pure function of the genome, best near (0.3, 0.3, ...)."""
    return -float(np.sum((np.asarray(individual.genome) - 0.3) ** 2))


def _row(individual: Any) -> tuple:
    i = individual
    return (i.id, tuple(i.genome), i.generation, tuple(i.parent_ids), i.operator, tuple(i.fusion_weights), i.seed)


def _check_asked(individuals: tuple, asked: list[tuple]) -> None:
    earlier = {row[0] for row in asked}
    for i in individuals:
        assert i.id not in earlier, f"the id {i.id!r} was asked twice"
        missing = [p for p in i.parent_ids if p not in earlier]
        assert not missing, f"{i.id}'s parents {missing} were never asked"
        assert all(0.0 <= g <= 1.0 for g in i.genome), f"{i.id}'s genome leaves [0, 1]: {i.genome}"
        earlier.add(i.id)


def same_seed_same_individuals(
    make: Callable[[], Any], n_genes: int, population: int, generations: int, window: int
) -> None:
    sizes = dict(generations=generations, population=population, window=window)
    first, again, other = (drive(make, seed, **sizes).individuals for seed in (3, 3, 4))
    assert first == again, "the same seed asked other individuals"
    assert first != other, "another seed asked the same individuals"
    assert all(len(row[1]) == n_genes for row in first), f"a genome has other than {n_genes} genes"


def state_survives_json(make: Callable[[], Any], n_genes: int, population: int, generations: int, window: int) -> None:
    sizes = dict(generations=generations, population=population, window=window)
    reference = drive(make, 3, **sizes)
    resumed = drive(make, 3, round_trip=True, **sizes)
    assert resumed.individuals == reference.individuals, (
        "after its state went through JSON into a new strategy object, it asked other individuals"
    )
    assert resumed.state.evaluations == reference.state.evaluations == reference.told, (
        f"state.evaluations is {resumed.state.evaluations} after a round trip and {reference.state.evaluations} "
        f"without; {reference.told} results were told"
    )


def results_in_any_order(make: Callable[[], Any], n_genes: int, population: int, generations: int, window: int) -> None:
    sizes = dict(generations=generations, population=population, window=window)
    forward = drive(make, 3, **sizes)
    for order in ("reverse", "shuffled"):
        run = drive(make, 3, order=order, **sizes)
        assert run.told == len(run.individuals) == len(forward.individuals), (
            f"told in {order} order, it asked other numbers"
        )
        if getattr(make(), "schedule", "generational") != "async":  # asynchronous: the order is its input
            assert run.individuals == forward.individuals, f"told in {order} order, it asked other individuals"


def failures_accepted(make: Callable[[], Any], n_genes: int, population: int, generations: int, window: int) -> None:
    sizes = dict(generations=generations, population=population, window=window)
    for fail in (lambda i: i.genome[0] > 0.5, lambda i: True):
        run = drive(make, 3, fail=fail, **sizes)
        best, value = run.state.best, run.state.best_fitness
        assert best is None or best.id not in run.failed, f"the failed individual {best.id} became the best"
        assert (best is None) == (value is None), f"best {best} with best_fitness {value}"
        assert value is None or math.isfinite(value), f"best_fitness {value} is not finite"
        assert best is None or value == fitness(best), f"best_fitness {value} is not what {best.id} was told"


def budget_respected(make: Callable[[], Any], n_genes: int, population: int, generations: int, window: int) -> None:
    strategy = make()
    run = drive(make, 5, generations=generations, population=population, window=window)
    if getattr(strategy, "schedule", "generational") == "async":
        assert len(run.individuals) == population * generations
    assert run.state.evaluations == run.told == len(run.individuals), (
        f"state.evaluations {run.state.evaluations} after {run.told} results of {len(run.individuals)} asked"
    )


def unknown_or_repeated_results_refused(
    make: Callable[[], Any], n_genes: int, population: int, generations: int, window: int
) -> None:
    strategy = make()
    state = strategy.init()
    individuals, state = strategy.ask(state, np.random.default_rng(0))
    try:
        strategy.tell(state, {"never-asked": 1.0})
    except KeyError:
        pass
    else:
        raise AssertionError("a result for an id never asked was taken (expected KeyError)")
    state, _ = strategy.tell(state, {individuals[0].id: 1.0})
    try:
        strategy.tell(state, {individuals[0].id: 2.0})
    except (KeyError, ValueError):
        pass
    else:
        raise AssertionError(f"a second result for {individuals[0].id} was taken (expected ValueError or KeyError)")


CHECKS = (
    same_seed_same_individuals,
    state_survives_json,
    results_in_any_order,
    failures_accepted,
    budget_respected,
    unknown_or_repeated_results_refused,
)
