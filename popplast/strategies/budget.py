"""Equal budgets: how many evaluations each method gets, and what that means for its own settings.

A budget is a number of evaluations (one evaluation trains one individual at the search fidelity), the unit
every method shares: the GA, the evolution strategies and the Optuna samplers spend it `population` at a
time (a sampler's last generation what is left), Gen-Soup with a shrinking population, Tune's OptunaSearch
one trial at a time, PBT as `population` members trained `budget / population` segments each.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.search import SearchSpec
from popplast.strategies.catalogue import method
from popplast.strategies.gensoup import population_size

MAX_BUDGET = 10_000_000


def default_budget(spec: SearchSpec) -> int:
    """The file's own budget: what its GA settings evaluate (population × generations, or Gen-Soup's sum)."""
    return sum(generation_sizes(spec))


def generation_sizes(spec: SearchSpec, budget: int | None = None) -> list[int]:
    """Individuals per generation; a sampler method's last generation holds what is left of `budget`."""
    s, entry = spec.strategy, method(spec.strategy.method)
    if entry.budget == "trials" and entry.in_loop and budget is not None:
        return [min(s.population, budget - g * s.population) for g in range(s.generations)]
    if entry.budget == "shrinking":
        minimum = min(s.min_population, s.population)
        return [population_size(g, s.population, s.population_step, minimum) for g in range(s.generations)]
    return [s.population] * s.generations


def with_budget(spec: SearchSpec, budget: int | None) -> SearchSpec:
    """The spec with its generations set so that its method evaluates `budget` individuals.

    GA and PBT need a multiple of the population; Gen-Soup gets the most generations whose shrinking
    populations fit in the budget (it may fall short by less than one generation). Sampler methods
    (Optuna, Tune's OptunaSearch) take the budget as their number of trials and keep the spec unchanged.
    """
    if budget is None:
        return spec
    if not isinstance(budget, int) or isinstance(budget, bool) or not 1 <= budget <= MAX_BUDGET:
        raise SpecError(
            COMMAND_LINE,
            "--budget-evals",
            f"expected an integer from 1 to {MAX_BUDGET:,} (each evaluation is logged as its own MLflow run), "
            f"got {budget!r}.",
        )
    s, entry = spec.strategy, method(spec.strategy.method)
    if entry.budget == "generations":
        if budget % s.population:
            raise SpecError(
                COMMAND_LINE,
                "--budget-evals",
                f"{s.method} evaluates whole generations of {s.population} (strategy.population in "
                f"{spec.source}), so the budget must be a multiple of {s.population}; got {budget}.",
            )
        generations = budget // s.population
    elif entry.budget == "shrinking":
        generations, spent = 0, 0
        minimum = min(s.min_population, s.population)
        while spent + population_size(generations, s.population, s.population_step, minimum) <= budget:
            spent += population_size(generations, s.population, s.population_step, minimum)
            generations += 1
        if generations == 0:
            raise SpecError(
                COMMAND_LINE,
                "--budget-evals",
                f"{s.method}'s first generation alone evaluates {s.population} individuals "
                f"(strategy.population in {spec.source}); got a budget of {budget}.",
            )
    else:
        generations = max(1, -(-budget // s.population))  # the layout of sampler trials in rows of `population`
    return dataclasses.replace(spec, strategy=dataclasses.replace(s, generations=generations))


def evaluations_for_epochs(spec: SearchSpec, budget_epochs: int) -> int:
    """The most evaluations a budget of `budget_epochs` training epochs can take: each costs the fidelity's
    epochs, or as few as the stopper's first judgement (min_steps) with a stopper. The search gets that many
    (in whole generations where its method needs them) and ends once its results have trained
    `budget_epochs` epochs, after the generation that got there: it may go over by less than a generation.

    Gen-Soup's schedule (its image-size ramp, ALGORITHMS.md §3) is spread over its generations, so it gets
    the generations the budget pays for at the full epochs each: sized for the cheapest evaluations, the
    ramp would span generations the budget never reaches (a stopper then leaves some epochs unspent)."""
    if not isinstance(budget_epochs, int) or isinstance(budget_epochs, bool) or not 1 <= budget_epochs <= MAX_BUDGET:
        raise SpecError(
            COMMAND_LINE, "--budget-epochs", f"expected an integer from 1 to {MAX_BUDGET:,}, got {budget_epochs!r}."
        )
    entry = method(spec.strategy.method)
    scheduled = entry.budget == "shrinking"  # its schedule (the image-size ramp) spans its generations
    cheapest = spec.stopper.min_steps if spec.stopper.active and not scheduled else spec.fidelity.epochs
    evaluations = max(-(-budget_epochs // max(1, min(cheapest, spec.fidelity.epochs))), spec.strategy.population)
    if entry.budget == "generations":
        evaluations = -(-evaluations // spec.strategy.population) * spec.strategy.population
    return min(evaluations, MAX_BUDGET)


def epochs_spent(results: Iterable[Any]) -> float:
    """Training epochs the results trained: their `epochs` metric (popplast's CNN trainer), else the last step
    they reported (`steps`, a user's objective)."""
    return float(sum(r.metrics.get("epochs", r.metrics.get("steps", 0.0)) for r in results))
