"""Moving and fusing parent weights: Ray's object store (popplast) against torch.save/torch.load files
(checkpoint-based PBT), for state dicts the size of ShuffleNet-v2 x1.0 and ResNet-18 (issue 8).

    .venv/bin/python benchmarks/weights.py [--repeats 7]

Two Ray actors on this machine: a parent side that writes the trained weights, a child side that reads
them and loads them into its own model. Per operation, in milliseconds:
- exploit: the child starts from one parent's weights (write once, read, copy into the child's model);
- fusion: the child starts from the fitness-weighted average of two parents (write two, read two, average
  into the child's model).
The store path is popplast's (`to_shareable` numpy arrays, `ray.put` / `ray.get`); the file path writes with
torch.save to a temporary folder and reads with torch.load, as checkpoint-based PBT does. Both load with
popplast's `load_fused`, so that only the transport differs. Medians over repeats, (min–max); the ratios
file / store come first: per operation (write + read) and for the read side alone (what an exploit or a
fusion adds, the parents' weights being written after every evaluation on either path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import ray
import torch
import torchvision

from popplast.training.fusion import load_fused
from popplast.training.weights import to_shareable

MODELS = {"ShuffleNet-v2 x1.0": "shufflenet_v2_x1_0", "ResNet-18": "resnet18"}


@ray.remote(num_cpus=1)
class Side:
    def __init__(self, name: str) -> None:
        torch.set_num_threads(1)
        self.model = torchvision.models.get_model(name)
        self.state = {k: v.clone() for k, v in self.model.state_dict().items()}

    def write_store(self) -> tuple[list, float]:
        start = time.perf_counter()
        ref = ray.put(to_shareable(self.state))
        return [ref], time.perf_counter() - start

    def write_file(self, path: str) -> float:
        start = time.perf_counter()
        torch.save(self.state, path)
        return time.perf_counter() - start

    def copy_floor(self, repeats: int) -> tuple[list[float], list[float]]:
        """One copy of the weights in this process: into memory already in use (the model's own tensors),
        and into fresh memory (a clone): the least any path that moves them between processes pays per side."""
        into_model, into_fresh = [], []
        targets = list(self.model.state_dict().values())
        with torch.no_grad():
            for _ in range(repeats):
                start = time.perf_counter()
                for target, source in zip(targets, self.state.values()):
                    target.copy_(source)
                into_model.append(time.perf_counter() - start)
                start = time.perf_counter()
                clone = [v.clone() for v in self.state.values()]
                into_fresh.append(time.perf_counter() - start)
                del clone
        return into_model, into_fresh

    def read(self, sources: list, kind: str) -> float:
        """Read one or two parents, fuse (two) and load into this side's model."""
        start = time.perf_counter()
        if kind == "store":
            states = ray.get(sources)
        else:
            states = [torch.load(path) for path in sources]
        load_fused(self.model, states, [0.6, 0.4] if len(states) == 2 else [1.0])
        return time.perf_counter() - start


def measure(name: str, parents: int, kind: str, repeats: int, folder: str) -> list[tuple[float, float]]:
    writers = [Side.remote(name) for _ in range(parents)]
    reader = Side.remote(name)
    out = []
    for r in range(repeats + 1):  # the first round warms both sides up
        if kind == "store":
            written = ray.get([w.write_store.remote() for w in writers])
            sources, write = [refs[0] for refs, _ in written], max(t for _, t in written)
        else:
            paths = [os.path.join(folder, f"{name}-{r}-{i}.pt") for i in range(parents)]
            write = max(ray.get([w.write_file.remote(p) for w, p in zip(writers, paths)]))
            sources = paths
        read = ray.get(reader.read.remote(sources, kind))
        if r:
            out.append((write, read))
        if kind == "file":
            for path in sources:
                os.remove(path)
    for actor in writers + [reader]:
        ray.kill(actor)
    return out


def fmt(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.1f} ({min(ms):.1f}–{max(ms):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS.values()),
        default=list(MODELS.values()),
        help="torchvision names of the state dicts to move (default: all)",
    )
    args = parser.parse_args()
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    rows, floors = [], []
    with tempfile.TemporaryDirectory() as folder:
        for label, name in [(k, v) for k, v in MODELS.items() if v in args.models]:
            size = sum(t.numel() * t.element_size() for t in torchvision.models.get_model(name).state_dict().values())
            for operation, parents in (("exploit", 1), ("fusion", 2)):
                store = measure(name, parents, "store", args.repeats, folder)
                files = measure(name, parents, "file", args.repeats, folder)
                total = lambda rows: [w + r for w, r in rows]  # noqa: E731
                ratio = statistics.median(total(files)) / statistics.median(total(store))
                read_ratio = statistics.median(r for _, r in files) / statistics.median(r for _, r in store)
                rows.append((label, size, operation, store, files, ratio, read_ratio))
                print(
                    f"ratio file/store, {label} {operation}: {ratio:.1f}x per operation "
                    f"(read side alone {read_ratio:.1f}x)",
                    flush=True,
                )
            side = Side.remote(name)
            floors.append((label, size, *ray.get(side.copy_floor.remote(args.repeats))))
            ray.kill(side)
    ray.shutdown()
    print(
        "\n| state dict | operation | object store: write / read / total ms | files: write / read / total ms "
        "| ratio per operation | ratio, read side |"
    )
    print("|---|---|---|---|---|---|")
    for label, size, operation, store, files, ratio, read_ratio in rows:

        def cell(rows):
            return " / ".join(fmt(x) for x in ([w for w, _ in rows], [r for _, r in rows], [w + r for w, r in rows]))

        print(
            f"| {label} ({size / 2**20:.1f} MiB) | {operation} | {cell(store)} | {cell(files)} | {ratio:.1f}x "
            f"| {read_ratio:.1f}x |"
        )

    print("\n| state dict | one copy into the model's tensors, ms | one copy into fresh memory (clone), ms |")
    print("|---|---|---|")
    for label, size, into_model, into_fresh in floors:
        print(f"| {label} ({size / 2**20:.1f} MiB) | {fmt(into_model)} | {fmt(into_fresh)} |")


if __name__ == "__main__":
    main()
