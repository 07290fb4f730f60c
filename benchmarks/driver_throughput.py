"""How many evaluations a second the driver sustains (issue 19): the real loop, strategy, checkpoints and
tracking, with an objective that returns at once, so that nothing but the driver is measured.

    .venv/bin/python benchmarks/driver_throughput.py [--evaluations 1000] [--population 100]
        [--tpe-trials 1000,10000] [--skip-server] [--skip-ray] [--repeats 3]

Part 1, the loop: ga, gensoup (each individual returns a 1,000-parameter state, kept and inherited) and tpe
through `run_search` with the local executor and the Ray pool (2 workers), tracking off, tracking into
SQLite (individuals written in bulk, tracking/bulk_runs.py), into an `mlflow server` on 127.0.0.1 through
its REST API, and into the same server with POPPLAST_TRACKING_DB set to its database ("server+db"). Tracking
is the outbox (tracking/outbox.py) as `popplast run` uses it: the loop journals each result and a sender
thread ships it to MLflow. Two rates: the loop's own (results the loop took in per second, journalled) and
the sustained one (until the last result reached MLflow); the driver process's CPU time per evaluation (its
loop and sender threads, not Ray's workers). Where the loop's time goes: strategy (ask and tell), observers
(the journal), checkpoints, and the rest (the executor: Ray's dispatch, or the local call).

Part 2, Optuna's own cost: TPE's time to ask a population of trials when its study holds 1,000 and 10,000
finished ones (the study filled with recorded trials, as a long search's would be).

Also GA at a population of 1,000 (the goal's 1,000 workers; 5,000 evaluations) into SQLite. Each setting
runs --repeats times, a round of every setting at a time; the tables show the run with the
median sustained rate and the range. Ratios (evaluations per second against the goal of 500) first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import textwrap
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GOAL = 500.0
LARGE = 1000  # the population of the goal's case, 1,000 workers

OBJECTIVE = """
import numpy as np


def fit(config, trial):
    state = trial.inherited_state()
    w = np.zeros(1000, dtype=np.float32) if state is None else state["w"].numpy()
    return {"score": -(config["x"] - 0.3) ** 2 - (config["y"] - 0.6) ** 2}, {"w": w + 1}
"""

SPEC = """
objective: fastobj:fit
fitness: {{metric: score, mode: maximize}}
strategy: {{method: {method}, population: {population}, generations: {generations}, seed: 0}}
space:
  x: {{type: float, low: 0.0, high: 1.0}}
  y: {{type: float, low: 0.0, high: 1.0}}
  arch: {{type: categorical, choices: [a, b, c]}}
"""


class Timed:
    """Wraps an object and adds the seconds its methods take to `seconds[label]`."""

    def __init__(self, inner: Any, label: str, seconds: dict[str, float], methods: tuple[str, ...]) -> None:
        self._inner, self._label, self._seconds, self._methods = inner, label, seconds, methods

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self._methods:
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self._seconds[self._label] = self._seconds.get(self._label, 0.0) + time.perf_counter() - start

        return timed


def one(method: str, executor: str, tracking: str | None, folder: str, evaluations: int, population: int) -> dict:
    import popplast.objectives  # noqa: F401  (the objective module's loader)
    from popplast.execution.checkpoint import Checkpointer
    from popplast.execution.search import run_search
    from popplast.objectives.select import make_evaluator, objective_for
    from popplast.search.session import open_executor
    from popplast.search.tracking import start_tracking, tracker_for
    from popplast.spec.search import SearchSpec
    from popplast.strategies.build import build_strategy
    from popplast.tracking.fail_fast import failing_fast
    from popplast.tracking.outbox import open_outbox

    path = os.path.join(folder, f"{method}.yaml")
    with open(path, "w") as f:
        f.write(SPEC.format(method=method, population=population, generations=evaluations // population))
    spec, fn = objective_for(SearchSpec.from_yaml(path), None)
    budget = evaluations
    seconds: dict[str, float] = {}
    strategy = Timed(build_strategy(spec, budget), "strategy", seconds, ("ask", "tell"))
    workers = 2 if executor == "ray" else 1
    factory = lambda: make_evaluator(spec, 1, fn)  # noqa: E731
    with failing_fast(), open_executor(executor, factory, workers, 1, 0, None, population) as pool:
        observers: list[Any] = []
        checkpoints = None
        outbox = None
        if tracking is not None:
            tracker = tracker_for(tracking, f"throughput-{method}", method, None)
            start_tracking(tracker, spec, budget, {"executor": executor, "workers": pool.workers}, None, None)
            outbox = open_outbox(tracker, os.path.join(folder, "journal"))
            observers = [Timed(outbox, "observers", seconds, ("individual_finished", "generation_finished"))]
            checkpoints = Timed(Checkpointer(outbox, pool.fetch, pool.put), "checkpoints", seconds, ("save",))
        start, cpu = time.perf_counter(), time.process_time()
        outcome = run_search(spec, strategy, pool, np.random.default_rng(0), observers, checkpoints, keep_results=True)
        loop = time.perf_counter() - start
        if outbox is not None:
            outbox.drain()
            outbox.finish()
        total = time.perf_counter() - start
        cpu = time.process_time() - cpu
    n = len(outcome.results)
    rest = loop - sum(seconds.values())
    return {
        "n": n,
        "loop": n / loop,
        "sustained": n / total,
        "seconds": {**seconds, "executor": rest},
        "wall": loop,
        "cpu_ms": 1000 * cpu / n,
    }


def tpe_ask_seconds(trials: int, population: int) -> float:
    """Seconds TPE (multivariate, constant liar, as popplast's) takes per asked trial with `trials` finished."""
    import optuna

    from popplast.strategies.optuna_sampler import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler("tpe", 0, population), direction="maximize")
    dist = {
        "x": optuna.distributions.FloatDistribution(0, 1),
        "y": optuna.distributions.FloatDistribution(0, 1),
        "arch": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
    }
    rng = np.random.default_rng(0)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"x": float(x), "y": float(y), "arch": str(a)},
                distributions=dist,
                value=float(-((x - 0.3) ** 2) - (y - 0.6) ** 2),
            )
            for x, y, a in zip(rng.random(trials), rng.random(trials), rng.choice(["a", "b", "c"], trials))
        ]
    )
    start = time.perf_counter()
    for _ in range(population):
        study.ask(dist)
    return (time.perf_counter() - start) / population


@contextlib.contextmanager
def mlflow_server(folder: str) -> Any:
    from pathlib import Path

    from tests.helpers import MlflowServer

    server = MlflowServer(Path(folder) / "server")
    try:
        yield server.start()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluations", type=int, default=1000)
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--tpe-trials", default="1000,10000")
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from popplast.tracking.fail_fast import environment

    runs: dict[tuple[str, str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "fastobj.py"), "w") as f:
            f.write(textwrap.dedent(OBJECTIVE))
        sys.path.insert(0, folder)
        server = contextlib.nullcontext(None) if args.skip_server else mlflow_server(folder)
        with server as url:
            trackings = [("off", None), ("sqlite", f"sqlite:///{folder}/mlflow.db")]
            if url:
                trackings += [("server", url), ("server+db", url)]
            for _ in range(args.repeats):  # every setting once a round: the machine's drift spreads over all
                for executor in ("local",) + (() if args.skip_ray else ("ray",)):
                    for method in ("ga", "gensoup", "tpe"):
                        for name, uri in trackings:
                            if name.startswith("server") and method != "ga":
                                continue  # one method is enough to show the server's rate
                            evaluations = args.evaluations if name != "server" else min(args.evaluations, 300)
                            run_folder = tempfile.mkdtemp(dir=folder)
                            # server+db: individuals' runs into the server's own database (POPPLAST_TRACKING_DB)
                            database = {"POPPLAST_TRACKING_DB": f"sqlite:///{folder}/server/server.db"}
                            with environment(database if name == "server+db" else {}):
                                r = one(method, executor, uri, run_folder, evaluations, args.population)
                            runs.setdefault((executor, method, name, args.population), []).append(r)
                # the goal's case: 1,000 workers, so generations of 1,000 (a generation's fixed costs, its
                # summary and checkpoint, spread over ten times as many results)
                for executor in ("local",) + (() if args.skip_ray else ("ray",)):
                    for name, uri in trackings[1:2]:
                        run_folder = tempfile.mkdtemp(dir=folder)
                        r = one("ga", executor, uri, run_folder, 5 * LARGE, LARGE)
                        runs.setdefault((executor, "ga", name, LARGE), []).append(r)
        tpe = [(int(n), tpe_ask_seconds(int(n), args.population)) for n in args.tpe_trials.split(",")]
    # each setting's run with the median sustained rate, and the range over the repeats
    rows = []
    for (executor, method, name, population), rs in runs.items():
        ranked = sorted(rs, key=lambda r: r["sustained"])
        median, low, high = ranked[len(ranked) // 2], ranked[0]["sustained"], ranked[-1]["sustained"]
        rows.append((executor, method, name, population, median, low, high))
    print(f"# Ratios (sustained evaluations per second / the goal of {GOAL:.0f}; median of {args.repeats})")
    for executor, method, name, population, r, _, _ in rows:
        print(
            f"- {executor} {method} tracking {name}, population {population}: ratio {r['sustained'] / GOAL:.2f} "
            f"({r['sustained']:.0f}/s)"
        )
    print()
    print(
        "| executor | method | tracking | population | evaluations | loop evals/s | sustained evals/s (range) | "
        "driver CPU ms/eval | strategy | observers | checkpoints | executor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for executor, method, name, population, r, low, high in rows:
        s, wall = r["seconds"], r["wall"]
        shares = " | ".join(
            f"{100 * s.get(k, 0.0) / wall:.0f}%" for k in ("strategy", "observers", "checkpoints", "executor")
        )
        print(
            f"| {executor} | {method} | {name} | {population} | {r['n']} | {r['loop']:.0f} | {r['sustained']:.0f} "
            f"({low:.0f}–{high:.0f}) | {r['cpu_ms']:.2f} | {shares} |"
        )
    print()
    print("| TPE trials in the study | ms per asked trial |")
    print("|---|---|")
    for n, sec in tpe:
        print(f"| {n} | {1000 * sec:.1f} |")


if __name__ == "__main__":
    main()
