"""GPU packing on a CPU machine: a Ray node that declares 4 GPUs (`ray start --num-gpus 4`), so Ray schedules
and assigns GPU ids exactly as on a GPU machine. Workers with --gpus-per-worker 0.25 are packed four to a
GPU, each sees only its own GPU (CUDA_VISIBLE_DEVICES), and no GPU ever runs more than one GPU's worth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from mlflow import MlflowClient

from tests.helpers import TINY_SPEC, cluster_env, local_cluster, write_spec

pytestmark = pytest.mark.slow
BIN = os.path.join(os.path.dirname(sys.executable), "popplast")
ENV = cluster_env("6391", HEAD_CPUS="16", HEAD_GPUS="4")

# Run as a separate driver: the probe is defined in __main__, so Ray ships it to the workers by value.
PROBE = textwrap.dedent("""
    import json, os, sys, time
    import ray
    from popplast.execution.ray_pool import RayExecutor

    class Probe:
        def run(self, evaluator):
            start = time.time()
            time.sleep(0.3)
            return {"gpu_ids": [str(g) for g in ray.get_gpu_ids()], "pid": os.getpid(),
                    "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}

        def failed(self, error):
            return {"error": error}

    ray.init(address=sys.argv[1], logging_level="ERROR")
    pool = RayExecutor(dict, workers=int(sys.argv[2]), cpus_per_worker=0.5, gpus_per_worker=float(sys.argv[3]))
    placements = list(pool.wait_started(120).values())
    results = list(pool.map(Probe() for _ in range(3 * len(placements))))
    print(json.dumps({"placements": placements, "results": results}))
""")


@pytest.fixture(scope="module")
def gpu_cluster():
    with local_cluster(0, ENV) as address:
        yield address


def test_quarter_gpus_pack_four_workers_on_each_gpu(gpu_cluster, tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = subprocess.run(
        [sys.executable, str(script), gpu_cluster, "16", "0.25"], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    placements, results = report["placements"], report["results"]
    assert len(placements) == 16
    for p in placements:  # one GPU each, and the process sees that one only
        assert len(p["gpu_ids"]) == 1 and p["cuda_visible_devices"] == p["gpu_ids"][0]
    per_gpu = {g: sum(p["gpu_ids"] == [g] for p in placements) for g in ("0", "1", "2", "3")}
    assert per_gpu == {"0": 4, "1": 4, "2": 4, "3": 4}
    owner = {p["pid"]: p["gpu_ids"] for p in placements}
    assert all("error" not in r and r["gpu_ids"] == owner[r["pid"]] == [r["visible"]] for r in results)
    for gpu in ("0", "1", "2", "3"):  # never more than one GPU's worth (4 × 0.25) running on a GPU at once
        spans = [(r["start"], r["end"]) for r in results if r["gpu_ids"] == [gpu]]
        busiest = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
        assert busiest <= 4


def test_a_search_records_each_individuals_gpu_and_refuses_too_many_workers(gpu_cluster, tmp_path):
    spec = write_spec(tmp_path, TINY_SPEC.replace("generations: 3", "generations: 1"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    common = [BIN, "run", str(spec), "--address", gpu_cluster, "--tracking-uri", uri, "--quiet"]
    too_many = subprocess.run(
        [*common, "--workers", "17", "--gpus-per-worker", "0.25", "--cpus-per-worker", "0.5"],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert too_many.returncode == 2
    assert "17 workers × --gpus-per-worker 0.25 need 4.25 GPUs, but the Ray cluster has 4" in too_many.stderr
    done = subprocess.run(
        [*common, "--workers", "4", "--gpus-per-worker", "0.5"],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("spec").experiment_id])
    gpus = [r.data.tags.get("popplast.gpu_ids") for r in runs if "popplast.individual_id" in r.data.tags]
    assert len(gpus) == 4 and set(gpus) <= {"0", "1", "2", "3"}  # CUDA absent here: trained on CPU, GPU recorded
