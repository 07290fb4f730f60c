"""The search loop: ask the strategy, evaluate on the executor, tell the results, tell the observers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from popplast.core.ga import GAState, GenCNN
from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.core.spec import SearchSpec
from popplast.execution.checkpoint import Checkpoint, Checkpointer
from popplast.execution.executor import Evaluation, Executor


class Observer(Protocol):
    """What trackers and progress displays hear; every method is optional."""

    def generation_started(self, generation: int, individuals: Sequence[Individual]) -> None: ...

    def individual_finished(self, individual: Individual, config: dict[str, Any], result: EvalResult) -> None: ...

    def generation_finished(self, generation: int, metrics: dict[str, float]) -> None: ...


@dataclass
class SearchOutcome:
    state: GAState
    history: list[dict[str, float]] = field(default_factory=list)
    results: dict[str, EvalResult] = field(default_factory=dict)
    best_weights: Any = None  # Gen-Soup: the best individual's trained weights (a reference on Ray)
    best_budget: Any = None  # Gen-Soup: the fidelity the best individual was trained and measured at
    peak_weight_bytes: float = 0.0  # Gen-Soup: most bytes of trained weights held at once
    earlier_seconds: float = 0.0  # a resumed search: wall time up to the checkpoint it resumed from


def notify(observers: Sequence[Any], event: str, *args: Any) -> None:
    for observer in observers:
        method = getattr(observer, event, None)
        if method is not None:
            method(*args)


def configuration(spec: SearchSpec, individual: Individual) -> dict[str, Any]:
    """The hyperparameters an individual stands for: the fixed ones, then its decoded genes."""
    return {**spec.fixed, **spec.space.decode(individual.genome)}


def begin(strategy: GenCNN, resume: Checkpoint | None) -> tuple[GAState, SearchOutcome, int]:
    """The state, the outcome so far and the first generation to run: from scratch, or from a checkpoint."""
    if resume is None:
        state = strategy.init()
        return state, SearchOutcome(state), 0
    outcome = SearchOutcome(resume.state, list(resume.history), dict(resume.results), earlier_seconds=resume.seconds)
    return resume.state, outcome, resume.generation + 1


def save(
    checkpoints: Checkpointer | None,
    state: GAState,
    rng: np.random.Generator,
    outcome: SearchOutcome,
    weights: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Checkpoint the search (when checkpointing); returns the saved weights' new references."""
    if checkpoints is None:
        return {}
    return checkpoints.save(
        Checkpoint(state.generation, state, rng.bit_generator.state, outcome.history, outcome.results, weights or {})
    )


def run_search(
    spec: SearchSpec,
    strategy: GenCNN,
    executor: Executor,
    rng: np.random.Generator,
    observers: Sequence[Any] = (),
    checkpoints: Checkpointer | None = None,
    resume: Checkpoint | None = None,
) -> SearchOutcome:
    """Run `spec.strategy.generations` generations; a failed evaluation is recorded and the search goes on.

    With `checkpoints`, the search is saved after every generation; with `resume` (and `rng` restored from
    it), it goes on after the checkpoint's generation as if it had never stopped.
    """
    state, outcome, first = begin(strategy, resume)
    for _ in range(first, spec.strategy.generations):
        individuals, state = strategy.ask(state, rng)
        notify(observers, "generation_started", state.generation, individuals)
        by_id = {ind.id: ind for ind in individuals}
        configs = {ind.id: configuration(spec, ind) for ind in individuals}
        for result in executor.map(Evaluation(ind, configs[ind.id]) for ind in individuals):
            # weights are not kept by the GA; dropping them here keeps the driver's memory flat
            result.weights = None
            outcome.results[result.individual_id] = result
            state, metrics = strategy.tell(state, {result.individual_id: result.fitness if result.ok else None})
            notify(observers, "individual_finished", by_id[result.individual_id], configs[result.individual_id], result)
        outcome.history.append(metrics)
        notify(observers, "generation_finished", state.generation, metrics)
        save(checkpoints, state, rng, outcome)
    outcome.state = state
    return outcome
