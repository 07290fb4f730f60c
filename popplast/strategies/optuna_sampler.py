"""The Optuna samplers (tpe, cmaes, random, nsga2) as popplast strategies: an adapter over a study's ask/tell.

Each generation asks `population` trials at once (the last one what is left of the budget), so the trials do
not depend on how many workers evaluate them; TPE's constant liar steers the trials of a generation away
from one another. Results are told to the study in the individuals' order once the generation is complete,
whatever order they finished in.

The state is plain data: the trials told so far (genome and fitness, generation by generation). The study
is a cache built from it: a strategy that meets a state it did not make (a resumed search, a JSON round
trip into a new process) replays the state's trials into a new in-memory study with a newly seeded sampler,
which asks the very same trials again, so the sampler's generator ends where it was and the search goes
on exactly. A replay that asks anything else (another Optuna version) is an error, never a silent change.

With a `stopper:` the study has Optuna's pruner for the rule (strategies/optuna_pruning.py): each trial's
reported values are its intermediate values, and a stopped individual is told as PRUNED. The state keeps
every trial's reported values and whether it was pruned, so a replay reports them again and the pruner's
and the sampler's view of the study (rungs reached, brackets) is the one the search had.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, NamedTuple

import numpy as np
import optuna
from optuna.trial import TrialState

from popplast.core.individual import Individual, individual_id
from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.space import SearchSpace
from popplast.spec.stopper import StopperSpec
from popplast.strategies.ga import GAState, record
from popplast.strategies.optuna_space import params_to_genome, to_optuna


class TrialRecord(NamedTuple):
    """One told trial: its genome, its fitness (None: failed; several objectives: the vector, objectives then
    violation), the (step, score) values it reported to the pruner and whether the pruner stopped it."""

    genome: tuple[float, ...]
    fitness: Any
    curve: tuple[tuple[int, float], ...] = ()
    pruned: bool = False

    def to_list(self) -> list[Any]:
        head: list[Any] = [list(self.genome), self.fitness]
        return head + [[list(p) for p in self.curve], self.pruned] if self.curve or self.pruned else head

    @classmethod
    def from_list(cls, data: list[Any]) -> "TrialRecord":
        curve = tuple((int(s), float(v)) for s, v in data[2]) if len(data) > 2 else ()
        return cls(tuple(float(x) for x in data[0]), data[1], curve, bool(data[3]) if len(data) > 3 else False)


Told = tuple[TrialRecord, ...]  # one generation's trials, in the individuals' order


@dataclass(frozen=True)
class SamplerState(GAState):
    """GAState plus every finished generation's trials, which the study is rebuilt from."""

    trials: tuple[Told, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "trials": [[t.to_list() for t in told] for told in self.trials]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SamplerState":
        trials = tuple(tuple(TrialRecord.from_list(t) for t in told) for told in data.get("trials", ()))
        return cls(**GAState.fields_from(data), trials=trials)


VIOLATION = "popplast.violation"  # a trial's total constraint violation (0: feasible)
# Optuna 5 reads constraints from the trial (Trial.set_constraint); Optuna 4 from the sampler's constraints_func
TRIAL_CONSTRAINTS = hasattr(optuna.Trial, "set_constraint")


def _violation(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna 4's constraints_func: one value, feasible when ≤ 0 (Deb's constraint-domination, as §11)."""
    return [float(trial.user_attrs.get(VIOLATION, 0.0))]


def make_sampler(method: str, seed: int, population: int, constrained: bool = False) -> optuna.samplers.BaseSampler:
    constraints = _violation if constrained and not TRIAL_CONSTRAINTS else None
    if method == "tpe":
        # constant liar: trials asked while others of the generation still run are steered away from them
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, constraints_func=constraints
        )
    if method == "cmaes":
        # CMA-ES models numeric genes only; categorical genes are drawn by the seeded random sampler
        return optuna.samplers.CmaEsSampler(
            seed=seed, warn_independent_sampling=False, independent_sampler=optuna.samplers.RandomSampler(seed=seed)
        )
    if method == "gp":
        # Gaussian-process BO (log EI, or log EHVI with several objectives); the first trials are random
        return optuna.samplers.GPSampler(
            seed=seed,
            constraints_func=constraints,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method == "nsga2":
        # single-objective NSGA-II is a plain GA over Optuna's parameters, with the GA's population size
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population, constraints_func=constraints)
    raise ValueError(f"not an Optuna method: {method!r}")


class OptunaSampler:
    """Settings: the Optuna method, the space, the population (trials per generation), the budget (trials in
    all), the sampler's seed, and the search's stopper section with the step trials finish at (Optuna's
    pruner for its rule); `objectives`: with several objectives (or constraints) how many, 0 for one fitness:
    the study then has one maximised direction each, and NSGA-II and TPE its constraints. Not a frozen
    dataclass: it caches the live study of the state it made last."""

    inherits = False

    def __init__(
        self,
        method: str,
        space: SearchSpace,
        population: int,
        budget: int,
        seed: int,
        stopping: StopperSpec | None = None,
        max_steps: int = 1,
        objectives: int = 0,
    ) -> None:
        self.objectives = objectives
        self.several = objectives > 0
        self.warm: tuple[tuple[float, ...], ...] = ()  # genomes enqueued as the first trials (`warm_start:`)
        self.name, self.space, self.population, self.budget, self.seed = method, space, population, budget, seed
        make_sampler(method, seed, population)  # an unknown method fails here, not at the first ask
        self.stopping = stopping if stopping is not None and stopping.active else None
        self.max_steps = (self.stopping.max_steps if self.stopping else None) or max_steps
        self._distributions = to_optuna(space)
        self._study: optuna.Study | None = None
        self._told = 0  # generations the cached study has been told
        self._asked: list[optuna.Trial] = []  # the trials of the generation asked last, not yet told
        self._live: dict[str, optuna.Trial] = {}  # those trials by individual id, for the pruner
        self._curves: dict[str, list[tuple[int, float]]] = {}
        self._pruned: set[str] = set()

    def stopper(self) -> Any:
        """The search's stopper: Optuna's pruner over this sampler's trials (None without a stopper)."""
        from popplast.strategies.optuna_pruning import PrunerStopper

        # Optuna prunes single-objective studies only: with several objectives popplast's MO-ASHA judges
        return PrunerStopper(self, self.max_steps) if self.stopping and not self.several else None

    def live_trial(self, individual_id: str) -> optuna.Trial | None:
        return self._live.get(individual_id)

    def reported(self, individual_id: str, step: int, score: float) -> None:
        self._curves.setdefault(individual_id, []).append((step, score))

    def pruned(self, individual_id: str) -> None:
        self._pruned.add(individual_id)

    def completed(self, individual_id: str) -> None:
        self._pruned.discard(individual_id)

    def init(self) -> SamplerState:
        return SamplerState()

    def state_from_dict(self, data: Mapping[str, Any]) -> SamplerState:
        return SamplerState.from_dict(data)

    def ask(self, state: SamplerState, rng: np.random.Generator) -> tuple[tuple[Individual, ...], SamplerState]:
        state.require_complete()
        study = self._study_for(state)
        generation = state.generation + 1
        size = min(self.population, self.budget - sum(len(told) for told in state.trials))
        if size < 1:
            raise RuntimeError(f"the budget of {self.budget} trials is spent")
        self._asked = [study.ask(self._distributions) for _ in range(size)]
        self._curves, self._pruned = {}, set()
        seeds = rng.integers(0, 2**31 - 1, size=size)
        asked_before = sum(len(told) for told in state.trials)  # the first len(warm) trials are the enqueued ones
        population = tuple(
            Individual(
                individual_id(generation, slot),
                params_to_genome(self.space, trial.params),
                generation,
                operator="warm" if asked_before + slot < len(self.warm) else "sample",
                seed=int(seed),
            )
            for slot, (trial, seed) in enumerate(zip(self._asked, seeds))
        )
        self._live = {ind.id: trial for ind, trial in zip(population, self._asked)}
        return population, replace(state, generation=generation, population=population, fitness={})

    def tell(self, state: SamplerState, fitness: Mapping[str, float | None]) -> tuple[SamplerState, dict[str, float]]:
        state, metrics = record(state, fitness)
        if state.complete:
            told = tuple(
                TrialRecord(
                    ind.genome, state.fitness[ind.id], tuple(self._curves.get(ind.id, ())), ind.id in self._pruned
                )
                for ind in state.population
            )
            state = replace(state, trials=state.trials + (told,))
        return state, metrics

    def _study_for(self, state: SamplerState) -> optuna.Study:
        """The cached study brought up to `state` (the generation asked last, told now), or a replay."""
        study, done = self._study, len(state.trials)
        if study is not None and self._asked and self._told == done - 1 and self._matches(state.trials[-1]):
            self._tell(study, self._asked, state.trials[-1], replaying=False)
            self._told, self._asked, self._live = done, [], {}
            return study
        return self._replay(state.trials)

    def _matches(self, told: Told) -> bool:
        return [params_to_genome(self.space, t.params) for t in self._asked] == [t.genome for t in told]

    def _replay(self, trials: tuple[Told, ...]) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            sampler=make_sampler(self.name, self.seed, self.population, constrained=self.several),
            pruner=self._pruner(),
            directions=["maximize"] * max(self.objectives, 1),
            study_name=f"popplast-{self.name}-seed{self.seed}",  # Hyperband's brackets hash it: fixed
        )
        for genome in self.warm:  # enqueued in every replay too, so that a resumed study asks them again
            study.enqueue_trial(self.space.decode(genome), skip_if_exists=False)
        for generation, told in enumerate(trials):
            asked = [study.ask(self._distributions) for _ in told]
            for trial, entry in zip(asked, told):
                if params_to_genome(self.space, trial.params) != entry.genome:
                    raise SpecError(
                        COMMAND_LINE,
                        "--resume",
                        f"replaying the {self.name} study, generation {generation} asked other trials than the "
                        "checkpoint holds (another Optuna version?); the search cannot resume exactly.",
                    )
            self._tell(study, asked, told, replaying=True)
        self._study, self._told, self._asked, self._live = study, len(trials), [], {}
        return study

    def _pruner(self) -> optuna.pruners.BasePruner:
        if self.stopping is None or self.several:
            return optuna.pruners.NopPruner()
        from popplast.strategies.optuna_pruning import optuna_pruner

        return optuna_pruner(self.stopping, self.max_steps)

    def _tell(self, study: optuna.Study, asked: list[optuna.Trial], told: Told, replaying: bool) -> None:
        """Tell a generation; a replay first reports each trial's values and asks the pruner as the search
        did (it records the rungs a trial reached in the trial, and the next judgements compare with them)."""
        for trial, entry in zip(asked, told):
            for step, score in entry.curve if replaying else ():
                trial.report(score, step)
                if step < self.max_steps:
                    trial.should_prune()
            if entry.fitness is None:
                study.tell(trial, state=TrialState.FAIL)
            elif entry.pruned:
                study.tell(trial, state=TrialState.PRUNED)  # its value: the last one it reported
            elif self.several:  # the vector: objectives, then the violation NSGA-II and TPE rank by
                if TRIAL_CONSTRAINTS:
                    trial.set_constraint(VIOLATION, float(entry.fitness[-1]))
                else:
                    trial.set_user_attr(VIOLATION, float(entry.fitness[-1]))
                study.tell(trial, [float(v) for v in entry.fitness[:-1]])
            else:
                study.tell(trial, float(entry.fitness))
