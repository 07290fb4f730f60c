"""Differential evolution (Storn & Price 1997, DE/rand/1/bin) as a strategy of one's own: popplast does not
ship it; this file is what a user writes to run it in `popplast run` and `popplast compare`
(moons_de.yaml beside it names it).

Every generation makes one trial vector per member of the population (the target): the difference of two
other random members, scaled by F, added to a third (mutation), then each gene taken from that with
probability CR and from the target otherwise, one gene always (binomial crossover). The trial replaces its
target when it is at least as fit (selection; a tie goes to the trial, so the population moves on plateaus).
Genes live in [0, 1], popplast's encoding of every space; a mutant outside is reflected back in. popplast
maximises fitness; a failed evaluation (None or NaN) loses every comparison.

    strategy: {method: de:DifferentialEvolution, population: 8, generations: 5, seed: 0, F: 0.7, CR: 0.9}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from popplast import Individual


@dataclass(frozen=True)
class DEState:
    """Everything the search changes, as plain data (its `to_dict` is the checkpoint's JSON)."""

    generation: int = -1
    members: tuple[Individual, ...] = ()  # the population: each slot's best so far
    member_fitness: tuple[float, ...] = ()
    asked: tuple[Individual, ...] = ()  # this generation's trial vectors, by slot
    told: Mapping[str, float] = field(default_factory=dict)
    best: Individual | None = None
    best_fitness: float | None = None
    evaluations: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "members": [m.to_dict() for m in self.members],
            "member_fitness": [_json(f) for f in self.member_fitness],
            "asked": [a.to_dict() for a in self.asked],
            "told": {k: _json(v) for k, v in self.told.items()},
            "best": self.best.to_dict() if self.best else None,
            "best_fitness": self.best_fitness,
            "evaluations": self.evaluations,
        }


@dataclass(frozen=True)
class DifferentialEvolution:
    n_genes: int
    population: int
    F: float = 0.7  # differential weight
    CR: float = 0.9  # crossover probability

    name = "differential-evolution"
    inherits = False  # each trial trains from scratch
    stoppable = True  # a result a stopper cut short is its last reported value: DE compares it like any other

    def __post_init__(self) -> None:
        if self.population < 4:
            raise ValueError(
                f"DE/rand/1 draws three members besides the target: population >= 4, got {self.population}"
            )
        if not 0 < self.F <= 2:
            raise ValueError(f"F must lie in (0, 2], got {self.F}")
        if not 0 <= self.CR <= 1:
            raise ValueError(f"CR must lie in [0, 1], got {self.CR}")

    def init(self) -> DEState:
        return DEState()

    def state_from_dict(self, data: Mapping[str, Any]) -> DEState:
        return DEState(
            generation=int(data["generation"]),
            members=tuple(Individual.from_dict(m) for m in data["members"]),
            member_fitness=tuple(_float(f) for f in data["member_fitness"]),
            asked=tuple(Individual.from_dict(a) for a in data["asked"]),
            told={k: _float(v) for k, v in data["told"].items()},
            best=Individual.from_dict(data["best"]) if data["best"] else None,
            best_fitness=data["best_fitness"],
            evaluations=int(data["evaluations"]),
        )

    def ask(self, state: DEState, rng: np.random.Generator) -> tuple[tuple[Individual, ...], DEState]:
        if len(state.told) < len(state.asked):
            raise RuntimeError(f"generation {state.generation} is not complete")
        state = _selected(state)
        generation = state.generation + 1
        if not state.members:
            asked = tuple(
                Individual(f"g{generation:03d}-i{i:03d}", tuple(rng.random(self.n_genes)), generation, seed=_seed(rng))
                for i in range(self.population)
            )
        else:
            asked = tuple(self._trial(state, i, generation, rng) for i in range(self.population))
        return asked, replace(state, generation=generation, asked=asked, told={})

    def _trial(self, state: DEState, i: int, generation: int, rng: np.random.Generator) -> Individual:
        others = [j for j in range(self.population) if j != i]
        r1, r2, r3 = rng.choice(others, size=3, replace=False)
        x = [np.array(state.members[j].genome) for j in (i, r1, r2, r3)]
        mutant = _reflected(x[1] + self.F * (x[2] - x[3]))
        take = rng.random(self.n_genes) < self.CR
        take[rng.integers(self.n_genes)] = True  # at least one gene from the mutant
        genome = np.where(take, mutant, x[0])
        parents = tuple(state.members[j].id for j in (i, r1, r2, r3))
        ident = f"g{generation:03d}-i{i:03d}"
        return Individual(
            ident, tuple(float(g) for g in genome), generation, parents, "crossover+mutation", seed=_seed(rng)
        )

    def tell(self, state: DEState, fitness: Mapping[str, float | None]) -> tuple[DEState, dict[str, float]]:
        slots = {a.id for a in state.asked}
        told = dict(state.told)
        for key, value in fitness.items():
            if key not in slots:
                raise KeyError(f"{key!r} was not asked in generation {state.generation}")
            if key in told:
                raise ValueError(f"{key!r} was told twice")
            told[key] = -math.inf if value is None or not math.isfinite(value) else float(value)
        state = replace(state, told=told, evaluations=state.evaluations + len(fitness))
        if len(told) < len(state.asked):
            return state, {}
        values = [told[a.id] for a in state.asked]
        top = int(np.argmax(values))
        if math.isfinite(values[top]) and (state.best_fitness is None or values[top] > state.best_fitness):
            state = replace(state, best=state.asked[top], best_fitness=values[top])
        ok = [v for v in values if math.isfinite(v)]
        metrics = {"generation": float(state.generation), "failed": float(len(values) - len(ok))}
        if ok:
            metrics.update(best=max(ok), median=float(np.median(ok)), mean=float(np.mean(ok)))
        if state.best_fitness is not None:
            metrics["best_ever"] = state.best_fitness
        return state, metrics


def _selected(state: DEState) -> DEState:
    """The population after a told generation: each trial replaces its target when at least as fit."""
    if not state.asked:
        return state
    if not state.members:
        return replace(state, members=state.asked, member_fitness=tuple(state.told[a.id] for a in state.asked))
    members, fitness = list(state.members), list(state.member_fitness)
    for i, trial in enumerate(state.asked):
        if state.told[trial.id] >= fitness[i]:
            members[i], fitness[i] = trial, state.told[trial.id]
    return replace(state, members=tuple(members), member_fitness=tuple(fitness))


def _reflected(genome: np.ndarray) -> np.ndarray:
    """Back into [0, 1] by reflection at the bounds (a gene never sticks to a bound)."""
    folded = np.mod(genome, 2.0)
    return np.where(folded > 1.0, 2.0 - folded, folded)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _json(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float(value: float | None) -> float:
    return -math.inf if value is None else float(value)
