"""Evolved plasticity rules (paper 004) on three tasks × three methods × five seeds; prints a markdown table.

    .venv/bin/python benchmarks/rules_experiments.py [--seeds 5] [--generations 300] [--processes 2]

Each cell is one `popplast.evolve_rules` run (local executor, its own MLflow store in a temporary folder).
Seed s sets the task's data, the network's graph and initial weights, and the strategy's draws.
Results go to docs/experiments-rules.json and, as a table, to stdout (copied into docs/experiments.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

TASKS = {
    "classification, class_sep 10": {"dataset": "classification", "class_sep": 10.0},
    "classification, class_sep 1": {"dataset": "classification", "class_sep": 1.0},
    "digits": {"dataset": "digits"},
}
NETWORKS = {"digits": {"hidden": 40, "cap": 20}}
METHODS = {
    "paper's (1+λ) ES": {"method": "elitist", "population": 10, "sigma": 0.01},
    "OpenAI-ES": {"method": "openai", "population": 64, "sigma": 0.1, "learning_rate": 0.05},
    "gradient (Adam)": {"method": "gradient", "population": 2, "learning_rate": 0.01},
}


def cell(args: tuple[str, str, int, int]) -> dict:
    import torch

    torch.set_num_threads(1)
    from popplast.search.evolve_rules import evolve_rules
    from popplast.spec.rules import RulesSpec

    task, method, seed, generations = args
    spec = RulesSpec.from_dict(
        {
            "task": {**TASKS[task], "seed": seed},
            "network": {**NETWORKS.get(task, {}), "seed": seed},
            "strategy": {**METHODS[method], "generations": generations, "seed": seed},
        },
        source=f"{task}.yaml",
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = evolve_rules(spec, executor="local", tracking_uri=f"sqlite:///{tmp}/mlflow.db", progress=False)
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "train": result.train_accuracy,
        "test": result.test_accuracy,
        "general_online": result.generalisation_accuracy,
        "general_batch": result.generalisation_batch_accuracy,
        "seconds": time.perf_counter() - start,
        "chance": result.chance,
    }


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--generations", type=int, default=300)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", default="docs/experiments-rules.json")
    args = parser.parse_args()
    jobs = [(t, m, s, args.generations) for t in TASKS for m in METHODS for s in range(args.seeds)]
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        rows = []
        for row in pool.imap_unordered(cell, jobs):
            rows.append(row)
            print(
                f"{len(rows)}/{len(jobs)} {row['task']} | {row['method']} | seed {row['seed']}: "
                f"train {row['train']:.3f} test {row['test']:.3f} ({row['seconds']:.0f} s)",
                file=sys.stderr,
            )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(
        "| task | method | train acc. | test acc. | generalisation, online 50 passes | generalisation, "
        "one batch from reset | s per run |"
    )
    print("|---|---|---|---|---|---|---|")
    for t in TASKS:
        for m in METHODS:
            r = [x for x in rows if x["task"] == t and x["method"] == m]
            print(
                f"| {t} (chance {r[0]['chance']:.2f}) | {m} | {mean_std([x['train'] for x in r])} | "
                f"{mean_std([x['test'] for x in r])} | {mean_std([x['general_online'] for x in r])} | "
                f"{mean_std([x['general_batch'] for x in r])} | {statistics.mean(x['seconds'] for x in r):.0f} |"
            )


if __name__ == "__main__":
    main()
