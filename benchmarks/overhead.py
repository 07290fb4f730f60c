"""Framework overhead: the same N evaluations of a fixed-cost evaluator through popplast's Ray executor,
Ray Tune's Tuner (function trainable, reuse_actors=True) and Optuna in one process, at the same
concurrency (2), on this machine (issue 8).

    .venv/bin/python benchmarks/overhead.py [--repeats 3]

Evaluators: sleeps of 0.2 s, 1 s and 5 s, and one epoch of LeNet-5 on digits (16×16). Each evaluation times
itself; ideal = Σ durations / concurrency; overhead per evaluation = (wall − ideal) / N; efficiency =
ideal / wall. popplast appears twice: "cold" counts starting its worker pool inside the wall time (a one-off
per search); "warm" is the pool already running, as for every generation after the first. Tune's wall time
includes its own actor start-up, which happens on every `fit`. Medians over repeats (min–max); ratios first.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass

import ray

CONCURRENCY = 2
CASES = [("sleep 0.2 s", 0.2, 40), ("sleep 1 s", 1.0, 10), ("sleep 5 s", 5.0, 2), ("CNN epoch", "cnn", 8)]


class BenchEvaluator:
    """Sleeps for the cost, or trains LeNet-5 for one epoch on digits; returns how long it took."""

    def __init__(self) -> None:
        self._cnn = None

    def run(self, cost) -> float:
        start = time.perf_counter()
        if cost == "cnn":
            if self._cnn is None:
                import torch

                from popplast.objectives.cnn import cnn_evaluator
                from popplast.spec.search import DatasetSpec, Fidelity

                torch.set_num_threads(1)
                self._cnn = cnn_evaluator(DatasetSpec("digits"), Fidelity(image_size=16, epochs=1), threads=1)
                start = time.perf_counter()  # data loading is a one-off per worker, not per evaluation
            from popplast.core.individual import Individual

            result = self._cnn.evaluate(Individual("bench", (), 0, seed=1), {"architecture": "lenet5"})
            assert result.ok, result.error
        else:
            time.sleep(cost)
        return time.perf_counter() - start


_LOCAL = BenchEvaluator()


@dataclass(frozen=True)
class Job:
    cost: object

    def run(self, evaluator: BenchEvaluator) -> float:
        return evaluator.run(self.cost)

    def failed(self, error: str) -> float:
        raise RuntimeError(error)


def popplast_run(cost, n: int, warm: bool) -> tuple[float, list[float]]:
    from popplast.execution.ray_pool import RayExecutor

    start = time.perf_counter()
    pool = RayExecutor(BenchEvaluator, CONCURRENCY)
    if warm:
        list(pool.map([Job(0.0 if cost != "cnn" else "cnn")] * CONCURRENCY))  # started and warmed up
        start = time.perf_counter()
    durations = list(pool.map([Job(cost)] * n))
    wall = time.perf_counter() - start
    pool.close()
    return wall, durations


def _trainable(config: dict) -> dict:
    return {"duration": _LOCAL.run(config["cost"])}


def tune_run(cost, n: int) -> tuple[float, list[float]]:
    from ray import tune

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):  # Tune's result banner
        start = time.perf_counter()
        tuner = tune.Tuner(
            tune.with_resources(_trainable, {"cpu": 1}),
            param_space={"cost": cost},
            tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=CONCURRENCY, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=tmp, verbose=0),
        )
        results = tuner.fit()
        wall = time.perf_counter() - start
    return wall, [r.metrics["duration"] for r in results]


def optuna_run(cost, n: int) -> tuple[float, list[float]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    durations: list[float] = []
    study = optuna.create_study()
    start = time.perf_counter()
    study.optimize(lambda trial: durations.append(_LOCAL.run(cost)) or 0.0, n_trials=n, n_jobs=CONCURRENCY)
    return time.perf_counter() - start, durations


FRAMEWORKS = {
    "popplast (warm pool)": functools.partial(popplast_run, warm=True),
    "popplast (cold: pool start counted)": functools.partial(popplast_run, warm=False),
    "Ray Tune Tuner": tune_run,
    "Optuna, one process": optuna_run,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(
        address="local", num_cpus=CONCURRENCY, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    _LOCAL.run("cnn")  # Optuna's process loads the data once too
    table = []
    for label, cost, n in CASES:
        for framework, fn in FRAMEWORKS.items():
            overheads, efficiencies, walls = [], [], []
            for _ in range(args.repeats):
                wall, durations = fn(cost, n)
                ideal = sum(durations) / CONCURRENCY
                overheads.append((wall - ideal) / n)
                efficiencies.append(ideal / wall)
                walls.append(wall)
            table.append((label, n, framework, walls, overheads, efficiencies))
        ours = statistics.median([t[4] for t in table if t[0] == label and t[2].startswith("popplast (warm")][0])
        tune_ = statistics.median([t[4] for t in table if t[0] == label and t[2] == "Ray Tune Tuner"][0])
        print(
            f"{label}: overhead per evaluation, Ray Tune / popplast (warm) = {tune_ / max(ours, 1e-4):.0f}x "
            f"({tune_ * 1000:.0f} ms vs {ours * 1000:.1f} ms)",
            flush=True,
        )
    ray.shutdown()

    def mid(xs, scale=1.0, digits=1):
        return f"{statistics.median(xs) * scale:.{digits}f} ({min(xs) * scale:.{digits}f}–{max(xs) * scale:.{digits}f})"

    print("\n| evaluator | N | framework | wall s | overhead per evaluation, ms | efficiency |")
    print("|---|---|---|---|---|---|")
    for label, n, framework, walls, overheads, efficiencies in table:
        print(f"| {label} | {n} | {framework} | {mid(walls)} | {mid(overheads, 1000)} | {mid(efficiencies, 1, 3)} |")


if __name__ == "__main__":
    main()
