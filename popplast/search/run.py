"""`popplast.run`, the Python API behind `popplast run`, in its three phases:

    prepare (plan.py)  the file and the options → a plan: spec, budget, the method's catalogue entry, the
                       objective's hooks, the executor's settings, the tracking; every check done
    execute            the executor opened, the search run started, THE loop (execution/search.py) run on
                       the journal with its observers, checkpointed, resumed from the newest checkpoint
    finish             the answer (the best individual, the objective's final model), then the search run
                       ended with its summary and drawings

Nothing here names a method or an objective: what differs lives in the catalogue and the objective's hooks.
A method with a loop of its own (Ray Tune's) runs that loop in place of execute.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable

import numpy as np

from popplast.core.result import SearchResult
from popplast.defaults import CPUS_PER_WORKER, EXECUTOR, GPUS_PER_WORKER, OPTUNA_STORAGE, TRACKING_URI
from popplast.errors import COMMAND_LINE, SearchFailed, SpecError
from popplast.objectives.select import make_evaluator
from popplast.search.plan import Plan, RunOptions, prepare
from popplast.search.session import open_executor
from popplast.search.tracking import (
    LeaseWatch,
    end_search,
    failing,
    observing,
    open_journal,
    releasing_lease,
    start_tracking,
    write_run_id,
)
from popplast.tracking.fail_fast import failing_fast


def run(
    space: str | os.PathLike | Any | None = None,
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
    cpus_per_worker: float = CPUS_PER_WORKER,
    gpus_per_worker: float = GPUS_PER_WORKER,
    executor: str = EXECUTOR,
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
    warm_start: str | None = None,
    run_id_file: str | os.PathLike | None = None,
) -> SearchResult:
    """Run a search described by a search-space file (or a SearchSpec); see `popplast run --help` for each
    option.

    Keyword arguments left as None keep the file's values. `method` picks the GA (ga, gensoup), popplast's
    PBT (pbt), an Optuna sampler (tpe, cmaes, random, nsga2), an evolution strategy (elitist, openai, snes)
    or a Ray Tune method (tune-tpe, tune-pbt, tune-asha) over the same space;
    `budget_evals` is the number of evaluations (default: the file's population × generations);
    `budget_epochs` instead, the training epochs to spend (a stopped evaluation costs fewer: strategies/budget.py).
    `resume`: the MLflow search run of an interrupted search, which goes on exactly from its last finished
    generation (every method but the Tune ones); `space` may
    then be left out, and what is given must agree with the search (more generations or budget is allowed).
    `objective`: the user's training function `fit(config, trial)` (popplast.objectives), in place of the one
    the file names (`objective: module:function`) or popplast's CNN trainer; its hooks, where it has them
    (`fit.prepare`, `fit.answer`: objectives/hooks.py), run before and after the search.
    `force`: with `resume`, take the search over even from a driver that still holds it (tracking.lease).
    `stopper`: an early-stopping rule (median, asha, hyperband; none) over the file's `stopper:` section;
    `method` may name one too (`ga+asha`, `tpe-hyperband`). `schedule`: generational or async (ga, gensoup and
    pbt without generations: strategies/steady_state.py, strategies/async_pbt.py) over the file's; `ga-async`
    says the same.
    `executor="simulated"` with `simulate` (a table .json, a simulation .yaml, or a Simulation): the search
    on a simulated cluster of `workers` in virtual time (popplast.execution.simulated); nothing trains.
    `eval_timeout`: seconds after which an evaluation is stopped (its Ray worker killed and replaced; virtual
    seconds when simulated) and recorded failed; the search goes on. None: no limit.
    `strategy`: a strategy of one's own (popplast.strategies.user_strategy: a dataclass implementing the Strategy
    protocol), in place of the file's method; its population is the search's. A resume is given it again, or
    finds its class by the name the search recorded.
    `run_id_file`: a file the search run's id is written to as soon as the run exists (or is reopened), for a
    job script that resumes it after a requeue (cluster/slurm/popplast.sbatch).
    Raises SpecError for bad input (before any training starts), ClusterError when Ray cannot provide the
    workers, SearchFailed when every evaluation failed.
    """
    options = RunOptions(**{name: value for name, value in locals().items() if name != "space"})  # every keyword
    plan = prepare(space, options)
    with releasing_lease(plan.tracker, plan.claimed):  # whatever stops the search, the lease is given back
        if not plan.entry.in_loop:  # Ray Tune's own loop
            outcome, result = _tune_search(plan)
        else:
            with _executor(plan) as pool, failing(plan.tracker):  # a failure from here on ends the search run
                outcome = execute(plan, pool)
                result = answer(plan, outcome, pool)
        return finish(plan, outcome, result)


def _executor(plan: Plan) -> Any:
    o = plan.options
    return open_executor(
        o.executor,
        functools.partial(make_evaluator, plan.spec, plan.threads, plan.objective),
        o.workers,
        o.cpus_per_worker,
        o.gpus_per_worker,
        o.address,
        plan.spec.strategy.population,
        (plan.spec, plan.simulation),
        show=o.progress,
        eval_timeout=o.eval_timeout,
    )


def execute(plan: Plan, pool: Any) -> Any:
    """The search run started (or reopened), then the loop on the journal: every popplast strategy,
    checkpointed whenever a generation closes, resumed from the newest checkpoint. The loop reports to the
    search's outbox (tracking/outbox.py): journalled locally, shipped to MLflow in the background."""
    from popplast.core.strategy import is_async
    from popplast.execution.checkpoint import Checkpointer, load
    from popplast.execution.checkpoint_files import CheckpointError
    from popplast.execution.search import run_search
    from popplast.execution.stopping import stop_judge
    from popplast.strategies.budget import epochs_spent, generation_sizes
    from popplast.strategies.build import build_strategy, with_warm_start

    spec, o, tracker = plan.spec, plan.options, plan.tracker
    start_tracking(tracker, spec, plan.budget, {**plan.settings, "workers": pool.workers}, plan.study, o.resume)
    if o.run_id_file:
        write_run_id(o.run_id_file, tracker.search_run_id)
    with failing_fast():  # the journal's sender notices an outage in seconds
        outbox = open_journal(tracker, o.progress, plan.claimed)
        strategy = with_warm_start(build_strategy(spec, plan.budget), plan.warm.genomes if plan.warm else ())
        try:
            checkpoint = load(outbox, strategy.state_from_dict, pool.put) if o.resume else None
        except CheckpointError as e:  # tampered with, or not popplast's: refused before anything runs
            raise SpecError(COMMAND_LINE, "--resume", f"{e}; it is not resumed.") from None
        s = spec.strategy
        rng = checkpoint.restore_rng() if checkpoint else np.random.default_rng(np.random.SeedSequence(s.seed))
        if o.resume:
            generation = checkpoint.generation if checkpoint else -1
            keep = set(checkpoint.results) if checkpoint and is_async(strategy) else None  # no generations to cut
            dropped = tracker.discard_after(generation, keep)
            plan.say(
                f"[popplast] resuming search run {o.resume} after generation {generation + 1} of {s.generations}"
                + (f"; {dropped} runs of the interrupted generation are evaluated again" if dropped else "")
            )
        done = len(checkpoint.results) if checkpoint else 0
        total = sum(generation_sizes(spec, plan.budget))
        spent = epochs_spent(checkpoint.results.values()) if checkpoint else 0.0
        epochs = (o.budget_epochs, spent) if o.budget_epochs else None
        with observing(
            outbox, o.progress, s.generations, total, done, outbox.status, epochs, pool.workers
        ) as observers:
            observers.insert(0, LeaseWatch(tracker))  # a displaced driver stops before it journals another result
            if plan.study is not None:
                from popplast.integrations.optuna_study import StudyMirror

                observers.append(StudyMirror(plan.study, spec))
            earlier = checkpoint.seconds if checkpoint else 0.0
            checkpoints = Checkpointer(outbox, pool.fetch, pool.put, plan.start - earlier)
            if checkpoint is not None:
                checkpoints.resumed_from(checkpoint)
            outcome = run_search(
                spec,
                strategy,
                pool,
                rng,
                observers,
                checkpoints,
                checkpoint,
                stopper=stop_judge(spec, strategy),
                epoch_budget=o.budget_epochs,
                warm_states=plan.warm.states if plan.warm else None,
            )
        outbox.drain(on_wait=lambda message: plan.say(f"[popplast] {message}"))
    return outcome


def answer(plan: Plan, outcome: Any, pool: Any) -> SearchResult:
    """What every method returns, its best individual with the run it was logged in; and the objective's
    answer, made on the pool that ran the search (popplast's CNN: the trained or retrained model)."""
    from popplast.execution.fusion_cost import fusion_summary
    from popplast.execution.work import configuration

    spec, state, tracker = plan.spec, outcome.state, plan.tracker
    if state.best is None:
        first = next(iter(outcome.results.values()), None)
        error = first.error if first else "no evaluation ran"
        raise SearchFailed(f"all {len(outcome.results)} evaluations failed; the first error was: {error}")
    best_metrics = getattr(state, "best_metrics", None) or outcome.results[state.best.id].metrics
    result = SearchResult(
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
        fitness_label=plan.hooks.label,
        fusion=fusion_summary(outcome.results.values()),
    )
    if spec.fitness.several:
        result.front = front_of(spec.fitness, outcome)
    workers = _Workers(pool) if pool is not None else None
    plan.hooks.answer(spec, outcome, workers, tracker, result, plan.options.retrain)
    return result


def front_of(fitness: Any, outcome: Any) -> dict[str, Any]:
    """The search's Pareto front and its hypervolume, for the summary and pareto_front.json."""
    from popplast.execution.front import REFERENCE, front_members, front_metrics, reference_of

    results = list(outcome.results.values())
    reference = reference_of(fitness, outcome.history, results)
    measured = front_metrics(fitness, results, reference)
    return {
        "objectives": [list(o) for o in fitness.objectives],
        "constraints": [str(c) for c in fitness.constraints],
        "reference": {m: measured[REFERENCE + m] for m, _ in fitness.objectives},
        "reference_from": "the search file" if fitness.reference is not None else "the first generation's results",
        "hypervolume": measured["hypervolume"],
        "feasible": int(measured["feasible"]),
        "members": front_members(fitness, results),
    }


class _Workers:
    """The pool that ran the search, as an objective's answer sees it (objectives/hooks.py's Workers)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def train(self, individual: Any, config: dict[str, Any], budget: Any) -> Any:
        from popplast.execution.executor import Evaluation

        [trained] = list(self.pool.map([Evaluation(individual, config, budget, return_weights=True)]))
        return trained

    def fetch(self, state: Any) -> Any:
        return self.pool.fetch(state)


def finish(plan: Plan, outcome: Any, result: SearchResult) -> SearchResult:
    """The search run ended FINISHED with the result, its final state and the drawings; the wall time counts
    the drivers before this one too (a resumed search)."""
    result.wall_seconds = time.perf_counter() - (plan.start - outcome.earlier_seconds)
    end_search(plan.tracker, result, outcome.state.to_dict(), plan.options.progress)
    return result


def _tune_search(plan: Plan) -> tuple[Any, SearchResult]:
    """The tune-* methods: Tune schedules its own trials on the Ray instance (no popplast pool during the
    search; a retrain gets a pool of one)."""
    from popplast.execution.ray_pool import RayExecutor
    from popplast.execution.ray_session import check_resources, default_workers, ray_session
    from popplast.integrations.tune import run_tune

    spec, o, tracker = plan.spec, plan.options, plan.tracker
    cpus, gpus = o.cpus_per_worker, o.gpus_per_worker
    with ray_session(o.address):
        workers = o.workers if o.workers is not None else default_workers(spec.strategy.population, cpus)
        check_resources(workers, cpus, gpus)
        with failing(tracker):
            tracker.start_search(spec, {**plan.settings, "workers": workers})
            with observing(tracker, o.progress, spec.strategy.generations, plan.budget) as observers:
                outcome = run_tune(spec, plan.budget, workers, cpus, gpus, plan.threads, observers)
            # a pool of one only to retrain the best configuration (once there is one): no other answer needs it
            retrains = o.retrain and outcome.state.best is not None
            make = functools.partial(make_evaluator, spec, plan.threads)
            pool = RayExecutor(make, 1, cpus, gpus) if retrains else None
            try:
                result = answer(plan, outcome, pool)
            finally:
                if pool is not None:
                    pool.close()
    return outcome, result
