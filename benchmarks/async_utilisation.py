"""Worker utilisation of generational against asynchronous evolution (issue 17, ALGORITHMS.md §9).

    .venv/bin/python benchmarks/async_utilisation.py [--evaluations 96] [--base 0.05]

Part 1, measured on this machine's Ray pool: `popplast.run` with a user objective whose cost depends on its
genes as the thesis' architectures' do (it sleeps `base` × (1 + arch) seconds, arch ∈ 0..7: ×1 to ×8), for
ga, gensoup and pbt, `schedule: generational` against `schedule: async`, at equal evaluation budgets, with
2, 8 and 16 workers (`--cpus-per-worker` 2/W: a sleeping evaluation needs no CPU, so 16 workers fit on 2
cores and the loop, not the machine, is what is measured). Utilisation = Σ busy / (workers × wall), from the
runs' own start and end times (reports/utilisation.py).

Part 2, a list-scheduling model (not the simulated cluster, which has not landed): the same two schedules
with costs drawn uniformly from the nine thesis architectures' relative costs (1 to 8) at 16, 64, 256 and
1,024 workers, population = 50 and = workers, no overheads: what the barrier costs at scale in principle.

Ratios (asynchronous / generational utilisation) first.
"""

from __future__ import annotations

import argparse
import atexit
import heapq
import os
import shutil
import tempfile
import textwrap

import numpy as np

OBJECTIVE = """
import time

import torch


def fit(config, trial):
    time.sleep(BASE * (1 + int(config["arch"])))
    inherited = trial.inherited_state()
    w = inherited["w"] if inherited is not None else torch.zeros(4)
    return {"score": -(config["x"] - 0.3) ** 2}, {"w": w + 1}
"""

SPEC = """
objective: costobj:fit
fitness: {{metric: score, mode: maximize}}
strategy: {{method: {method}, population: {population}, generations: {generations}, seed: 0, schedule: {schedule}}}
space:
  x: {{type: float, low: 0.0, high: 1.0}}
  arch: {{type: int, low: 0, high: 7}}
"""

THESIS_COSTS = np.array([1.0, 1.3, 1.8, 2.2, 2.9, 3.6, 4.5, 6.0, 8.0])  # nine architectures, ×1 to ×8


def measured(method: str, schedule: str, workers: int, evaluations: int, base: float, folder: str) -> tuple:
    import popplast

    population = max(workers, 8)
    spec = os.path.join(folder, f"{method}-{schedule}-{workers}.yaml")
    with open(spec, "w") as f:
        f.write(
            SPEC.format(method=method, population=population, generations=evaluations // population, schedule=schedule)
        )
    result = popplast.run(
        spec,
        workers=workers,
        cpus_per_worker=2 / workers,
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
        progress=False,
    )
    return result.worker_utilisation, result.wall_seconds, result.evaluations


def modelled(schedule: str, workers: int, population: int, evaluations: int, rng: np.random.Generator) -> float:
    costs = rng.choice(THESIS_COSTS, size=evaluations)
    if schedule == "async":  # each worker takes the next evaluation the moment it is free
        free = [0.0] * workers
        for c in costs:
            heapq.heappush(free, heapq.heappop(free) + c)
        wall = max(free)
    else:  # a generation's evaluations list-scheduled on the workers; the next one waits for the slowest
        wall = 0.0
        for start in range(0, evaluations, population):
            free = [0.0] * workers
            for c in costs[start : start + population]:
                heapq.heappush(free, heapq.heappop(free) + c)
            wall += max(free)
    return float(costs.sum() / (workers * wall))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluations", type=int, default=96)
    parser.add_argument("--base", type=float, default=0.05)
    parser.add_argument("--workers", default="2,8,16")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="popplast-async-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with open(os.path.join(folder, "costobj.py"), "w") as f:
        f.write(textwrap.dedent(OBJECTIVE).replace("BASE", repr(args.base)))
    os.environ["POPPLAST_JOURNAL_DIR"] = os.path.join(folder, "journal")
    rows = []
    from popplast.execution.ray_session import ray_session

    with ray_session(None):  # one Ray instance for every run
        for workers in (int(w) for w in args.workers.split(",")):
            for method in ("ga", "gensoup", "pbt"):
                generational = measured(method, "generational", workers, args.evaluations, args.base, folder)
                asynchronous = measured(method, "async", workers, args.evaluations, args.base, folder)
                rows.append((method, workers, generational, asynchronous))
    rng = np.random.default_rng(0)
    model = []
    for workers in (16, 64, 256, 1024):
        for population in (50, workers):
            evaluations = max(population, workers) * 20
            g = modelled("generational", workers, population, evaluations, rng)
            a = modelled("async", workers, population, evaluations, rng)
            model.append((workers, population, g, a))
    print(
        "utilisation ratio, asynchronous / generational (measured, Ray pool on this machine): "
        + ", ".join(f"{m} {w}w {a[0] / g[0]:.2f}x" for m, w, g, a in rows)
    )
    print(
        "utilisation ratio, asynchronous / generational (list-scheduling model): "
        + ", ".join(f"{w}w P={p} {a / g:.2f}x" for w, p, g, a in model)
    )
    print(f"\nMeasured: {args.evaluations} evaluations each, sleeping {args.base} s × (1 + arch), arch 0..7")
    print("\n| method | workers | generational utilisation | async utilisation | generational wall s | async wall s |")
    print("|---|---|---|---|---|---|")
    for method, workers, g, a in rows:
        print(f"| {method} | {workers} | {g[0]:.3f} | {a[0]:.3f} | {g[1]:.1f} | {a[1]:.1f} |")
    print("\nModel (list scheduling, costs from the nine thesis architectures, no overheads)")
    print("\n| workers | population | generational | async |")
    print("|---|---|---|---|")
    for workers, population, g, a in model:
        print(f"| {workers} | {population} | {g:.3f} | {a:.3f} |")


if __name__ == "__main__":
    main()
