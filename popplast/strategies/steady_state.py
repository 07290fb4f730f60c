"""The steady-state GA (ALGORITHMS.md §9): no generations to wait for. Whenever a worker is free the loop
asks for one child, bred from the population as it stands then; a result joins the population at once and
one member leaves, so the population keeps its size.

- Parents: two of Algorithm 1's tournaments over the current population (a uniformly drawn member meets a
  uniformly drawn opponent; the strictly better goes through), min–max normalised over the current
  population. The child: Gen-CNN's fitness-weighted crossover per gene with probability pc, then per-gene
  uniform mutation with pm (strategies/operators.py). The first `population` births are uniform genomes.
- Replacement: `aging` (regularized evolution, Real et al. 2019: the oldest member leaves, whatever its
  fitness) or `worst` (classic steady state: the lowest fitness leaves; the oldest of equals). A failed
  child never joins.
- Ids: birth b is `g{b // P}-i{b % P}` (its "generation" is the cohort of P births it belongs to: rows of
  the lineage drawing, not a barrier).

Which parents a child gets depends on which results arrived before it was asked: with several workers that
is the order evaluations finish, so a seed does not fix the lineage. Told in the order they were asked (the
loop's replay mode, execution/search.py) the same seed gives the same lineage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from popplast.core.individual import Individual, individual_id
from popplast.strategies.ga import generation_metrics, operator_name
from popplast.strategies.operators import (
    as_told,
    best_held,
    first,
    improves,
    kept_best,
    ranking,
    selection_and_ev,
    summary_values,
    uniform_mutation,
    weighted_crossover,
)

REPLACEMENTS = ("aging", "worst")


@dataclass(frozen=True)
class SteadyStateState:
    """Plain data: the members (oldest first) with their fitness, the individuals asked and not yet told,
    the number of births, the best ever and the count of results told."""

    births: int = 0
    members: tuple[Individual, ...] = ()
    fitness: Mapping[str, Any] = field(default_factory=dict)  # of the members: numbers or vectors (as_told)
    in_flight: tuple[Individual, ...] = ()
    best: Individual | None = None
    best_fitness: float | None = None
    evaluations: int = 0
    cohort: tuple[float | None, ...] = ()  # results since the last summary (every P results)
    best_told: Any = None  # several objectives: the best's vector (operators.answer_key ranks by it)
    generation: int = -1  # the cohort of the individual asked last: the loop's and the progress's row

    def to_dict(self) -> dict[str, Any]:
        return {
            "births": self.births,
            "members": [m.to_dict() for m in self.members],
            "fitness": dict(self.fitness),
            **shared_dict(self),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SteadyStateState":
        return cls(
            births=int(data["births"]),
            members=tuple(Individual.from_dict(d) for d in data["members"]),
            fitness={k: as_told(v) for k, v in data["fitness"].items()},
            **shared_fields(data),
        )


def shared_dict(state: Any) -> dict[str, Any]:
    """What every asynchronous state holds beside its own: the in-flight individuals, the best, the counts."""
    return {
        "in_flight": [m.to_dict() for m in state.in_flight],
        "best": state.best.to_dict() if state.best else None,
        "best_fitness": state.best_fitness,
        "evaluations": state.evaluations,
        "cohort": list(state.cohort),
        "generation": state.generation,
        **({"best_told": list(state.best_told)} if state.best_told is not None else {}),
    }


def shared_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """`shared_dict`'s output read back as constructor arguments."""
    return dict(
        in_flight=tuple(Individual.from_dict(d) for d in data["in_flight"]),
        best=Individual.from_dict(data["best"]) if data.get("best") else None,
        best_fitness=data.get("best_fitness"),
        evaluations=int(data.get("evaluations", 0)),
        cohort=tuple(data.get("cohort", ())),
        generation=int(data.get("generation", -1)),
        best_told=data.get("best_told"),
    )


@dataclass(frozen=True)
class SteadyStateGA:
    n_genes: int
    population: int
    crossover: Sequence[float]
    mutation: Sequence[float]
    replacement: str = "aging"
    warm: tuple[tuple[float, ...], ...] = ()  # genomes the first births start with (`warm_start:`)
    name = "ga"
    inherits = False
    schedule = "async"  # the loop asks one individual whenever a worker is free

    def __post_init__(self) -> None:
        if self.population < 2:
            raise ValueError("a GA needs a population of at least 2")
        if self.replacement not in REPLACEMENTS:
            raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {self.replacement!r}")

    def init(self) -> SteadyStateState:
        return SteadyStateState()

    def state_from_dict(self, data: Mapping[str, Any]) -> SteadyStateState:
        return SteadyStateState.from_dict(data)

    def ask(self, state: SteadyStateState, rng: np.random.Generator) -> tuple[tuple[Individual, ...], Any]:
        """One child (a tuple of one): random while the first P births last or fewer than two members live."""
        birth = state.births
        cohort, slot = divmod(birth, self.population)
        fusion: tuple[float, ...] = ()
        if birth < self.population or len(state.members) < 2:
            genome, parents, operator = rng.random(self.n_genes), tuple[str, ...](), "init"
            if birth < min(len(self.warm), self.population):
                genome, operator = np.asarray(self.warm[birth]), "warm"
        else:
            genome, parents, operator, fusion = self._child(state, rng)
        child = Individual(
            id=individual_id(cohort, slot),
            genome=tuple(float(g) for g in genome),
            generation=cohort,
            parent_ids=parents,
            operator=operator,
            fusion_weights=fusion,
            seed=int(rng.integers(0, 2**31 - 1)),
        )
        return (child,), replace(state, births=birth + 1, in_flight=state.in_flight + (child,), generation=cohort)

    def _child(
        self, state: SteadyStateState, rng: np.random.Generator
    ) -> tuple[np.ndarray, tuple[str, ...], str, tuple[float, ...]]:
        members = state.members
        score, ev = selection_and_ev([state.fitness[m.id] for m in members])
        i, j = _tournament(score, rng), _tournament(score, rng)
        genomes = np.array([m.genome for m in members])
        cross = rng.random(self.n_genes) < np.asarray(self.crossover, dtype=float)
        child = genomes[i].copy()
        child[cross] = weighted_crossover(genomes[i][cross], genomes[j][cross], ev[i], ev[j])
        child, mutated = uniform_mutation(child, np.asarray(self.mutation, dtype=float), rng)
        return self._lineage(members, genomes, score, ev, i, j, child, bool(cross.any()), bool(mutated.any()))

    def _lineage(
        self,
        members: Sequence[Individual],
        genomes: np.ndarray,
        score: np.ndarray,
        ev: np.ndarray,
        i: int,
        j: int,
        child: np.ndarray,
        crossed: bool,
        mutated: bool,
    ) -> tuple[np.ndarray, tuple[str, ...], str, tuple[float, ...]]:
        ids = (members[i].id, members[j].id) if crossed else (members[i].id,)
        return child, tuple(dict.fromkeys(ids)), operator_name(crossed, mutated), ()

    def tell(self, state: SteadyStateState, fitness: Mapping[str, float | None]) -> tuple[Any, dict[str, float]]:
        """Results in any order; each joins at once. Every P results the population's summary is returned
        (the history's rows), else {}."""
        flying = {m.id: m for m in state.in_flight}
        members, values = list(state.members), dict(state.fitness)
        best, best_fitness, cohort = state.best, state.best_fitness, list(state.cohort)
        held = best_held(state)
        for key, value in fitness.items():
            if key not in flying:
                raise KeyError(f"{key!r} was not asked for, or was told already")
            child = flying.pop(key)
            v = as_told(value)
            cohort.append(first(v))
            if v is None:
                continue
            self.join(members, values, child, v)
            if improves(v, held):
                best, best_fitness, held = child, first(v), v
        metrics: dict[str, float] = {}
        evaluations = state.evaluations + len(fitness)
        if len(cohort) >= self.population:
            # the summary of the last P results: failures among them, the population's best, median, mean
            population = summary_values(list(values.values()))
            metrics = generation_metrics(evaluations // self.population - 1, population, best_fitness)
            metrics["failed"] = float(sum(v is None for v in cohort))
            cohort = []
        return (
            replace(
                state,
                members=tuple(members),
                fitness=values,
                in_flight=tuple(flying.values()),
                best=best,
                best_fitness=best_fitness,
                evaluations=evaluations,
                cohort=tuple(cohort),
                best_told=kept_best(held),
            ),
            metrics,
        )

    def join(self, members: list[Individual], values: dict[str, Any], newcomer: Individual, value: Any) -> None:
        """`newcomer` joins (a child, or a migrant from another island); past the population size the oldest
        (aging) or the worst leaves (with several objectives the last by front, then crowding). In place."""
        members.append(newcomer)
        values[newcomer.id] = value
        if len(members) > self.population:
            worst = int(np.argmin(ranking([values[m.id] for m in members])))
            leaving = 0 if self.replacement == "aging" else worst
            del values[members.pop(leaving).id]


def _tournament(score: np.ndarray, rng: np.random.Generator) -> int:
    """Algorithm 1 for one slot: a uniformly drawn member meets a uniformly drawn opponent; it goes through
    only if strictly better."""
    i, opponent = rng.integers(0, len(score), size=2)
    return int(i) if score[i] > score[opponent] else int(opponent)


@dataclass(frozen=True)
class SteadyStateSoup(SteadyStateGA):
    """Asynchronous Gen-Soup: the steady-state GA whose child starts from its parents' trained weights, as
    Gen-Soup's (strategies/gensoup.py): the architecture gene and the weights of the better parent, or the
    fitness-weighted fusion of both parents' when they share the architecture. Its parents are members when
    it is asked; the loop keeps a member's weights while it lives or an in-flight child needs them."""

    arch_index: int | None = None
    arch_choices: int = 1
    fuse: bool = True  # False: the better parent's weights only (GenSoup.fuse)
    name = "gensoup"
    inherits = True

    def _lineage(
        self,
        members: Sequence[Individual],
        genomes: np.ndarray,
        score: np.ndarray,
        ev: np.ndarray,
        i: int,
        j: int,
        child: np.ndarray,
        crossed: bool,
        mutated: bool,
    ) -> tuple[np.ndarray, tuple[str, ...], str, tuple[float, ...]]:
        better, other = (i, j) if score[i] >= score[j] else (j, i)
        if self.arch_index is not None:  # the architecture goes with the weights
            child[self.arch_index] = genomes[better][self.arch_index]
        if i != j and self._architecture(genomes[i]) == self._architecture(genomes[j]):
            total = ev[better] + ev[other]
            w = (0.5, 0.5) if total == 0 else (ev[better] / total, ev[other] / total)
            pair = (members[better].id, members[other].id)
            if w[1] > 0 and self.fuse:
                return child, pair, "fusion", (float(w[0]), float(w[1]))
            return child, pair, "inherit", (1.0, 0.0)
        if crossed and i != j:
            return child, (members[better].id, members[other].id), "inherit", (1.0, 0.0)
        return child, (members[better].id,), "inherit", (1.0,)

    def _architecture(self, genome: np.ndarray) -> int:
        if self.arch_index is None:
            return 0
        return min(math.floor(genome[self.arch_index] * self.arch_choices), self.arch_choices - 1)


def weights_kept(state: SteadyStateState) -> set[str]:
    """Whose trained weights an asynchronous Gen-Soup still needs: the members', the in-flight children's
    parents', and the best's (the search's answer)."""
    kept = {m.id for m in state.members} | {p for child in state.in_flight for p in child.parent_ids}
    return kept | ({state.best.id} if state.best else set())
