"""The driver's memory and checkpoint size as a search grows to 100,000 evaluations (issue 19).

    .venv/bin/python benchmarks/driver_memory.py [--sizes 1000,10000,100000] [--population 1000]

The real loop and strategy (ga, and ga-async) on the simulated cluster (1,000 workers, evaluations from the
thesis cost model, three reported steps each), tracking off, and ga again with tracking on. Measured: the
Python memory the driver holds once the search is over (tracemalloc, in a second run of the same search: it
keeps every result's summary, which the final answer and the checkpoint read) and its peak, the process's
resident memory growth (psutil, the first run), the driver's CPU time per evaluation (the first run), and
one checkpoint written at the end (the state file popplast writes every generation: its bytes and seconds).

Ratios (bytes per evaluation at the largest size / at the smallest) first: about 1 means memory grows
linearly in the evaluations, with the per-evaluation figure as its slope; below 1, a fixed part (the
tracker's MLflow store) is spread over more evaluations, and the slope (bytes more per evaluation from the
smallest size to the largest) is what grows.

--tracked: methods measured again with tracking into SQLite through the outbox, as `popplast run` tracks
(no checkpoints there: their cost is the last two columns), the tracker's memory included.
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


def measure(method: str, evaluations: int, population: int, tracked: bool = False) -> dict:
    from popplast.execution.checkpoint import Checkpoint, Checkpointer
    from popplast.execution.search import run_search
    from popplast.execution.simulated import simulated_executor
    from popplast.search.tracking import start_tracking, tracker_for
    from popplast.spec.search import SearchSpec
    from popplast.spec.strategy import split_schedule
    from popplast.strategies.build import build_strategy
    from popplast.tracking.outbox import open_outbox

    space_file, simulate = MODELS["thesis"]
    name, schedule = split_schedule(method)
    spec = SearchSpec.from_yaml(space_file).with_overrides(
        method=name, population=population, generations=evaluations // population, seed=0, schedule=schedule
    )

    def search():
        if not tracked:
            return run_search(
                spec, build_strategy(spec, evaluations), simulated_executor(spec, simulate, population), rng()
            )
        # tracked: into SQLite through the outbox, as `popplast run` does; the tracker is what it keeps
        folder = tempfile.mkdtemp(dir=scratch)
        tracker = tracker_for(f"sqlite:///{folder}/mlflow.db", "memory", name, None)
        start_tracking(tracker, spec, evaluations, {"executor": "simulated", "workers": population}, None, None)
        outbox = open_outbox(tracker, os.path.join(folder, "journal"))
        executor = simulated_executor(spec, simulate, population)
        outcome = run_search(spec, build_strategy(spec, evaluations), executor, rng(), [outbox])
        outbox.drain()
        kept.append(outbox)  # held until measured, then finished
        return outcome

    def rng():
        return np.random.default_rng(0)

    scratch = tempfile.mkdtemp()
    kept: list = []

    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    cpu = time.process_time()
    outcome = search()
    cpu = time.process_time() - cpu
    gc.collect()
    grown = process.memory_info().rss - before
    del outcome
    finish(kept)
    gc.collect()
    tracemalloc.start()
    outcome = search()
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    finish(kept)
    shutil.rmtree(scratch, ignore_errors=True)
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


def finish(outboxes: list) -> None:
    while outboxes:
        outboxes.pop().finish()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--methods", default="ga,ga-async")
    parser.add_argument("--tracked", default="ga", help="methods measured again with tracking into SQLite")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = [(m, "off") for m in args.methods.split(",") if m] + [
        (m, "sqlite") for m in args.tracked.split(",") if m
    ]
    rows = [(m, t, measure(m, n, min(args.population, n), t != "off")) for m, t in settings for n in sizes]
    print("# Ratios (bytes held per evaluation, largest size / smallest)")
    for method, tracking in settings:
        own = [r for m, t, r in rows if (m, t) == (method, tracking)]
        first, last = own[0], own[-1]
        ratio = (last["held"] / last["n"]) / (first["held"] / first["n"])
        slope = (last["held"] - first["held"]) / max(1, last["n"] - first["n"])
        print(f"- {method}, tracking {tracking}: ratio {ratio:.2f}; {slope:.0f} bytes more per evaluation")
    print()
    print(
        "| method | tracking | evaluations | held MB | bytes held / evaluation | peak MB | resident growth MB | "
        "driver µs / evaluation | checkpoint MB | checkpoint seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method, tracking, r in rows:
        print(
            f"| {method} | {tracking} | {r['n']} | {r['held'] / 2**20:.1f} | {r['held'] / r['n']:.0f} | "
            f"{r['peak'] / 2**20:.1f} | "
            f"{r['rss'] / 2**20:.0f} | {1e6 * r['cpu'] / r['n']:.0f} | {r['checkpoint_bytes'] / 2**20:.1f} | "
            f"{r['checkpoint_seconds']:.2f} |"
        )


if __name__ == "__main__":
    main()
