"""Issue 33 (a): the loss barrier between independently trained networks, plain against aligned
(docs/experiments.md, "Fusion from scratch: align, share, soup").

    .venv/bin/python benchmarks/fusion_interpolation.py [--pairs 5] [--epochs 5]
        [--architectures lenet5,small_vgg,resnet18] [--out docs/experiments-fusion-interpolation.json]

For each architecture, 2 × pairs networks are trained on digits by popplast's own CNN trainer (Adam, its
default settings, `--epochs` epochs, each from its own seed: independent initialisations and batch orders).
For each pair (A, B) the validation accuracy is measured along (1 − α)·A + α·B for α = 0, 0.1, ..., 1, with
B as trained ("plain") and with B's hidden units permuted to match A's by weight matching ("aligned",
training/alignment.py); BatchNorm statistics are re-estimated on 10 training batches at every α, for both.

Prints the ratio first: the mean barrier aligned / plain (< 1: alignment lowers it), per architecture. The
barrier of a pair: the mean of its endpoints' accuracy minus the lowest accuracy on the path (ALGORITHMS.md
§12 measures a fusion against the better parent; the curve's barrier is the usual midpoint-free version).
Writes the curves as JSON and, with matplotlib, the figure beside it (.png).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "docs", "experiments-fusion-interpolation.json")
SIZES = {"lenet5": 16, "small_vgg": 16, "resnet18": 32}
ALPHAS = [round(a, 1) for a in np.linspace(0, 1, 11)]
BN_BATCHES = 10


def trained(arch: str, seed: int, epochs: int, image_size: int) -> dict:
    from popplast.core.individual import Individual
    from popplast.objectives.cnn import cnn_evaluator
    from popplast.spec.search import DatasetSpec, Fidelity
    from popplast.training.weights import from_shareable

    evaluator = cnn_evaluator(DatasetSpec("digits"), Fidelity(image_size=image_size, epochs=epochs), threads=2)
    result = evaluator.evaluate(
        Individual(f"{arch}-{seed}", (0.0,), 0, seed=seed), {"architecture": arch}, return_weights=True
    )
    if not result.ok:
        raise RuntimeError(result.error)
    return {k: v.clone() for k, v in from_shareable(result.weights).items()}


def curve(model, data, a: dict, b: dict) -> list[float]:
    from popplast.training.data import batches
    from popplast.training.fusion import fuse_state_dicts, reestimate_batchnorm
    from popplast.training.train import measure_split

    out = []
    for alpha in ALPHAS:
        model.load_state_dict(fuse_state_dicts([a, b], [1 - alpha, alpha]))
        generator = torch.Generator().manual_seed(0)
        inputs = (x for x, _ in batches(data.train, 64, shuffle=True, generator=generator))
        reestimate_batchnorm(model, itertools.islice(inputs, BN_BATCHES))
        out.append(measure_split(model, data.val, torch.device("cpu"), "val")["val_accuracy"])
    return out


def barrier(values: list[float]) -> float:
    return (values[0] + values[-1]) / 2 - min(values)


def run(architectures: list[str], pairs: int, epochs: int) -> dict:
    from popplast.spec.search import DatasetSpec
    from popplast.training.alignment import align
    from popplast.training.build import model_for, split_for
    from popplast.training.config import resolve
    from popplast.training.data import native_channels
    from popplast.training.permutations import permutation_spec

    report: dict = {"alphas": ALPHAS, "epochs": epochs, "pairs": pairs, "architectures": {}}
    for arch in architectures:
        start = time.perf_counter()
        size = SIZES.get(arch, 32)
        cfg = resolve({"architecture": arch}, {})
        channels = native_channels(DatasetSpec("digits"))
        from popplast.spec.search import Fidelity

        data = split_for(DatasetSpec("digits"), cfg, Fidelity(image_size=size), channels)
        model = model_for(cfg, channels, data.num_classes)
        example = next(iter(data.val.tensors[0].split(2)))
        spec = permutation_spec(model, example)
        rows = []
        for p in range(pairs):
            a, b = trained(arch, 2 * p + 1, epochs, size), trained(arch, 2 * p + 2, epochs, size)
            aligned_b = align(spec, [a, b], seed=p)[1]
            rows.append({"plain": curve(model, data, a, b), "aligned": curve(model, data, a, aligned_b)})
            print(
                f"  {arch} pair {p}: barrier plain {barrier(rows[-1]['plain']):.4f}, "
                f"aligned {barrier(rows[-1]['aligned']):.4f}",
                flush=True,
            )
        report["architectures"][arch] = {
            "image_size": size,
            "groups": len(spec.groups),
            "units": sum(spec.groups.values()),
            "pairs": rows,
            "seconds": time.perf_counter() - start,
        }
    return report


def summary(report: dict) -> None:
    for arch, r in report["architectures"].items():
        plain = [barrier(p["plain"]) for p in r["pairs"]]
        aligned = [barrier(p["aligned"]) for p in r["pairs"]]
        mid = ALPHAS.index(0.5)
        ratio = statistics.mean(aligned) / statistics.mean(plain) if statistics.mean(plain) > 0 else float("nan")
        print(
            f"{arch}: barrier aligned/plain {ratio:.2f} (plain {statistics.mean(plain):.4f} ± "
            f"{statistics.pstdev(plain):.4f}, aligned {statistics.mean(aligned):.4f} ± "
            f"{statistics.pstdev(aligned):.4f}; "
            f"midpoint accuracy plain {statistics.mean(p['plain'][mid] for p in r['pairs']):.4f}, aligned "
            f"{statistics.mean(p['aligned'][mid] for p in r['pairs']):.4f}; endpoints "
            f"{statistics.mean((p['plain'][0] + p['plain'][-1]) / 2 for p in r['pairs']):.4f}; {r['seconds']:.0f} s)"
        )


def figure(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = list(report["architectures"])
    fig, axes = plt.subplots(1, len(archs), figsize=(4 * len(archs), 3.2), sharey=True)
    for ax, arch in zip(np.atleast_1d(axes), archs):
        for p in report["architectures"][arch]["pairs"]:
            ax.plot(ALPHAS, p["plain"], color="tab:red", alpha=0.6)
            ax.plot(ALPHAS, p["aligned"], color="tab:blue", alpha=0.6)
        ax.set_title(arch)
        ax.set_xlabel("α  ((1 − α)·A + α·B)")
    np.atleast_1d(axes)[0].set_ylabel("validation accuracy")
    np.atleast_1d(axes)[0].plot([], [], color="tab:red", label="plain")
    np.atleast_1d(axes)[0].plot([], [], color="tab:blue", label="aligned (weight matching)")
    np.atleast_1d(axes)[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--architectures", default="lenet5,small_vgg,resnet18")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--from-json", action="store_true", help="the figures again from --out alone")
    args = parser.parse_args()
    if args.from_json:
        with open(args.out) as f:
            report = json.load(f)
    else:
        report = run(args.architectures.split(","), args.pairs, args.epochs)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    summary(report)
    figure(report, os.path.splitext(args.out)[0] + ".png")


if __name__ == "__main__":
    main()
