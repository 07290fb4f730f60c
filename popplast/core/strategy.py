"""The Strategy protocol every search method implements, so that one loop (popplast.execution.search) runs
them all: GA, Gen-Soup, PBT, the Optuna samplers and the evolution strategies.

Settings live on the strategy object (a frozen dataclass); everything a search changes lives in its state,
plain data that `to_dict` / `state_from_dict` round-trip through JSON (the checkpoint). `ask` draws all its
randomness from the generator it is given, so the same seed gives the same individuals.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol

import numpy as np

from popplast.core.individual import Individual


class StrategyState(Protocol):
    generation: int  # of the individuals asked last; −1 before the first ask
    best: Individual | None
    best_fitness: float | None
    evaluations: int  # results told over the whole search

    def to_dict(self) -> dict[str, Any]: ...


class Strategy(Protocol):
    name: str
    # True when a child starts from its parents' trained states (Gen-Soup, PBT): the loop then keeps the
    # states the next generation may inherit and hands each child its parents' (individual.parent_ids with
    # individual.fusion_weights)
    inherits: bool

    def init(self) -> Any: ...

    def ask(self, state: Any, rng: np.random.Generator) -> tuple[tuple[Individual, ...], Any]:
        """The next generation's individuals, with their lineage and seeds, and the state that awaits them."""
        ...

    def tell(self, state: Any, fitness: Mapping[str, float | None]) -> tuple[Any, dict[str, float]]:
        """Results by individual id, in any order and any number of calls (None or NaN: failed); returns the
        new state and, once the generation is complete, its summary metrics (else {})."""
        ...

    def state_from_dict(self, data: Mapping[str, Any]) -> Any: ...


def is_async(strategy: Any) -> bool:
    """A strategy without generations (`schedule = "async"`): asked one individual at a time, when a worker is
    free (execution/search.py); every other strategy is asked whole generations."""
    return getattr(strategy, "schedule", "generational") == "async"
