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
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
import optuna
from optuna.trial import TrialState

from popplast.baselines.optuna_space import params_to_genome, to_optuna
from popplast.core.errors import COMMAND_LINE, SpecError
from popplast.core.ga import GAState, record
from popplast.core.individual import Individual, individual_id
from popplast.core.space import SearchSpace

Told = tuple[tuple[tuple[float, ...], float | None], ...]  # one generation's (genome, fitness) in order


@dataclass(frozen=True)
class SamplerState(GAState):
    """GAState plus every finished generation's trials, which the study is rebuilt from."""

    trials: tuple[Told, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "trials": [[[list(g), f] for g, f in told] for told in self.trials]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SamplerState":
        trials = tuple(tuple((tuple(float(x) for x in g), f) for g, f in told) for told in data.get("trials", ()))
        return cls(**GAState.fields_from(data), trials=trials)


def make_sampler(method: str, seed: int, population: int) -> optuna.samplers.BaseSampler:
    if method == "tpe":
        # constant liar: trials asked while others of the generation still run are steered away from them
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if method == "cmaes":
        # CMA-ES models numeric genes only; categorical genes are drawn by the seeded random sampler
        return optuna.samplers.CmaEsSampler(
            seed=seed, warn_independent_sampling=False, independent_sampler=optuna.samplers.RandomSampler(seed=seed)
        )
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method == "nsga2":
        # single-objective NSGA-II is a plain GA over Optuna's parameters, with the GA's population size
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    raise ValueError(f"not an Optuna method: {method!r}")


class OptunaSampler:
    """Settings: the Optuna method, the space, the population (trials per generation), the budget (trials in
    all) and the sampler's seed. Not a frozen dataclass: it caches the live study of the state it made last."""

    inherits = False

    def __init__(self, method: str, space: SearchSpace, population: int, budget: int, seed: int) -> None:
        self.name, self.space, self.population, self.budget, self.seed = method, space, population, budget, seed
        make_sampler(method, seed, population)  # an unknown method fails here, not at the first ask
        self._distributions = to_optuna(space)
        self._study: optuna.Study | None = None
        self._told = 0  # generations the cached study has been told
        self._asked: list[optuna.Trial] = []  # the trials of the generation asked last, not yet told

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
        seeds = rng.integers(0, 2**31 - 1, size=size)
        population = tuple(
            Individual(
                individual_id(generation, slot),
                params_to_genome(self.space, trial.params),
                generation,
                operator="sample",
                seed=int(seed),
            )
            for slot, (trial, seed) in enumerate(zip(self._asked, seeds))
        )
        return population, replace(state, generation=generation, population=population, fitness={})

    def tell(self, state: SamplerState, fitness: Mapping[str, float | None]) -> tuple[SamplerState, dict[str, float]]:
        state, metrics = record(state, fitness)
        if state.complete:
            told = tuple((ind.genome, state.fitness[ind.id]) for ind in state.population)
            state = replace(state, trials=state.trials + (told,))
        return state, metrics

    def _study_for(self, state: SamplerState) -> optuna.Study:
        """The cached study brought up to `state` (the generation asked last, told now), or a replay."""
        study, done = self._study, len(state.trials)
        if study is not None and self._asked and self._told == done - 1 and self._matches(state.trials[-1]):
            self._tell(study, self._asked, state.trials[-1])
            self._told, self._asked = done, []
            return study
        return self._replay(state.trials)

    def _matches(self, told: Told) -> bool:
        return [params_to_genome(self.space, t.params) for t in self._asked] == [g for g, _ in told]

    def _replay(self, trials: tuple[Told, ...]) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=make_sampler(self.name, self.seed, self.population), direction="maximize")
        for generation, told in enumerate(trials):
            asked = [study.ask(self._distributions) for _ in told]
            for trial, (genome, _) in zip(asked, told):
                if params_to_genome(self.space, trial.params) != genome:
                    raise SpecError(
                        COMMAND_LINE,
                        "--resume",
                        f"replaying the {self.name} study, generation {generation} asked other trials than the "
                        "checkpoint holds (another Optuna version?); the search cannot resume exactly.",
                    )
            self._tell(study, asked, told)
        self._study, self._told, self._asked = study, len(trials), []
        return study

    @staticmethod
    def _tell(study: optuna.Study, asked: list[optuna.Trial], told: Told) -> None:
        for trial, (_, value) in zip(asked, told):
            if value is None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, float(value))
