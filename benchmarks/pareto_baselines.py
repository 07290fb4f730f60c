"""Issue 34's table, read from a multi-objective comparison's MLflow runs: each of popplast's methods against
each baseline (Optuna's NSGA-II, multi-objective TPE and random search) on the final hypervolume, with paired
two-sided Wilcoxon tests over the seeds and Holm's correction within each baseline's family of tests
(docs/experiments.md, "Several objectives").

    .venv/bin/python benchmarks/pareto_baselines.py COMPARISON_RUN --tracking-uri URI

Ratios first: per method, its mean final hypervolume over each baseline's. Then a markdown table: the
hypervolume (mean ± std), each comparison's mean difference, Holm-adjusted p and rank-biserial r, and the
front size and the seeds whose front dominates more of the space than the baseline's.
"""

from __future__ import annotations

import argparse
import statistics

from mlflow import MlflowClient

from popplast.reports.comparison import read_comparison
from popplast.reports.stats import holm, mean_std, wilcoxon

BASELINES = ("nsga2", "tpe", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison")
    parser.add_argument("--tracking-uri", required=True)
    args = parser.parse_args()
    c = read_comparison(MlflowClient(args.tracking_uri), args.comparison)
    if c.several is None:
        raise SystemExit(f"{args.comparison} compares one objective; this table is for several")
    baselines = [b for b in BASELINES if b in c.methods]
    ours = [m for m in c.methods if m not in baselines]

    def scores(method: str) -> dict[int, float]:
        return {seed: cell.best_fitness for (m, seed), cell in c.cells.items() if m == method}

    mean = {m: statistics.fmean(scores(m).values()) for m in c.methods if scores(m)}
    for m in ours:
        print(f"{m}: " + ", ".join(f"{mean[m] / mean[b]:.3f}× {b}'s" for b in baselines))
    results: dict[tuple[str, str], tuple] = {}
    for b in baselines:  # one family of tests per baseline
        tests = []
        for m in ours:
            seeds = sorted(set(scores(m)) & set(scores(b)))
            tests.append(wilcoxon(m, [scores(m)[s] for s in seeds], b, [scores(b)[s] for s in seeds]))
        for m, t, p in zip(ours, tests, holm([t.p_value for t in tests])):
            results[(m, b)] = (t, p)
    reference = ", ".join(f"{m} {v:g}" for m, v in c.reference.items())
    print(f"\nFinal hypervolume against the reference point ({reference}; from {c.reference_from}):\n")
    head = ["method", "hypervolume"] + [f"− {b}: mean, p (Holm), r" for b in baselines]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for m in c.methods:
        cells = list(scores(m).values())
        row = [m, "{:.0f} ± {:.0f}".format(*mean_std(cells))]
        for b in baselines:
            if (m, b) in results:
                t, p = results[(m, b)]
                row.append(f"{t.mean_difference:+.0f}, {p:.3f}, {t.rank_biserial:+.2f}")
            else:
                row.append("–")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
