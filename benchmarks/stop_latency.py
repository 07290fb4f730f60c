"""How soon `trial.should_stop()` knows (issue 18): the round trip from a worker's `trial.report` through the
driver's stopper and back, on a local Ray instance with 2 workers.

    .venv/bin/python benchmarks/stop_latency.py [--individuals 40] [--steps 9]

The objective reports a value every step (sleeping `--step-seconds` between steps, a stand-in for an epoch)
and times each `should_stop()` call, which waits for the verdict on the report just sent. ASHA (min_steps 1,
η 3) decides. Percentiles over every call, median first.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import tempfile
import textwrap

import numpy as np

OBJECTIVE = """
import time


def fit(config, trial):
    waits = []
    for step in range(1, trial.fidelity.epochs + 1):
        time.sleep(STEP)
        trial.report(step, score=config["x"] * step)
        start = time.perf_counter()
        stop = trial.should_stop()
        waits.append(time.perf_counter() - start)
        if stop:
            break
    trial.set_tag("waits", ",".join(f"{w:.6f}" for w in waits))
    return {"score": config["x"] * step}
"""

SPEC = """
objective: latency:fit
fitness: {{metric: score, mode: maximize}}
fidelity: {{epochs: {steps}}}
stopper: {{rule: asha, min_steps: 1, reduction_factor: 3}}
strategy: {{method: random, population: 10, generations: {generations}, seed: 0}}
space:
  x: {{type: float, low: 0.0, high: 1.0}}
"""


def main() -> None:
    from mlflow import MlflowClient

    import popplast

    parser = argparse.ArgumentParser()
    parser.add_argument("--individuals", type=int, default=40)
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="popplast-latency-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["POPPLAST_JOURNAL_DIR"] = os.path.join(folder, "journal")
    with open(os.path.join(folder, "latency.py"), "w") as f:
        f.write(textwrap.dedent(OBJECTIVE).replace("STEP", repr(args.step_seconds)))
    spec = os.path.join(folder, "search.yaml")
    with open(spec, "w") as f:
        f.write(SPEC.format(steps=args.steps, generations=args.individuals // 10))
    uri = f"sqlite:///{folder}/mlflow.db"
    result = popplast.run(spec, workers=2, tracking_uri=uri, progress=False, optuna_storage=f"sqlite:///{folder}/o.db")
    client = MlflowClient(uri)
    runs = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.search_run_id}'")
    waits = np.array([float(w) for r in runs for w in r.data.tags.get("popplast.waits", "").split(",") if w]) * 1000
    stopped = sum(r.data.tags.get("popplast.status") == "stopped" for r in runs)
    summary = {
        "median_ms": round(float(np.median(waits)), 2),
        "p95_ms": round(float(np.percentile(waits, 95)), 2),
        "max_ms": round(float(waits.max()), 2),
        "calls": int(waits.size),
        "individuals": len(runs),
        "stopped": stopped,
    }
    print(
        f"should_stop() round trip: median {summary['median_ms']} ms, 95th percentile {summary['p95_ms']} ms, "
        f"max {summary['max_ms']} ms over {summary['calls']} calls (ratio of the median to a "
        f"{args.step_seconds * 1000:.0f} ms step: {summary['median_ms'] / (args.step_seconds * 1000):.3f})"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
