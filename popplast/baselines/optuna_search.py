"""Optuna studies run through popplast's own executor: same worker pool, evaluator, data split and budget.

Trials are asked in batches of `executor.workers`, evaluated in parallel, and told as they finish
(ask/tell: Optuna never runs the objective itself). The study lives in an Optuna storage (an SQLite file by
default, any RDB URL for several drivers), so an interrupted study resumes where it stopped: trials left
RUNNING by a killed driver are told FAIL and asked again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from popplast.baselines.optuna_space import params_to_genome, to_optuna
from popplast.core.errors import COMMAND_LINE, SpecError
from popplast.core.ga import generation_metrics
from popplast.core.individual import Individual, derived_seed, individual_id
from popplast.core.spec import SearchSpec
from popplast.execution.executor import Evaluation, Executor
from popplast.execution.search import SearchOutcome, configuration, notify

USER_INDIVIDUAL = "popplast.individual"
USER_METRICS = "popplast.metrics"
USER_SEARCH_RUN = "popplast.search_run_id"


@dataclass
class SamplerState:
    """What a sampler search reports at its end: plain data, like the GA's state."""

    study_name: str
    storage: str
    evaluations: int = 0
    best: Individual | None = None
    best_fitness: float | None = None
    best_metrics: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "evaluations": self.evaluations,
            "best": self.best.to_dict() if self.best else None,
            "best_fitness": self.best_fitness,
        }


def make_sampler(method: str, seed: int, population: int) -> optuna.samplers.BaseSampler:
    if method == "tpe":
        # constant liar: trials asked while others of the batch still run are steered away from them
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


def study_name_for(spec: SearchSpec, experiment: str) -> str:
    return f"{experiment}-{spec.strategy.method}-seed{spec.strategy.seed}"


def open_study(spec: SearchSpec, storage: str, study_name: str, resume: bool) -> optuna.Study:
    """Create the study, or load it with `resume`; either way, refuse what would mix two searches."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(spec.strategy.method, spec.strategy.seed, spec.strategy.population)
    try:
        storage_obj = optuna.storages.RDBStorage(storage)
        exists = study_name in optuna.get_all_study_names(storage_obj)
    except Exception as e:  # SQLAlchemy raises many types for a bad URL; all mean the same to the user
        raise SpecError(
            COMMAND_LINE, "--optuna-storage", f"cannot open the Optuna storage {storage!r} ({type(e).__name__}: {e})."
        ) from None
    if exists and not resume:
        found = optuna.load_study(study_name=study_name, storage=storage_obj)
        if found.get_trials(deepcopy=False) or found.user_attrs.get(USER_SEARCH_RUN):
            run = found.user_attrs.get(USER_SEARCH_RUN)
            hint = f"pass --resume {run} to continue it" if run else "delete it to start again"
            raise SpecError(
                COMMAND_LINE,
                "--study-name",
                f"the study {study_name!r} already exists in {storage}; {hint}, or --study-name to start another.",
            )
        # created by a driver that died before its first trial: nothing to mix, so it is used as new
    if resume and not exists:
        raise SpecError(
            COMMAND_LINE,
            "--resume",
            f"there is no study {study_name!r} in {storage} to resume; pass the --optuna-storage the search used.",
        )
    study = optuna.create_study(
        storage=storage_obj, study_name=study_name, sampler=sampler, direction="maximize", load_if_exists=exists
    )
    if exists:
        recorded = study.user_attrs.get("popplast.method")
        if recorded and recorded != spec.strategy.method:
            raise SpecError(
                COMMAND_LINE,
                "--resume",
                f"the study {study_name!r} was run with --method {recorded}, not {spec.strategy.method}.",
            )
    study.set_user_attr("popplast.method", spec.strategy.method)
    return study


def run_optuna(
    spec: SearchSpec, study: optuna.Study, storage: str, executor: Executor, trials: int, observers: Sequence[Any] = ()
) -> SearchOutcome:
    """Evaluate trials until the study holds `trials` finished ones; failures are told FAIL and count."""
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        study.tell(stale.number, state=TrialState.FAIL)  # its driver died; the budget does not count it
    distributions = to_optuna(spec.space)
    population = spec.strategy.population
    state = SamplerState(study.study_name, storage)
    outcome = SearchOutcome(state)  # type: ignore[arg-type]
    done, row_fitness, rows_started = len(_evaluated(study)), [], set()
    while done < trials:
        asked = [study.ask(distributions) for _ in range(min(executor.workers, trials - done))]
        work, by_id, configs, trials_by_id = [], {}, {}, {}
        for trial in asked:
            ind = sampled_individual(spec, trial.number, params_to_genome(spec.space, trial.params))
            trial.set_user_attr(USER_INDIVIDUAL, ind.to_dict())
            if ind.generation not in rows_started:
                rows_started.add(ind.generation)
                notify(observers, "generation_started", ind.generation, [ind])
            by_id[ind.id], configs[ind.id], trials_by_id[ind.id] = ind, configuration(spec, ind), trial
            work.append(Evaluation(ind, configs[ind.id]))
        for result in executor.map(work):
            ind = by_id[result.individual_id]
            notify(observers, "individual_finished", ind, configs[ind.id], result)
            outcome.results[ind.id] = result
            # the metrics attribute marks a trial as evaluated (a failure too), unlike one told FAIL as stale
            trials_by_id[ind.id].set_user_attr(USER_METRICS, result.metrics if result.ok else {})
            if result.ok:
                study.tell(trials_by_id[ind.id], float(result.fitness))
            else:
                study.tell(trials_by_id[ind.id], state=TrialState.FAIL)
            row_fitness.append(float(result.fitness) if result.ok else None)
            done += 1
            if done % population == 0 or done == trials:
                metrics = generation_metrics(ind.generation, row_fitness, _best_value(study))
                outcome.history.append(metrics)
                notify(observers, "generation_finished", ind.generation, metrics)
                row_fitness = []
    _set_best(state, study)
    outcome.state = state  # type: ignore[assignment]
    return outcome


def sampled_individual(spec: SearchSpec, number: int, genome: Sequence[float]) -> Individual:
    """Trial `number` as an individual without parents, laid out in rows of the GA's population size."""
    population = spec.strategy.population
    return Individual(
        individual_id(number // population, number % population),
        tuple(genome),
        number // population,
        operator="sample",
        seed=derived_seed(spec.strategy.seed, number),
    )


def _best_value(study: optuna.Study) -> float | None:
    """The best fitness the study holds, trials of earlier (resumed) drivers included."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(t.value for t in completed) if completed else None


def _evaluated(study: optuna.Study) -> list[Any]:
    """Trials whose evaluation finished (ok or failed); not those told FAIL because their driver died."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        if USER_METRICS in t.user_attrs
    ]


def _set_best(state: SamplerState, study: optuna.Study) -> None:
    evaluated = _evaluated(study)
    state.evaluations = len(evaluated)
    completed = [t for t in evaluated if t.state == TrialState.COMPLETE]
    if not completed:
        return
    best = max(completed, key=lambda t: (t.value, -t.number))  # the first one on ties, as the GA
    state.best = Individual.from_dict(best.user_attrs[USER_INDIVIDUAL])
    state.best_fitness = float(best.value)
    state.best_metrics = dict(best.user_attrs.get(USER_METRICS, {}))


def study_search_run(storage: str, study_name: str) -> str | None:
    """The MLflow search run a study's trials were logged in, when the study exists and has one."""
    try:
        study = optuna.load_study(study_name=study_name, storage=optuna.storages.RDBStorage(storage))
    except Exception:  # no such study, or an unusable storage: open_study reports it with the flag to fix
        return None
    return study.user_attrs.get(USER_SEARCH_RUN)
