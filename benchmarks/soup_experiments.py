"""Gen-Soup against Gen-CNN + a final retrain at equal total training epochs, on digits; prints a table.

    .venv/bin/python benchmarks/soup_experiments.py [--seeds 5] [--workers 2]

Per seed, four searches through `popplast.run` on one local Ray instance (2 workers):
- gensoup: N0 10, r 1, N_min 4, 10 generations of 1 epoch = 61 training epochs; the answer is the best
  individual's trained weights (the logged model);
- gensoup + astrocytes: the same with Str and Weak as genes (thesis ch. 5 settings for their pc and pm);
- gensoup + BN re-estimation: the same as gensoup, BatchNorm statistics re-estimated on 4 batches after fusion;
- ga + retrain: population 8, 2 generations of 3 epochs (48 epochs), then the best configuration retrained
  for 13 epochs with cosine annealing: 61 epochs.
Reported: test MCC and accuracy of each search's final model, wall time, peak trained weights held at once.
Raw results go to docs/experiments-soup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

import yaml

SPACE = {
    "architecture": {"type": "categorical", "choices": ["lenet5", "small_vgg"]},
    "loss": {
        "type": "categorical",
        "choices": ["cross_entropy", "label_smoothing", "logit_penalty", "logit_norm", "sigmoid_ce"],
    },
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "adamax", "rmsprop"]},
    "weight_decay": {"type": "float", "low": 1.0e-9, "high": 0.01, "log": True},
    "lr_scale": {"type": "float", "low": 0.05, "high": 3.0, "log": True},
}
ASTRO = {
    "astro_str": {"type": "float", "low": 0.5, "high": 1.5},
    "astro_weak": {"type": "float", "low": 0.5, "high": 1.5},
}
SOUP_PC = {
    "architecture": 0,
    "loss": 0,
    "optimizer": 0,
    "weight_decay": 0.9,
    "lr_scale": 0.9,
    "astro_str": 0.9,
    "astro_weak": 0.9,
}
SOUP_PM = {
    "architecture": 0,
    "loss": 0.25,
    "optimizer": 0.25,
    "weight_decay": 0.25,
    "lr_scale": 0.25,
    "astro_str": 0.15,
    "astro_weak": 0.15,
}


def spec(kind: str, seed: int) -> dict:
    space = {**SPACE, **(ASTRO if kind == "gensoup + astrocytes" else {})}
    data = {
        "dataset": {"name": "digits", "split_seed": 0},
        "fidelity": {"image_size": 16, "epochs": 1, "batch_size": 64},
        "space": space,
    }
    if kind == "ga + retrain":
        data["fidelity"].update(epochs=3, final={"epochs": 13, "scheduler": "cosine"})
        data["strategy"] = {
            "method": "ga",
            "population": 8,
            "generations": 2,
            "seed": seed,
            "crossover": {k: (0.0 if k in ("architecture", "loss", "optimizer") else 0.9) for k in space},
            "mutation": {k: (0.4 if k in ("architecture", "loss", "optimizer") else 0.2) for k in space},
        }
        return data
    data["strategy"] = {
        "method": "gensoup",
        "population": 10,
        "population_step": 1,
        "min_population": 4,
        "generations": 10,
        "seed": seed,
        "crossover": {k: SOUP_PC[k] for k in space},
        "mutation": {k: SOUP_PM[k] for k in space},
    }
    if kind == "gensoup + BN re-estimation":
        data["fixed"] = {"bn_reestimate_batches": 4}
    return data


KINDS = ("gensoup", "gensoup + astrocytes", "gensoup + BN re-estimation", "ga + retrain")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="docs/experiments-soup.json")
    args = parser.parse_args()
    import ray

    import popplast

    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for kind in KINDS:
                path = os.path.join(tmp, f"{kind.replace(' ', '_').replace('+', '')}.yaml")
                with open(path, "w") as f:
                    yaml.safe_dump(spec(kind, seed), f)
                r = popplast.run(
                    path,
                    workers=args.workers,
                    retrain=kind == "ga + retrain",
                    tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                    progress=False,
                )
                final = r.retrain_metrics if kind == "ga + retrain" else r.model_metrics
                rows.append(
                    {
                        "kind": kind,
                        "seed": seed,
                        "test_mcc": final["test_mcc"],
                        "test_accuracy": final["test_accuracy"],
                        "seconds": r.wall_seconds,
                        "evaluations": r.evaluations,
                        "peak_weight_bytes": r.peak_weight_bytes,
                        "best": r.best_config,
                    }
                )
                print(
                    f"seed {seed} {kind}: test MCC {final['test_mcc']:.4f} acc {final['test_accuracy']:.4f} "
                    f"({r.wall_seconds:.0f} s, peak {r.peak_weight_bytes / 2**20:.2f} MiB)",
                    file=sys.stderr,
                )
    ray.shutdown()
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print("| method | test MCC | test accuracy | wall s | peak weights held |")
    print("|---|---|---|---|---|")
    for kind in KINDS:
        r = [x for x in rows if x["kind"] == kind]

        def ms(k, r=r):
            return f"{statistics.mean(x[k] for x in r):.4f} ± {statistics.stdev(x[k] for x in r):.4f}"

        peak = max(x["peak_weight_bytes"] for x in r) / 2**20
        print(
            f"| {kind} | {ms('test_mcc')} | {ms('test_accuracy')} | {statistics.mean(x['seconds'] for x in r):.0f} | "
            f"{peak:.2f} MiB |"
            if peak
            else f"| {kind} | {ms('test_mcc')} | {ms('test_accuracy')} | "
            f"{statistics.mean(x['seconds'] for x in r):.0f} | – |"
        )


if __name__ == "__main__":
    main()
