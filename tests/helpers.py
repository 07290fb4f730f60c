"""What the tests share besides fixtures: small spec files, a user's objective, local clusters, and reading a
search back from MLflow. Test files import from here (never from each other); conftest.py holds the fixtures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

from mlflow import MlflowClient

CLUSTER_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cluster", "local_cluster.sh"
)

TINY_SPEC = """
dataset: {name: digits, split_seed: 0}
fidelity: {image_size: 8, epochs: 1, batch_size: 64, max_train_samples: 400}
strategy:
  method: ga
  population: 4
  generations: 3
  seed: 7
  crossover: {architecture: 0.0, optimizer: 0.0, lr_scale: 0.9}
  mutation: {architecture: 0.4, optimizer: 0.4, lr_scale: 0.3}
space:
  architecture: {type: categorical, choices: [lenet5, small_vgg]}
  optimizer: {type: categorical, choices: [adam, rmsprop]}
  lr_scale: {type: float, low: 0.1, high: 3.0, log: true}
"""


USER_OBJECTIVE = '''
import torch


def fit(config, trial):
    """A tiny torch model: w moves towards (x, y) for a few steps; its state goes on to the children."""
    inherited = trial.inherited_state()
    w = inherited["w"].clone() if inherited is not None else torch.zeros(2)
    target = torch.tensor([config["x"], config["y"]])
    for step in range(1, trial.fidelity.epochs + 1):
        w += 0.5 * (target - w)
        trial.report(step, distance=float((target - w).norm()))
    loss = float((w - torch.tensor([0.3, -0.2])).pow(2).sum())
    if config.get("fail_above") is not None and config["x"] > config["fail_above"]:
        raise RuntimeError("x too large for this objective")
    return {"loss": loss, "w0": float(w[0])}, {"w": w}
'''

USER_SPEC = """
objective: userobj:fit
fitness: {metric: loss, mode: minimize}
fidelity: {epochs: 3}
strategy:
  method: ga
  population: 4
  generations: 3
  seed: 5
space:
  x: {type: float, low: -1.0, high: 1.0}
  y: {type: float, low: -1.0, high: 1.0}
"""


def write_user_objective(folder: Path) -> Path:
    """A user's objective module and the search file naming it, in a folder outside popplast's package and
    not on the path: the file's path."""
    folder.mkdir(parents=True)
    (folder / "userobj.py").write_text(textwrap.dedent(USER_OBJECTIVE))
    return write_spec(folder, USER_SPEC, "search.yaml")


def write_spec(directory: Path, text: str, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def cluster_env(port: str, **extra: str) -> dict[str, str]:
    """The environment of cluster/local_cluster.sh for a cluster on `port`, and of drivers that join it."""
    return {
        **os.environ,
        "RAY": os.path.join(os.path.dirname(sys.executable), "ray"),
        "RAY_PORT": port,
        "RAY_AUTH_MODE": "token",
        **extra,
    }


@contextlib.contextmanager
def local_cluster(workers: int, env: dict[str, str]) -> Iterator[str]:
    """A real multi-node Ray cluster on this machine (a head and `workers` worker nodes); yields its address.

    A cluster an interrupted test session left on the port (the tests' own: 6390, 6391) is brought down first,
    else `ray start --head` fails on the port it holds."""
    subprocess.run(["bash", CLUSTER_SCRIPT, "down"], env=env, timeout=60)
    subprocess.run(["bash", CLUSTER_SCRIPT, "up", str(workers)], check=True, env=env, timeout=120)
    try:
        yield f"127.0.0.1:{env['RAY_PORT']}"
    finally:
        subprocess.run(["bash", CLUSTER_SCRIPT, "down"], env=env, timeout=60)


def individuals(tracking_uri: str, search_run_id: str) -> list[dict]:
    """Every individual of a search, read back from MLflow alone."""
    client = MlflowClient(tracking_uri)
    search = client.get_run(search_run_id)
    runs = client.search_runs(
        [search.info.experiment_id], f"tags.mlflow.parentRunId = '{search_run_id}'", max_results=1000
    )
    out = []
    for run in runs:
        t = run.data.tags
        if "popplast.individual_id" not in t or t["popplast.status"] == "retried":  # a replay; a died attempt
            continue
        out.append(
            {
                "run_id": run.info.run_id,
                "id": t["popplast.individual_id"],
                "generation": int(t["popplast.generation"]),
                "parents": [p for p in t["popplast.parent_ids"].split(",") if p],
                "parent_runs": [p for p in t["popplast.parent_run_ids"].split(",") if p],
                "operator": t["popplast.operator"],
                "method": t["popplast.method"],
                "status": t["popplast.status"],
                "seed": t["popplast.seed"],
                "fusion": t["popplast.fusion_weights"],
                "genes": {k: v for k, v in run.data.params.items() if k.startswith("gene.")},
                "fitness": run.data.metrics.get("fitness"),
                "mlflow_status": run.info.status,
            }
        )
    return sorted(out, key=lambda r: r["id"])


def lineage(rows: list[dict]) -> list[tuple]:
    return [(r["id"], r["operator"], tuple(r["parents"]), r["seed"], tuple(sorted(r["genes"].items()))) for r in rows]


def wait_for_search_run(store: Path, ready=lambda client, run: True, timeout: float = 240) -> str:
    """The id of the search run a driver in another process logs into the SQLite store `store`, once
    `ready(client, run)` holds for it; polls, as that driver creates the store and the run."""

    uri, deadline = f"sqlite:///{store}", time.monotonic() + timeout
    client = MlflowClient(uri)
    while time.monotonic() < deadline:
        if store.exists():
            for experiment in client.search_experiments():
                for run in client.search_runs([experiment.experiment_id]):
                    if run.data.tags.get("popplast.role") == "search" and ready(client, run):
                        return run.info.run_id
        time.sleep(0.5)
    raise TimeoutError(f"no search run in {store} was ready within {timeout:.0f} s")


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 with its store in `folder`; `stop` kills it (an outage) and
    `start` brings it back on the same port and store."""

    def __init__(self, folder: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        import urllib.request

        if not (self.folder / "server.db").exists():  # its schema copied, not migrated again (seed_store)
            seed_store(str(self.folder / "server.db"))
        log = open(self.folder / "server.log", "a")
        command = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server"]
        command += ["--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", "1"]
        # its own session: the server's workers are its children, and an outage kills them all
        self.proc = subprocess.Popen(
            command, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{self.url}/health", timeout=2).read() == b"OK":
                    return self.url
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the MLflow server did not start: " + (self.folder / "server.log").read_text()[-2000:])

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.proc = None


_TEMPLATE = os.path.join(tempfile.gettempdir(), f"popplast-test-store-{os.getpid()}.db")
_MAKE_TABLES: list[Any] = []  # MLflow's own migration, kept by conftest before it seeds stores instead


def seed_store(path: str, make_tables: Any = None) -> None:
    """Give the SQLite file at `path` MLflow's schema by copying a store MLflow created and migrated once per
    test session (tests/conftest.py removes it at the end), rather than migrating it again."""
    import sqlite3

    if not os.path.exists(_TEMPLATE):
        import sqlalchemy

        if make_tables is None:
            from mlflow.store.db.utils import _initialize_tables

            make_tables = _MAKE_TABLES[0] if _MAKE_TABLES else _initialize_tables
        made = sqlalchemy.create_engine(f"sqlite:///{_TEMPLATE}.part")
        make_tables(made)
        made.dispose()
        os.replace(f"{_TEMPLATE}.part", _TEMPLATE)
    with contextlib.closing(sqlite3.connect(_TEMPLATE)) as source, contextlib.closing(sqlite3.connect(path)) as target:
        source.backup(target)


class SessionRay:
    """The session's real local Ray instance: started by the first test that asks for it, started afresh
    after a test that left some of its CPUs held, stopped when the session ends."""

    address: str | None = None

    def running(self) -> str:
        """Its address, started now if it is not running."""
        return self.address or self.start()

    def start(self) -> str:
        import ray

        # "local": a new instance even when a `ray start` cluster runs on this machine (tests/test_faults.py)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        self.address = ray.get_runtime_context().gcs_address
        return self.address

    def stop(self) -> None:
        import ray

        if self.address is not None:
            ray.shutdown()
            self.address = None


SESSION_RAY = SessionRay()


@contextlib.contextmanager
def lineage_page(html_path: str) -> Iterator[Any]:
    """A lineage page open in headless Chromium, its script done; skips the test without Chromium."""
    import shutil

    import pytest

    from tests.test_lineage import FLAGS

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"file://{html_path}")
            page.wait_for_selector("body[data-ready]", timeout=30_000)
            yield page
        finally:
            browser.close()
