"""Islands (ALGORITHMS.md §9; Propulate, Taubert et al. 2023): K steady-state sub-populations evolving
asynchronously on the same pool of workers, with migrants copied between them.

A free worker breeds for the islands in turn (birth b for island b mod K), each island with its own
members, parents and replacement (strategies/steady_state.py). Every `migration_interval` results an island has
taken in, it sends copies of its `migrants` best members to its neighbours (`ring`: the next island;
`complete`: every other one). A migrant keeps its id (and, for Gen-Soup, its weights) and joins the
receiving island as that island's newest member, so the children it has there name it as a parent: the
lineage's migration edges are the parent links between islands (`popplast.island` on every run).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from popplast.core.individual import Individual, individual_id
from popplast.strategies.ga import generation_metrics
from popplast.strategies.operators import as_told, best_held, first, improves, kept_best, ranking, summary_values
from popplast.strategies.steady_state import SteadyStateGA, SteadyStateState, shared_dict, shared_fields

TOPOLOGIES = ("ring", "complete")


@dataclass(frozen=True)
class IslandsState:
    islands: tuple[SteadyStateState, ...] = ()
    island_of: Mapping[str, int] = field(default_factory=dict)  # the in-flight individuals' islands
    taken: tuple[int, ...] = ()  # results each island has taken in since its last migration
    migrations: int = 0
    births: int = 0
    best: Individual | None = None
    best_fitness: float | None = None
    evaluations: int = 0
    cohort: tuple[float | None, ...] = ()
    generation: int = -1
    best_told: Any = None  # several objectives: the best's vector (operators.answer_key ranks by it)

    @property
    def members(self) -> tuple[Individual, ...]:
        seen: dict[str, Individual] = {}
        for island in self.islands:
            seen.update({m.id: m for m in island.members})
        return tuple(seen.values())

    @property
    def in_flight(self) -> tuple[Individual, ...]:
        return tuple(m for island in self.islands for m in island.in_flight)

    def to_dict(self) -> dict[str, Any]:
        return {
            "islands": [i.to_dict() for i in self.islands],
            "island_of": dict(self.island_of),
            "taken": list(self.taken),
            "migrations": self.migrations,
            "births": self.births,
            **{k: v for k, v in shared_dict(self).items() if k != "in_flight"},  # the islands hold them
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "IslandsState":
        return cls(
            islands=tuple(SteadyStateState.from_dict(d) for d in data["islands"]),
            island_of={k: int(v) for k, v in data["island_of"].items()},
            taken=tuple(int(v) for v in data["taken"]),
            migrations=int(data["migrations"]),
            births=int(data["births"]),
            **{k: v for k, v in shared_fields({**data, "in_flight": []}).items() if k != "in_flight"},
        )


@dataclass(frozen=True)
class Islands:
    """`island`: the steady-state GA (or Gen-Soup) each island runs, with the population of one island (the
    search's population / K); `count`: K."""

    island: SteadyStateGA
    count: int
    migration_interval: int = 10
    topology: str = "ring"
    migrants: int = 1
    schedule = "async"

    def __post_init__(self) -> None:
        if self.count < 2 or self.topology not in TOPOLOGIES or self.migrants < 1 or self.migration_interval < 1:
            raise ValueError(f"bad island settings: {self}")

    @property
    def name(self) -> str:
        return self.island.name

    @property
    def inherits(self) -> bool:
        return self.island.inherits

    @property
    def population(self) -> int:
        return self.island.population * self.count

    def init(self) -> IslandsState:
        return IslandsState(islands=(self.island.init(),) * self.count, taken=(0,) * self.count)

    def state_from_dict(self, data: Mapping[str, Any]) -> IslandsState:
        return IslandsState.from_dict(data)

    def ask(self, state: IslandsState, rng: np.random.Generator) -> tuple[tuple[Individual, ...], Any]:
        k = state.births % self.count
        (child,), inner = self.island.ask(state.islands[k], rng)
        cohort, slot = divmod(state.births, self.population)
        child = replace(child, id=individual_id(cohort, slot), generation=cohort)  # ids over all islands
        inner = replace(inner, in_flight=inner.in_flight[:-1] + (child,))
        islands = state.islands[:k] + (inner,) + state.islands[k + 1 :]
        island_of = {**state.island_of, child.id: k}
        return (child,), replace(
            state, islands=islands, island_of=island_of, births=state.births + 1, generation=cohort
        )

    def tell(self, state: IslandsState, fitness: Mapping[str, float | None]) -> tuple[Any, dict[str, float]]:
        islands, taken, island_of = list(state.islands), list(state.taken), dict(state.island_of)
        best, best_fitness, cohort, migrations = state.best, state.best_fitness, list(state.cohort), state.migrations
        held = best_held(state)
        for key, value in fitness.items():
            k = island_of.pop(key)  # only the in-flight are routed: the told need no entry
            child = next(m for m in islands[k].in_flight if m.id == key)
            islands[k], _ = self.island.tell(islands[k], {key: value})
            v = as_told(value)
            cohort.append(first(v))
            if improves(v, held):
                best, best_fitness, held = child, first(v), v
            taken[k] += 1
            if taken[k] >= self.migration_interval:
                taken[k] = 0
                islands, sent = self._migrate(islands, k)
                migrations += sent
        metrics: dict[str, float] = {}
        evaluations = state.evaluations + len(fitness)
        if len(cohort) >= self.population:
            values = summary_values([v for island in islands for v in island.fitness.values()])
            metrics = generation_metrics(evaluations // self.population - 1, values, best_fitness)
            metrics["failed"] = float(sum(v is None for v in cohort))
            metrics["migrations"] = float(migrations)
            cohort = []
        return (
            replace(
                state,
                islands=tuple(islands),
                island_of=island_of,
                taken=tuple(taken),
                migrations=migrations,
                best=best,
                best_fitness=best_fitness,
                evaluations=evaluations,
                cohort=tuple(cohort),
                best_told=kept_best(held),
            ),
            metrics,
        )

    def _migrate(self, islands: list[SteadyStateState], k: int) -> tuple[list[SteadyStateState], int]:
        """Copies of island k's best members into its neighbours (none a neighbour holds already); with several
        objectives the best by front, then crowding, over the island."""
        source = islands[k]
        score = dict(zip((m.id for m in source.members), ranking([source.fitness[m.id] for m in source.members])))
        ranked = sorted(source.members, key=lambda m: (-score[m.id], m.id))[: self.migrants]
        targets = [(k + 1) % self.count] if self.topology == "ring" else [j for j in range(self.count) if j != k]
        sent = 0
        for j in targets:
            members, values = list(islands[j].members), dict(islands[j].fitness)
            for migrant in ranked:
                if migrant.id not in values:
                    self.island.join(members, values, migrant, source.fitness[migrant.id])
                    sent += 1
            islands[j] = replace(islands[j], members=tuple(members), fitness=values)
        return islands, sent

    def island_tag(self, state: IslandsState, individual_id: str) -> str:
        return str(state.island_of.get(individual_id, ""))
