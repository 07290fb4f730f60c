"""Asynchronous PBT (Jaderberg et al. 2017; ALGORITHMS.md §9): each member is judged when its own segment
ends, against the latest scores of the whole population, not at a generation boundary.

When member i's segment finishes, its next one is asked as soon as a worker is free: if i's latest score
is in the bottom `quantile` of the members' latest scores, it exploits a member of the top `quantile`
drawn uniformly (that member's latest trained state, and its genes explored as popplast's PBT does,
strategies/pbt.py); else it goes on from its own state and genes. A member that has trained its `segments` is
done; with no member ready (the others still training) nothing is asked until one is. Member i's segment
s is `gSSS-iIII`, as in the generational PBT.

A failed segment counts as one of the member's segments and takes its number (ids are never asked twice):
the member ranks last and exploits a member whose latest segment succeeded; only when there is none does it
go on from its own last good state, or, without one, start afresh. No state is ever taken from a failed
segment (it has none).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from popplast.core.individual import Individual, individual_id
from popplast.strategies.ga import generation_metrics
from popplast.strategies.operators import (
    as_told,
    best_first,
    best_held,
    first,
    improves,
    kept_best,
    several,
    summary_values,
)
from popplast.strategies.pbt import PBT
from popplast.strategies.steady_state import shared_dict, shared_fields


@dataclass(frozen=True)
class AsyncPBTState:
    births: int = 0
    latest: Mapping[int, Individual] = field(default_factory=dict)  # each member's last segment that succeeded
    fitness: Mapping[int, Any] = field(default_factory=dict)  # its last segment's score or vector (None: failed)
    asked: Mapping[int, int] = field(default_factory=dict)  # segments asked of each member: the next one's number
    ready: tuple[int, ...] = ()  # members whose segment ended, in the order they ended
    started: int = 0  # members that have begun
    in_flight: tuple[Individual, ...] = ()
    best: Individual | None = None
    best_fitness: float | None = None
    evaluations: int = 0
    cohort: tuple[float | None, ...] = ()
    generation: int = -1
    best_told: Any = None  # several objectives: the best's vector (operators.answer_key ranks by it)

    @property
    def members(self) -> tuple[Individual, ...]:
        return tuple(self.latest[k] for k in sorted(self.latest))

    def to_dict(self) -> dict[str, Any]:
        return {
            "births": self.births,
            "latest": {str(k): v.to_dict() for k, v in self.latest.items()},
            "fitness": {str(k): v for k, v in self.fitness.items()},
            "asked": {str(k): v for k, v in self.asked.items()},
            "ready": list(self.ready),
            "started": self.started,
            **shared_dict(self),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AsyncPBTState":
        latest = {int(k): Individual.from_dict(v) for k, v in data["latest"].items()}
        shared = shared_fields(data)
        if "asked" in data:
            asked = {int(k): int(v) for k, v in data["asked"].items()}
        else:  # a checkpoint from before the count was kept: the segments told and in flight
            asked = {k: m.generation + 1 for k, m in latest.items()}
            for m in shared["in_flight"]:
                slot = int(m.id.rsplit("-i", 1)[1])
                asked[slot] = max(asked.get(slot, 0), m.generation + 1)
        return cls(
            births=int(data["births"]),
            latest=latest,
            fitness={int(k): v for k, v in data["fitness"].items()},
            asked=asked,
            ready=tuple(int(k) for k in data["ready"]),
            started=int(data["started"]),
            **shared,
        )


@dataclass(frozen=True)
class AsyncPBT:
    """`explorer`: popplast's PBT, whose quantile and explore step this uses; `segments` per member."""

    explorer: PBT
    segments: int
    warm: tuple[tuple[float, ...], ...] = ()  # genomes the first members start with (`warm_start:`)
    name = "pbt"
    inherits = True
    schedule = "async"

    @property
    def population(self) -> int:
        return self.explorer.population

    def init(self) -> AsyncPBTState:
        return AsyncPBTState()

    def state_from_dict(self, data: Mapping[str, Any]) -> AsyncPBTState:
        return AsyncPBTState.from_dict(data)

    def ask(self, state: AsyncPBTState, rng: np.random.Generator) -> tuple[tuple[Individual, ...], Any]:
        """The next segment of the member that is ready first, or a new member; () when none is ready."""
        if state.started < self.population:
            slot = state.started
            genome, parents, operator = rng.random(self.explorer.n_genes), tuple[str, ...](), "init"
            if slot < len(self.warm):
                genome, operator = np.asarray(self.warm[slot]), "warm"
            state = replace(state, started=slot + 1)
        elif state.ready:
            slot, state = state.ready[0], replace(state, ready=state.ready[1:])
            own = state.latest.get(slot)
            partner = self._exploited(state, slot, rng)
            if partner is not None:
                source = state.latest[partner]
                genome, parents, operator = (
                    self.explorer.explore(np.asarray(source.genome), rng),
                    (source.id,),
                    "exploit",
                )
            elif own is not None:
                genome, parents, operator = np.asarray(own.genome), (own.id,), "inherit"
            else:  # every segment of this member failed and no member has a state to give: afresh
                genome, parents, operator = rng.random(self.explorer.n_genes), (), "init"
        else:
            return (), state
        segment = state.asked.get(slot, 0)
        child = Individual(
            id=individual_id(segment, slot),
            genome=tuple(float(g) for g in genome),
            generation=segment,
            parent_ids=parents,
            operator=operator,
            fusion_weights=(1.0,) if parents else (),
            seed=int(rng.integers(0, 2**31 - 1)),
        )
        return (child,), replace(
            state,
            births=state.births + 1,
            in_flight=state.in_flight + (child,),
            generation=segment,
            asked={**state.asked, slot: segment + 1},
        )

    def _exploited(self, state: AsyncPBTState, slot: int, rng: np.random.Generator) -> int | None:
        """The top member `slot` copies when it is in the bottom quantile of the latest scores (a failed
        segment ranks last), else None. Only members whose latest segment succeeded are in the top."""
        slots = sorted(state.fitness)
        values = [state.fitness[k] for k in slots]
        n = len(slots)
        k = max(1, int(n * self.explorer.quantile))
        raw = np.array([-np.inf if v is None or several(values) else v for v in values], dtype=float)
        order = best_first(values, raw)  # with several objectives MO-PBT's order (ALGORITHMS.md §11)
        top = [slots[i] for i in order[:k] if values[i] is not None]
        bottom = {slots[i] for i in order[n - k :]}
        if slot not in bottom and state.fitness.get(slot) is not None:
            return None
        if not top:
            return None
        partner = top[int(rng.integers(len(top)))]
        return None if partner == slot else partner

    def tell(self, state: AsyncPBTState, fitness: Mapping[str, float | None]) -> tuple[Any, dict[str, float]]:
        flying = {m.id: m for m in state.in_flight}
        latest, scores, ready = dict(state.latest), dict(state.fitness), list(state.ready)
        best, best_fitness, cohort = state.best, state.best_fitness, list(state.cohort)
        held = best_held(state)
        for key, value in fitness.items():
            if key not in flying:
                raise KeyError(f"{key!r} was not asked for, or was told already")
            child = flying.pop(key)
            slot = int(key.rsplit("-i", 1)[1])
            v = as_told(value)
            cohort.append(first(v))
            scores[slot] = v
            if v is not None:  # a failed segment has no state: `latest` keeps the member's last good one
                latest[slot] = child
            if improves(v, held):
                best, best_fitness, held = child, first(v), v
            if child.generation + 1 < self.segments:
                ready.append(slot)
        metrics: dict[str, float] = {}
        evaluations = state.evaluations + len(fitness)
        if len(cohort) >= self.population:
            values = [v for v in summary_values(list(scores.values())) if v is not None]
            metrics = generation_metrics(evaluations // self.population - 1, values, best_fitness)
            metrics["failed"] = float(sum(v is None for v in cohort))
            cohort = []
        new = replace(
            state,
            latest=latest,
            fitness=scores,
            ready=tuple(ready),
            in_flight=tuple(flying.values()),
            best=best,
            best_fitness=best_fitness,
            evaluations=evaluations,
            cohort=tuple(cohort),
            best_told=kept_best(held),
        )
        return new, metrics
