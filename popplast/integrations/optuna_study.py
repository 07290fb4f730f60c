"""Optuna storages for the sampler methods: each search's study, in an Optuna storage (an SQLite file by
default, any RDB URL), where Optuna's own tools (optuna-dashboard, `optuna.load_study`) read it.

The sampler itself runs as a popplast strategy (popplast.strategies.optuna_sampler) in popplast's one search
loop, checkpointed and resumed like every other method; the storage's study is its record, written as each
individual finishes: one trial per individual, with the values it trained with, its fitness (failed: FAIL;
stopped early: PRUNED, with the values it reported to the stopper as intermediate values), its individual
and its metrics as user attributes.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.search import SearchSpec
from popplast.strategies.optuna_sampler import make_sampler
from popplast.strategies.optuna_space import to_optuna

USER_INDIVIDUAL = "popplast.individual"
USER_METRICS = "popplast.metrics"
USER_SEARCH_RUN = "popplast.search_run_id"


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


class StudyMirror:
    """An observer that writes each finished individual into the study as a trial. A resumed search evaluates
    its interrupted generation again; individuals the study already holds are not written twice."""

    def __init__(self, study: optuna.Study, spec: SearchSpec) -> None:
        from popplast.execution.stopping import stop_judge

        self.study = study
        self._distributions = to_optuna(spec.space)
        judge = stop_judge(spec)  # what a stopper watches: a stopped individual's values, as Optuna's pruner saw
        self._watched = (judge.metric, judge.sign) if judge is not None else None
        self._written = {t.user_attrs.get(USER_INDIVIDUAL, {}).get("id") for t in study.get_trials(deepcopy=False)}

    def individual_finished(self, individual: Individual, config: dict[str, Any], result: EvalResult) -> None:
        if individual.id in self._written:
            return
        params = {name: config[name] for name in self._distributions}
        state = TrialState.COMPLETE if result.stopped_at is None else TrialState.PRUNED
        values: dict[int, float] = {}
        if self._watched is not None:
            metric, sign = self._watched
            values = {int(s): sign * float(v) for s, v in result.history.get(metric, [])}
        trial = optuna.trial.create_trial(
            params=params,
            distributions=self._distributions,
            value=float(result.fitness) if result.ok else None,
            state=state if result.ok else TrialState.FAIL,
            intermediate_values=values,
            user_attrs={USER_INDIVIDUAL: individual.to_dict(), USER_METRICS: result.metrics if result.ok else {}},
        )
        self.study.add_trial(trial)
        self._written.add(individual.id)


def study_search_run(storage: str, study_name: str) -> str | None:
    """The MLflow search run a study's trials were logged in, when the study exists and has one."""
    try:
        study = optuna.load_study(study_name=study_name, storage=optuna.storages.RDBStorage(storage))
    except Exception:  # no such study, or an unusable storage: open_study reports it with the flag to fix
        return None
    return study.user_attrs.get(USER_SEARCH_RUN)
