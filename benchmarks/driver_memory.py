"""The driver's memory and checkpoint size as a search grows to 100,000 evaluations (issue 19).

    .venv/bin/python benchmarks/driver_memory.py [--sizes 1000,10000,100000] [--population 1000]

The real loop and strategy (ga, and ga-async) on the simulated cluster (1,000 workers, evaluations from the
thesis cost model, three reported steps each), tracking off. Measured: the Python memory the driver holds
once the search is over (tracemalloc, in a second run of the same search: it keeps every result, which the
final answer, the checkpoint and `popplast report` read) and its peak, the process's resident memory growth
(psutil, the first run), the driver's CPU time per evaluation (the first run), and one checkpoint written at
the end (the state file popplast writes every generation: its bytes and seconds).

Ratios (bytes per evaluation at the largest size / at the smallest) first: about 1 means memory grows
linearly in the evaluations, with the per-evaluation figure as its slope.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from simulated_cluster import MODELS  # noqa: E402


class FolderStore:
    """The checkpoint store protocol (tracking/checkpoint_store.py) over a local folder."""

    def __init__(self, root: str) -> None:
        self.root = root

    def save_checkpoint(self, directory: str, keep_weights: set[str]) -> None:
        target = os.path.join(self.root, "checkpoint")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(directory, target)

    def load_checkpoint(self, directory: str) -> str | None:
        return None


def measure(method: str, evaluations: int, population: int) -> dict:
    from popplast.core.spec import SearchSpec
    from popplast.core.strategies import build_strategy
    from popplast.core.strategy_spec import split_schedule
    from popplast.execution.checkpoint import Checkpoint, Checkpointer
    from popplast.execution.search import run_search
    from popplast.simulation import simulated_executor

    space_file, simulate = MODELS["thesis"]
    name, schedule = split_schedule(method)
    spec = SearchSpec.from_yaml(space_file).with_overrides(
        method=name, population=population, generations=evaluations // population, seed=0, schedule=schedule
    )

    def search():
        return run_search(
            spec,
            build_strategy(spec, evaluations),
            simulated_executor(spec, simulate, population),
            np.random.default_rng(0),
        )

    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    cpu = time.process_time()
    outcome = search()
    cpu = time.process_time() - cpu
    gc.collect()
    grown = process.memory_info().rss - before
    del outcome
    gc.collect()
    tracemalloc.start()
    outcome = search()
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        point = Checkpoint(
            outcome.state.generation, outcome.state, {}, outcome.history, outcome.results, {}, stopper_log=[]
        )
        Checkpointer(FolderStore(root)).save(point)
        seconds = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
    n = len(outcome.results)
    del outcome
    return {
        "n": n,
        "rss": grown,
        "held": held,
        "peak": peak,
        "cpu": cpu,
        "checkpoint_bytes": size,
        "checkpoint_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--methods", default="ga,ga-async")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = [(m, measure(m, n, min(args.population, n))) for m in args.methods.split(",") for n in sizes]
    print("# Ratios (bytes held per evaluation, largest size / smallest)")
    for method in args.methods.split(","):
        own = [r for m, r in rows if m == method]
        first, last = own[0], own[-1]
        print(f"- {method}: ratio {(last['held'] / last['n']) / (first['held'] / first['n']):.2f}")
    print()
    print(
        "| method | evaluations | held MB | bytes held / evaluation | peak MB | resident growth MB | "
        "driver µs / evaluation | checkpoint MB | checkpoint seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for method, r in rows:
        print(
            f"| {method} | {r['n']} | {r['held'] / 2**20:.1f} | {r['held'] / r['n']:.0f} | {r['peak'] / 2**20:.1f} | "
            f"{r['rss'] / 2**20:.0f} | {1e6 * r['cpu'] / r['n']:.0f} | {r['checkpoint_bytes'] / 2**20:.1f} | "
            f"{r['checkpoint_seconds']:.2f} |"
        )


if __name__ == "__main__":
    main()
