"""Metaplastic conv updates against plain training (paper 000's protocol) on digits; prints a table.

    .venv/bin/python benchmarks/metaplasticity_digits.py [--seeds 10] [--epochs 10]

The paper's MNIST setting, scaled to scikit-learn's digits: LeNet-5 at 32×32 pixels, cross-entropy, SGD with
Nesterov momentum 0.9, lr 0.01, batch 128, 10 epochs (--epochs). B is chosen first on the validation split
with three tuning seeds (100, 101, 102) from the grid B ∈ {0.05, 0.25, 1, 4}; then plain (B = 0) and
metaplastic (the chosen B) training run with the same seeds 0..S-1 (same initial weights and batch order for
both), and the paired test accuracies are compared with a two-sided Wilcoxon signed-rank test. Raw results go to
docs/experiments-metaplasticity-EPOCHSepochs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

GRID = (0.05, 0.25, 1.0, 4.0)
TUNING_SEEDS = (100, 101, 102)


def evaluate(evaluator, b: float, seed: int) -> dict[str, float]:
    from popplast.core.individual import Individual

    config = {
        "architecture": "lenet5",
        "optimizer": "sgd_nesterov",
        "lr_scale": 1.0,
        "batch_size": 128,
        "metaplastic_b": b,
    }
    result = evaluator.evaluate(Individual(f"b{b}-s{seed}", (), 0, seed=seed), config)
    if not result.ok:
        raise RuntimeError(result.error)
    return result.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", help="raw results (default docs/experiments-metaplasticity-EPOCHSepochs.json)")
    args = parser.parse_args()
    args.out = args.out or os.path.join(
        os.path.dirname(__file__), "..", "docs", f"experiments-metaplasticity-{args.epochs}epochs.json"
    )
    from scipy.stats import wilcoxon

    from popplast.objectives.cnn import cnn_evaluator
    from popplast.spec.search import DatasetSpec, Fidelity

    evaluator = cnn_evaluator(
        DatasetSpec("digits", split_seed=0), Fidelity(image_size=32, epochs=args.epochs, batch_size=128), threads=2
    )
    tuning = {b: statistics.mean(evaluate(evaluator, b, s)["val_accuracy"] for s in TUNING_SEEDS) for b in GRID}
    best_b = max(GRID, key=lambda b: tuning[b])
    print(
        "B on validation (mean of 3 tuning seeds): "
        + ", ".join(f"B={b:g}: {v:.4f}" for b, v in tuning.items())
        + f" -> B = {best_b:g}",
        flush=True,
    )
    rows = []
    for seed in range(args.seeds):
        row = {"seed": seed}
        for name, b in (("plain", 0.0), ("metaplastic", best_b)):
            start = time.perf_counter()
            metrics = evaluate(evaluator, b, seed)
            row[name] = {
                "test_accuracy": metrics["test_accuracy"],
                "test_mcc": metrics["test_mcc"],
                "val_accuracy": metrics["val_accuracy"],
                "seconds": time.perf_counter() - start,
            }
        rows.append(row)
        print(
            f"seed {seed}: plain {row['plain']['test_accuracy']:.4f}, metaplastic "
            f"{row['metaplastic']['test_accuracy']:.4f}",
            flush=True,
        )
    plain = [r["plain"]["test_accuracy"] for r in rows]
    meta = [r["metaplastic"]["test_accuracy"] for r in rows]
    diffs = [m - p for m, p in zip(meta, plain)]
    test = wilcoxon(meta, plain) if any(diffs) else None
    summary = {
        "b": best_b,
        "tuning": {str(b): v for b, v in tuning.items()},
        "seeds": args.seeds,
        "epochs": args.epochs,
        "plain_mean": statistics.mean(plain),
        "plain_std": statistics.stdev(plain),
        "metaplastic_mean": statistics.mean(meta),
        "metaplastic_std": statistics.stdev(meta),
        "diff_mean": statistics.mean(diffs),
        "wins": sum(d > 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
        "wilcoxon_p": None if test is None else float(test.pvalue),
        "seconds_plain": statistics.mean(r["plain"]["seconds"] for r in rows),
        "seconds_metaplastic": statistics.mean(r["metaplastic"]["seconds"] for r in rows),
    }
    print(f"\n| training | test accuracy (mean ± std, {args.seeds} seeds) | s per run |\n|---|---|---|")
    print(f"| plain | {summary['plain_mean']:.4f} ± {summary['plain_std']:.4f} | {summary['seconds_plain']:.1f} |")
    print(
        f"| metaplastic, B = {best_b:g} | {summary['metaplastic_mean']:.4f} ± {summary['metaplastic_std']:.4f} | "
        f"{summary['seconds_metaplastic']:.1f} |"
    )
    print(
        f"difference {summary['diff_mean']:+.4f} (metaplastic better on {summary['wins']}, worse on "
        f"{summary['losses']} seeds); Wilcoxon signed-rank p = {summary['wilcoxon_p']}"
    )
    with open(args.out, "w") as f:
        json.dump({"summary": summary, "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()
