"""`popplast run`'s first phase: the file and the options made into a plan, every check done before
anything starts (a bad file or flag is a SpecError here, and leaves nothing behind): the spec with the flags
applied and its budget, the method's catalogue entry, the objective's hooks, the executor's settings, and
the tracking (the MLflow tracker, a resumed search's lease and journal, an Optuna study)."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from popplast.console import say
from popplast.errors import COMMAND_LINE, SpecError
from popplast.objectives.hooks import ObjectiveHooks, hooks_for
from popplast.objectives.select import objective_for
from popplast.search.session import check_options
from popplast.search.tracking import claim_journal, tracker_for
from popplast.search.warm_start import warm_start_for
from popplast.spec.search import SearchSpec
from popplast.strategies import catalogue
from popplast.strategies.method import SAMPLER, Method


@dataclass(frozen=True)
class RunOptions:
    """Everything `popplast.run` takes besides the file, as `popplast.run` was called: its signature holds the
    defaults (`popplast run --help` says what each does)."""

    method: str | None
    population: int | None
    generations: int | None
    budget_evals: int | None
    budget_epochs: int | None
    seed: int | None
    epochs: int | None
    image_size: int | None
    workers: int | None
    cpus_per_worker: float
    gpus_per_worker: float
    executor: str
    address: str | None
    tracking_uri: str
    experiment: str | None
    retrain: bool
    optuna_storage: str
    study_name: str | None
    resume: str | None
    progress: bool
    parent_run_id: str | None
    objective: Callable[..., Any] | None
    force: bool
    stopper: str | None
    schedule: str | None
    simulate: Any
    eval_timeout: float | None
    strategy: Any
    warm_start: str | None
    run_id_file: str | None

    def flags(self) -> dict[str, Any]:
        """The options that override the file's settings (None: the file's)."""
        names = (
            "method",
            "population",
            "generations",
            "seed",
            "epochs",
            "image_size",
            "stopper",
            "schedule",
            "warm_start",
        )
        return {name: getattr(self, name) for name in names}


@dataclass
class Plan:
    """What the search runs, decided before it runs."""

    spec: SearchSpec
    options: RunOptions  # as given, with what a resumed search recorded filled in
    budget: int  # evaluations
    entry: Method  # the method's catalogue entry
    hooks: ObjectiveHooks  # the objective's, around the loop
    objective: Callable[..., Any] | None  # a user's objective; None: popplast's CNN trainer (or nothing trains)
    simulation: Any  # a simulated search's table or cost model
    tracker: Any  # the MLflow tracker (tracking/mlflow_tracker.py)
    claimed: Any  # a resumed search's journal, locked for this driver
    study: Any  # the Optuna study a sampler's trials are recorded in too
    settings: dict[str, Any]  # the execution settings the search run records
    start: float  # when this driver started (time.perf_counter), waiting for the lease included
    warm: Any = None  # the warm start resolved (search/warm_start.py), or None

    @property
    def threads(self) -> int:
        return max(1, int(self.options.cpus_per_worker))

    def say(self, line: str) -> None:
        say(self.options.progress, line)


def prepare(space: str | os.PathLike | SearchSpec | None, options: RunOptions) -> Plan:
    o = options
    if o.resume:
        from popplast.search.resume import resumed_spec
        from popplast.tracking.lease import check_lease

        record, spec, budget = resumed_spec(
            o.resume, space, o.tracking_uri, o.experiment, o.budget_evals, o.flags(), o.strategy
        )
        eval_timeout = o.eval_timeout
        if (
            eval_timeout is None
            and o.executor != "local"
            and record.params.get("eval_timeout") not in (None, "", "None")
        ):
            eval_timeout = float(record.params["eval_timeout"])  # the limit it started with, unless given again
        check_lease(o.tracking_uri, o.resume, o.force)  # a live driver refused at once; acquired below
        o = dataclasses.replace(
            o,
            budget_epochs=o.budget_epochs or _int(record.params.get("budget_epochs")),
            eval_timeout=eval_timeout,
            experiment=record.experiment,
            parent_run_id=record.parent_run_id,
            study_name=record.params.get("study_name", o.study_name),
        )
    else:
        if o.force:
            raise SpecError(COMMAND_LINE, "--force", "takes a search over; it goes with --resume SEARCH_RUN_ID.")
        if space is None:
            raise SpecError(COMMAND_LINE, "SPACE.yaml", "expected a search-space file (or --resume SEARCH_RUN_ID).")
        spec, budget = _spec(space, o)
        o = dataclasses.replace(o, experiment=o.experiment or os.path.splitext(os.path.basename(spec.source))[0])
    spec, fn, entry, hooks, simulation = _checked(spec, o)
    warm = warm_start_for(spec, o.tracking_uri, entry) if entry.in_loop else None  # a bad source: nothing made
    hooks.prepare(spec, lambda line: say(o.progress, line))
    assert o.experiment is not None  # the file's name, or the resumed search's
    study = None
    if entry.family == SAMPLER:  # its trials are recorded in an Optuna study too
        from popplast.integrations.optuna_study import open_study, study_name_for

        name = o.study_name or study_name_for(spec, o.experiment)
        study = open_study(spec, o.optuna_storage, name, bool(o.resume))
    tracker = tracker_for(o.tracking_uri, o.experiment, entry.name, o.parent_run_id)
    start = time.perf_counter()
    claimed = _claim(tracker, o) if o.resume else None
    settings = {
        "executor": o.executor,
        "cpus_per_worker": o.cpus_per_worker,
        "gpus_per_worker": o.gpus_per_worker,
        "torch_threads": max(1, int(o.cpus_per_worker)),
        **({"eval_timeout": o.eval_timeout} if o.eval_timeout is not None else {}),
        "budget_evals": budget,
        **({"budget_epochs": o.budget_epochs} if o.budget_epochs else {}),
        **(warm.record() if warm is not None else {}),
    }
    return Plan(spec, o, budget, entry, hooks, fn, simulation, tracker, claimed, study, settings, start, warm)


def check(space: str | os.PathLike | SearchSpec, options: RunOptions) -> tuple[SearchSpec, Method]:
    """What `prepare` checks of a new search from the file and the options alone, reading nothing else and
    making nothing: for a command that hands the search to another machine (`popplast slurm`), so that a bad
    file or flag is refused before it waits in a queue."""
    spec, _ = _spec(space, options)
    spec, _, entry, _, _ = _checked(spec, options)
    return spec, entry


def _checked(spec: SearchSpec, o: RunOptions) -> tuple[SearchSpec, Any, Method, ObjectiveHooks, Any]:
    """The objective's and the method's checks of the spec and the options: the spec with its objective,
    the objective, the method's entry, the objective's hooks and a simulated search's table or model."""
    simulated = o.executor == "simulated"
    spec, fn = objective_for(spec, o.objective) if not simulated else (spec, None)  # nothing trains
    entry = catalogue.method(spec.strategy.method)
    check_options(o.executor, o.workers, o.cpus_per_worker, o.gpus_per_worker, entry.name, o.eval_timeout)
    hooks = hooks_for(spec, fn, simulated)
    hooks.check(spec, entry, o.retrain)
    simulation = None
    if simulated:  # read before anything is created, so that a bad file leaves nothing behind
        from popplast.execution.simulated import simulation_for

        simulation = simulation_for(spec, o.simulate)
    catalogue.check_spec(spec)  # what the method itself needs of the file
    if o.run_id_file is not None:
        _check_run_id_file(o.run_id_file, entry)
    return spec, fn, entry, hooks, simulation


def _check_run_id_file(path: str | os.PathLike, entry: Method) -> None:
    where = os.path.dirname(os.path.abspath(path))
    if not entry.in_loop:
        raise SpecError(
            COMMAND_LINE,
            "--run-id-file",
            f"is for resuming; {entry.name} runs Ray Tune's own loop, which cannot be resumed.",
        )
    if not os.path.isdir(where) or not os.access(where, os.W_OK):
        raise SpecError(
            COMMAND_LINE, "--run-id-file", f"{os.fspath(path)}: {where} is not a folder this process can write in."
        )


def _claim(tracker: Any, o: RunOptions) -> Any:
    """A resumed search's journal locked, then its lease taken (compare-and-set) before the workers start;
    the tracker holds the lease."""
    from popplast.tracking.lease import acquire

    assert o.resume is not None
    claimed = claim_journal(o.tracking_uri, o.resume, o.progress, o.force)
    try:
        tracker.lease = acquire(o.tracking_uri, o.resume, o.force)
    except BaseException:
        claimed.abandon()
        raise
    if tracker.lease.taken:
        say(o.progress, f"[popplast] {tracker.lease.taken}")
    return claimed


def _spec(space: str | os.PathLike | SearchSpec, o: RunOptions) -> tuple[SearchSpec, int]:
    """The file's spec with the flags (and a strategy passed from Python) applied, and the budget in
    evaluations (the most an epoch budget pays)."""
    from popplast.strategies.budget import default_budget, evaluations_for_epochs, with_budget

    spec = space if isinstance(space, SearchSpec) else SearchSpec.from_yaml(space)
    flags = o.flags()
    if o.strategy is not None:
        from popplast.strategies.user_strategy import strategy_flags

        flags = strategy_flags(len(spec.space), o.strategy, flags)
    spec = spec.with_overrides(**flags)
    budget_evals = o.budget_evals
    if o.budget_epochs is not None:
        if budget_evals is not None:
            raise SpecError(COMMAND_LINE, "--budget-epochs", "give a budget in evaluations or in epochs, not both.")
        budget_evals = evaluations_for_epochs(spec, o.budget_epochs)
    budget = budget_evals if budget_evals is not None else default_budget(spec)
    return with_budget(spec, budget_evals), budget


def _int(text: str | None) -> int | None:
    return int(text) if text not in (None, "", "None") else None
