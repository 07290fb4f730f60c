"""The search loop, one for every strategy: ask, evaluate on the executor, tell the results, tell the
observers, checkpoint.

For a strategy that inherits (Gen-Soup, PBT), trained states move as object-store references on Ray (state
dicts on the local executor): a worker's trained state stays where Ray put it, the driver holds only the
reference, and a child's evaluation carries its parents' references. After each ask, every reference that no
individual of the new generation descends from (and that is not the best individual's) is dropped, which
lets Ray free the object; a checkpoint holds the states the next generations may inherit.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from popplast.core.budget import epochs_spent
from popplast.core.gensoup import image_size, weights_needed
from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.core.spec import Fidelity, SearchSpec
from popplast.core.strategy import Strategy, is_async
from popplast.execution.async_search import run_async_search
from popplast.execution.checkpoint import Checkpoint, Checkpointer, WeightsLost
from popplast.execution.executor import Evaluation, Executor, slices
from popplast.execution.stopping import StopJudge

log = logging.getLogger(__name__)


class Observer(Protocol):
    """What trackers and progress displays hear; every method is optional."""

    def generation_started(self, generation: int, individuals: Sequence[Individual]) -> None: ...

    def individual_finished(self, individual: Individual, config: dict[str, Any], result: EvalResult) -> None: ...

    def generation_finished(self, generation: int, metrics: dict[str, float]) -> None: ...


@dataclass
class SearchOutcome:
    state: Any  # the strategy's state (StrategyState)
    history: list[dict[str, float]] = field(default_factory=list)
    results: dict[str, EvalResult] = field(default_factory=dict)
    best_weights: Any = None  # inheriting strategies: the best individual's trained state (a reference on Ray)
    best_budget: Any = None  # inheriting strategies: the fidelity the best individual was trained and measured at
    peak_weight_bytes: float = 0.0  # inheriting strategies: most bytes of trained states held at once
    earlier_seconds: float = 0.0  # a resumed search: wall time up to the checkpoint it resumed from


def notify(observers: Sequence[Any], event: str, *args: Any) -> None:
    for observer in observers:
        method = getattr(observer, event, None)
        if method is not None:
            method(*args)


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


def run_search(
    spec: SearchSpec,
    strategy: Strategy,
    executor: Executor,
    rng: np.random.Generator,
    observers: Sequence[Any] = (),
    checkpoints: Checkpointer | None = None,
    resume: Checkpoint | None = None,
    *,
    configure: Callable[[Individual], dict[str, Any]] | None = None,
    sliced: bool = False,
    keep_results: bool = True,
    stopper: StopJudge | None = None,
    epoch_budget: int | None = None,
) -> SearchOutcome:
    """Run `spec.strategy.generations` generations; a failed evaluation is recorded and the search goes on.

    With `checkpoints`, the search is saved after every generation; with `resume` (and `rng` restored from
    it), it goes on after the checkpoint's generation as if it had never stopped. `configure` gives an
    individual's configuration (default: the spec's fixed values and decoded genes); a strategy with a
    `context(state)` adds what the whole generation shares to each. `sliced`: a vectorised evaluator
    (`evaluate_many`, the plastic-rule objective) gets each generation in `executor.workers` slices.
    The outcome keeps each result's summary (`EvalResult.summary`: no history or tags, which the observers
    had); `keep_results=False` keeps no results in it (evolve-rules tracks generations, not individuals, and
    its populations reach thousands). `stopper`: the early-stopping rule the evaluations' trials report
    to (execution/stopping.py); a stopped result is marked and ranked by its last reported value.
    `epoch_budget`: the search ends after the generation whose results bring the epochs trained to it.
    """
    configure = configure or functools.partial(configuration, spec)
    context = getattr(strategy, "context", None)
    if resume is None:
        state, outcome, first = strategy.init(), SearchOutcome(None), 0
    else:
        state, first = resume.state, resume.generation + 1
        outcome = SearchOutcome(state, list(resume.history), dict(resume.results), earlier_seconds=resume.seconds)
    if is_async(strategy):  # no generations: each individual asked when a worker is free (async_search.py)
        return run_async_search(
            spec,
            strategy,
            executor,
            rng,
            observers,
            checkpoints,
            resume,
            outcome,
            configure=configure,
            stopper=stopper,
            epoch_budget=epoch_budget,
            replay=spec.strategy.replay,
            window=getattr(executor, "window", executor.workers),
        )
    # individual id → its trained state (a reference on Ray), and the bytes it takes
    weights: dict[str, Any] = dict(resume.weights) if resume else {}
    held = {k: outcome.results[k].metrics.get("weights_bytes", 0.0) for k in weights}
    metrics: dict[str, float] = {}
    stops = executor.stop_channel(stopper) if stopper is not None else None
    if stopper is not None and resume is not None:
        stopper.replay(resume.stopper_log)
    for generation in range(first, spec.strategy.generations):
        if epoch_budget is not None and epochs_spent(outcome.results.values()) >= epoch_budget:
            break
        individuals, state = strategy.ask(state, rng)
        keep = weights_needed(individuals, {state.best.id} if state.best else ())
        for key in [k for k in weights if k not in keep]:
            del weights[key], held[key]  # the last reference: Ray frees the object
        budget = generation_fidelity(spec, generation) if strategy.inherits else None
        notify(observers, "generation_started", state.generation, individuals)
        by_id = {ind.id: ind for ind in individuals}
        shared = context(state) if context else {}
        configs = {ind.id: {**configure(ind), **shared} for ind in individuals}
        work = [evaluation_for(ind, configs[ind.id], budget, weights, strategy.inherits, stops) for ind in individuals]
        for done in executor.map(slices(work, executor.workers) if sliced else work):
            results = done if isinstance(done, list) else [done]
            for result in results:
                if stopper is not None:
                    stopper.settle(result)
                if result.ok and result.weights is not None:
                    weights[result.individual_id] = result.weights
                    held[result.individual_id] = result.metrics.get("weights_bytes", 0.0)
                    outcome.peak_weight_bytes = max(outcome.peak_weight_bytes, sum(held.values()))
                result.weights = None  # kept above by reference, or not at all: the driver's memory stays flat
                if keep_results:
                    outcome.results[result.individual_id] = result.summary()
            # a slice is told at once: one tell per individual would copy the state's results P times
            state, metrics = strategy.tell(state, {r.individual_id: r.fitness if r.ok else None for r in results})
            for result in results:
                config = trained_config(spec, configs[result.individual_id], budget)
                notify(observers, "individual_finished", by_id[result.individual_id], config, result)
        outcome.history.append(metrics)
        notify(observers, "generation_finished", state.generation, metrics)
        survivors = set(by_id) | ({state.best.id} if state.best else set())
        log = stopper.log if stopper is not None else []
        _checkpoint(
            checkpoints, state, rng, outcome, weights, survivors, {w.individual.id: w for w in work}, executor, log
        )
    outcome.state = state
    if strategy.inherits and state.best is not None:
        outcome.best_weights = weights.get(state.best.id)
        outcome.best_budget = generation_fidelity(spec, state.best.generation)
    return outcome


def evaluation_for(
    individual: Individual,
    config: dict[str, Any],
    budget: Fidelity | None,
    weights: dict[str, Any],
    inherits: bool,
    stops: Any = None,
) -> Evaluation:
    """The evaluation of `individual`; for an inheriting strategy with its parents' states (those still held)
    and the factors the strategy fuses them by."""
    if not inherits:
        return Evaluation(individual, config, stops=stops)
    factors = individual.fusion_weights or (1.0,) * len(individual.parent_ids)
    parents = tuple((weights[p], f) for p, f in zip(individual.parent_ids, factors) if f > 0 and p in weights)
    return Evaluation(individual, config, budget, return_weights=True, parents_weights=parents, stops=stops)


def _checkpoint(
    checkpoints: Checkpointer | None,
    state: Any,
    rng: np.random.Generator,
    outcome: SearchOutcome,
    weights: dict[str, Any],
    survivors: set[str],
    work: dict[str, Evaluation],
    executor: Executor,
    stopper_log: list[list[Any]],
) -> None:
    """Save the generation with the states the next ones may inherit, which then live on the driver's node.

    States lost with a worker node before they were saved are made again: their individuals are evaluated
    again (same seed, config and parents, so the same states) without being told or logged twice.
    """
    if checkpoints is None:
        return
    for _ in range(3):
        kept = {k: w for k, w in weights.items() if k in survivors}
        try:
            checkpoint = Checkpoint(
                state.generation,
                state,
                dict(rng.bit_generator.state),
                outcome.history,
                outcome.results,
                kept,
                stopper_log=stopper_log,
            )
            weights.update(checkpoints.save(checkpoint))
            return
        except WeightsLost as e:
            log.warning("%s; evaluating them again for their weights", e)
            for result in executor.map(work[k] for k in e.ids):
                if result.ok:
                    weights[result.individual_id] = result.weights
    raise RuntimeError(f"generation {state.generation}: trained weights were lost three times in a row")
