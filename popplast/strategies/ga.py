"""Gen-CNN genetic algorithm (García Aguirre 2024, thesis ch. 3, Algorithms 1 and 2) as ask/tell.

Deviations from the thesis code (ALGORITHMS.md §1): failed evaluations rank worst and are never elite;
a child's parents are recorded only when they gave it genes (no gene crossed: the partner is not a parent).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence, TypeVar

import numpy as np

from popplast.core.individual import Individual, individual_id
from popplast.strategies.operators import (
    as_told,
    best_held,
    best_index,
    first,
    improves,
    ranking,
    selection_and_ev,
    selection_score,
    several,
    summary_values,
    tournament,
    uniform_mutation,
    weighted_crossover,
)


@dataclass(frozen=True)
class GAState:
    """Everything a GA search changes; plain data, so `to_dict` / `from_dict` round-trip through JSON.

    Attributes:
        generation: the generation of `population`, −1 before the first ask.
        population: the individuals asked for last.
        fitness: results told so far for `population`, by id; None marks a failed evaluation.
        best: the best individual ever evaluated (the first one on ties), and its fitness.
        evaluations: results told over the whole search.
    """

    generation: int = -1
    population: tuple[Individual, ...] = ()
    fitness: Mapping[str, Any] = field(default_factory=dict)  # a number, or a vector (operators.told)
    best: Individual | None = None
    best_fitness: float | None = None
    evaluations: int = 0
    # several objectives with elitism: NSGA-II's survivors, the best `population` of the last pool and the
    # last generation by front, then crowding (ALGORITHMS.md §11), with their told vectors; the next
    # generation is bred from them
    pool: tuple[Individual, ...] = ()
    pool_fitness: Mapping[str, Any] = field(default_factory=dict)
    best_told: Any = None  # several objectives: the best's vector (operators.answer_key ranks by it)

    @property
    def complete(self) -> bool:
        return all(ind.id in self.fitness for ind in self.population)

    def require_complete(self) -> None:
        """Before the next ask: every individual asked for has a result."""
        if self.generation >= 0 and not self.complete:
            missing = [ind.id for ind in self.population if ind.id not in self.fitness]
            raise RuntimeError(f"generation {self.generation} is not complete; no result for {missing}")

    def fitness_array(self) -> np.ndarray:
        """What selection ranks by in population order, NaN for failures: the fitness, or with several
        objectives the utility of front and crowding (operators.ranking)."""
        return ranking([self.fitness[ind.id] for ind in self.population])

    def breeders(self) -> tuple[tuple[Individual, ...], list[Any]]:
        """Who the next generation is bred from, with their told values: NSGA-II's survivors when there are
        any, else the last generation."""
        if self.pool:
            return self.pool, [self.pool_fitness[ind.id] for ind in self.pool]
        return self.population, [self.fitness[ind.id] for ind in self.population]

    def to_dict(self) -> dict[str, Any]:
        pool = {"pool": [i.to_dict() for i in self.pool], "pool_fitness": dict(self.pool_fitness)} if self.pool else {}
        if self.best_told is not None:
            pool["best_told"] = list(self.best_told)
        return {
            "generation": self.generation,
            "population": [ind.to_dict() for ind in self.population],
            "fitness": {ind.id: self.fitness[ind.id] for ind in self.population if ind.id in self.fitness},
            "best": self.best.to_dict() if self.best else None,
            "best_fitness": self.best_fitness,
            "evaluations": self.evaluations,
            **pool,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GAState":
        return cls(**GAState.fields_from(data))

    @staticmethod
    def fields_from(data: Mapping[str, Any]) -> dict[str, Any]:
        """GAState's own fields read from `to_dict`'s output: what a subclass's from_dict builds on."""
        return dict(
            generation=int(data["generation"]),
            population=tuple(Individual.from_dict(d) for d in data["population"]),
            fitness=dict(data["fitness"]),
            best=Individual.from_dict(data["best"]) if data.get("best") else None,
            best_fitness=data.get("best_fitness"),
            evaluations=int(data.get("evaluations", 0)),
            pool=tuple(Individual.from_dict(d) for d in data.get("pool", ())),
            pool_fitness=dict(data.get("pool_fitness", {})),
            best_told=data.get("best_told"),
        )


@dataclass(frozen=True)
class GenCNN:
    """Settings of the Gen-CNN GA; the changing state lives in GAState.

    Attributes:
        n_genes: genome length.
        population: individuals per generation (thesis: 50).
        crossover: per-gene crossover probability pc (thesis: [0, 0, 0, 0.9, 0.9]).
        mutation: per-gene mutation probability pm (thesis: [0.4, 0.4, 0.4, 0.2, 0.2]).
        elitism: the best of the selected population replaces the last child.
    """

    n_genes: int
    population: int
    crossover: Sequence[float]
    mutation: Sequence[float]
    elitism: bool = True
    warm: tuple[tuple[float, ...], ...] = ()  # genomes the first generation starts with (`warm_start:`)
    name = "ga"
    inherits = False

    def __post_init__(self) -> None:
        if self.population < 2:
            raise ValueError("a GA needs a population of at least 2")
        for label, probs in (("crossover", self.crossover), ("mutation", self.mutation)):
            if len(probs) != self.n_genes:
                raise ValueError(f"{label} has {len(probs)} probabilities for {self.n_genes} genes")

    def init(self) -> GAState:
        return GAState()

    def state_from_dict(self, data: Mapping[str, Any]) -> GAState:
        return GAState.from_dict(data)

    def ask(self, state: GAState, rng: np.random.Generator) -> tuple[tuple[Individual, ...], GAState]:
        state.require_complete()
        generation = state.generation + 1
        if generation == 0:
            genomes = rng.random((self.population, self.n_genes))
            made = [((), "init")] * self.population
            for slot, genome in enumerate(self.warm[: self.population]):  # drawn all the same: the stream goes on alike
                genomes[slot], made[slot] = genome, ((), "warm")
        else:
            genomes, made = self._offspring(state, rng)
        seeds = rng.integers(0, 2**31 - 1, size=len(genomes))
        # made: (parent ids, operator) or (parent ids, operator, fusion weights) per child
        population = tuple(
            Individual(
                id=individual_id(generation, slot),
                genome=tuple(float(g) for g in genome),
                generation=generation,
                parent_ids=m[0],
                operator=m[1],
                fusion_weights=tuple(m[2]) if len(m) > 2 else (),
                seed=int(seed),
            )
            for slot, (genome, m, seed) in enumerate(zip(genomes, made, seeds))
        )
        return population, replace(state, generation=generation, population=population, fitness={})

    def _offspring(self, state: GAState, rng: np.random.Generator) -> tuple[np.ndarray, list]:
        parents, values = state.breeders()
        score, ev = selection_and_ev(values)
        genome = np.array([ind.genome for ind in parents])
        pc = np.asarray(self.crossover, dtype=float)
        pm = np.asarray(self.mutation, dtype=float)

        selected = tournament(score, rng)  # Algorithm 1
        children, made = [], []
        for i in selected:  # Algorithm 2
            j = selected[rng.integers(len(selected))]
            cross = rng.random(self.n_genes) < pc
            child = genome[i].copy()
            child[cross] = weighted_crossover(genome[i][cross], genome[j][cross], ev[i], ev[j])
            child, mutated = uniform_mutation(child, pm, rng)
            ids = (parents[i].id, parents[j].id) if cross.any() else (parents[i].id,)
            operator = operator_name(bool(cross.any()), bool(mutated.any()))
            children.append(child)
            made.append((tuple(dict.fromkeys(ids)), operator))
        if self.elitism and not state.pool:  # NSGA-II's survivors are its elites
            best = best_index(score[selected])
            if best is not None:
                elite = selected[best]
                children[-1] = genome[elite].copy()
                made[-1] = ((parents[elite].id,), "elite")
        return np.array(children), made

    def tell(self, state: GAState, fitness: Mapping[str, float | None]) -> tuple[GAState, dict[str, float]]:
        """Record results by individual id, in any order and any number of calls; None or NaN is a failure.

        Returns the new state and, once the generation is complete, its summary metrics.
        """
        state, metrics = record(state, fitness)
        return (survive(state) if metrics and self.elitism else state), metrics


S = TypeVar("S", bound=GAState)


def record(state: S, fitness: Mapping[str, float | None]) -> tuple[S, dict[str, float]]:
    """A generation's results told to its state (GenCNN.tell); the best ever is updated once it is complete."""
    known = {ind.id for ind in state.population}
    told = dict(state.fitness)
    for key, value in fitness.items():
        if key not in known:
            raise KeyError(f"{key!r} is not in generation {state.generation}")
        if key in told:
            raise ValueError(f"{key!r} was told twice")
        told[key] = as_told(value)
    state = replace(state, fitness=told, evaluations=state.evaluations + len(fitness))
    if not state.complete:
        return state, {}
    values = [state.fitness[ind.id] for ind in state.population]
    if several(values):  # the feasible best first objective, else the least violation (answer_key)
        best: int | None = None
        for i, value in enumerate(values):  # the first of equals
            if improves(value, values[best] if best is not None else None):
                best = i
        held = best_held(state)
        if best is not None and improves(values[best], held):
            chosen = values[best]
            state = replace(state, best=state.population[best], best_fitness=first(chosen), best_told=list(chosen))
    else:
        f = state.fitness_array()
        best = best_index(selection_score(f))
        if best is not None and (state.best_fitness is None or f[best] > state.best_fitness):
            state = replace(state, best=state.population[best], best_fitness=float(f[best]))
    metrics = generation_metrics(state.generation, summary_values(values), state.best_fitness)
    metrics["failed"] = float(sum(v is None for v in values))
    return state, metrics


def survive(state: S) -> S:
    """With several objectives: NSGA-II's elitism, the pool becomes the best `population` of the last pool
    and the generation just told, front by front, the last front cut by crowding (ALGORITHMS.md §11; ties
    keep the pool's members first). With one objective the state as it is: Gen-CNN's elite is a copy."""
    if not several([state.fitness[ind.id] for ind in state.population]):
        return state
    candidates = [*state.pool, *state.population]
    told = {**state.pool_fitness, **state.fitness}
    score = selection_score(ranking([told[ind.id] for ind in candidates]))
    keep = np.argsort(-score, kind="stable")[: len(state.population)]
    pool = tuple(candidates[i] for i in sorted(keep))
    return replace(state, pool=pool, pool_fitness={ind.id: told[ind.id] for ind in pool})


def generation_metrics(
    generation: int, fitness: Sequence[float | None] | np.ndarray, best_ever: float | None
) -> dict[str, float]:
    """A finished generation's summary, the same for every method: how many failed (None or NaN), the best,
    median and mean of the rest, and the best fitness of the whole search so far."""
    f = np.array([np.nan if v is None else v for v in fitness], dtype=float)
    ok = f[np.isfinite(f)]
    metrics = {"generation": float(generation), "failed": float(len(f) - len(ok))}
    if ok.size:
        metrics.update(best=float(ok.max()), median=float(np.median(ok)), mean=float(ok.mean()))
    if best_ever is not None:
        metrics["best_ever"] = float(best_ever)
    return metrics


def operator_name(crossed: bool, mutated: bool) -> str:
    if crossed and mutated:
        return "crossover+mutation"
    return "crossover" if crossed else ("mutation" if mutated else "copy")
