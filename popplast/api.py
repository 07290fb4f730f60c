"""`popplast.run`: the Python API behind `popplast run`, with the same options."""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable

import numpy as np

from popplast.core import catalogue
from popplast.core.errors import COMMAND_LINE, SpecError
from popplast.core.result import SearchResult
from popplast.core.spec import SearchSpec
from popplast.core.strategies import build_strategy
from popplast.defaults import OPTUNA_STORAGE, TRACKING_URI
from popplast.evaluators import check_objective_options, fitness_label, make_evaluator, objective_for
from popplast.final_model import SearchFailed, log_soup_model, retrain_best
from popplast.preflight import preflight
from popplast.run_tracking import (
    LeaseWatch,
    claim_journal,
    end_search,
    failing,
    observing,
    open_journal,
    releasing_lease,
    start_tracking,
    tracker_for,
)
from popplast.session import check_options, open_executor, say
from popplast.tracking.outbox import failing_fast


def run(
    space: str | os.PathLike | SearchSpec | None = None,
    *,
    method: str | None = None,
    population: int | None = None,
    generations: int | None = None,
    budget_evals: int | None = None,
    budget_epochs: int | None = None,
    seed: int | None = None,
    epochs: int | None = None,
    image_size: int | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float = 0,
    executor: str = "ray",
    address: str | None = None,
    tracking_uri: str = TRACKING_URI,
    experiment: str | None = None,
    retrain: bool = False,
    optuna_storage: str = OPTUNA_STORAGE,
    study_name: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    parent_run_id: str | None = None,
    objective: Callable[..., Any] | None = None,
    force: bool = False,
    stopper: str | None = None,
    schedule: str | None = None,
    simulate: Any = None,
    eval_timeout: float | None = None,
    strategy: Any = None,
) -> SearchResult:
    """Run a search described by a search-space file; see `popplast run --help` for each option.

    Keyword arguments left as None keep the file's values. `method` picks the GA (ga, gensoup), popplast's
    PBT (pbt), an Optuna sampler (tpe, cmaes, random, nsga2), an evolution strategy (elitist, openai, snes)
    or a Ray Tune method (tune-tpe, tune-pbt, tune-asha) over the same space;
    `budget_evals` is the number of evaluations (default: the file's population × generations);
    `budget_epochs` instead, the training epochs to spend (a stopped evaluation costs fewer: core/budget.py).
    `resume`: the MLflow search run of an interrupted search, which goes on exactly from its last finished
    generation (every method but the Tune ones); `space` may
    then be left out, and what is given must agree with the search (more generations or budget is allowed).
    `objective`: the user's training function `fit(config, trial)` (popplast.objectives), in place of the one
    the file names (`objective: module:function`) or popplast's CNN trainer.
    `force`: with `resume`, take the search over even from a driver that still holds it (tracking.lease).
    `stopper`: an early-stopping rule (median, asha, hyperband; none) over the file's `stopper:` section;
    `method` may name one too (`ga+asha`, `tpe-hyperband`). `schedule`: generational or async (ga, gensoup and
    pbt without generations: core/steady_state.py, core/async_pbt.py) over the file's; `ga-async` says the same.
    `executor="simulated"` with `simulate` (a table .json, a simulation .yaml, or a Simulation): the search
    on a simulated cluster of `workers` in virtual time (popplast.simulation); nothing trains.
    `eval_timeout`: seconds after which an evaluation is stopped (its Ray worker killed and replaced; virtual
    seconds when simulated) and recorded failed; the search goes on. None: no limit.
    `strategy`: a strategy of one's own (popplast.core.user_strategy: a dataclass implementing the Strategy
    protocol), in place of the file's method; its population is the search's. A resume is given it again, or
    finds its class by the name the search recorded.
    Raises SpecError for bad input (before any training starts), ClusterError when Ray cannot provide the
    workers, SearchFailed when every evaluation failed.
    """
    flags = dict(
        method=method,
        population=population,
        generations=generations,
        seed=seed,
        epochs=epochs,
        image_size=image_size,
        stopper=stopper,
        schedule=schedule,
    )
    if resume:
        from popplast.resuming import resumed_spec
        from popplast.tracking.lease import check_lease

        record, spec, budget = resumed_spec(resume, space, tracking_uri, experiment, budget_evals, flags, strategy)
        budget_epochs = budget_epochs or _int(record.params.get("budget_epochs"))
        if eval_timeout is None and executor != "local" and record.params.get("eval_timeout") not in (None, "", "None"):
            eval_timeout = float(record.params["eval_timeout"])  # the limit it started with, unless given again
        check_lease(tracking_uri, resume, force)  # a live driver refused at once; acquire takes the lease below
        experiment, parent_run_id = record.experiment, record.parent_run_id
        study_name = record.params.get("study_name", study_name)
    else:
        if force:
            raise SpecError(COMMAND_LINE, "--force", "takes a search over; it goes with --resume SEARCH_RUN_ID.")
        if space is None:
            raise SpecError(COMMAND_LINE, "SPACE.yaml", "expected a search-space file (or --resume SEARCH_RUN_ID).")
        spec, budget = _spec(space, budget_evals, flags, budget_epochs, strategy)
        experiment = experiment or os.path.splitext(os.path.basename(spec.source))[0]
    simulated = executor == "simulated"
    spec, fn = objective_for(spec, objective) if not simulated else (spec, None)  # nothing trains
    method = spec.strategy.method
    check_options(executor, workers, cpus_per_worker, gpus_per_worker, method, eval_timeout)
    if fn is not None:
        check_objective_options(spec, method, retrain)
    if simulated:  # read before anything is created, so that a bad file leaves nothing behind
        from popplast.simulation import simulation_for

        if retrain:
            raise SpecError(
                COMMAND_LINE, "--retrain", "a simulated search trains nothing, so there is nothing to retrain."
            )
        simulate = simulation_for(spec, simulate)
    catalogue.check_spec(spec)  # what the method itself needs of the file
    shape = preflight(spec, progress) if fn is None and not simulated else (0, 0)
    study = None
    entry = catalogue.method(method)
    if entry.family == catalogue.SAMPLER:  # its trials are recorded in an Optuna study too
        from popplast.baselines.optuna_search import open_study, study_name_for

        study = open_study(spec, optuna_storage, study_name or study_name_for(spec, experiment), bool(resume))
    tracker = tracker_for(tracking_uri, experiment, method, parent_run_id)
    start = time.perf_counter()  # the driver's wall time, waiting for the lease included
    claimed = None
    if resume:  # taken (compare-and-set) before the workers start, its journal locked first; the tracker holds it
        from popplast.tracking.lease import acquire

        claimed = claim_journal(tracking_uri, resume, progress, force)
        try:
            tracker.lease = acquire(tracking_uri, resume, force)
        except BaseException:
            claimed.abandon()
            raise
        if tracker.lease.taken:
            say(progress, f"[popplast] {tracker.lease.taken}")
    threads = max(1, int(cpus_per_worker))
    settings = {
        "executor": executor,
        "cpus_per_worker": cpus_per_worker,
        "gpus_per_worker": gpus_per_worker,
        "torch_threads": threads,
        **({"eval_timeout": eval_timeout} if eval_timeout is not None else {}),
        "budget_evals": budget,
        **({"budget_epochs": budget_epochs} if budget_epochs else {}),
    }
    with releasing_lease(tracker, claimed):  # whatever stops the search before it ends, the lease is given back
        if not entry.in_loop:  # Ray Tune's own loop
            result, final = _tune_search(
                spec,
                budget,
                workers,
                cpus_per_worker,
                gpus_per_worker,
                threads,
                address,
                tracker,
                settings,
                progress,
                retrain,
                shape,
            )
        else:
            evaluator_factory = functools.partial(make_evaluator, spec, threads, fn)
            with open_executor(
                executor,
                evaluator_factory,
                workers,
                cpus_per_worker,
                gpus_per_worker,
                address,
                spec.strategy.population,
                (spec, simulate),
                show=progress,
                eval_timeout=eval_timeout,
            ) as pool:
                with failing(tracker):  # from the search run's start: a failure then still ends it and its lease
                    start_tracking(tracker, spec, budget, {**settings, "workers": pool.workers}, study, resume)
                    with failing_fast():  # the journal's sender notices an outage in seconds
                        outbox = open_journal(tracker, progress, claimed)
                        outcome = _search(
                            spec, budget, pool, tracker, outbox, progress, resume, start, study, budget_epochs
                        )
                        outbox.drain(on_wait=lambda message: say(progress, f"[popplast] {message}"))
                    result = _result(spec, outcome, tracker)
                    if entry.inherits and fn is None and not simulated:  # a user's model is theirs
                        log_soup_model(spec, outcome, tracker, result, shape)
                    if retrain:
                        retrain_best(spec, pool, tracker, result, shape)
                final = outcome.state.to_dict()
                start -= outcome.earlier_seconds  # a resumed search counts the drivers before this one too
        result.wall_seconds = time.perf_counter() - start
        end_search(tracker, result, final, progress)
    return result


def _spec(
    space: str | os.PathLike | SearchSpec,
    budget_evals: int | None,
    flags: dict[str, Any],
    budget_epochs: int | None,
    strategy: Any = None,
) -> tuple[SearchSpec, int]:
    """The file's spec with the flags (and a strategy passed from Python) applied, and the budget in
    evaluations (the most an epoch budget pays)."""
    from popplast.core.budget import default_budget, evaluations_for_epochs, with_budget

    spec = space if isinstance(space, SearchSpec) else SearchSpec.from_yaml(space)
    if strategy is not None:
        from popplast.core.user_strategy import strategy_flags

        flags = strategy_flags(len(spec.space), strategy, flags)
    spec = spec.with_overrides(**flags)
    if budget_epochs is not None:
        if budget_evals is not None:
            raise SpecError(COMMAND_LINE, "--budget-epochs", "give a budget in evaluations or in epochs, not both.")
        budget_evals = evaluations_for_epochs(spec, budget_epochs)
    budget = budget_evals if budget_evals is not None else default_budget(spec)
    return with_budget(spec, budget_evals), budget


def _int(text: str | None) -> int | None:
    return int(text) if text not in (None, "", "None") else None


def _tune_search(spec, budget, workers, cpus, gpus, threads, address, tracker, settings, progress, retrain, shape):
    """The tune-* methods: Tune schedules its own trials on the Ray instance (no popplast pool during the search)."""
    from popplast.execution.ray_pool import RayExecutor
    from popplast.execution.ray_session import check_resources, default_workers, ray_session
    from popplast.integrations.tune import run_tune

    with ray_session(address):
        if workers is None:
            workers = default_workers(spec.strategy.population, cpus)
        check_resources(workers, cpus, gpus)
        with failing(tracker):
            tracker.start_search(spec, {**settings, "workers": workers})
            with observing(tracker, progress, spec.strategy.generations, budget) as observers:
                outcome = run_tune(spec, budget, workers, cpus, gpus, threads, observers)
            result = _result(spec, outcome, tracker)
            if retrain:
                pool = RayExecutor(functools.partial(make_evaluator, spec, threads), 1, cpus, gpus)
                try:
                    retrain_best(spec, pool, tracker, result, shape)
                finally:
                    pool.close()
    return result, outcome.state.to_dict()


def _search(
    spec: SearchSpec,
    budget: int,
    pool: Any,
    tracker: Any,
    outbox: Any,
    progress: bool,
    resume: str | None,
    start: float,
    study: Any = None,
    budget_epochs: int | None = None,
) -> Any:
    """The search loop for every popplast strategy, checkpointed after every generation; resumed from the
    newest checkpoint. `start`: when this driver started the search (`time.perf_counter()`); `study`: the
    Optuna study a sampler method's trials are also written to. The loop reports to `outbox`
    (tracking/outbox.py): journalled locally, shipped to MLflow in the background."""
    strategy = build_strategy(spec, budget)
    return _loop(spec, budget, strategy, pool, tracker, outbox, progress, resume, start, study, budget_epochs)


def _loop(
    spec: SearchSpec,
    budget: int,
    strategy: Any,
    pool: Any,
    tracker: Any,
    outbox: Any,
    progress: bool,
    resume: str | None,
    start: float,
    study: Any,
    budget_epochs: int | None,
) -> Any:
    """Load the checkpoint (resume), set up observers and checkpoints on the outbox, and run the loop."""
    from popplast.core.budget import generation_sizes
    from popplast.execution.checkpoint import Checkpointer, CheckpointError, load
    from popplast.execution.search import run_search
    from popplast.execution.stopping import stop_judge

    s = spec.strategy
    try:
        checkpoint = load(outbox, strategy.state_from_dict, pool.put) if resume else None
    except CheckpointError as e:  # tampered with, or not popplast's: refused before anything runs
        raise SpecError(COMMAND_LINE, "--resume", f"{e}; it is not resumed.") from None
    rng = checkpoint.restore_rng() if checkpoint else np.random.default_rng(np.random.SeedSequence(s.seed))
    if resume:
        generation = checkpoint.generation if checkpoint else -1
        from popplast.core.strategy import is_async

        keep = set(checkpoint.results) if checkpoint and is_async(strategy) else None  # no generations to cut
        dropped = tracker.discard_after(generation, keep)
        say(
            progress,
            f"[popplast] resuming search run {resume} after generation {generation + 1} of "
            f"{s.generations}"
            + (f"; {dropped} runs of the interrupted generation are evaluated again" if dropped else ""),
        )
    done = len(checkpoint.results) if checkpoint else 0
    total = sum(generation_sizes(spec, budget))
    from popplast.core.budget import epochs_spent

    spent = epochs_spent(checkpoint.results.values()) if checkpoint else 0.0
    epochs = (budget_epochs, spent) if budget_epochs else None
    with observing(outbox, progress, s.generations, total, done, outbox.status, epochs, pool.workers) as observers:
        observers.insert(0, LeaseWatch(tracker))  # a displaced driver stops before it journals another result
        if study is not None:
            from popplast.baselines.optuna_search import StudyMirror

            observers.append(StudyMirror(study, spec))
        checkpoints = Checkpointer(outbox, pool.fetch, pool.put, start - (checkpoint.seconds if checkpoint else 0.0))
        if checkpoint is not None:
            checkpoints.resumed_from(checkpoint)
        return run_search(
            spec,
            strategy,
            pool,
            rng,
            observers,
            checkpoints,
            checkpoint,
            stopper=stop_judge(spec, strategy),
            epoch_budget=budget_epochs,
        )


def _result(spec: SearchSpec, outcome: Any, tracker: Any) -> SearchResult:
    """What every method returns: its best individual, with the run it was logged in."""
    from popplast.execution.search import configuration

    state = outcome.state
    if state.best is None:
        first = next(iter(outcome.results.values()), None)
        error = first.error if first else "no evaluation ran"
        raise SearchFailed(f"all {len(outcome.results)} evaluations failed; the first error was: {error}")
    best_metrics = getattr(state, "best_metrics", None) or outcome.results[state.best.id].metrics
    return SearchResult(
        method=spec.strategy.method,
        best=state.best,
        best_config=configuration(spec, state.best),
        best_fitness=float(state.best_fitness),
        best_metrics=dict(best_metrics),
        best_run_id=tracker.run_ids[state.best.id],
        search_run_id=tracker.search_run_id,
        experiment_id=tracker.experiment_id,
        tracking_uri=tracker.tracking_uri,
        evaluations=max(len(outcome.results), getattr(state, "evaluations", 0)),
        failed=sum(not r.ok for r in outcome.results.values()),
        wall_seconds=0.0,
        history=outcome.history,
        peak_weight_bytes=outcome.peak_weight_bytes,
        fitness_label=fitness_label(spec),
    )
