"""The evolution strategies (elitist, openai, snes; popplast.strategies.es) as search strategies over any space.

An ES moves real vectors; a genome holds genes in [0, 1]. The ES searches the genes' logits: an individual's
genome is the logistic function of its ES vector, so every vector the ES draws is a valid genome and the
ES's own initialisation (N(0, 1)) covers the middle of every gene's range. Integer and categorical genes
decode their unit value as for every method (bins of equal width). σ and the learning rate are the ES's own
unless the search file sets `strategy.sigma` / `strategy.learning_rate`; they act on logits.

A generation is the ES's population; results are told to the ES in the individuals' order once the
generation is complete, whatever order they finished in. Individuals have no parents in the lineage: each
is drawn from the ES's distribution (operator "es-sample"), which the state carries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from popplast.core.individual import Individual, individual_id
from popplast.strategies.es import ESState
from popplast.strategies.ga import GAState, record


@dataclass(frozen=True)
class ESSearchState(GAState):
    """GAState plus the ES's own state (ESState.to_dict(); None before the first ask)."""

    es: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "es": dict(self.es) if self.es is not None else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ESSearchState":
        return cls(**GAState.fields_from(data), es=data.get("es"))


def genome_of(vector: np.ndarray) -> tuple[float, ...]:
    return tuple(float(g) for g in 1.0 / (1.0 + np.exp(-np.asarray(vector, dtype=float))))


@dataclass(frozen=True)
class ESSearch:
    """Settings: `es`, an ElitistES, OpenAIES or SNES over as many dimensions as the space has genes."""

    es: Any
    inherits = False

    @property
    def name(self) -> str:
        return str(self.es.name)

    def init(self) -> ESSearchState:
        return ESSearchState()

    def state_from_dict(self, data: Mapping[str, Any]) -> ESSearchState:
        return ESSearchState.from_dict(data)

    def ask(self, state: ESSearchState, rng: np.random.Generator) -> tuple[tuple[Individual, ...], ESSearchState]:
        state.require_complete()
        es_state = self.es.init(rng) if state.es is None else ESState.from_dict(dict(state.es))
        vectors, es_state = self.es.ask(es_state, rng)
        generation = state.generation + 1
        seeds = rng.integers(0, 2**31 - 1, size=len(vectors))
        population = tuple(
            Individual(individual_id(generation, slot), genome_of(v), generation, operator="es-sample", seed=int(s))
            for slot, (v, s) in enumerate(zip(vectors, seeds))
        )
        return population, replace(
            state, generation=generation, population=population, fitness={}, es=es_state.to_dict()
        )

    def tell(self, state: ESSearchState, fitness: Mapping[str, float | None]) -> tuple[ESSearchState, dict[str, float]]:
        state, metrics = record(state, fitness)
        if not state.complete or state.es is None:
            return state, metrics
        told = np.array([np.nan if f is None else f for f in (state.fitness[i.id] for i in state.population)])
        es_state, es_metrics = self.es.tell(ESState.from_dict(dict(state.es)), told)
        extra = {k: v for k, v in es_metrics.items() if k not in metrics and k != "best_ever"}
        return replace(state, es=es_state.to_dict()), {**metrics, **extra}
