"""What one individual's evaluation is made of: its configuration, the fidelity it trains at, and for an
inheriting strategy its parents' trained states with the factors they are fused by."""

from __future__ import annotations

import dataclasses
from typing import Any

from popplast.core.individual import Individual
from popplast.execution.executor import Evaluation
from popplast.spec.search import Fidelity, SearchSpec
from popplast.strategies.gensoup import image_size


def configuration(spec: SearchSpec, individual: Individual) -> dict[str, Any]:
    """The hyperparameters an individual stands for: the fixed ones, then its decoded genes."""
    return {**spec.fixed, **spec.space.decode(individual.genome)}


def generation_fidelity(spec: SearchSpec, generation: int) -> Fidelity:
    """The fidelity an inheriting strategy trains a generation at: the spec's epochs at Gen-Soup's scheduled
    image size (the spec's own size for PBT, which has no schedule)."""
    s = spec.strategy
    size = image_size(
        generation,
        s.generations,
        spec.fidelity.image_size,
        s.final_image_size or spec.fidelity.image_size,
        s.hold_generations,
    )
    return dataclasses.replace(spec.fidelity, image_size=size)


def trained_config(spec: SearchSpec, config: dict[str, Any], budget: Fidelity | None) -> dict[str, Any]:
    """What an individual's run records it trained with: its configuration, and for an inheriting strategy
    (`budget`: the fidelity of its generation) what of that fidelity applies. popplast's CNN trainer trains
    at an image size (Gen-Soup's schedule grows it) for the fidelity's epochs; a user's objective is recorded
    with the image size only where the strategy schedules one (`strategy.final_image_size`): otherwise
    neither varies between its individuals (the search run holds the file's `fidelity.*`), and an
    objective that trains on no images would show a size it never used."""
    if budget is None:
        return config
    if spec.objective is None:
        return {**config, "image_size": budget.image_size, "epochs": budget.epochs}
    if spec.strategy.final_image_size not in (None, spec.fidelity.image_size):
        return {**config, "image_size": budget.image_size}
    return config


def evaluation_for(
    individual: Individual,
    config: dict[str, Any],
    budget: Fidelity | None,
    weights: dict[str, Any],
    inherits: bool,
    stops: Any = None,
    warm: Any = None,
) -> Evaluation:
    """The evaluation of `individual`; for an inheriting strategy with its parents' states (those still held)
    and the factors the strategy fuses them by, or the state a warm start gives it (`warm`)."""
    if not inherits:
        return Evaluation(individual, config, stops=stops)
    factors = individual.parent_factors()
    parents = tuple((weights[p], f) for p, f in zip(individual.parent_ids, factors) if f > 0 and p in weights)
    if warm is not None:
        parents = ((warm, 1.0),)
    return Evaluation(individual, config, budget, return_weights=True, parents_weights=parents, stops=stops)
