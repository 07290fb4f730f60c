"""The other frameworks on the same suite tasks, seeds and budgets as popplast's methods (issue 35), each
through its own API in its own virtual environment (their pins clash with popplast's: HEBO needs
numpy < 1.25), and a check that popplast's Optuna adapter asks what Optuna's own loop asks.

    .venv/bin/python benchmarks/peers.py setup [--peers ...]             # the environments (minutes, once)
    .venv/bin/python benchmarks/peers.py run [--peers ...] [--suites ...] [--seeds 10] [--evaluations 100]
    .venv/bin/python benchmarks/peers.py optuna-check [--task hpobench-nn/car] [--seeds 3]

`run` appends one line per search to benchmarks/results/suites-peers.jsonl.gz, which benchmarks/suite_tables.py
`table` reads beside popplast's. The environments live in $POPPLAST_PEERS, else ~/.cache/popplast/peers.
No peer's algorithm is reimplemented here: benchmarks/peer_runner.py calls each one's own ask/tell or search
loop on the task's recorded values, with its defaults but where peer_runner.py's OPTIONS says otherwise
(DeepHyper's CBO: its `sampling` acquisition optimiser), which each search's record then carries.
Propulate is not among them: it needs MPI, and with PyPI's mpich wheel as a singleton its checkpoint's send
to its own rank blocks forever (propulator.py `_dump_checkpoint`, 1.2.2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "suites-peers.jsonl.gz"
# a peer -> its environment; an environment -> the packages it installs, pinned to what was measured
ENVIRONMENTS = {
    "nevergrad": ["nevergrad==1.0.12"],
    "syne-tune": ["syne-tune==0.16.0"],
    "deephyper": ["deephyper==0.13.2"],
    "hebo": ["hebo==0.3.6"],  # 6.2 GB with its CUDA torch, about 3 s an evaluation: run it by name
}
PEERS = {
    "nevergrad-ngopt": "nevergrad",
    "syne-tune-rea": "syne-tune",
    "syne-tune-bore": "syne-tune",
    "syne-tune-tpe": "syne-tune",
    "deephyper-cbo": "deephyper",
    "deephyper-cbo-mixedga": "deephyper",  # CBO's default acquisition: 25 times slower an evaluation; by name
    "deephyper-re": "deephyper",
    "hebo": "hebo",
}
DEFAULT_PEERS = [p for p in PEERS if p not in ("hebo", "deephyper-cbo-mixedga")]


def folder() -> Path:
    return Path(os.environ.get("POPPLAST_PEERS") or Path.home() / ".cache" / "popplast" / "peers")


def environment(name: str) -> Path:
    """The peer environment `name`, made (a venv with its pinned packages) unless it is already."""
    venv = folder() / name
    stamp = venv / "popplast-peer.json"
    wanted = {"packages": ENVIRONMENTS[name]}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return venv
    print(f"making the {name} environment in {venv}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *ENVIRONMENTS[name]], check=True)
    stamp.write_text(json.dumps(wanted))
    return venv


def run_peer(peer: str, table: str, seed: int, evaluations: int, timeout: float = 3600) -> dict:
    """One search of `peer` on the task whose table is `table`: the rows it evaluated and their fitness."""
    venv = environment(PEERS[peer])
    job = json.dumps({"peer": peer, "table": table, "seed": seed, "evaluations": evaluations})
    with tempfile.TemporaryDirectory() as cwd:  # DeepHyper and Nevergrad write files where they run
        out = subprocess.run(
            [str(venv / "bin" / "python"), str(HERE / "peer_runner.py"), job],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=timeout,
        )
    if out.returncode != 0:
        raise RuntimeError(f"{peer} failed on {table}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from suite_tables import append, repaired, tasks

    done = {(r["suite"], r["task"], r["method"], r["seed"]) for r in repaired(args.results)}
    every = tasks(args.suites, args.suites_folder)
    if args.one_task_each:
        every = [next(t for t in every if t.suite == s) for s in args.suites]
    jobs = [
        (p, t, s) for p in args.peers for t in every for s in range(args.seeds) if (t.suite, t.task, p, s) not in done
    ]
    print(f"{len(jobs)} peer searches to run ({len(done)} already in {args.results})", file=sys.stderr)
    args.results.parent.mkdir(exist_ok=True)
    began = time.perf_counter()
    for i, (peer, task, seed) in enumerate(jobs, 1):
        started = time.perf_counter()
        told = run_peer(peer, task.table, seed, args.evaluations)
        record = {"suite": task.suite, "task": task.task, "method": peer, "seed": seed, **told}
        record["wall_seconds"] = round(time.perf_counter() - started, 3)
        append(args.results, record)
        print(f"{i}/{len(jobs)} {peer} {task.name} seed {seed}: {time.perf_counter() - began:.0f} s", file=sys.stderr)


def optuna_check(task_name: str, seed: int, population: int) -> dict:
    """popplast's tpe (a generation of `population` trials asked at once) against Optuna's own loops, each told
    the very values popplast's evaluations were told: how many trials, from the first, ask the same
    configurations, (a) with Optuna's ask and tell in batches of `population`, as popplast's adapter uses
    them, and (b) with `study.optimize`, one trial at a time."""
    import optuna

    sys.path.insert(0, str(HERE))
    from suite_tables import EVALUATIONS, search

    from popplast.core.suite_table import SuiteTable
    from popplast.integrations.suites import task_files

    task = task_files(task_name)
    with tempfile.TemporaryDirectory() as store:
        ours = search((task, "tpe", seed, store, population))
    by_id = sorted(zip(ours["ids"], ours["rows"], ours["fitness"]))  # the order they were asked in, not finished
    ours = {"rows": [r for _, r, _ in by_id], "fitness": [f for _, _, f in by_id]}
    table = SuiteTable.load(task.table)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def study() -> optuna.Study:  # popplast's TPE: multivariate, constant liar, the search's seed, maximised
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        return optuna.create_study(direction="maximize", sampler=sampler)

    def suggest(trial: optuna.Trial) -> int:
        return table.index({name: trial.suggest_categorical(name, list(choices)) for name, choices in table.genes})

    def same(asked: list[int]) -> int:
        return next((k for k, (a, b) in enumerate(zip(asked, ours["rows"])) if a != b), len(asked))

    batched, asked = study(), []
    for start in range(0, EVALUATIONS, population):
        trials = [batched.ask() for _ in range(min(population, EVALUATIONS - start))]
        asked += [suggest(t) for t in trials]
        for t in trials:
            batched.tell(t, ours["fitness"][t.number])
    one_by_one, asked_alone = study(), []

    def objective(trial: optuna.Trial) -> float:
        asked_alone.append(suggest(trial))
        return ours["fitness"][trial.number]  # the value popplast's trial of that number was told

    one_by_one.optimize(objective, n_trials=EVALUATIONS)
    return {
        "task": task_name,
        "seed": seed,
        "population": population,
        "same_as_ask_tell_in_batches": same(asked),
        "same_as_optimize": same(asked_alone),
        "of": EVALUATIONS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("setup", "run", "optuna-check"))
    parser.add_argument("--peers", nargs="+", default=DEFAULT_PEERS, choices=list(PEERS))
    parser.add_argument("--suites", nargs="+", default=["hpobench-nn", "hpolib", "nasbench201", "lcdb"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--one-task-each", action="store_true", help="the first task of each suite only")
    parser.add_argument("--suites-folder", default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--task", default="hpobench-nn/car", help="optuna-check: the task")
    args = parser.parse_args()
    if args.action == "setup":
        for name in sorted({PEERS[p] for p in args.peers}):
            print(environment(name))
    elif args.action == "run":
        run(args)
    else:
        for population in (2, 10):
            for seed in range(args.seeds):
                print(json.dumps(optuna_check(args.task, seed, population)))


if __name__ == "__main__":
    main()
