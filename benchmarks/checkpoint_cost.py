"""What Gen-Soup's per-generation checkpoint costs (the price of an exact resume), for populations of
ShuffleNet-v2 x1.0 and ResNet-18 sized weights, against checkpoint-based PBT's own per-trial torch.save.

    .venv/bin/python benchmarks/checkpoint_cost.py [--population 8] [--generations 3]

A worker actor puts P trained state dicts into Ray's object store per generation, as evaluations do; the
driver then runs popplast's real `Checkpointer` into a real MLflow tracker (sqlite store, local artifacts):
each new individual's weights are fetched, written as .npz (its digest goes in the state file), re-put from
the driver (so that losing the worker's node loses nothing) and uploaded, then the state file; the weights
neither this state nor the one before names are deleted. Timed per generation, with its parts; the first
generation is a warm-up. The reference is one `torch.save` per individual to a local file, what a PBT trial
writes at every perturbation interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import ray
import torch
import torchvision

from popplast.core.individual import individual_id
from popplast.execution.checkpoint import Checkpoint, Checkpointer
from popplast.execution.ray_pool import RayExecutor
from popplast.spec.search import SearchSpec
from popplast.strategies.ga import GAState
from popplast.tracking.mlflow_tracker import MLflowTracker
from popplast.training.weights import to_shareable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"ShuffleNet-v2 x1.0": "shufflenet_v2_x1_0", "ResNet-18": "resnet18"}


@ray.remote(num_cpus=1)
class Worker:
    def __init__(self, name: str) -> None:
        self.state = torchvision.models.get_model(name).state_dict()

    def trained(self, seed: int) -> list:
        """A fresh set of weights (different bytes each time, as training gives), left in the object store."""
        g = torch.Generator().manual_seed(seed)
        state = {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v) for k, v in self.state.items()}
        return [ray.put(to_shareable(state))]


class Timed:
    """Wraps a callable and sums the seconds spent in it."""

    def __init__(self, fn) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.seconds += time.perf_counter() - start


def generation_costs(name: str, population: int, generations: int, folder: str) -> list[dict[str, float]]:
    tracker = MLflowTracker(f"sqlite:///{folder}/mlflow.db", "checkpoint-cost", "gensoup")
    tracker.start_search(
        SearchSpec.from_yaml(os.path.join(ROOT, "search_spaces", "digits_gensoup.yaml")), {"weights_like": name}
    )
    worker = Worker.remote(name)
    fetch, put = Timed(RayExecutor.fetch), Timed(ray.put)
    upload = Timed(tracker.save_checkpoint)
    tracker.save_checkpoint = upload  # the Checkpointer calls it through the store
    checkpointer = Checkpointer(tracker, fetch, put)
    rows = []
    for generation in range(generations + 1):
        refs = ray.get([worker.trained.remote(generation * population + i) for i in range(population)])
        weights = {individual_id(generation, i): ref for i, [ref] in enumerate(refs)}
        fetch.seconds = put.seconds = upload.seconds = 0.0
        start = time.perf_counter()
        checkpointer.save(
            Checkpoint(
                generation,
                GAState(generation=generation),
                np.random.default_rng(0).bit_generator.state,
                [],
                {},
                weights,
            )
        )
        total = time.perf_counter() - start
        if generation:  # the first generation is a warm-up
            rows.append(
                {
                    "total": total,
                    "fetch_and_write": total - put.seconds - upload.seconds,
                    "re_put": put.seconds,
                    "upload": upload.seconds,
                }
            )
    ray.kill(worker)
    tracker.release_lease()  # the search run is left RUNNING; its heartbeat must not outlive the store
    return rows


def torch_save_seconds(name: str, repeats: int, folder: str) -> list[float]:
    state = {k: v.clone() for k, v in torchvision.models.get_model(name).state_dict().items()}
    out = []
    for r in range(repeats + 1):
        path = os.path.join(folder, f"{name}-{r}.pt")
        start = time.perf_counter()
        torch.save(state, path)
        if r:
            out.append(time.perf_counter() - start)
        os.remove(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=3, help="timed generations (after one warm-up)")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS.values()),
        default=list(MODELS.values()),
        help="torchvision names of the state dicts to move (default: all)",
    )
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    torch.set_num_threads(1)
    table = []
    for label, name in [(k, v) for k, v in MODELS.items() if v in args.models]:
        with tempfile.TemporaryDirectory() as folder:
            rows = generation_costs(name, args.population, args.generations, folder)
            files = torch_save_seconds(name, 7, folder)
        per = statistics.median(r["total"] for r in rows) / args.population
        ratio = per / statistics.median(files)
        print(f"ratio checkpoint per individual / torch.save, {label}: {ratio:.1f}x", flush=True)
        table.append((label, rows, files, ratio))
    ray.shutdown()

    def cell(values: list[float], scale: float = 1.0) -> str:
        ms = [v * 1000 / scale for v in values]
        return f"{statistics.median(ms):.0f} ({min(ms):.0f}–{max(ms):.0f})"

    p = args.population
    print(
        f"\n| state dict | per generation of {p}, ms | per individual: total / fetch + .npz / re-put / "
        "upload, ms | torch.save per individual, ms | ratio |"
    )
    print("|---|---|---|---|---|")
    for label, rows, files, ratio in table:
        parts = " / ".join(cell([r[k] for r in rows], p) for k in ("total", "fetch_and_write", "re_put", "upload"))
        print(f"| {label} | {cell([r['total'] for r in rows])} | {parts} | {cell(files)} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
