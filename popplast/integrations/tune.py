"""Ray Tune over the same space and evaluator, for users already on Tune: OptunaSearch, PBT and ASHA.

- tune-tpe: Tune's OptunaSearch with a seeded TPE sampler, one evaluation per trial, `budget` trials,
  at most `workers` at once.
- tune-asha: Tune's ASHAScheduler over its random search (seeded), `budget` trials, at most `workers` at
  once: each reports its validation MCC every epoch; rungs at the stopper's min_steps·η^k (`stopper:` in
  the file: min_steps, reduction_factor; default 1 and 3), a trial stopped at a rung is recorded as stopped
  with its last validation MCC as its fitness.
- tune-pbt: Tune's PopulationBasedTraining (synchronous, perturbing after every segment of `fidelity.epochs`
  epochs): `population` trials of `budget / population` segments each, at most `workers` segments training
  at once (Tune may hold more trials' actors, waiting). Exploit copies a top-quartile
  trial's checkpoint into a bottom-quartile one; explore multiplies each float gene by 0.8 or 1.2 or
  resamples it with p = 0.25 (ALGORITHMS.md §8), clipped to the gene's bounds. The initial population
  is drawn from the search's seed; Tune's own perturbations draw from Python's global `random`, so
  tune-pbt runs are not reproducible seed for seed (popplast's own `pbt` is: popplast/strategies/pbt.py).

A driver-side callback turns each reported segment or trial into an individual's MLflow run as it
arrives, so the layout (and `popplast lineage`) is the same as for the GA.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from ray import tune
from ray.tune.search import Searcher

from popplast.core.individual import Individual, individual_id
from popplast.core.result import EvalResult
from popplast.errors import SpecError
from popplast.execution.search import SearchOutcome, notify
from popplast.integrations.tune_trainable import (
    INDEX_KEY,
    PARTIAL_KEY,
    Slots,
    asha_trainable,
    parse_report,
    pbt_trainable,
    single_trainable,
    stopped_result,
    trial_index,
)
from popplast.spec.search import SearchSpec
from popplast.spec.space import Gene
from popplast.strategies.ga import generation_metrics
from popplast.strategies.optuna_sampler import make_sampler
from popplast.strategies.optuna_space import params_to_genome, to_optuna


@dataclass
class TuneState:
    """What a Tune search reports at its end (Tune keeps the search's own state; popplast cannot resume it)."""

    evaluations: int = 0
    best: Individual | None = None
    best_fitness: float | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "evaluations": self.evaluations,
            "best": self.best.to_dict() if self.best else None,
            "best_fitness": self.best_fitness,
        }


class _Relay(tune.Callback):
    """Hands every reported evaluation to the observers (tracker, progress) in the driver."""

    def __init__(self, spec: SearchSpec, observers: Sequence[Any], row_size: int, outcome: SearchOutcome) -> None:
        self.spec, self.observers, self.row_size, self.outcome = spec, observers, row_size, outcome
        self.rows: dict[int, list[float | None]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config to save the experiment; the observers (MLflow client, terminal) stay here
        return {**self.__dict__, "observers": ()}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "popplast" in result:
            self._record(*parse_report(result), trial.config)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if PARTIAL_KEY in last and "popplast" not in last:  # ASHA stopped it: its final report never came
            self._record(*stopped_result(last[PARTIAL_KEY]), trial.config)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # the trainable itself crashed (evaluation errors come back as failed results, not here)
        index = trial.config.get(INDEX_KEY, None)
        index = trial_index(trial.trial_id) if index is None else index
        segment = int((trial.last_result or {}).get("training_iteration", 0))
        row, slot = (segment, index) if self.spec.strategy.method == "tune-pbt" else divmod(index, self.row_size)
        genome = params_to_genome(self.spec.space, {n: trial.config[n] for n in self.spec.space.names})
        ind = Individual(individual_id(row, slot), genome, row, operator="sample")
        error = str(getattr(trial, "error_msg", None) or "the Tune trial raised an error")
        self._record(ind, EvalResult.failed(ind.id, error), trial.config)

    def _record(self, ind: Individual, result: EvalResult, config: dict) -> None:
        row = self.rows.setdefault(ind.generation, [])
        if not row:
            notify(self.observers, "generation_started", ind.generation, [ind])
        config = {**self.spec.fixed, **{name: config[name] for name in self.spec.space.names if name in config}}
        notify(self.observers, "individual_finished", ind, config, result)
        self.outcome.results[ind.id] = result.summary()
        row.append(result.fitness if result.ok else None)
        state: TuneState = self.outcome.state
        state.evaluations += 1
        # the best, and of equals the smallest id, so arrival order does not choose between ties
        if result.ok and (state.best is None or (-result.fitness, ind.id) < (-state.best_fitness, state.best.id)):
            state.best, state.best_fitness, state.best_metrics = ind, float(result.fitness), dict(result.metrics)
        if len(row) == self.row_size:
            metrics = generation_metrics(ind.generation, row, state.best_fitness)
            self.outcome.history.append(metrics)
            notify(self.observers, "generation_finished", ind.generation, metrics)


class _Numbered(Searcher):
    """Adds the trial's creation number to each suggested config: Tune's ids for searcher trials are random
    strings, and the number names the individual and seeds its evaluation."""

    def __init__(self, inner: Searcher) -> None:
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner, self.count = inner, 0

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | None:
        config = self.inner.suggest(trial_id)
        if not isinstance(config, dict):
            return config
        self.count += 1
        return {**config, INDEX_KEY: self.count - 1}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)


def float_genes(spec: SearchSpec) -> list[Gene]:
    return [g for g in spec.space.genes if g.type == "float"]


def check_pbt(spec: SearchSpec) -> None:
    if not float_genes(spec):
        raise SpecError(
            spec.source,
            "space",
            "tune-pbt perturbs float genes, and this space has none; use another "
            "method or add a float gene (a learning rate, say).",
        )


def run_tune(
    spec: SearchSpec, budget: int, workers: int, cpus: float, gpus: float, threads: int, observers: Sequence[Any] = ()
) -> SearchOutcome:
    """Run `spec.strategy.method` (tune-tpe or tune-pbt) on the Ray instance this process is connected to."""
    method, population, seed = spec.strategy.method, spec.strategy.population, spec.strategy.seed
    outcome = SearchOutcome(TuneState())
    resources = {"cpu": cpus, "gpu": gpus}
    os.environ.setdefault(
        "RAY_AIR_NEW_OUTPUT", "0"
    )  # with verbose=0, Tune's console stays quiet; popplast shows progress
    logging.getLogger("ray.tune").setLevel(logging.WARNING)  # PBT logs every exploit; MLflow holds them as lineage
    # a reused actor restoring a checkpoint looks for Tune's result files too, and warns that they are missing
    logging.getLogger("ray.tune.logger.logger").setLevel(logging.ERROR)
    folder = tempfile.mkdtemp(prefix="popplast-tune-")  # Tune's checkpoints: deleted with the search
    slots = None
    try:
        if method == "tune-tpe":
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            search = _Numbered(
                OptunaSearch(
                    space=to_optuna(spec.space),
                    metric="fitness",
                    mode="max",
                    sampler=make_sampler("tpe", seed, population),
                )
            )
            trainable = tune.with_parameters(single_trainable, spec=spec, threads=threads)
            tune_config = tune.TuneConfig(
                search_alg=search, num_samples=budget, max_concurrent_trials=workers, reuse_actors=True
            )
            param_space, stop, relay = {}, None, _Relay(spec, observers, population, outcome)
        elif method == "tune-asha":
            from ray.tune.schedulers import ASHAScheduler
            from ray.tune.search.basic_variant import BasicVariantGenerator

            stopper = spec.stopper
            scheduler = ASHAScheduler(
                time_attr="step",
                metric="val_mcc",
                mode="max",
                max_t=spec.fidelity.epochs,
                grace_period=stopper.min_steps,
                reduction_factor=stopper.reduction_factor,
            )
            trainable = tune.with_parameters(asha_trainable, spec=spec, threads=threads)
            tune_config = tune.TuneConfig(
                scheduler=scheduler,
                search_alg=BasicVariantGenerator(random_state=seed, max_concurrent=workers),
                num_samples=budget,
                reuse_actors=True,
            )
            param_space = {g.name: _domain(g) for g in spec.space.genes}
            stop, relay = None, _Relay(spec, observers, population, outcome)
        elif method == "tune-pbt":
            from ray.tune.schedulers import PopulationBasedTraining
            from ray.tune.search.basic_variant import BasicVariantGenerator

            check_pbt(spec)
            segments = budget // population
            bounds = {g.name: (g.low, g.high) for g in float_genes(spec)}
            scheduler = PopulationBasedTraining(
                time_attr="training_iteration",
                metric="fitness",
                mode="max",
                perturbation_interval=1,
                hyperparam_mutations={
                    g.name: (tune.loguniform if g.log else tune.uniform)(g.low, g.high) for g in float_genes(spec)
                },
                quantile_fraction=0.25,
                resample_probability=0.25,
                perturbation_factors=(1.2, 0.8),
                custom_explore_fn=lambda config: _clip(config, bounds),
                synch=True,
            )
            search = BasicVariantGenerator(points_to_evaluate=initial_configs(spec))
            # synchronous PBT pauses trials at each boundary, and Tune's trial limit counts paused trials, so
            # it would stall: the `workers` limit is on training segments instead (slots every segment holds)
            slots = Slots.remote(workers)
            trainable = tune.with_parameters(pbt_trainable, spec=spec, threads=threads, segments=segments, slots=slots)
            # the slots hold the segments training at once to `workers`, so the trials reserve no CPUs with Ray:
            # synchronous PBT pauses and resumes every trial at each boundary, and a trial's placement group
            # that waited for a CPU and was removed while Ray prepared it left that CPU held for good (Ray
            # 2.60: "removed before it is created"; 1 in 12 runs of the --workers 1 test). A bundle must hold
            # something: one byte of memory, which every node has
            resources = {"cpu": 0, "gpu": gpus, "memory": 1}
            tune_config = tune.TuneConfig(
                scheduler=scheduler, search_alg=search, num_samples=population, reuse_actors=True
            )
            param_space = {g.name: _domain(g) for g in spec.space.genes}
            stop, relay = {"training_iteration": segments}, _Relay(spec, observers, population, outcome)
        else:
            raise ValueError(f"not a Tune method: {method!r}")
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space=param_space,
            tune_config=tune_config,
            run_config=tune.RunConfig(
                storage_path=folder,
                verbose=0,
                callbacks=[relay],
                stop=stop,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=4),
            ),
        )
        import ray

        before, free = _placement_groups(), ray.available_resources().get("CPU", 0)
        try:
            tuner.fit()
        finally:
            _release(before, free)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if slots is not None:
            import ray

            ray.kill(slots)
    return outcome


def _placement_groups() -> dict[str, str]:
    from ray.util import placement_group_table

    return {pg_id: info["state"] for pg_id, info in placement_group_table().items()}


def _release(before: dict[str, str], free: float, timeout: float = 30.0) -> None:
    """Remove the placement groups Tune created and left behind, and wait until Ray frees their resources.

    Seen once in 20 PBT searches on one Ray instance: a trial's group outlived Tuner.fit and held a CPU, and
    the next search's worker pool waited for that CPU forever.
    """
    import time

    import ray
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    for pg_id, state in _placement_groups().items():
        if pg_id not in before and state != "REMOVED":
            remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id))))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(state == "REMOVED" for pg_id, state in _placement_groups().items() if pg_id not in before):
            break
        time.sleep(0.2)
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0) < free - 1e-9:
        time.sleep(0.2)  # Tune's actors are killed asynchronously; their CPUs come back a moment later
    held = free - ray.available_resources().get("CPU", 0)
    if held > 1e-9:  # seen even so (a test suite run, 2026-12-03), with no actor or placement group left
        logging.getLogger(__name__).warning(
            "Ray Tune left %g CPUs of this Ray instance held %.0f s after its search; a later search on the same "
            "instance starts with fewer workers until Ray frees them",
            held,
            timeout,
        )


def initial_configs(spec: SearchSpec) -> list[dict[str, Any]]:
    """PBT's first population: uniform genomes from the search's seed, as the GA draws its first generation."""
    rng = np.random.default_rng(np.random.SeedSequence(spec.strategy.seed))
    return [spec.space.decode(rng.random(len(spec.space))) for _ in range(spec.strategy.population)]


def _domain(gene: Gene) -> Any:
    if gene.type == "categorical":
        return tune.choice(list(gene.choices))
    if gene.type == "int":
        return (tune.lograndint if gene.log else tune.randint)(int(gene.low), int(gene.high) + 1)
    return (tune.loguniform if gene.log else tune.uniform)(gene.low, gene.high)


def _clip(config: dict[str, Any], bounds: dict[str, tuple[float, float]]) -> dict[str, Any]:
    for name, (low, high) in bounds.items():
        config[name] = float(min(max(config[name], low), high))
    return config
