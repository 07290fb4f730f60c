"""What the simulated cluster shows (issue 19): utilisation and time-to-target of the search methods at 16,
64, 256 and 1,024 workers, and the real driver's CPU time per evaluation at each size.

    .venv/bin/python benchmarks/simulated_cluster.py [--model thesis|demo] [--workers 16,64,256,1024]
        [--generations 10] [--methods ga,ga-async,gensoup,gensoup-async,pbt,pbt-async,tpe,ga+asha]

Every search is the real strategy, loop and stopper (popplast.execution.search.run_search) on the simulated
executor (popplast.execution.simulated), population = workers (a generation fills the cluster), `--generations`
populations' worth of evaluations; tracking off (the driver's MLflow cost is driver_throughput.py's). Models:
`thesis`, benchmarks/simulation/thesis_costs.yaml (nine architectures ×1 to ×8, a made-up score surface);
`demo`, benchmarks/simulation/demo-table.json, the digits demo's space recorded by `popplast record-table`
from real runs. Target: the score reached by the median of the methods at 16 workers. Virtual hours are
what a real cluster would take at the model's seconds; driver µs/eval is this machine's real CPU time.

Ratios (asynchronous / generational utilisation) first.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {
    "thesis": (
        os.path.join(HERE, "simulation", "thesis_space.yaml"),
        os.path.join(HERE, "simulation", "thesis_costs.yaml"),
    ),
    "demo": (
        os.path.join(HERE, "..", "search_spaces", "digits_gencnn.yaml"),
        os.path.join(HERE, "simulation", "demo-table.json"),
    ),
}


class EndTimes:
    """An observer: each successful evaluation's virtual end and fitness (the outcome keeps no tags)."""

    def __init__(self) -> None:
        self.finished: list[tuple[float, float]] = []

    def individual_finished(self, individual: Any, config: Any, result: Any) -> None:
        if result.ok:
            self.finished.append((float(result.tags["ended"]), result.fitness))


def search(space_file: str, simulate: str, method: str, workers: int, generations: int, seed: int = 0) -> dict:
    """One simulated search; what it returns: utilisation, virtual seconds, best-so-far by virtual time,
    the driver's CPU seconds and the evaluations."""
    from popplast.execution.search import run_search
    from popplast.execution.simulated import simulated_executor
    from popplast.execution.stopping import stop_judge
    from popplast.spec.search import SearchSpec
    from popplast.spec.strategy import split_method, split_schedule
    from popplast.strategies.build import build_strategy

    base, rule = split_method(method)
    name, schedule = split_schedule(base)
    spec = SearchSpec.from_yaml(space_file).with_overrides(
        method=name, population=workers, generations=generations, seed=seed, stopper=rule, schedule=schedule
    )
    if spec.strategy.method == "gensoup":  # no shrinking population: every generation fills the cluster
        spec = dataclasses.replace(spec, strategy=dataclasses.replace(spec.strategy, population_step=0))
    budget = workers * generations
    strategy = build_strategy(spec, budget)
    executor = simulated_executor(spec, simulate, workers)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    ended = EndTimes()
    cpu = time.process_time()
    outcome = run_search(spec, strategy, executor, rng, [ended], stopper=stop_judge(spec, strategy))
    cpu = time.process_time() - cpu
    finished = sorted(ended.finished)
    best, curve = -np.inf, []
    for at, fitness in finished:
        best = max(best, fitness)
        curve.append((at, best))
    return {
        "utilisation": executor.utilisation,
        "seconds": executor.clock,
        "curve": curve,
        "cpu": cpu,
        "evaluations": len(outcome.results),
        "best": best,
    }


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((at for at, best in curve if best >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(MODELS), default="thesis")
    parser.add_argument("--workers", default="16,64,256,1024")
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--methods", default="ga,ga-async,gensoup,gensoup-async,pbt,pbt-async,tpe,ga+asha")
    args = parser.parse_args()
    space_file, simulate = MODELS[args.model]
    sizes = [int(w) for w in args.workers.split(",")]
    methods = args.methods.split(",")
    runs = {}
    for workers in sizes:
        for method in methods:
            runs[method, workers] = search(space_file, simulate, method, workers, args.generations)
    target = statistics.median(runs[m, sizes[0]]["best"] for m in methods)
    print("# Ratios (asynchronous / generational utilisation, same method and workers)")
    for workers in sizes:
        for method in methods:
            if method.endswith("-async") and (method[:-6], workers) in runs:
                ratio = runs[method, workers]["utilisation"] / runs[method[:-6], workers]["utilisation"]
                print(f"- {method} / {method[:-6]} at {workers} workers: utilisation ratio {ratio:.2f}")
    print(f"\nmodel {args.model}; target {target:.4f} (the median method's best at {sizes[0]} workers)")
    print("| workers | method | evaluations | utilisation | virtual hours | hours to target | best | driver µs/eval |")
    print("|---|---|---|---|---|---|---|---|")
    for (method, workers), r in runs.items():
        reached = time_to(r["curve"], target)
        to_target = f"{reached / 3600:.2f}" if reached is not None else "not reached"
        print(
            f"| {workers} | {method} | {r['evaluations']} | {r['utilisation']:.3f} | {r['seconds'] / 3600:.2f} | "
            f"{to_target} | {r['best']:.4f} | {1e6 * r['cpu'] / r['evaluations']:.0f} |"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
