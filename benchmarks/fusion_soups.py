"""Issue 33 (b) and (d), read from a comparison's MLflow runs: what fusion cost inside real Gen-Soup searches,
and the greedy soup against the best individual (docs/experiments.md, "Fusion from scratch").

    .venv/bin/python benchmarks/fusion_soups.py COMPARISON_RUN --tracking-uri URI

COMPARISON_RUN: a `popplast compare` run whose methods are Gen-Soup variants with `final.soup=greedy`. Per
method: the fused children's barrier against the better parent and against the parents' weighted mean (median
and quartiles over every seed), how many gained on the better parent; and per search the greedy soup's
ingredients, its validation MCC against the best individual's (re-measured in the driver), and the test MCC
of the logged model (the soup where it was better on validation, else the best individual) against the best
individual's own, with a two-sided Wilcoxon signed-rank test over the seeds.

Ratios first: per method, the share of searches whose soup beat the best individual on validation.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from mlflow import MlflowClient

from popplast.reports.comparison import read_comparison
from popplast.reports.stats import wilcoxon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison")
    parser.add_argument("--tracking-uri", required=True)
    args = parser.parse_args()
    client = MlflowClient(args.tracking_uri)
    c = read_comparison(client, args.comparison)
    for method in c.methods:
        cells = sorted((cell for (m, _), cell in c.cells.items() if m == method), key=lambda x: x.seed)
        searches = [client.get_run(cell.search_run_id).data.metrics for cell in cells]
        souped = [s for s in searches if "soup_is_answer" in s]
        better = sum(s["soup_is_answer"] for s in souped)
        print(f"{method}: soup better on validation in {better:.0f}/{len(souped)} searches")
        barriers = np.array([b for cell in cells for _, b, _ in cell.barriers])
        means = np.array([m for cell in cells for _, _, m in cell.barriers])
        if len(barriers):
            q1, q2, q3 = np.percentile(barriers, [25, 50, 75])
            print(
                f"  fusions {len(barriers)}: barrier vs better parent median {q2:+.4f} ({q1:+.4f} to {q3:+.4f}), "
                f"vs weighted mean median {np.median(means):+.4f}, gained {int((barriers < 0).sum())}"
            )
        if souped:
            ingredients = [s["soup_ingredients"] for s in souped]
            val_gain = [s["soup_val_mcc"] - s["soup_best_val_mcc"] for s in souped]
            answer = [s.get("model_test_mcc", float("nan")) for s in souped]
            best = [s.get("best_test_mcc", float("nan")) for s in souped]
            test = wilcoxon("logged model", answer, "best individual", best)
            print(
                f"  soup: {statistics.mean(ingredients):.1f} ingredients of "
                f"{statistics.mean(s['soup_candidates'] for s in souped):.1f} on average; validation MCC gain "
                f"{statistics.mean(val_gain):+.4f} (max {max(val_gain):+.4f}); test MCC logged model "
                f"{statistics.mean(answer):.4f} against the best individual's {statistics.mean(best):.4f} "
                f"(mean difference {test.mean_difference:+.4f}, p {test.p_value:.4f}, r {test.rank_biserial:+.2f})"
            )


if __name__ == "__main__":
    main()
