"""The conformance suite of the Strategy protocol (popplast.core.strategy), for a strategy of one's own as for
popplast's (as `optuna.testing` is for samplers). Each check drives the strategy with a synthetic fitness, as
popplast's loop does, and raises AssertionError naming the promise it broke:

    from popplast.testing import check_strategy
    check_strategy(lambda: MyStrategy(n_genes=3, population=6), n_genes=3, population=6)

A generational strategy is asked a whole generation at a time and told its results one by one; one whose
`schedule` is "async" is asked one individual at a time while at most `window` are in flight, and told one
result at a time. The checks: the same seed gives the same individuals (and another seed others, unless
`seeded=False`: a strategy that draws nothing); the state survives a JSON round trip at any point (after
`init`, an ask or a result), into a new strategy object (a resumed driver); results are taken in any order
(a generational strategy then asks the same individuals); failures (None and NaN) are taken and never become
the best; ids are unique and parents were asked before (of the generation before, where children inherit
trained states: the loop keeps no older ones); each ask keeps within the population (an asynchronous one
asks at most one), genomes in [0, 1], and `state.evaluations` counts the results told; an unknown result is
refused (KeyError), and a repeated one (ValueError or KeyError). A broken promise, or an exception the
strategy raises under a check, is an AssertionError that names the check.

With `objectives=2` (or more) the strategy is told vectors instead (core/pareto.py: the objectives, each
maximised, then the constraint violation; the synthetic ones pull towards different corners and the first
gene past 0.9 violates a constraint), as a strategy that declares `several = True` is with a multi-objective
file; its best must then be feasible, with its first objective as `best_fitness`, and a child that inherits
may also name a member of the state's `pool` (NSGA-II's survivors, whose states the loop keeps).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, NamedTuple

import numpy as np

from popplast.core.strategy import is_async


class Case(NamedTuple):
    make: Callable[[], Any]  # a fresh strategy
    n_genes: int
    population: int
    generations: int  # asked of a generational strategy; an asynchronous one is asked population × generations
    window: int  # at most this many individuals of an asynchronous strategy in flight
    seeded: bool  # its individuals depend on the generator it is given
    objectives: int = 0  # 0: told a fitness; k ≥ 2: told vectors of k objectives and a violation


class Run(NamedTuple):
    individuals: list[tuple]  # (id, genome, generation, parent_ids, operator, fusion_weights, seed) in asking order
    state: Any
    failed: set[str]
    told: int


def check_strategy(
    make: Callable[[], Any],
    n_genes: int,
    population: int,
    generations: int = 4,
    window: int = 3,
    seeded: bool = True,
    objectives: int = 0,
) -> None:
    """Every check below, on fresh strategies from `make()`; with `objectives` ≥ 2, told vectors."""
    case = Case(make, n_genes, population, generations, window, seeded, objectives)
    for check in CHECKS:
        try:
            check(case)
        except AssertionError as e:
            raise AssertionError(f"{check.__name__}: {e}") from None
        except Exception as e:  # the strategy itself broke under the check
            raise AssertionError(f"{check.__name__}: the strategy raised {type(e).__name__}: {e}") from e


def drive(
    case: Case,
    seed: int,
    *,
    order: str = "forward",
    round_trip: bool = False,
    fail: Callable[[Any], bool] = lambda individual: False,
) -> Run:
    """The loop's use of a strategy. `order`: forward (first asked, first told), reverse, or shuffled (a
    generator of its own); `round_trip`: after `init`, every ask and every result, the state goes through JSON
    into a new strategy object; `fail`: the individuals whose evaluation fails (told None and NaN in turn)."""
    strategy, rng = case.make(), np.random.default_rng(seed)
    chooser = np.random.default_rng(10_000 + seed)
    state, asked, generation_of, failed, told = strategy.init(), [], {}, set(), 0
    assert isinstance(strategy.inherits, bool), f"inherits is {strategy.inherits!r}, not True or False"

    def through_json() -> None:
        nonlocal state, strategy
        if round_trip:
            strategy = case.make()
            state = strategy.state_from_dict(json.loads(json.dumps(state.to_dict())))

    def ask() -> tuple:
        nonlocal state
        kept = {i.id for i in getattr(state, "pool", ())}  # survivors whose states the loop keeps
        individuals, state = strategy.ask(state, rng)
        for i in individuals:
            assert i.id not in generation_of, f"the id {i.id!r} was asked twice"
            missing = [p for p in i.parent_ids if p not in generation_of]
            assert not missing, f"{i.id}'s parents {missing} were never asked"
            if strategy.inherits and not is_async(strategy):
                older = [p for p in i.parent_ids if generation_of[p] != i.generation - 1 and p not in kept]
                assert not older, f"{i.id} inherits from {older}, not of the generation before"
            assert len(i.genome) == case.n_genes, f"{i.id}'s genome has {len(i.genome)} genes, not {case.n_genes}"
            assert all(0.0 <= g <= 1.0 for g in i.genome), f"{i.id}'s genome leaves [0, 1]: {i.genome}"
            generation_of[i.id] = i.generation
            asked.append(_row(i))
        through_json()
        return individuals

    def tell(individual: Any, last: bool | None = None) -> None:
        """`last`: whether it completes its generation (a generational strategy's summary comes then only)."""
        nonlocal state, told
        value: Any = told_value(case, individual)
        if fail(individual):
            failed.add(individual.id)
            value = None if len(failed) % 2 else math.nan
        state, metrics = strategy.tell(state, {individual.id: value})
        assert isinstance(metrics, dict), f"tell returned {type(metrics).__name__} as its metrics, not a dict"
        if last is not None:  # the loop closes a generation (history, checkpoint) on its last result's summary
            assert bool(metrics) == last, (
                f"tell of {individual.id} returned {'a summary' if metrics else 'no summary'}; a generation's "
                "summary comes with its last result, and only then"
            )
        told += 1
        through_json()

    def pick(waiting: list) -> Any:
        if order == "forward":
            return waiting.pop(0)
        if order == "reverse":
            return waiting.pop()
        return waiting.pop(int(chooser.integers(len(waiting))))

    through_json()
    if is_async(strategy):
        budget, flying = case.population * case.generations, []
        while len(asked) < budget or flying:
            individuals: tuple = ()
            if len(asked) < budget and len(flying) < case.window:
                individuals = ask()
                assert len(individuals) <= 1, f"an asynchronous ask returned {len(individuals)} individuals, not 0 or 1"
                flying += list(individuals)
            if not individuals:
                assert flying, "an asynchronous strategy asked nothing with no result outstanding"
                tell(pick(flying))
        return Run(asked, state, failed, told)
    for generation in range(case.generations):
        individuals = ask()
        assert 1 <= len(individuals) <= case.population, (
            f"generation {generation}: asked {len(individuals)} individuals; expected 1 to {case.population}"
        )
        assert {i.generation for i in individuals} == {generation} == {state.generation}, (
            f"generation {generation}: individuals of generations {sorted({i.generation for i in individuals})}, "
            f"state.generation {state.generation}"
        )
        waiting = list(individuals)
        while waiting:
            last = len(waiting) == 1
            tell(pick(waiting), last=last)
    return Run(asked, state, failed, told)


def fitness(individual: Any) -> float:
    """A synthetic fitness: a pure function of the genome, best near (0.3, 0.3, ...)."""
    return -float(np.sum((np.asarray(individual.genome) - 0.3) ** 2))


def vector(individual: Any, objectives: int) -> list[float]:
    """Synthetic objectives: objective m best near the genome (0.3 + 0.4·m/(k−1), ...), then the violation
    of 'first gene ≤ 0.9'."""
    genome = np.asarray(individual.genome)
    targets = [0.3 + 0.4 * m / (objectives - 1) for m in range(objectives)]
    return [-float(np.sum((genome - t) ** 2)) for t in targets] + [max(0.0, float(genome[0]) - 0.9)]


def told_value(case: Case, individual: Any) -> Any:
    """What the loop tells of `individual`: the fitness, or with several objectives the vector."""
    return vector(individual, case.objectives) if case.objectives else fitness(individual)


def _individual(row: tuple) -> Any:
    from popplast.core.individual import Individual

    return Individual(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def _row(individual: Any) -> tuple:
    i = individual
    return (i.id, tuple(i.genome), i.generation, tuple(i.parent_ids), i.operator, tuple(i.fusion_weights), i.seed)


def same_seed_same_individuals(case: Case) -> None:
    first, again = drive(case, 3).individuals, drive(case, 3).individuals
    assert first == again, "the same seed asked other individuals"
    if case.seeded:
        assert first != drive(case, 4).individuals, "another seed asked the same individuals (seeded=False if meant)"


def state_survives_json(case: Case) -> None:
    reference = drive(case, 3)
    resumed = drive(case, 3, round_trip=True)
    assert resumed.individuals == reference.individuals, (
        "after its state went through JSON into a new strategy object, it asked other individuals"
    )
    assert resumed.state.evaluations == reference.state.evaluations, (
        f"state.evaluations is {resumed.state.evaluations} after round trips and {reference.state.evaluations} without"
    )


def results_in_any_order(case: Case) -> None:
    forward = drive(case, 3)
    for order in ("reverse", "shuffled"):
        run = drive(case, 3, order=order)
        assert run.told == len(run.individuals) == len(forward.individuals), (
            f"told in {order} order, it asked other numbers"
        )
        if not is_async(case.make()):  # asynchronous: the order results come in is its input
            assert run.individuals == forward.individuals, f"told in {order} order, it asked other individuals"


def failures_accepted(case: Case) -> None:
    for fail in (lambda i: i.genome[0] > 0.5, lambda i: True):
        run = drive(case, 3, fail=fail)
        best, value = run.state.best, run.state.best_fitness
        assert best is None or best.id not in run.failed, f"the failed individual {best.id} became the best"
        assert (best is None) == (value is None), f"best {best} with best_fitness {value}"
        if case.objectives and best is not None:
            told = [_individual(row) for row in run.individuals if row[0] not in run.failed]
            feasible = [i for i in told if vector(i, case.objectives)[-1] == 0]
            if feasible:  # constraint-domination: a feasible result is a better answer than any infeasible one
                assert vector(best, case.objectives)[-1] == 0, f"the infeasible {best.id} became the best"
            assert value == vector(best, case.objectives)[0], f"best_fitness {value} is not {best.id}'s first objective"
        else:
            assert best is None or value == fitness(best), f"best_fitness {value} is not what {best.id} was told"


def evaluations_counted(case: Case) -> None:
    run = drive(case, 5)
    assert run.state.evaluations == run.told == len(run.individuals), (
        f"state.evaluations {run.state.evaluations} after {run.told} results of {len(run.individuals)} asked"
    )


def unknown_or_repeated_results_refused(case: Case) -> None:
    strategy, rng = case.make(), np.random.default_rng(0)
    state, individuals = strategy.init(), ()
    for _ in range(case.population):  # an asynchronous strategy may ask nothing at first
        individuals, state = strategy.ask(state, rng)
        if individuals:
            break
    assert individuals, f"{case.population} asks asked nobody"
    one, two = ([1.0, 2.0, 0.0], [2.0, 1.0, 0.0]) if case.objectives else (1.0, 2.0)
    try:
        strategy.tell(state, {"never-asked": one})
    except KeyError:
        pass
    else:
        raise AssertionError("a result for an id never asked was taken (expected KeyError)")
    state, _ = strategy.tell(state, {individuals[0].id: one})
    try:
        strategy.tell(state, {individuals[0].id: two})
    except (KeyError, ValueError):
        pass
    else:
        raise AssertionError(f"a second result for {individuals[0].id} was taken (expected ValueError or KeyError)")


CHECKS = (
    same_seed_same_individuals,
    state_survives_json,
    results_in_any_order,
    failures_accepted,
    evaluations_counted,
    unknown_or_repeated_results_refused,
)
