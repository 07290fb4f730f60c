"""The `make bench` scripts whose code reaches into popplast's internals run to the end and print their tables
(tiny sizes: this checks that they work, not what they measure; figures are in docs/benchmarks.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, script), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


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
