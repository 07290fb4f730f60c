"""The evolution strategies of `popplast evolve-rules` as a search strategy: plasticity-rule vectors.

Unlike ESSearch over a space's genes, a genome here is the ES's vector itself (rule coefficients are
unbounded reals). Each generation's population is scored on one training batch that every individual shares:
common random numbers, which the ES's ranking (and the elitist ES's re-evaluated parent) needs. The batch is
drawn from the search's generator right after the population, carried in the state, and handed to every
evaluation of the generation by `context`. Individuals carry no seeds of their own: the plastic pass is
deterministic given the rules and the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from popplast.core.individual import Individual, individual_id
from popplast.strategies.es import ESState
from popplast.strategies.es_search import ESSearch, ESSearchState


@dataclass(frozen=True)
class RuleSearchState(ESSearchState):
    """ESSearchState plus the current generation's training batch (indices into the training split)."""

    batch: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "batch": list(self.batch)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RuleSearchState":
        base = ESSearchState.from_dict(data)
        return cls(**base.__dict__, batch=tuple(int(i) for i in data.get("batch", ())))


@dataclass(frozen=True)
class RuleSearch(ESSearch):
    """Settings: `es` over the rule vector's dimensions; batches of `batch_size` from `train_size` samples."""

    train_size: int = 0
    batch_size: int = 0

    def init(self) -> RuleSearchState:
        return RuleSearchState()

    def state_from_dict(self, data: Mapping[str, Any]) -> RuleSearchState:
        return RuleSearchState.from_dict(data)

    def context(self, state: RuleSearchState) -> dict[str, Any]:
        """What every evaluation of the current generation is given besides its genome: the shared batch."""
        return {"batch": state.batch}

    def ask(self, state: Any, rng: np.random.Generator) -> tuple[tuple[Individual, ...], RuleSearchState]:
        state.require_complete()
        es_state = self.es.init(rng) if state.es is None else ESState.from_dict(dict(state.es))
        vectors, es_state = self.es.ask(es_state, rng)
        batch = rng.choice(self.train_size, size=self.batch_size, replace=False)
        generation = state.generation + 1
        population = tuple(
            Individual(individual_id(generation, slot), tuple(v.tolist()), generation, operator="es-sample")
            for slot, v in enumerate(vectors)
        )
        es = es_state.to_dict()
        return population, replace(
            state, generation=generation, population=population, fitness={}, es=es, batch=tuple(int(i) for i in batch)
        )

    def tell(self, state: Any, fitness: Mapping[str, float | None]) -> tuple[RuleSearchState, dict[str, float]]:
        previous = state.es["mean"] if state.es is not None else None
        state, metrics = super().tell(state, fitness)
        if metrics and previous is not None:
            step = np.asarray(state.es["mean"]) - np.asarray(previous)
            metrics["mean_update_norm"] = float(np.linalg.norm(step))  # the lineage edge between generations
        return state, metrics


def rules_of(state: RuleSearchState) -> tuple[np.ndarray, np.ndarray | None, float]:
    """The search's answer (the ES's mean), the best vector it evaluated and that vector's fitness."""
    es = ESState.from_dict(dict(state.es or {}))
    return es.mean, es.best, float(es.best_fitness)
