"""The Gen-Soup loop: like the GA's, but every child starts from its parents' trained weights.

Weights move as object-store references on Ray (state dicts on the local executor): a worker's trained
weights stay where Ray put them, the driver holds only the reference, and a child's evaluation carries its
parents' references. After each ask, every reference that no individual of the new generation descends
from (and that is not the best individual's) is dropped, which lets Ray free the object.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import numpy as np

from popplast.core.gensoup import GenSoup, image_size, weights_needed
from popplast.core.spec import SearchSpec
from popplast.execution.checkpoint import Checkpoint, Checkpointer, WeightsLost
from popplast.execution.executor import Evaluation, Executor
from popplast.execution.search import SearchOutcome, begin, configuration, notify, save

log = logging.getLogger(__name__)


def soup_budget(spec: SearchSpec, generation: int):
    """The fidelity of one Gen-Soup generation: the spec's epochs at the scheduled image size."""
    s = spec.strategy
    size = image_size(
        generation,
        s.generations,
        spec.fidelity.image_size,
        s.final_image_size or spec.fidelity.image_size,
        s.hold_generations,
    )
    return dataclasses.replace(spec.fidelity, image_size=size)


def _checkpoint(
    checkpoints: Checkpointer | None,
    state: Any,
    rng: np.random.Generator,
    outcome: SearchOutcome,
    weights: dict[str, Any],
    survivors: set[str],
    work: dict[str, Evaluation],
    executor: Executor,
) -> None:
    """Save the generation with the weights the next ones may inherit, which then live on the driver's node.

    Weights lost with a worker node before they were saved are made again: their individuals are evaluated
    again (same seed, config and parents, so the same weights) without being told or logged twice.
    """
    for _ in range(3):
        try:
            weights.update(save(checkpoints, state, rng, outcome, {k: w for k, w in weights.items() if k in survivors}))
            return
        except WeightsLost as e:
            log.warning("%s; evaluating them again for their weights", e)
            for result in executor.map(work[k] for k in e.ids):
                if result.ok:
                    weights[result.individual_id] = result.weights
    raise RuntimeError(f"generation {state.generation}: trained weights were lost three times in a row")


def run_soup(
    spec: SearchSpec,
    strategy: GenSoup,
    executor: Executor,
    rng: np.random.Generator,
    observers: Sequence[Any] = (),
    checkpoints: Checkpointer | None = None,
    resume: Checkpoint | None = None,
) -> SearchOutcome:
    """As run_search; a checkpoint also holds the weights later generations can inherit."""
    state, outcome, first = begin(strategy, resume)
    # individual id → its trained weights (a reference on Ray), and the bytes they take
    weights: dict[str, Any] = dict(resume.weights) if resume else {}
    held = {k: outcome.results[k].metrics.get("weights_bytes", 0.0) for k in weights}
    for generation in range(first, spec.strategy.generations):
        individuals, state = strategy.ask(state, rng)
        keep = weights_needed(individuals, {state.best.id} if state.best else ())
        for key in [k for k in weights if k not in keep]:
            del weights[key], held[key]  # the last reference: Ray frees the object
        budget = soup_budget(spec, generation)
        notify(observers, "generation_started", state.generation, individuals)
        by_id = {ind.id: ind for ind in individuals}
        configs = {ind.id: configuration(spec, ind) for ind in individuals}
        work = []
        for ind in individuals:
            factors = ind.fusion_weights or (1.0,) * len(ind.parent_ids)
            parents = tuple((weights[p], f) for p, f in zip(ind.parent_ids, factors) if f > 0 and p in weights)
            work.append(Evaluation(ind, configs[ind.id], budget, return_weights=True, parents_weights=parents))
        for result in executor.map(work):
            if result.ok and result.weights is not None:
                weights[result.individual_id] = result.weights
                held[result.individual_id] = result.metrics.get("weights_bytes", 0.0)
                outcome.peak_weight_bytes = max(outcome.peak_weight_bytes, sum(held.values()))
            result.weights = None
            outcome.results[result.individual_id] = result
            state, metrics = strategy.tell(state, {result.individual_id: result.fitness if result.ok else None})
            config = {**configs[result.individual_id], "image_size": budget.image_size, "epochs": budget.epochs}
            notify(observers, "individual_finished", by_id[result.individual_id], config, result)
        outcome.history.append(metrics)
        notify(observers, "generation_finished", state.generation, metrics)
        survivors = set(by_id) | ({state.best.id} if state.best else set())
        _checkpoint(checkpoints, state, rng, outcome, weights, survivors, {w.individual.id: w for w in work}, executor)
    outcome.state = state
    if state.best is not None:
        outcome.best_weights = weights.get(state.best.id)
        outcome.best_budget = soup_budget(spec, state.best.generation)
    return outcome
