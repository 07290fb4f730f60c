"""NDHTL against standard transfer learning (paper 003's protocol) on digits; prints a table.

    .venv/bin/python benchmarks/ndhtl_digits.py [--seeds 5] [--target-epochs 3] [--episode 10]

Source task digits 0-4, target task digits 5-9 (scikit-learn's digits at 16×16, the shared 60/20/20 split).
Per seed: LeNet-5 is trained on the source (10 epochs, SGD momentum 0.9, batch 32); its backbone (all but the
last layer) is copied for each method and fine-tuned on the target for the same number of images: STL with a new
linear head and SGD with batch 1; NDHTL with the plastic head and one SGD step per episode of K images; and
the ablation "episodic": NDHTL's head and schedule with α fixed at 0 (no plasticity). Each
method's learning rate is picked first on the target's validation split with a tuning seed (100). Reported:
top-1 and top-2 test accuracy on the target, mean ± std over the seeds, a paired two-sided Wilcoxon
signed-rank test (with 5 seeds its smallest possible p is 0.0625). Raw results go to docs/experiments-ndhtl.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import torch

LR_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def source_model(seed: int, split) -> torch.nn.Module:
    """LeNet-5 trained on the source classes: 10 epochs, SGD momentum 0.9, lr 0.01, batch 32."""
    from popplast.training.transfer import source_model as trained_on

    return trained_on("lenet5", split.train, SOURCE, 1, seed)


def run(
    seed: int, source: torch.nn.Module, lrs: dict[str, float], args, split, on: str = "test"
) -> dict[str, dict[str, float]]:
    """Fine-tune copies of `source`'s backbone (trained with `seed`) with each method in `lrs`; their accuracies."""
    from popplast.training.transfer import class_subset, finetune_linear, finetune_ndhtl, split_head, topk_accuracy

    backbone, features = split_head(source)
    target = class_subset(split.train, TARGET)
    measured = class_subset(split.test if on == "test" else split.val, TARGET)
    images = args.target_epochs * len(target.tensors[0])
    out = {}
    if "stl" in lrs:
        stl = finetune_linear(
            backbone, len(TARGET), features, target, images, lrs["stl"], torch.Generator().manual_seed(seed + 1)
        )
        out["stl"] = topk_accuracy(stl, measured)
    for method, plastic in (("ndhtl", True), ("episodic", False)):
        if method in lrs:
            model = finetune_ndhtl(
                backbone,
                len(TARGET),
                features,
                target,
                images,
                lrs[method],
                torch.Generator().manual_seed(seed + 1),
                episode=args.episode,
                plastic=plastic,
            )
            out[method] = topk_accuracy(model, measured)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--target-epochs", type=int, default=3)
    parser.add_argument("--episode", type=int, default=10, help="K, images per NDHTL episode")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "experiments-ndhtl.json")
    )
    parser.add_argument(
        "--save-source",
        metavar="PATH",
        help="only train the source model (seed 0) and save its state dict there (what "
        "search_spaces/digits_transfer_ndhtl.yaml makes itself when its file is missing)",
    )
    args = parser.parse_args()
    from scipy.stats import wilcoxon

    from popplast.spec.search import DatasetSpec
    from popplast.training.data import load_split

    torch.set_num_threads(2)
    split = load_split(DatasetSpec("digits", split_seed=0), 16, 1, None)
    if args.save_source:
        torch.save(source_model(0, split).state_dict(), args.save_source)
        print(f"LeNet-5 trained on digits {SOURCE[0]}-{SOURCE[-1]}: {args.save_source}")
        return
    lrs = {}
    tuning = source_model(100, split)  # trained once; every method and rate fine-tunes a copy of it
    for method in ("stl", "ndhtl", "episodic"):
        scores = {lr: run(100, tuning, {method: lr}, args, split, on="val")[method]["top1"] for lr in LR_GRID}
        lrs[method] = max(LR_GRID, key=lambda lr: scores[lr])
        print(
            f"{method}: validation top-1 by lr "
            + ", ".join(f"{lr:g}: {v:.4f}" for lr, v in scores.items())
            + f" -> lr {lrs[method]:g}",
            flush=True,
        )
    rows = []
    for seed in range(args.seeds):
        rows.append({"seed": seed, **run(seed, source_model(seed, split), lrs, args, split)})
        print(
            f"seed {seed}: "
            + ", ".join(f"{m} top-1 {rows[-1][m]['top1']:.4f} top-2 {rows[-1][m]['top2']:.4f}" for m in lrs),
            flush=True,
        )
    summary = {"lr": lrs, "episode": args.episode, "target_epochs": args.target_epochs}
    print(f"\n| head | top-1 (mean ± std, {args.seeds} seeds) | top-2 |\n|---|---|---|")
    for method in lrs:
        cells = []
        for k in ("top1", "top2"):
            values = [r[method][k] for r in rows]
            summary[f"{method}_{k}"] = (statistics.mean(values), statistics.stdev(values))
            cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}")
        print(f"| {method} (lr {lrs[method]:g}) | " + " | ".join(cells) + " |")
    for other in ("stl", "episodic"):
        for k in ("top1", "top2"):
            a, b = [r["ndhtl"][k] for r in rows], [r[other][k] for r in rows]
            key = f"{k}_vs_{other}"
            summary[f"p_{key}"] = float(wilcoxon(a, b).pvalue) if any(x != y for x, y in zip(a, b)) else None
            summary[f"wins_{key}"] = sum(x > y for x, y in zip(a, b))
            summary[f"losses_{key}"] = sum(x < y for x, y in zip(a, b))
            print(
                f"{k}, NDHTL against {other}: better on {summary[f'wins_{key}']}, worse on "
                f"{summary[f'losses_{key}']} seeds; Wilcoxon signed-rank p = {summary[f'p_{key}']}"
            )
    with open(args.out, "w") as f:
        json.dump({"summary": summary, "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()
