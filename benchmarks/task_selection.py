"""Why search_spaces/noisy_digits.yaml is a benchmark on which methods can differ (issue 20): its selection
figures over random configurations, and the recorded table the simulated cluster and tests replay.

    .venv/bin/python benchmarks/task_selection.py [--evaluations 200] [--workers 2]
        [--table benchmarks/simulation/noisy-digits-table.json] [--search-run RUN --tracking-uri URI]

Runs `--evaluations` random configurations of the file's space (Optuna's random sampler, seed 0, the file's
9 epochs each, validation MCC reported every epoch) and measures on their final validation MCC: the spread
between the median and the best, the share of configurations within 0.01 of the best, and whether the best
configurations (the top 5%) sit on the boundary of the space: their median position on each numeric gene,
0 to 1 over its range on the gene's own scale (log genes on the log scale), must lie within 0.1 to 0.9
(categorical genes have no boundary). With `--search-run` it measures a search already in MLflow instead,
with `--from-table` the table already written. Writes the table (`popplast record-table`'s format).

Ratios first: spread / 0.2 (≥ 1 wanted), share near the best / 0.05 (< 1 wanted).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SPACE = os.path.join(HERE, "..", "search_spaces", "noisy_digits.yaml")
TABLE = os.path.join(HERE, "simulation", "noisy-digits-table.json")


def figures(table, space) -> dict:
    rows = [r for r in table.rows if r.status == "ok"]
    scores = [r.curve[-1] for r in rows]
    best, median = max(scores), statistics.median(scores)
    top = sorted(rows, key=lambda r: r.curve[-1], reverse=True)[: max(1, len(rows) // 20)]
    # where the best configurations sit on each numeric gene, 0 to 1 over its range on its own scale
    positions = {
        g.name: (statistics.median(g.encode(r.config[g.name]) for r in top), g.encode(top[0].config[g.name]))
        for g in space.genes
        if g.type != "categorical" and g.low != g.high
    }
    return {
        "n": len(rows),
        "best": best,
        "median": median,
        "spread": best - median,
        "near": sum(s >= best - 0.01 for s in scores) / len(scores),
        "top": top,
        "positions": positions,
        "interior": all(0.1 <= m <= 0.9 for m, _ in positions.values()),
    }


def main() -> None:
    from popplast.execution.simulated.models import Table
    from popplast.reports.record_table import record_table
    from popplast.spec.search import SearchSpec

    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluations", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", default=TABLE)
    parser.add_argument("--search-run")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--from-table", action="store_true", help="measure the table already written, run nothing")
    args = parser.parse_args()
    spec = SearchSpec.from_yaml(SPACE)
    if args.from_table:
        table = Table.load(args.table)
    else:
        with tempfile.TemporaryDirectory() as folder:
            uri, run = args.tracking_uri, args.search_run
            if run is None:
                uri = f"sqlite:///{folder}/mlflow.db"
                result = _random(SPACE, args.evaluations, args.workers, uri, folder)
                run = result.search_run_id
            table = record_table(uri, run)
        name = os.path.basename(SPACE)
        table.source = f"benchmarks/task_selection.py: {args.evaluations} random configurations of {name}"
        table.save(args.table)
    f = figures(table, spec.space)
    print("# Ratios")
    print(f"- spread (best − median) / 0.2: ratio {f['spread'] / 0.2:.2f}")
    print(f"- share within 0.01 of the best / 0.05: ratio {f['near'] / 0.05:.2f}")
    print()
    print(
        f"{f['n']} random configurations: best validation MCC {f['best']:.4f}, median {f['median']:.4f}, "
        f"spread {f['spread']:.4f}; {100 * f['near']:.1f}% within 0.01 of the best"
    )
    print(
        f"the top 5% ({len(f['top'])}), median position on each numeric gene (0 to 1 over its range; the best's "
        f"in brackets): "
        + ", ".join(f"{name} {m:.2f} ({b:.2f})" for name, (m, b) in f["positions"].items())
        + f"; all within 0.1 to 0.9: {'yes' if f['interior'] else 'no'}"
    )
    print("| val MCC | width | dropout | optimizer | lr | weight decay | batch | metaplastic B |")
    print("|---|---|---|---|---|---|---|---|")
    for r in f["top"]:
        c = r.config
        print(
            f"| {r.curve[-1]:.4f} | {c['width']} | {c['dropout']:.2f} | {c['optimizer']} | {c['lr']:.2e} | "
            f"{c['weight_decay']:.1e} | {c['batch_size']} | {c['metaplastic_b']} |"
        )
    print(f"\ntable: {args.table}")


def _random(space: str, evaluations: int, workers: int, uri: str, folder: str):
    """Random search over the file's space (the objective reports its validation MCC every epoch itself)."""
    import popplast

    return popplast.run(
        space,
        method="random",
        budget_evals=evaluations,
        workers=workers,
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{folder}/optuna.db",
        progress=False,
    )


if __name__ == "__main__":
    main()
