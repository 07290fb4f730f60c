"""`popplast.evolve_rules`: the Python API behind `popplast evolve-rules`."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import numpy as np

from popplast.core.result import RulesResult
from popplast.defaults import CPUS_PER_WORKER, EXECUTOR, GPUS_PER_WORKER, TRACKING_URI
from popplast.errors import COMMAND_LINE, SpecError
from popplast.search.session import check_options, interrupted, open_executor
from popplast.spec.rules import RulesSpec
from popplast.strategies.es import ES_STRATEGIES


def evolve_rules(
    space: str | os.PathLike | RulesSpec,
    *,
    method: str | None = None,
    population: int | None = None,
    generations: int | None = None,
    seed: int | None = None,
    sigma: float | None = None,
    learning_rate: float | None = None,
    workers: int | None = None,
    cpus_per_worker: float = CPUS_PER_WORKER,
    gpus_per_worker: float = GPUS_PER_WORKER,
    executor: str = EXECUTOR,
    address: str | None = None,
    tracking_uri: str = TRACKING_URI,
    experiment: str | None = None,
    progress: bool = True,
) -> RulesResult:
    """Evolve (or, with method 'gradient', train) plasticity rules as the file says; flags override it.

    `sigma` and `learning_rate` that neither the file nor the call sets are the method's defaults
    (elitist σ 0.01 as the paper; openai and snes σ 0.1; Adam step 0.05, gradient 0.01).

    The ES population is split across the workers, each evaluating its slice vectorised. The gradient
    baseline runs in this process. Raises SpecError for bad input, before anything starts.
    """
    from popplast.execution.search import run_search
    from popplast.objectives.rules import RulesObjective
    from popplast.plasticity.plastic_rnn import genome_size, rule_sizes
    from popplast.strategies.rule_search import rules_of
    from popplast.tracking.rules_tracker import RulesTracker
    from popplast.training.rule_evaluator import RuleEvaluator, train_rules_by_gradient

    spec = space if isinstance(space, RulesSpec) else RulesSpec.from_yaml(space)
    spec = spec.with_overrides(
        method=method,
        population=population,
        generations=generations,
        seed=seed,
        sigma=sigma,
        learning_rate=learning_rate,
    )
    check_options(executor, workers, cpus_per_worker, gpus_per_worker)
    if executor == "simulated":
        raise SpecError(COMMAND_LINE, "--executor", "evolve-rules runs on ray or local; simulated is for popplast run.")
    s = spec.strategy
    experiment = experiment or os.path.splitext(os.path.basename(spec.source))[0]
    try:
        tracker = RulesTracker(tracking_uri, experiment, s.method)
    except Exception as e:  # MLflow raises many types for a bad URI
        raise SpecError(
            COMMAND_LINE,
            "--tracking-uri",
            f"cannot open the MLflow tracking store {tracking_uri!r} ({type(e).__name__}: {e}).",
        ) from None
    threads = max(1, int(cpus_per_worker))
    local = RuleEvaluator(spec, threads=threads)  # final evaluation (and the gradient baseline) run here
    rng = np.random.default_rng(np.random.SeedSequence(s.seed))
    observers: list[Any] = [tracker]
    if progress:
        from popplast.search.progress import EvolutionProgress

        observers.append(EvolutionProgress(s.generations))
    start = time.perf_counter()
    dim = genome_size(spec.network.rounds)
    kind = "local" if s.method == "gradient" else executor
    # in this process the evaluator already built serves; Ray workers build their own from the spec
    if kind == "local":
        make_evaluator: Any = lambda: RulesObjective(local)  # noqa: E731
    else:
        make_evaluator = functools.partial(_remote_objective, spec, threads)
    with open_executor(
        kind, make_evaluator, workers, cpus_per_worker, gpus_per_worker, address, s.population, show=progress
    ) as pool:
        tracker.start_search(
            spec,
            {
                "executor": kind,
                "workers": pool.workers,
                "genes": dim,
                "cpus_per_worker": cpus_per_worker,
                "gpus_per_worker": gpus_per_worker,
            },
        )
        try:
            try:
                if s.method == "gradient":

                    def on_step(step: int, metrics: dict) -> None:
                        for observer in observers:
                            observer.generation_finished(step, metrics)

                    rules = train_rules_by_gradient(spec, local, rng, on_step)
                    best, best_fitness = None, float("nan")
                else:
                    strategy = _strategy(spec, dim, len(local.data.y_train))
                    outcome = run_search(
                        spec, strategy, pool, rng, observers, configure=lambda _: {}, sliced=True, keep_results=False
                    )
                    rules, best, best_fitness = rules_of(outcome.state)
            finally:
                for observer in observers[1:]:
                    observer.close()
            final = local.final_accuracy(rules)
            general = local.generalisation(rules)
        except BaseException as e:
            stop = interrupted(e)
            tracker.fail_search(str(stop) if stop else None)
            raise
    result = RulesResult(
        method=s.method,
        rules=rules.tolist(),
        train_accuracy=final["train_accuracy"],
        test_accuracy=final["test_accuracy"],
        generalisation_accuracy=general.test_accuracy,
        generalisation_batch_accuracy=general.batch_test_accuracy,
        generalisation_curve=general.train_curve,
        best_fitness=best_fitness,
        generations=s.generations,
        search_run_id=tracker.search_run_id,
        experiment_id=tracker.experiment_id,
        tracking_uri=tracking_uri,
        wall_seconds=time.perf_counter() - start,
        chance=1.0 / local.data.classes,
    )
    tracker.end_search(
        {
            "train_accuracy": result.train_accuracy,
            "test_accuracy": result.test_accuracy,
            "generalisation_test_accuracy": result.generalisation_accuracy,
            "generalisation_batch_test_accuracy": result.generalisation_batch_accuracy,
            "wall_seconds": result.wall_seconds,
        },
        general.train_curve,
        rules,
        rule_sizes(spec.network.rounds),
        best,
        None if best is None else best_fitness,
    )
    return result


def _remote_objective(spec: RulesSpec, threads: int) -> Any:
    from popplast.objectives.rules import RulesObjective
    from popplast.training.rule_evaluator import RuleEvaluator

    return RulesObjective(RuleEvaluator(spec, threads))


def _strategy(spec: RulesSpec, dim: int, train_size: int) -> Any:
    from popplast.strategies.catalogue import method
    from popplast.strategies.rule_search import RuleSearch

    s = spec.strategy
    settings = {k: getattr(s, k) for k in method(s.method).settings}  # the settings the method takes
    es = ES_STRATEGIES[s.method](dim, population=s.population, **settings)
    return RuleSearch(es, train_size=train_size, batch_size=s.batch_size)
