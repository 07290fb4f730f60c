"""The evaluator as Ray Tune function trainables: one evaluation per trial (tune-tpe; tune-asha, reporting
every epoch to Tune's scheduler), or PBT segments.

A trial reports its fitness and, as one JSON string, the individual it trained and the evaluation's
result; the driver's callback (integrations/tune.py) turns that into the same MLflow runs every method writes.
The evaluator (with its cached data split) is built once per worker process, as in popplast's own pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import time
from typing import Any, Iterator, Mapping

import numpy as np
import ray
from ray import tune

from popplast.core.individual import Individual, derived_seed, individual_id
from popplast.core.result import EvalResult
from popplast.spec.search import SearchSpec
from popplast.strategies.optuna_space import params_to_genome

INDEX_KEY = "popplast_trial"  # tune-tpe: the trial's creation number, added to its config
PARTIAL_KEY = "popplast_partial"  # tune-asha: the individual and its curve so far, in every epoch's report
FAILED_FITNESS = -1.0  # the lowest MCC: PBT ranks a failed segment last and replaces it
_EVALUATORS: dict[Any, Any] = {}


def trial_index(trial_id: str) -> int:
    """Tune numbers the trials it generates itself in creation order: "a1b2c_00003" is the fourth."""
    return int(trial_id.rsplit("_", 1)[1])


def single_trainable(config: Mapping[str, Any], spec: SearchSpec, threads: int) -> None:
    """tune-tpe: train one sampled configuration once and report it."""
    index = int(config[INDEX_KEY])
    config = {k: v for k, v in config.items() if k != INDEX_KEY}
    population = spec.strategy.population
    ind = Individual(
        individual_id(index // population, index % population),
        params_to_genome(spec.space, config),
        index // population,
        operator="sample",
        seed=derived_seed(spec.strategy.seed, index),
    )
    result = _evaluator(spec, threads).evaluate(ind, {**spec.fixed, **config})
    tune.report(report(ind, result))


class TuneChannel:
    """tune-asha: the trial's reports go to Tune, whose ASHA scheduler stops the trial itself (the function
    is not called again), so `should_stop` never has to say so. Each report carries the individual and its
    curve so far, from which the driver's callback records a stopped trial."""

    metric = "val_mcc"

    def __init__(self, individual: Individual, last_step: int) -> None:
        self.individual, self.last_step, self.curve = individual, last_step, []
        self.started = time.time()  # a stopped trial's span ends at its last report (reports/utilisation.py)
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def report(self, individual_id: str, step: int, value: float) -> None:
        self.curve.append((step, value))
        if step >= self.last_step:  # the trial's final report says it, with the whole result
            return
        partial = json.dumps(
            {
                "individual": self.individual.to_dict(),
                "curve": self.curve,
                "started": self.started,
                "ended": time.time(),
                "worker": self.where,
            }
        )
        tune.report({"step": step, "val_mcc": value, "fitness": value, PARTIAL_KEY: partial})

    def should_stop(self, individual_id: str) -> bool:
        return False


def asha_trainable(config: Mapping[str, Any], spec: SearchSpec, threads: int) -> None:
    """tune-asha: train one random configuration, reporting its validation MCC every epoch to Tune's ASHA."""
    index = trial_index(tune.get_context().get_trial_id())
    population = spec.strategy.population
    ind = Individual(
        individual_id(index // population, index % population),
        params_to_genome(spec.space, dict(config)),
        index // population,
        operator="sample",
        seed=derived_seed(spec.strategy.seed, index),
    )
    result = _evaluator(spec, threads).evaluate(
        ind, {**spec.fixed, **config}, stops=TuneChannel(ind, spec.fidelity.epochs)
    )
    epochs = int(result.metrics.get("epochs", spec.fidelity.epochs))
    tune.report({**report(ind, result), "step": epochs, "val_mcc": result.fitness if result.ok else FAILED_FITNESS})


def stopped_result(partial: str) -> tuple[Individual, EvalResult]:
    """A tune-asha trial that ASHA stopped, from its last report: its fitness is its last validation MCC."""
    payload = json.loads(partial)
    ind = Individual.from_dict(payload["individual"])
    curve = [(int(s), float(v)) for s, v in payload["curve"]]
    step, value = curve[-1]
    result = EvalResult(ind.id, value, {"val_mcc": value, "epochs": float(step)}, {"val_mcc": curve})
    result.stopped_at = step
    if "started" in payload:  # its span, as a finished trial's: a comparison orders and times by it
        result.tags = {"started": f"{payload['started']:.3f}", "ended": f"{payload['ended']:.3f}"}
        result.worker = str(payload.get("worker", ""))
    return ind, result


def pbt_trainable(config: Mapping[str, Any], spec: SearchSpec, threads: int, segments: int, slots: Any) -> None:
    """tune-pbt: train `segments` segments of `fidelity.epochs` epochs, checkpointing the weights after each.

    A trial that PBT told to exploit starts from another trial's checkpoint: the checkpoint names the
    individual that wrote it, which becomes the parent (operator "exploit"; "inherit" for the trial's own).
    Each segment trains while it holds one of the search's `slots` (a `Slots` actor), so no more segments
    train at once than the search has workers, however many CPUs the cluster has.
    """
    index = trial_index(tune.get_context().get_trial_id())
    evaluator = _evaluator(spec, threads)
    weights, parent, parent_trial, segment = None, None, index, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            with open(os.path.join(folder, "popplast.json")) as f:
                meta = json.load(f)
            if os.path.exists(os.path.join(folder, "weights.npz")):
                with np.load(os.path.join(folder, "weights.npz")) as saved:
                    weights = {k: saved[k] for k in saved.files}
        parent, parent_trial, segment = meta["individual_id"], meta["trial"], meta["segment"]
    while segment < segments:
        operator = "init" if parent is None else ("inherit" if parent_trial == index else "exploit")
        ind = Individual(
            individual_id(segment, index),
            params_to_genome(spec.space, config),
            segment,
            (parent,) if parent else (),
            operator,
            seed=derived_seed(spec.strategy.seed, index, segment),
        )
        parents = ((weights, 1.0),) if weights is not None else ()
        with holding(slots):
            began = time.time()
            result = evaluator.evaluate(ind, {**spec.fixed, **config}, parents, return_weights=True)
            ended = time.time()
        # while it held its slot: what a comparison's worker count means can be checked from MLflow
        result.tags.update({"began": f"{began:.6f}", "ended": f"{ended:.6f}"})
        if result.ok:
            weights = result.weights
        result.weights = None
        segment += 1
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "popplast.json"), "w") as f:
                json.dump({"individual_id": ind.id, "trial": index, "segment": segment}, f)
            if weights is not None:
                np.savez(os.path.join(folder, "weights.npz"), **weights)
            tune.report(report(ind, result), checkpoint=tune.Checkpoint.from_directory(folder))
        parent, parent_trial = ind.id, index


@ray.remote(num_cpus=0)
class Slots:
    """A counting semaphore across Ray workers: at most `n` holders at once (an async actor, so a waiting
    `acquire` does not block a `release`)."""

    def __init__(self, n: int) -> None:
        self.free = asyncio.Semaphore(n)

    async def acquire(self) -> None:
        await self.free.acquire()

    async def release(self) -> None:
        self.free.release()


@contextlib.contextmanager
def holding(slots: Any) -> Iterator[None]:
    """Hold one of `slots` (a Slots actor) for the duration of the block.

    The trial waits for its slot on a future (the object's completion callback), not in `ray.get`: a worker
    blocked in `ray.get` lends its CPU back to Ray until it wakes, and a trial PBT stopped while it waited
    left that CPU counted as held after the search (2 of 20 runs of the --workers 1 test, 2026-12-04)."""
    slots.acquire.remote().future().result()
    try:
        yield
    finally:
        slots.release.remote().future().result()


def report(ind: Individual, result: EvalResult) -> dict[str, Any]:
    payload = {
        "individual": ind.to_dict(),
        "fitness": result.fitness,
        "metrics": result.metrics,
        "history": result.history,
        "error": result.error,
        "worker": result.worker,
        "tags": result.tags,
    }
    return {"fitness": float(result.fitness) if result.ok else FAILED_FITNESS, "popplast": json.dumps(payload)}


def parse_report(metrics: Mapping[str, Any]) -> tuple[Individual, EvalResult]:
    payload = json.loads(metrics["popplast"])
    ind = Individual.from_dict(payload["individual"])
    result = EvalResult(
        ind.id,
        payload["fitness"],
        payload["metrics"],
        payload["history"],
        payload["error"],
        worker=payload["worker"],
        tags=payload["tags"],
    )
    return ind, result


def _evaluator(spec: SearchSpec, threads: int) -> Any:
    from popplast.objectives.cnn import cnn_evaluator

    key = (repr(spec.dataset), repr(spec.fidelity), repr(sorted(spec.fixed.items())), threads)
    if key not in _EVALUATORS:
        _EVALUATORS[key] = cnn_evaluator(spec.dataset, spec.fidelity, spec.fixed, threads=threads)
    return _EVALUATORS[key]
