"""The other frameworks side by side (benchmarks/peers.py, the slow tier: it makes their environments the first
time, minutes): each peer runs through its own API on one task of each suite and evaluates real grid rows with
their recorded values, and popplast's TPE asks exactly what Optuna's own ask-and-tell asks in the same batches
(and what `study.optimize` asks until batching makes them part)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from popplast.core.suite_table import SuiteTable
from popplast.integrations.suites import files

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "peers.py"
pytestmark = pytest.mark.cluster


def test_each_peer_runs_through_its_own_api_on_one_task_of_each_suite(tmp_path):
    results = tmp_path / "peers.jsonl.gz"
    out = subprocess.run(
        [sys.executable, str(PEERS), "run", "--one-task-each", "--seeds", "1", "--evaluations", "12",
         "--results", str(results), "--suites-folder", str(tmp_path / "suites")],
        capture_output=True, text=True, cwd=tmp_path, timeout=1800,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    sys.path.insert(0, str(PEERS.parent))
    from peer_runner import OPTIONS
    from peers import DEFAULT_PEERS
    from suite_tables import records as read

    records = read(results)

    assert sorted({r["method"] for r in records}) == sorted(DEFAULT_PEERS)
    assert {r["suite"] for r in records} == {"hpobench-nn", "hpolib", "nasbench201", "lcdb"}
    for r in records:
        table = SuiteTable.load(files(r["suite"], r["task"], str(tmp_path / "suites")).table)
        # past BORE's random start (6) and, on LCDB and HPOBench-NN, CBO's (2 x genes + 1: 3 and 11), so each asks
        # from its model on some task; more evaluations would cost the slow tier's time on every peer
        assert len(r["rows"]) == len(r["fitness"]) == 12, r["method"]
        assert r.get("options") == OPTIONS.get(r["method"]), r["method"]  # the record names what ran
        sign = 1 if table.mode == "maximize" else -1
        for row, fitness in zip(r["rows"], r["fitness"]):
            recorded = table.values_of(table.metric)[row, : table.counts[row], -1]
            assert any(abs(sign * v - fitness) < 1e-12 for v in recorded), (r["method"], row)
        if r["suite"] != "lcdb":  # 20 learners: a peer may well ask one twice; on the grids, none did
            assert len(set(r["rows"])) > 4, r["method"]


def test_popplasts_tpe_asks_what_optunas_own_loops_ask(tmp_path):
    out = subprocess.run(
        [sys.executable, str(PEERS), "optuna-check", "--seeds", "2", "--task", "nasbench201/cifar10"],
        capture_output=True, text=True, cwd=tmp_path, timeout=1800,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    checks = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(checks) == 4
    for check in checks:
        assert check["same_as_ask_tell_in_batches"] == check["of"] == 100, check
        assert check["same_as_optimize"] >= 10, check  # at least the random start; then batching may part them
