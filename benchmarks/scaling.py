"""Throughput as workers grow: GA evaluations per minute through popplast's Ray executor (issue 8).

    .venv/bin/python benchmarks/scaling.py [--evaluations 16] [--repeats 3]

The evaluation: one epoch of the small VGG on digits at 16×16 (a Gen-CNN individual of the demo), each
worker with 1 CPU and 1 torch thread, the pool started and warmed before timing. Measured with 1 and 2
workers on a local Ray instance, and with 2 workers on the local multi-node cluster of cluster/local_cluster.sh
(a head with no CPUs and two 1-CPU worker nodes: the actors land on different raylets). Medians over repeats
(min–max); the scaling ratio (2 workers / 1 worker) first.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import subprocess
import time

import ray

from popplast.core.individual import Individual
from popplast.execution.executor import Evaluation
from popplast.execution.ray_pool import RayExecutor
from popplast.objectives.cnn import cnn_evaluator
from popplast.spec.search import DatasetSpec, Fidelity

CONFIG = {"architecture": "small_vgg", "optimizer": "adam", "lr_scale": 1.0}
HERE = os.path.dirname(os.path.abspath(__file__))


def per_minute(workers: int, evaluations: int, repeats: int) -> tuple[list[float], int]:
    make = functools.partial(cnn_evaluator, DatasetSpec("digits"), Fidelity(image_size=16, epochs=1), threads=1)
    pool = RayExecutor(make, workers)
    work = [Evaluation(Individual(f"i{k}", (), 0, seed=k), CONFIG) for k in range(evaluations)]
    results = list(pool.map(work[:workers]))  # start and warm the pool (data loaded, torch imported)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = list(pool.map(work))
        rates.append(evaluations / (time.perf_counter() - start) * 60)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    pool.close()
    return rates, len({r.worker for r in results})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluations", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    for workers in (1, 2):
        rates, _ = per_minute(workers, args.evaluations, args.repeats)
        rows.append((f"local instance, {workers} worker(s)", rates))
    ray.shutdown()
    script = os.path.join(HERE, "..", "cluster", "local_cluster.sh")
    address = subprocess.run([script, "up", "2"], check=True, capture_output=True, text=True).stdout.strip()
    try:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        alive = len([n for n in ray.nodes() if n["Alive"]])
        rates, _ = per_minute(2, args.evaluations, args.repeats)
        rows.append((f"local multi-node cluster ({alive} nodes), 2 workers", rates))
        ray.shutdown()
    finally:
        subprocess.run([script, "down"], check=False)
    one = statistics.median(rows[0][1])
    print(
        f"scaling 2 workers / 1 worker: {statistics.median(rows[1][1]) / one:.2f}x on the local instance, "
        f"{statistics.median(rows[2][1]) / one:.2f}x on the multi-node cluster (2 CPUs in all)"
    )
    print("\n| where | evaluations per minute | vs 1 worker |")
    print("|---|---|---|")
    for label, rates in rows:
        m = statistics.median(rates)
        print(f"| {label} | {m:.0f} ({min(rates):.0f}–{max(rates):.0f}) | {m / one:.2f}x |")


if __name__ == "__main__":
    main()
