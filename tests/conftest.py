"""Shared fixtures: one real local Ray instance per test session, small spec files, MLflow stores in tmp.
The helpers the tests share are in tests/helpers.py."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests import helpers
from tests.helpers import SESSION_RAY, TINY_SPEC, MlflowServer, seed_store, write_spec

# hypothesis keeps a cache (.hypothesis/) in the current directory; tests leave nothing in the working tree
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="popplast-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)

# `make test` draws the same examples every run, so that it passes or fails on the code alone; what a random
# search finds (HYPOTHESIS_PROFILE=explore) is added to its test as an @example once fixed
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _seed_new_sqlite_stores() -> None:
    """A new SQLite MLflow store in this process is a copy of one MLflow created and migrated once per
    session (tests/helpers.py, seed_store), not migrated again: MLflow runs its schema migrations for each new
    database (1.2 s here), and the suite opens hundreds. Everything after the schema is MLflow's own code on
    a real file; stores made by other processes (the CLI in a subprocess) are made by MLflow as usual."""
    import mlflow.store.db.utils as db_utils

    make_tables = db_utils._initialize_tables
    helpers._MAKE_TABLES.append(make_tables)
    atexit.register(lambda: os.path.exists(helpers._TEMPLATE) and os.remove(helpers._TEMPLATE))

    def seeded(engine):  # type: ignore[no-untyped-def]
        if engine.url.get_backend_name() != "sqlite" or not engine.url.database:
            return make_tables(engine)
        seed_store(engine.url.database, make_tables)
        return None

    db_utils._initialize_tables = seeded


_seed_new_sqlite_stores()


@pytest.fixture(autouse=True)
def journal_dir(tmp_path: Path, monkeypatch) -> Path:
    """Searches' journals (tracking/journal.py) go to the test's folder, never the working tree."""
    folder = tmp_path / "journal"
    monkeypatch.setenv("POPPLAST_JOURNAL_DIR", str(folder))
    return folder


@pytest.fixture
def tiny_spec(tmp_path: Path) -> Path:
    """A search that trains 12 small models at 8×8 pixels for one epoch: seconds on one core."""
    return write_spec(tmp_path, TINY_SPEC, "tiny.yaml")


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """A real `mlflow server` on 127.0.0.1 with its own store, for one test: its URL."""
    server = MlflowServer(tmp_path / "server")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def restartable_mlflow_server(tmp_path: Path):
    """The same, as the MlflowServer (started), for tests that stop and start it."""
    server = MlflowServer(tmp_path / "server")
    server.start()
    try:
        yield server
    finally:
        server.stop()


RAY_RELEASE_WAIT = 30.0  # seconds a test's actors may take to give their CPUs back once it has ended


@pytest.fixture
def ray_address() -> str:
    """The session's Ray instance; tests join it in-process or with --address from a subprocess."""
    return SESSION_RAY.running()


def pytest_sessionfinish(session, exitstatus):
    SESSION_RAY.stop()


@pytest.fixture(autouse=True)
def ray_left_as_found():
    """A test that used the session's Ray instance (through the fixture, or a search that found Ray initialised
    in this process) gives back every CPU it took. One that did not (an actor never killed, a task still
    running) would make every later pool wait for a worker that cannot start and a later test fail for it:
    this fails the test that held on, naming what is left, and the next test gets a fresh instance."""
    yield
    if SESSION_RAY.address is None:
        return
    import ray

    if not ray.is_initialized():  # a test shut it down
        SESSION_RAY.address = None
        return
    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + RAY_RELEASE_WAIT
    while (free := ray.available_resources().get("CPU", 0)) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    if free < total:
        from ray._private.state import actors

        alive = sorted(a["ActorClassName"] for a in actors().values() if a["State"] != "DEAD")
        groups = [g["bundles"] for g in ray.util.placement_group_table().values() if g["state"] != "REMOVED"]
        workers = _ray_worker_titles()  # what each worker process is doing, by its title (ray::NAME.METHOD)
        SESSION_RAY.stop()
        pytest.fail(
            f"{total - free:g} of Ray's {total:g} CPUs still held {RAY_RELEASE_WAIT:.0f} s after the test; "
            f"actors alive: {', '.join(alive) or 'none'}; placement groups: {groups or 'none'}; "
            f"worker processes: {', '.join(workers) or 'none'}"
        )


def _ray_worker_titles() -> list[str]:
    import psutil

    titles = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = process.info["cmdline"] or []
        if command and command[0].startswith("ray::"):
            titles.append(f"{command[0]} (pid {process.info['pid']})")
    return sorted(titles)


CLUSTER_FIXTURES = ("cluster", "gpu_cluster")  # fixtures that start a `ray start` cluster on this machine


def pytest_collection_modifyitems(config, items):
    """Tests that start a multi-node cluster are marked `cluster` (their own tier: make test-cluster). Tests
    marked gpu need CUDA: they run on the lent GPU machine and are skipped elsewhere."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in CLUSTER_FIXTURES):
            item.add_marker(pytest.mark.cluster)
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
