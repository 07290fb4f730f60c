"""Shared fixtures: one real local Ray instance per test session, small spec files, MLflow stores in tmp.
The helpers the tests share are in tests/helpers.py."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from tests.helpers import TINY_SPEC, MlflowServer, write_spec

# hypothesis keeps a cache (.hypothesis/) in the current directory; tests leave nothing in the working tree
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="popplast-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, ignore_errors=True)


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


@pytest.fixture(scope="session")
def ray_address():
    """A real local Ray instance, started once; tests join it in-process or with --address from a subprocess."""
    import ray

    # "local": a new instance even when a `ray start` cluster runs on this machine (tests/test_faults.py)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


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
