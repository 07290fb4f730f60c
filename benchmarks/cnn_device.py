"""One CNN evaluation on a GPU against the CPU: the same individuals of a search space, trained and measured
by popplast's evaluator on each device.

    .venv/bin/python benchmarks/cnn_device.py [SPACE.yaml ...] [--individuals 6] [--threads N]

For each space (default: the demo's, and the metaplastic LeNet-5 on digits at 32 px), the individuals are
drawn from the space with a fixed seed and evaluated one after another on the CPU (N torch threads) and on
CUDA, each device warmed by one evaluation first (data loaded, kernels compiled). Prints evaluations per
minute on each device and their ratio first, then the largest difference in validation MCC between the two
devices (training on a GPU is not bit for bit the CPU's: a reproducible search stays on one kind of device).
Without CUDA it says so and stops.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from popplast.core.individual import Individual
from popplast.objectives.cnn import cnn_evaluator
from popplast.spec.search import SearchSpec

HERE = os.path.dirname(os.path.abspath(__file__))
SPACES = [os.path.join(HERE, "..", "search_spaces", name) for name in ("digits_gencnn.yaml", "digits_metaplastic.yaml")]


def evaluate_all(spec: SearchSpec, configs: list[dict], device: str, threads: int) -> tuple[float, list[float]]:
    evaluator = cnn_evaluator(spec.dataset, spec.fidelity, spec.fixed, threads=threads, device=device)
    warm = evaluator.evaluate(Individual("warm", (), 0, seed=99), configs[0])
    assert warm.ok, warm.error
    start = time.perf_counter()
    results = [evaluator.evaluate(Individual(f"i{k}", (), 0, seed=k), c) for k, c in enumerate(configs)]
    seconds = time.perf_counter() - start
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return len(configs) / seconds * 60, [r.metrics["val_mcc"] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spaces", nargs="*", default=SPACES)
    parser.add_argument("--individuals", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("cnn_device.py: no CUDA device here; it compares a GPU with the CPU.")
    rows = []
    for path in args.spaces:
        spec = SearchSpec.from_yaml(path)
        rng = np.random.default_rng(0)
        configs = [spec.space.decode(rng.random(len(spec.space))) for _ in range(args.individuals)]
        cpu, cpu_mcc = evaluate_all(spec, configs, "cpu", args.threads)
        gpu, gpu_mcc = evaluate_all(spec, configs, "cuda", args.threads)
        gap = max(abs(a - b) for a, b in zip(cpu_mcc, gpu_mcc))
        rows.append((os.path.basename(path), spec, cpu, gpu, gap, statistics.mean(cpu_mcc)))
    for name, _, cpu, gpu, _, _ in rows:
        print(f"{name}: GPU / CPU evaluations per minute {gpu / cpu:.2f}x")
    print(
        f"\n{torch.cuda.get_device_name()}, {args.threads} CPU threads ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__}, {args.individuals} individuals per space\n"
    )
    print("| space | epochs × image size | CPU evaluations/min | GPU evaluations/min | ratio | largest val MCC gap |")
    print("|---|---|---|---|---|---|")
    for name, spec, cpu, gpu, gap, _ in rows:
        size = f"{spec.fidelity.epochs} × {spec.fidelity.image_size} px"
        print(f"| {name} | {size} | {cpu:.1f} | {gpu:.1f} | {gpu / cpu:.2f}x | {gap:.4f} |")


if __name__ == "__main__":
    main()
