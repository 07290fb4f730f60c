"""Faults on a real multi-node Ray cluster (cluster/local_cluster.sh: a head and two worker nodes on this
machine): a worker process SIGKILLed, a whole worker node lost, the driver SIGKILLed between and in the
middle of a generation and the search resumed. Every individual is accounted for, and a resumed search is
the same search as one never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from mlflow import MlflowClient

import popplast
from popplast.core.result import EvalResult
from tests.helpers import (
    CLUSTER_SCRIPT,
    TINY_SPEC,
    cluster_env,
    individuals,
    lineage,
    local_cluster,
    write_spec,
    write_user_objective,
)

pytestmark = pytest.mark.slow
BIN = os.path.join(os.path.dirname(sys.executable), "popplast")
PORT = "6390"
# evaluations of about a second, so that a kill lands while one runs
SPEC = TINY_SPEC.replace(
    "fidelity: {image_size: 8, epochs: 1, batch_size: 64, max_train_samples: 400}",
    "fidelity: {image_size: 16, epochs: 8, batch_size: 64, max_train_samples: 600}",
)
assert SPEC != TINY_SPEC


def _cluster_env() -> dict[str, str]:
    # a lost node is noticed after about 3 s instead of Ray's default 15 s or more
    return cluster_env(PORT, RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3")


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2, _cluster_env()) as address:
        yield address


def _driver(args: list[str], cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN, "run", *args, "--quiet"],
        cwd=cwd,
        env=_cluster_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(condition, timeout: float = 120, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(step)
    raise AssertionError("timed out waiting")


def _evaluating_worker() -> psutil.Process | None:
    """A Ray worker process in the middle of an evaluation (Ray names it after the method it runs)."""
    for p in psutil.process_iter(["cmdline"]):
        if " ".join(p.info["cmdline"] or ()).startswith("ray::EvaluatorActor.evaluate"):
            return p
    return None


def _all_runs(tracking_uri: str, search_run_id: str) -> list:
    client = MlflowClient(tracking_uri)
    experiment = client.get_run(search_run_id).info.experiment_id
    return client.search_runs([experiment], f"tags.mlflow.parentRunId = '{search_run_id}'", max_results=1000)


def _search_run(tracking_uri: str) -> str | None:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name("spec")
    runs = client.search_runs([found.experiment_id], "tags.`popplast.role` = 'search'") if found else []
    return runs[0].info.run_id if runs else None


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _assert_survived(tracking_uri: str, out: str) -> None:
    """12 individuals, each with exactly one run, all ok; at least one attempt recorded as retried."""
    search = out.split("MLflow: search run ")[1].split(",")[0]
    rows = individuals(tracking_uri, search)
    assert sorted(r["id"] for r in rows) == sorted(f"g{g:03d}-i{i:03d}" for g in range(3) for i in range(4))
    assert all(r["status"] == "ok" for r in rows)
    retried = [r for r in _all_runs(tracking_uri, search) if r.data.tags["popplast.status"] == "retried"]
    assert retried and all("the worker died" in r.data.tags["popplast.error"] for r in retried)
    again = {r.data.tags["popplast.individual_id"] for r in retried}
    client = MlflowClient(tracking_uri)
    for row in rows:
        attempts = client.get_run(row["run_id"]).data.tags.get("popplast.attempts")
        assert (attempts is not None) == (row["id"] in again)


class _Dies:
    """Work whose worker process dies while running it: always, or only the first time (`marker` unset)."""

    def __init__(self, key: str, marker: str | None = None) -> None:
        self.key, self.marker = key, marker

    def run(self, evaluator):
        if self.marker is None or not os.path.exists(self.marker):
            if self.marker:
                open(self.marker, "w").close()
            os._exit(1)
        return EvalResult(self.key, 1.0)

    def failed(self, error: str) -> EvalResult:
        return EvalResult.failed(self.key, error)


def test_attempts_are_bounded_and_every_item_is_accounted_for(ray_address, tmp_path):
    import ray.cloudpickle

    from popplast.execution.ray_pool import RayExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    pool = RayExecutor(dict, workers=2, max_attempts=3)
    try:
        never = tmp_path / "never-dies"
        never.touch()
        results = {
            r.individual_id: r
            for r in pool.map([_Dies("always"), _Dies("once", str(tmp_path / "died")), _Dies("fine", str(never))])
        }
    finally:
        pool.close()
    assert not results["always"].ok and len(results["always"].retries) == 2
    assert results["always"].error.startswith("the worker died in all 3 attempts")
    assert results["once"].ok and len(results["once"].retries) == 1 and "the worker died" in results["once"].retries[0]
    assert results["fine"].ok and results["fine"].retries == []
    assert pool.replaced == 4  # three deaths of 'always', one of 'once'


def _search(cluster: str, tmp_path, method: str = "ga", reference: bool = True):
    """A search driven by a `popplast run` process on the cluster, and what an uninterrupted search with the
    same seed gives (run first, in this process, on the test session's Ray instance)."""
    spec = write_spec(tmp_path, SPEC.replace("method: ga", f"method: {method}"))
    expected = _uninterrupted(spec, tmp_path) if reference else None
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _driver([str(spec), "--address", cluster, "--workers", "2", "--tracking-uri", uri], tmp_path)
    return proc, uri, expected


def test_a_users_objective_beside_its_file_reaches_the_worker_nodes(cluster, tmp_path):
    """The module is in a folder no worker node has on its path: it travels with the work."""
    spec = write_user_objective(tmp_path / "project")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = _finish(
        _driver(
            [str(spec), "--method", "gensoup", "--address", cluster, "--workers", "2", "--tracking-uri", uri], tmp_path
        )
    )
    assert "12 evaluations (0 failed)" in out, out


def test_a_killed_worker_process_is_retried_elsewhere(cluster, tmp_path):
    proc, uri, _ = _search(cluster, tmp_path, reference=False)
    victim = _wait_for(_evaluating_worker)
    victim.send_signal(signal.SIGKILL)
    _assert_survived(uri, _finish(proc))


def test_the_driver_killed_between_generations_resumes_the_same_search(cluster, ray_address, tmp_path):
    proc, uri, expected = _search(cluster, tmp_path)
    client = MlflowClient(uri)
    run = _wait_for(lambda: _search_run(uri))
    _wait_for(lambda: any(f.path.endswith("state-g0000.json") for f in client.list_artifacts(run, "checkpoint")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _check_resumed(run, uri, cluster, tmp_path, expected)


@pytest.mark.parametrize("method", ["ga", "gensoup", "pbt", "tpe"])
def test_the_driver_killed_mid_generation_resumes_the_same_search(method, cluster, ray_address, tmp_path):
    proc, uri, expected = _search(cluster, tmp_path, method)
    run = _wait_for(lambda: _search_run(uri))

    def in_generation_1() -> list:
        return [r for r in _all_runs(uri, run) if r.data.tags.get("popplast.generation") == "1"]

    _wait_for(in_generation_1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(in_generation_1()) < 4  # killed with generation 1 half done
    _check_resumed(run, uri, cluster, tmp_path, expected)


_REFERENCES: dict[str, tuple] = {}  # file text → what its uninterrupted search gives: the same in every test


def _uninterrupted(spec, tmp_path) -> tuple:
    text = spec.read_text()
    if text not in _REFERENCES:
        _REFERENCES[text] = _reference(spec, tmp_path)
    return _REFERENCES[text]


def _reference(spec, tmp_path) -> tuple:
    uri = f"sqlite:///{tmp_path / 'reference.db'}"
    storage = f"sqlite:///{tmp_path / 'reference-optuna.db'}"
    result = popplast.run(spec, workers=2, tracking_uri=uri, optuna_storage=storage, progress=False)
    rows = individuals(uri, result.search_run_id)
    return lineage(rows), [r["fitness"] for r in rows], result.best.id, result.best_fitness


def _check_resumed(run: str, uri: str, cluster: str, tmp_path, expected: tuple) -> None:
    out = _finish(_driver(["--resume", run, "--address", cluster, "--workers", "2", "--tracking-uri", uri], tmp_path))
    assert f"MLflow: search run {run}," in out
    rows = individuals(uri, run)
    assert (lineage(rows), [r["fitness"] for r in rows]) == expected[:2]
    best = MlflowClient(uri).get_run(run)
    assert best.info.status == "FINISHED"
    assert (best.data.tags["popplast.best_individual_id"], best.data.metrics["best_fitness"]) == expected[2:]


@pytest.mark.cluster  # starts and stops a `ray start` head itself: the slow tier
def test_without_an_address_a_local_instance_starts_even_after_a_cluster_is_gone(tmp_path):
    """ray.init() with no address joins the cluster this machine last started (/tmp/ray/ray_current_cluster);
    one killed without `ray stop` leaves that file behind, and ray.init() would wait for it forever."""
    current = "/tmp/ray/ray_current_cluster"
    before = open(current).read() if os.path.exists(current) else None
    with open(current, "w") as f:
        f.write("127.0.0.1:9")  # nothing listens there
    try:
        spec = write_spec(tmp_path, TINY_SPEC.replace("generations: 3", "generations: 1"))
        out = subprocess.run(
            [BIN, "run", str(spec), "--quiet", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        if before is None:
            os.remove(current)
        else:
            with open(current, "w") as f:
                f.write(before)
    assert out.returncode == 0, out.stderr
    assert "4 evaluations (0 failed)" in out.stdout


def test_a_lost_worker_node_is_survived(cluster, ray_address, tmp_path):
    """Last in this file but one: it leaves the cluster one node short until it adds one back."""
    proc, uri, expected = _search(cluster, tmp_path)
    _lose_node(_wait_for(_evaluating_worker))
    try:
        _assert_survived(uri, _finish(proc))
    finally:
        subprocess.run(["bash", CLUSTER_SCRIPT, "add"], env=_cluster_env(), timeout=60)
    rows = individuals(uri, _search_run(uri))
    assert (lineage(rows), [r["fitness"] for r in rows]) == expected[:2]


def test_gensoup_weights_lost_with_their_node_are_made_again(cluster, ray_address, tmp_path):
    """The node that trained an individual of generation 1 is lost before the generation ends, and with it
    the trained weights generation 2 inherits (they live in that node's object store until the generation's
    checkpoint moves them to the driver's node). Those individuals are evaluated again for their weights,
    and the search is still the same search."""
    proc, uri, expected = _search(cluster, tmp_path, "gensoup")
    run = _wait_for(lambda: _search_run(uri))
    finished = _wait_for(
        lambda: [
            r
            for r in _all_runs(uri, run)
            if r.data.tags.get("popplast.generation") == "1" and r.data.tags.get("popplast.status") == "ok"
        ]
    )
    _lose_node(psutil.Process(int(finished[0].data.tags["popplast.worker"].rsplit(":", 1)[1])))
    try:
        out = _finish(proc)
    finally:
        subprocess.run(["bash", CLUSTER_SCRIPT, "add"], env=_cluster_env(), timeout=60)
    assert f"the trained weights of {finished[0].data.tags['popplast.individual_id']}" in out
    assert "were lost with their node; evaluating them again" in out
    rows = individuals(uri, run)
    assert all(r["status"] == "ok" for r in rows)
    assert (lineage(rows), [r["fitness"] for r in rows]) == expected[:2]


def _lose_node(worker: psutil.Process) -> None:
    """SIGKILL the raylet of the node `worker` runs on, and the worker: the node is gone."""
    raylet = worker.parent()
    assert "raylet" in " ".join(raylet.cmdline())
    raylet.send_signal(signal.SIGKILL)
    worker.send_signal(signal.SIGKILL)
