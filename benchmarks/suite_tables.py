"""Issue 35's tables: popplast's methods (and the peers', benchmarks/peers.py) on the benchmark suites
(`popplast suites import`), 10 seeds per task, on the simulated cluster at 100 evaluations each.

    .venv/bin/python benchmarks/suite_tables.py run [--suites ...] [--methods ...] [--seeds 10] [--jobs 1]
    .venv/bin/python benchmarks/suite_tables.py table [--markdown docs/suite-tables.md]

`run` appends one line per search to benchmarks/results/suites.jsonl.gz (kept between runs: a search already
there is not run again): the configurations evaluated, in the order they finished (virtual time), with the
fitness each was told. `table` scores them. Ratios first: each method's mean normalised regret at 100% of the
budget over the GA's. Then, per suite:

- normalised regret at 10%, 50% and 100% of the evaluations: r = (y* − ȳ(incumbent)) / (y* − y_med), where
  ȳ is a configuration's final metric averaged over its recorded seeds, y* the best ȳ of the task's grid,
  y_med the median ȳ (1: no better than a median configuration; 0: the best; where the median ties with
  the best, as on some LCDB data sets, the worst ȳ instead), and the incumbent is the
  configuration with the best fitness the method was told so far (its noisy draw, as the method saw it);
  means over tasks and seeds;
- the average rank over tasks (each task's methods ranked by their mean regret over seeds at 100%);
- a paired two-sided Wilcoxon test against popplast's GA over the (task, seed) pairs at 100%, Holm-adjusted
  over the methods of the suite; rank-biserial r > 0: the method's regret is higher than the GA's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "suites.jsonl.gz"  # gzip members appended by each run
# cmaes is left out: every gene of the suites is categorical, and popplast's CMA-ES draws categorical genes
# with the seeded random sampler (Optuna's CMA-ES models numeric ones only), so it would be random search again
METHODS = ("ga", "ga-async", "openai", "random", "tpe", "gp")
LCDB_TASKS = 20  # the first 20 of the 57 complete LCDB data sets, by OpenML id
EVALUATIONS, POPULATION = 100, 10
FRACTIONS = (0.1, 0.5, 1.0)


def tasks(suites: list[str], out: str) -> list:
    from popplast.integrations.suites import SUITES, import_suites

    names = [f"lcdb/{t}" for t in SUITES["lcdb"].tasks[:LCDB_TASKS]] if "lcdb" in suites else []
    return import_suites([s for s in suites if s != "lcdb"] + names, out, progress=False)


def search(job: tuple) -> dict:
    """One search on the simulated cluster, read back from its MLflow runs: (row, told fitness) in the order
    they finished."""
    from mlflow import MlflowClient

    import popplast
    from popplast.core.suite_table import SuiteTable

    task, method, seed, folder, *more = job
    population = more[0] if more else POPULATION
    name, schedule = (method[: -len("-async")], "async") if method.endswith("-async") else (method, "generational")
    store = os.path.join(folder, f"worker-{os.getpid()}")  # one store per process: a new one costs 1.2 s
    began = time.perf_counter()
    result = popplast.run(
        task.search_file,
        executor="simulated",
        method=name,
        schedule=schedule,
        seed=seed,
        population=population,
        generations=EVALUATIONS // population,
        tracking_uri=f"sqlite:///{store}.db",
        optuna_storage=f"sqlite:///{store}-optuna.db",
        progress=False,
    )
    wall = time.perf_counter() - began
    table = SuiteTable.load(task.table)
    client = MlflowClient(f"sqlite:///{store}.db")
    runs = client.search_runs(
        [result.experiment_id], f"tags.mlflow.parentRunId = '{result.search_run_id}'", max_results=5000
    )
    told = []
    for run in runs:
        tags = run.data.tags
        if "popplast.individual_id" not in tags or tags.get("popplast.status") == "retried":
            continue
        config = {gene: {str(c): c for c in choices}[run.data.params[gene]] for gene, choices in table.genes}
        fitness = run.data.metrics.get("fitness")
        ended = float(tags.get("popplast.ended", "inf"))
        told.append((ended, tags["popplast.individual_id"], table.index(config), fitness))
    told.sort()
    return {
        "suite": task.suite,
        "task": task.task,
        "method": method,
        "seed": seed,
        "ids": [i for _, i, _, _ in told],
        "rows": [r for _, _, r, _ in told],
        "fitness": [f for _, _, _, f in told],
        "wall_seconds": round(wall, 3),
    }


def records(path: Path) -> list[dict]:
    """The searches a results file holds (none when it does not exist)."""
    if not path.exists():
        return []
    found = []
    with gzip.open(path, "rt") as f:
        try:
            for line in f:
                found.append(json.loads(line))
        except (EOFError, OSError, zlib.error, json.JSONDecodeError):  # a run killed mid-line: the rest stand
            pass
    return found


def repaired(path: Path) -> list[dict]:
    """The searches `path` holds, written again whole, so that what a killed run cut short is not left in
    the middle of the file for the next run to append after (a reader stops there)."""
    found = records(path)
    if path.exists():
        partial = path.with_suffix(".partial")
        with gzip.open(partial, "wt") as out:
            out.writelines(json.dumps(r) + "\n" for r in found)
        os.replace(partial, path)
    return found


def append(path: Path, record: dict) -> None:
    """One search, as a gzip member of its own: a run killed between two leaves every earlier one whole."""
    with gzip.open(path, "at") as out:
        out.write(json.dumps(record) + "\n")


def run(args: argparse.Namespace) -> None:
    args.results.parent.mkdir(exist_ok=True)
    done = {(r["suite"], r["task"], r["method"], r["seed"]) for r in repaired(args.results)}
    with tempfile.TemporaryDirectory() as folder:
        every = tasks(args.suites, args.suites_folder)
        jobs = [
            (t, m, s, folder)
            for m in args.methods
            for t in every
            for s in range(args.seeds)
            if (t.suite, t.task, m, s) not in done
        ]
        print(f"{len(jobs)} searches to run ({len(done)} already in {args.results})", file=sys.stderr)
        began = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for i, record in enumerate(pool.imap_unordered(search, jobs), 1):
                append(args.results, record)
                if i % 20 == 0 or i == len(jobs):
                    took = time.perf_counter() - began
                    print(f"{i}/{len(jobs)} searches, {took:.0f} s", file=sys.stderr)


def regrets(record: dict, table, fractions=FRACTIONS) -> list[float]:
    """The record's normalised regret after each fraction of the budget."""
    truth = table.mean_final()
    best = float(truth.max() if table.mode == "maximize" else truth.min())
    worst = float(truth.min() if table.mode == "maximize" else truth.max())
    # LCDB tasks where half the learners tie with the best are scaled by the worst learner instead
    median = float(np.median(truth)) if np.median(truth) != best else worst
    out = []
    for fraction in fractions:
        seen = [
            (f, r) for f, r in zip(record["fitness"][: round(fraction * EVALUATIONS)], record["rows"]) if f is not None
        ]
        if not seen:
            out.append(math.nan)
            continue
        incumbent = max(seen)[1]  # told fitness is maximised (a minimised metric is told negated)
        out.append(float((best - truth[incumbent]) / (best - median)))
    return out


def table(args: argparse.Namespace) -> None:
    from popplast.core.suite_table import SuiteTable
    from popplast.integrations.suites import files
    from popplast.reports.stats import holm, wilcoxon

    every = [r for path in (args.results, *args.more_results) for r in records(path)]
    loaded: dict = {}
    scored: dict = {}  # suite -> method -> (task, seed) -> regrets
    for r in every:
        key = (r["suite"], r["task"])
        if key not in loaded:
            loaded[key] = SuiteTable.load(files(*key, args.suites_folder).table)
        scored.setdefault(r["suite"], {}).setdefault(r["method"], {})[(r["task"], r["seed"])] = regrets(r, loaded[key])
    lines = []
    for suite, by_method in scored.items():
        methods = [m for m in (*METHODS, *sorted(set(by_method) - set(METHODS))) if m in by_method]
        final = {m: statistics.fmean(v[-1] for v in by_method[m].values()) for m in methods}
        print(f"{suite}: " + ", ".join(f"{m} {final[m] / final['ga']:.2f}× ga's" for m in methods if "ga" in final))
        tasks_ = sorted({t for m in methods for t, _ in by_method[m]})
        seeds = {m: len({s for _, s in by_method[m]}) for m in methods}
        ranks = {m: [] for m in methods}
        for task in tasks_:
            means = {
                m: statistics.fmean(v[-1] for (t, _), v in by_method[m].items() if t == task)
                for m in methods
                if any(t == task for t, _ in by_method[m])
            }
            order = sorted(means, key=means.get)
            for m, rank in zip(order, rankdata([means[m] for m in order])):
                ranks[m].append(float(rank))
        tests = {}
        others = [m for m in methods if m != "ga"]
        if "ga" in by_method:
            pairs = [
                wilcoxon(
                    m,
                    [by_method[m][k][-1] for k in sorted(set(by_method[m]) & set(by_method["ga"]))],
                    "ga",
                    [by_method["ga"][k][-1] for k in sorted(set(by_method[m]) & set(by_method["ga"]))],
                )
                for m in others
            ]
            tests = {m: (t, p) for m, t, p in zip(others, pairs, holm([t.p_value for t in pairs]))}
        lines += [
            f"\n### {suite} ({len(tasks_)} tasks, {max(seeds.values())} seeds each, {EVALUATIONS} evaluations)\n",
            "| method | regret at 10% | at 50% | at 100% | average rank | vs ga: p (Holm), r | searches |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            at = [statistics.fmean(v[i] for v in by_method[m].values()) for i in range(len(FRACTIONS))]
            vs = "—" if m not in tests else f"{tests[m][1]:.3g}, {tests[m][0].rank_biserial:+.2f}"
            rank = statistics.fmean(ranks[m]) if ranks[m] else math.nan
            lines.append(
                f"| {m} | {at[0]:.3f} | {at[1]:.3f} | {at[2]:.3f} | {rank:.2f} | {vs} | {len(by_method[m])} "
                f"({seeds[m]} seeds) |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "table"))
    parser.add_argument("--suites", nargs="+", default=["hpobench-nn", "hpolib", "nasbench201", "lcdb"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--suites-folder", default=None, help="where the suites are imported (popplast's default)")
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the searches' file (default %(default)s)")
    parser.add_argument(
        "--more-results",
        type=Path,
        nargs="*",
        default=[RESULTS.with_name("suites-gp.jsonl.gz"), RESULTS.with_name("suites-peers.jsonl.gz")],
        help="other searches' files the table reads too (Gaussian-process BO's, the peers')",
    )
    args = parser.parse_args()
    run(args) if args.action == "run" else table(args)


if __name__ == "__main__":
    main()
