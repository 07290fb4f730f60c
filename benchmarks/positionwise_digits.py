"""Position-wise full-batch gradient descent against plain gradient descent (paper 001) on digits; prints tables.

    .venv/bin/python benchmarks/positionwise_digits.py [--seeds 20] [--max-epochs 20000]

The paper's network, MLP [64, 20, 7, 5, n_out] with ReLU, init N(0, 1)/sqrt(fan_in), zero biases, full-batch
gradient descent on scikit-learn's digits (pixels / 16), a fixed stratified 70/30 train/validation split:
- binary: digits 3 against 8, sigmoid output, binary cross-entropy;
- 10-class: softmax output, cross-entropy.
Each method's learning rate is tuned first, on three tuning seeds (100-102), from a grid, for the fewest
epochs to the training-loss target; then 20 seeds (the same initial weights for both methods) train until
the training loss reaches 0.1 and the validation accuracy 0.9, or --max-epochs. Reported per target:
epochs, gradient evaluations (block-backwards: 4 per epoch for plain GD, 4+3+2+1 = 10 for position-wise)
and seconds, mean ± std over the seeds that reached it, with a paired two-sided Wilcoxon signed-rank test on
the seeds both reached. Raw results go to docs/experiments-positionwise.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np
import torch
from torch import nn

LR_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
TUNING_SEEDS = (100, 101, 102)
LOSS_TARGET, ACCURACY_TARGET = 0.1, 0.9


def data(task: str):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    if task == "binary":
        keep = np.isin(y, (3, 8))
        x, y = x[keep], (y[keep] == 8).astype(np.int64)
    xt, xv, yt, yv = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    as_t = lambda a, kind: torch.tensor(a, dtype=kind)  # noqa: E731
    return as_t(xt, torch.float32), as_t(yt, torch.int64), as_t(xv, torch.float32), as_t(yv, torch.int64)


def mlp(n_out: int, seed: int) -> nn.Sequential:
    generator = torch.Generator().manual_seed(seed)
    sizes = [64, 20, 7, 5, n_out]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.Linear(a, b)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(b, a, generator=generator) / math.sqrt(a))
            linear.bias.zero_()
        layers += [linear] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def loss_and_accuracy(task: str):
    if task == "binary":
        loss = lambda out, y: nn.functional.binary_cross_entropy_with_logits(out[:, 0], y.float())  # noqa: E731
        correct = lambda out, y: ((out[:, 0] > 0).long() == y).float().mean().item()  # noqa: E731
    else:
        loss = nn.functional.cross_entropy
        correct = lambda out, y: (out.argmax(1) == y).float().mean().item()  # noqa: E731
    return loss, correct


def train(task: str, method: str, lr: float, seed: int, max_epochs: int, split) -> dict:
    from popplast.plasticity.positionwise import PositionWise, blocks_of

    xt, yt, xv, yv = split
    model = mlp(1 if task == "binary" else 10, seed)
    loss_fn, accuracy = loss_and_accuracy(task)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    blocks = blocks_of(model)
    stepper = PositionWise(blocks, optimizer) if method == "position-wise" else None
    per_epoch = len(blocks) * (len(blocks) + 1) // 2 if stepper else len(blocks)
    reached: dict[str, dict] = {}
    start = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        if stepper:
            stepper.step(xt, yt, loss_fn)
        else:
            optimizer.zero_grad()
            loss_fn(model(xt), yt).backward()
            optimizer.step()
        with torch.no_grad():
            train_loss = loss_fn(model(xt), yt).item()
            val_accuracy = accuracy(model(xv), yv)
        if not math.isfinite(train_loss):
            break
        for name, hit in (("loss", train_loss <= LOSS_TARGET), ("accuracy", val_accuracy >= ACCURACY_TARGET)):
            if hit and name not in reached:
                reached[name] = {
                    "epochs": epoch,
                    "gradient_evaluations": epoch * per_epoch,
                    "seconds": time.perf_counter() - start,
                }
        if len(reached) == 2:
            break
    return reached


def tune(task: str, method: str, max_epochs: int, split) -> tuple[float, dict]:
    scores = {}
    for lr in LR_GRID:
        epochs = [
            train(task, method, lr, s, max_epochs, split).get("loss", {}).get("epochs", math.inf) for s in TUNING_SEEDS
        ]
        scores[lr] = statistics.median(epochs)
    return min(LR_GRID, key=lambda lr: scores[lr]), scores


def summarise(rows: list[dict], target: str) -> dict:
    from scipy.stats import wilcoxon

    out = {}
    for method in ("gradient descent", "position-wise"):
        hits = [r[method][target] for r in rows if target in r[method]]
        out[method] = {"reached": len(hits)}
        for key in ("epochs", "gradient_evaluations", "seconds"):
            values = [h[key] for h in hits]
            out[method][key] = (statistics.mean(values), statistics.stdev(values)) if len(values) > 1 else None
    both = [r for r in rows if target in r["gradient descent"] and target in r["position-wise"]]
    for key in ("epochs", "gradient_evaluations", "seconds"):
        a = [r["gradient descent"][target][key] for r in both]
        b = [r["position-wise"][target][key] for r in both]
        out[f"p_{key}"] = float(wilcoxon(a, b).pvalue) if len(both) > 1 and any(x != y for x, y in zip(a, b)) else None
        out[f"ratio_{key}"] = statistics.median(x / y for x, y in zip(a, b)) if both else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--max-epochs", type=int, default=20000)
    parser.add_argument("--tasks", default="binary,10-class")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "experiments-positionwise.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {}
    for task in args.tasks.split(","):
        split = data(task)
        lrs = {}
        for method in ("gradient descent", "position-wise"):
            lrs[method], scores = tune(task, method, args.max_epochs, split)
            print(
                f"{task}, {method}: median epochs to loss {LOSS_TARGET} by lr "
                + ", ".join(f"{lr:g}: {v}" for lr, v in scores.items())
                + f" -> lr {lrs[method]:g}",
                flush=True,
            )
        rows = [
            {"seed": s, **{m: train(task, m, lrs[m], s, args.max_epochs, split) for m in lrs}}
            for s in range(args.seeds)
        ]
        report[task] = {"lr": lrs, "runs": rows, "summary": {t: summarise(rows, t) for t in ("loss", "accuracy")}}
        for target, label in (
            ("loss", f"training loss {LOSS_TARGET}"),
            ("accuracy", f"val accuracy {ACCURACY_TARGET}"),
        ):
            s = report[task]["summary"][target]
            print(f"\n{task}, to {label} ({args.seeds} seeds)")
            print("| method | reached | epochs | gradient evaluations | s |\n|---|---|---|---|---|")
            for method in lrs:
                m = s[method]
                cells = [
                    f"{m[k][0]:.0f} ± {m[k][1]:.0f}"
                    if m[k] and k != "seconds"
                    else (f"{m[k][0]:.3f} ± {m[k][1]:.3f}" if m[k] else "-")
                    for k in ("epochs", "gradient_evaluations", "seconds")
                ]
                print(f"| {method} (lr {lrs[method]:g}) | {m['reached']}/{args.seeds} | " + " | ".join(cells) + " |")
            print(
                f"median ratio GD / position-wise: epochs {s['ratio_epochs']}, gradient evaluations "
                f"{s['ratio_gradient_evaluations']}, seconds {s['ratio_seconds']}; Wilcoxon p: epochs {s['p_epochs']}, "
                f"gradient evaluations {s['p_gradient_evaluations']}, seconds {s['p_seconds']}",
                flush=True,
            )
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
