"""The simulated cluster checked against a real run (issue 19): a real 2-worker search on this machine, and
the simulator's prediction of it.

    .venv/bin/python benchmarks/simulator_check.py [--seed 1] [--method ga]

Real: the demo's search (search_spaces/digits_gencnn.yaml, popplast's CNN trainer, 60 evaluations) on 2 Ray
workers, with validation every epoch (a stopper that never stops watches, as the table's runs had).
Predicted: the same search (same seed) on 2 simulated workers, (a) from the table recorded from this very
run (`popplast record-table`: every individual's own seconds; what is left is the loop's and Ray's overhead)
and (b) from benchmarks/simulation/demo-table.json (100 random configurations recorded on another day: the
nearest configuration's seconds and scores, a prediction before the fact). Compared: the evaluations' span
(first start to last end: what the simulator models; the real run's wall time adds Ray's start-up) and the
worker utilisation, both from the runs' own start and end tags in MLflow.

Ratios (predicted / real) first.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "..", "search_spaces", "digits_gencnn.yaml")
TABLE = os.path.join(HERE, "simulation", "demo-table.json")


def measured(uri: str, result) -> tuple[float, float, float]:
    from mlflow import MlflowClient

    from popplast.reports.utilisation import spans, utilisation

    found = spans(MlflowClient(uri), result.search_run_id)
    span = max(s.end for s in found) - min(s.start for s in found)
    return span, utilisation(found, 2) or 0.0, result.best_fitness


def main() -> None:
    import popplast
    from popplast.spec.search import SearchSpec
    from popplast.spec.stopper import StopperSpec

    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--method", default="ga")
    parser.add_argument("--generations", type=int, default=6)
    args = parser.parse_args()
    spec = SearchSpec.from_yaml(DEMO)
    spec = dataclasses.replace(spec, stopper=StopperSpec("median", min_samples=1_000_000))  # watches, never stops
    options = dict(method=args.method, seed=args.seed, generations=args.generations, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        real_uri = f"sqlite:///{folder}/real.db"
        real = popplast.run(spec, workers=2, tracking_uri=real_uri, **options)
        table = os.path.join(folder, "own-table.json")
        popplast.record_table(real_uri, real.search_run_id).save(table)
        rows = [("real, 2 Ray workers", measured(real_uri, real), real.wall_seconds)]
        for label, simulate in (("simulated, its own table", table), ("simulated, demo-table.json", TABLE)):
            uri = f"sqlite:///{folder}/{len(rows)}.db"
            sim = popplast.run(spec, executor="simulated", simulate=simulate, workers=2, tracking_uri=uri, **options)
            rows.append((label, measured(uri, sim), sim.wall_seconds))
    (real_span, real_util, _), _ = rows[0][1], None
    print("# Ratios (predicted / real)")
    for label, (span, util, _), _ in rows[1:]:
        print(f"- {label}: evaluation span ratio {span / real_span:.3f}; utilisation ratio {util / real_util:.3f}")
    print()
    print("| run | evaluation span s | utilisation | best validation MCC | driver wall s |")
    print("|---|---|---|---|---|")
    for label, (span, util, best), wall in rows:
        print(f"| {label} | {span:.1f} | {util:.3f} | {best:.4f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
