"""The `make bench` scripts whose code reaches into popplast's internals run to the end and print their tables
(tiny sizes: this checks that they work, not what they measure; figures are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

pytestmark = pytest.mark.slow
BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def run(script: str, *args: str) -> str:
    before = ours()
    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, script), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert ours() <= before, f"{script} left {sorted(ours() - before)} in {tempfile.gettempdir()}"
    return done.stdout


def ours() -> set[str]:
    """The scratch folders popplast's benchmarks make in the temp folder (each names itself popplast-...)."""
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("popplast-")}


@pytest.mark.cluster  # the slow tier (make test-cluster): a benchmark script end to end
def test_weights_benchmark_prints_both_ratios_and_the_copy_floor():
    out = run("weights.py", "--repeats", "1", "--models", "shufflenet_v2_x1_0")
    assert len(re.findall(r"ratio file/store, .* [0-9.]+x per operation \(read side alone [0-9.]+x\)", out)) == 2
    assert re.search(r"\| ShuffleNet-v2 x1\.0 \(8\.8 MiB\) \| [0-9.]+ \([0-9.]+–[0-9.]+\) \| [0-9.]+", out)


@pytest.mark.cluster  # the slow tier (make test-cluster): a benchmark script end to end
def test_checkpoint_cost_benchmark_times_the_real_checkpointer():
    out = run("checkpoint_cost.py", "--population", "2", "--generations", "1", "--models", "shufflenet_v2_x1_0")
    rows = [line for line in out.splitlines() if line.startswith("| ShuffleNet")]
    assert len(rows) == 1 and rows[0].endswith("x |")


@pytest.mark.cluster  # the slow tier (make test-cluster): a benchmark script end to end
def test_async_utilisation_benchmark_measures_both_schedules():
    out = run("async_utilisation.py", "--evaluations", "16", "--base", "0.01", "--workers", "2")
    assert re.search(r"utilisation ratio, asynchronous / generational \(measured.*ga 2w [0-9.]+x", out)
    rows = [line for line in out.splitlines() if re.match(r"\| (ga|gensoup|pbt) \| 2 \| 0\.\d+ \| 0\.\d+ \|", line)]
    assert len(rows) == 3


@pytest.mark.cluster  # the slow tier (make test-cluster): a benchmark script end to end
def test_stop_latency_benchmark_times_the_verdicts():
    out = run("stop_latency.py", "--individuals", "10", "--steps", "3", "--step-seconds", "0.01")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["calls"] >= 10 and summary["individuals"] == 10 and 0 < summary["median_ms"] < 1000


@pytest.mark.gpu
def test_cnn_device_benchmark_compares_the_gpu_with_the_cpu():
    out = run("cnn_device.py", "--individuals", "1", "--threads", "2")
    assert re.search(r"digits_gencnn\.yaml: GPU / CPU evaluations per minute [0-9.]+x", out)
    assert re.search(r"\| digits_metaplastic\.yaml \| 5 × 32 px \| [0-9.]+ \| [0-9.]+ \| [0-9.]+x \| [0-9.]+ \|", out)


def test_cnn_device_benchmark_says_it_needs_cuda():
    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "cnn_device.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 1 and "no CUDA device here" in done.stderr and "Traceback" not in done.stderr
