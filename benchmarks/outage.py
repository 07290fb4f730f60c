"""What an MLflow outage costs a search: the driver's wall time with a real `mlflow server` on 127.0.0.1
killed for `--outage` seconds in the middle of the search, against the same search undisturbed (issue 16).

    .venv/bin/python benchmarks/outage.py [--outage 30] [--generations 20] [--seconds 0.5] [--repeats 2]
    .venv/bin/python benchmarks/outage.py --demo [--outage 30] [--repeats 2]

`--demo` (issue 31): 40 evaluations of the demo space (`search_spaces/digits_gencnn.yaml`, popplast's CNN
trainer, 2 Ray workers) with the server killed once it holds 10 individuals. Printed first: the evaluations'
span (first `popplast.started` to last `popplast.ended`, as MLflow records them) against the undisturbed
search's, and how long after the server answered again MLflow held every individual that had finished by then
(the backlog).

The search: `popplast run` (local executor) of a GA over two float genes whose objective sleeps `--seconds`
per evaluation (population 4), so that evaluation time, not this machine's CPUs, sets the pace. The server
is killed (SIGKILL) once it holds 4 individuals and started again `--outage` seconds later. Before the
journal (tracking/journal.py), every MLflow call retried for minutes in the search loop and the workers
idled; now the loop goes on and a sender ships the backlog when the server is back. Printed: the extra wall
time (disturbed − undisturbed, medians over repeats) and its ratio to the outage; then the wall times.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from mlflow import MlflowClient

BIN = os.path.dirname(sys.executable)
OBJECTIVE = """
import os
import time


def fit(config, trial):
    time.sleep(float(os.environ["SLOW_SECONDS"]))
    return {"loss": (config["x"] - 0.3) ** 2 + (config["y"] + 0.2) ** 2}
"""
SPEC = """
objective: slowobj:fit
fitness: {{metric: loss, mode: minimize}}
strategy: {{method: ga, population: 4, generations: {generations}, seed: 5}}
space:
  x: {{type: float, low: -1.0, high: 1.0}}
  y: {{type: float, low: -1.0, high: 1.0}}
"""


class Server:
    def __init__(self, folder: str, port: int) -> None:
        self.folder, self.url, self.port, self.proc = folder, f"http://127.0.0.1:{port}", port, None

    def start(self) -> None:
        command = [os.path.join(BIN, "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.folder}/s.db"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        log = open(os.path.join(self.folder, "server.log"), "a")
        self.proc = subprocess.Popen(command, cwd=self.folder, stdout=log, stderr=log, start_new_session=True)
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{self.url}/health", timeout=2).read() == b"OK":
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the MLflow server did not start")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def logged(url: str, experiment: str | None = None) -> int:
    """How many individuals' runs the server holds (of `experiment` only, when named)."""
    client = MlflowClient(url)
    total = 0
    for found in client.search_experiments():
        if experiment is not None and found.name != experiment:
            continue
        runs = client.search_runs([found.experiment_id], max_results=5000)
        total += sum("popplast.individual_id" in r.data.tags for r in runs)
    return total


def _individual_runs(url: str, experiment: str) -> list:
    """The experiment's individuals' runs (their runs carry no role tag, which MLflow's `!=` filter needs)."""
    client = MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=5000)
    return [r for r in runs if "popplast.individual_id" in r.data.tags]


def one(folder: str, port: int, args: argparse.Namespace, outage: bool) -> float:
    server = Server(folder, port)
    server.start()
    env = {**os.environ, "SLOW_SECONDS": str(args.seconds), "POPPLAST_JOURNAL_DIR": os.path.join(folder, "journal")}
    command = [os.path.join(BIN, "popplast"), "run", os.path.join(folder, "slow.yaml"), "--executor", "local"]
    command += ["--tracking-uri", server.url, "--quiet", "--experiment", f"outage-{outage}-{time.time()}"]
    start = time.perf_counter()
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if outage:
            before = logged(server.url)
            while logged(server.url) < before + 4:
                time.sleep(0.2)
            server.kill()
            time.sleep(args.outage)
            server.start()
        _, err = driver.communicate(timeout=1800)
        if driver.returncode != 0:
            raise RuntimeError(err[-2000:])
        return time.perf_counter() - start
    finally:
        server.kill()


def spans(url: str, experiment: str) -> list[tuple[float, float]]:
    """(started, ended) of every individual of the experiment's search, from their runs' tags."""
    return [
        (float(r.data.tags["popplast.started"]), float(r.data.tags["popplast.ended"]))
        for r in _individual_runs(url, experiment)
        if "popplast.started" in r.data.tags and r.data.tags.get("popplast.status") != "retried"
    ]


def demo(folder: str, port: int, args: argparse.Namespace, outage: bool) -> tuple[float, float | None]:
    """The demo space's search of 40 evaluations on 2 Ray workers: (its evaluations' span, and with the outage
    the seconds from the server answering again to MLflow holding every individual finished by then)."""
    server = Server(folder, port)
    server.start()
    experiment = f"demo-outage-{outage}-{time.time()}"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "POPPLAST_JOURNAL_DIR": os.path.join(folder, "journal")}
    command = [os.path.join(BIN, "popplast"), "run", os.path.join(root, "search_spaces", "digits_gencnn.yaml")]
    command += ["--budget-evals", "40", "--workers", "2", "--tracking-uri", server.url, "--quiet"]
    command += ["--experiment", experiment]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    backlog = None
    try:
        if outage:
            while logged(server.url, experiment) < 10:
                time.sleep(0.2)
            server.kill()
            time.sleep(args.outage)
            server.start()
            up = time.time()  # the server answers again
            _, err = driver.communicate(timeout=1800)
            # the backlog: what had finished by then, and when MLflow had the last of it
            finished = [s for s in spans(server.url, experiment) if s[1] < up]
            backlog = _arrival(server.url, experiment, finished, up)
        else:
            _, err = driver.communicate(timeout=1800)
        if driver.returncode != 0:
            raise RuntimeError(err[-2000:])
        found = spans(server.url, experiment)
        return max(e for _, e in found) - min(s for s, _ in found), backlog
    finally:
        server.kill()


def _arrival(url: str, experiment: str, finished: list, up: float) -> float:
    """When the last of `finished` reached MLflow, in seconds after `up`: the latest end time MLflow recorded
    for their runs (it sets a run's end when the run is written)."""
    wanted = set(finished)
    ends = [
        r.info.end_time / 1000.0
        for r in _individual_runs(url, experiment)
        if "popplast.started" in r.data.tags
        and (float(r.data.tags["popplast.started"]), float(r.data.tags["popplast.ended"])) in wanted
    ]
    return max(ends) - up if ends else 0.0


def main_demo(args: argparse.Namespace, port: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        calm, stormy, backlogs = [], [], []
        for _ in range(args.repeats):
            calm.append(demo(folder, port, args, outage=False)[0])
            span, backlog = demo(folder, port, args, outage=True)
            stormy.append(span)
            backlogs.append(backlog or 0.0)
    ratio = statistics.median(stormy) / statistics.median(calm)
    print(f"evaluations' span with a {args.outage:.0f} s outage / undisturbed: {ratio:.3f} (goal: within 10%)")
    print(f"backlog in MLflow after the server answered again: {statistics.median(backlogs):.1f} s (goal: 20 s)")
    print(f"undisturbed spans: {', '.join(f'{t:.1f}' for t in calm)} s")
    print(f"with the outage:   {', '.join(f'{t:.1f}' for t in stormy)} s")
    print(f"backlogs:          {', '.join(f'{b:.1f}' for b in backlogs)} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--demo", action="store_true", help="the demo space's 40 evaluations (issue 31)")
    args = parser.parse_args()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if args.demo:
        main_demo(args, port)
        return
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "slowobj.py"), "w") as f:
            f.write(OBJECTIVE)
        with open(os.path.join(folder, "slow.yaml"), "w") as f:
            f.write(SPEC.format(generations=args.generations))
        calm, stormy = [], []
        for _ in range(args.repeats):
            calm.append(one(folder, port, args, outage=False))
            stormy.append(one(folder, port, args, outage=True))
    extra = statistics.median(stormy) - statistics.median(calm)
    evaluation = 4 * args.generations * args.seconds
    print(
        f"extra wall time during a {args.outage:.0f} s outage: {extra:+.1f} s ({extra / args.outage:.2f} of the outage)"
    )
    print(f"undisturbed search: {statistics.median(calm):.1f} s (runs {', '.join(f'{t:.1f}' for t in calm)})")
    print(f"with the outage:    {statistics.median(stormy):.1f} s (runs {', '.join(f'{t:.1f}' for t in stormy)})")
    print(f"evaluation time alone: {evaluation:.0f} s ({4 * args.generations} evaluations × {args.seconds} s)")


if __name__ == "__main__":
    main()
