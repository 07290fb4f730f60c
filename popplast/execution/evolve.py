"""The loop of `popplast evolve-rules`: an ES population split into slices across the executor's workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from popplast.core.es import ESState
from popplast.execution.executor import Executor


@dataclass(frozen=True)
class RuleSlice:
    """Rows `offset ..` of a generation's population, evaluated on one shared training batch."""

    offset: int
    genomes: np.ndarray
    batch: np.ndarray

    def run(self, evaluator: Any) -> "SliceResult":
        return SliceResult(self.offset, evaluator.fitness(self.genomes, self.batch))

    def failed(self, error: str) -> "SliceResult":
        return SliceResult(self.offset, np.full(len(self.genomes), np.nan), error)


@dataclass(frozen=True)
class SliceResult:
    offset: int
    fitness: np.ndarray
    error: str | None = None


def run_evolution(
    strategy: Any,
    executor: Executor,
    rng: np.random.Generator,
    generations: int,
    train_size: int,
    batch_size: int,
    observers: Sequence[Any] = (),
) -> tuple[ESState, list[dict]]:
    """Each generation: ask, draw one training batch, evaluate the population in `executor.workers` slices
    (each vectorised on its worker), tell. A slice whose worker died counts as failed (NaN fitness)."""
    state = strategy.init(rng)
    history = []
    for _ in range(generations):
        population, state = strategy.ask(state, rng)
        batch = rng.choice(train_size, size=batch_size, replace=False)
        fitness = np.full(len(population), np.nan)
        slices = [s for s in np.array_split(np.arange(len(population)), executor.workers) if len(s)]
        for result in executor.map(RuleSlice(int(s[0]), population[s], batch) for s in slices):
            fitness[result.offset : result.offset + len(result.fitness)] = result.fitness
        previous = state.mean
        state, metrics = strategy.tell(state, fitness)
        metrics["mean_update_norm"] = float(np.linalg.norm(state.mean - previous))
        history.append(metrics)
        for observer in observers:
            observer.generation_finished(state.generation, metrics)
    return state, history
