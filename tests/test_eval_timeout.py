"""Evaluations that hang (issue 31): with --eval-timeout the Ray worker running one past it is killed and
replaced, the individual is recorded failed with the timeout, and the search goes on and ends; the local
executor refuses the flag (it cannot stop its own thread). The simulated cluster's timeouts are in
tests/test_simulation.py."""

from __future__ import annotations

import textwrap

import pytest
from mlflow import MlflowClient

import popplast
from popplast.errors import SpecError
from tests.helpers import individuals, write_spec

OBJECTIVE = '''
import time


def fit(config, trial):
    """Hangs (a deadlock, say) for genomes with x above 0.8; else scores x."""
    if config["x"] > 0.8:
        time.sleep(10**6)
    return {"score": config["x"]}
'''

SPEC = """
objective: hangobj:fit
fitness: {metric: score, mode: maximize}
strategy: {method: ga, population: 6, generations: 2, seed: 4}
space:
  x: {type: float, low: 0.0, high: 1.0}
"""


@pytest.fixture
def hang_spec(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "hangobj.py").write_text(textwrap.dedent(OBJECTIVE))
    return write_spec(folder, SPEC, "search.yaml")


@pytest.mark.cluster  # a worker killed and replaced (17 s); the simulated timeout stays in make test: the slow tier
def test_a_hung_evaluation_times_out_on_ray_and_the_search_finishes(hang_spec, tmp_path, ray_address):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    result = popplast.run(hang_spec, workers=2, eval_timeout=5, tracking_uri=uri, progress=False)
    client = MlflowClient(uri)
    rows = individuals(uri, result.search_run_id)
    x = {r["id"]: float(client.get_run(r["run_id"]).data.params["x"]) for r in rows}
    hung = [r for r in rows if x[r["id"]] > 0.8]
    assert len(rows) == 12 and hung, "the seed gives no genome that hangs: pick another"
    for row in hung:
        run = client.get_run(row["run_id"])
        assert row["status"] == "failed" and run.info.status == "FAILED"
        assert "timed out after 5 s (--eval-timeout)" in run.data.tags["popplast.error"]
    assert all(r["status"] == "ok" for r in rows if x[r["id"]] <= 0.8)
    search = client.get_run(result.search_run_id)
    assert search.info.status == "FINISHED" and search.data.params["eval_timeout"] == "5"
    assert result.failed == len(hung)


def test_the_local_executor_refuses_a_timeout_it_could_not_keep(hang_spec, tmp_path):
    with pytest.raises(SpecError, match="--eval-timeout: needs --executor ray"):
        popplast.run(hang_spec, executor="local", eval_timeout=5, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(SpecError, match="--eval-timeout: expected a finite number of seconds > 0, got -1"):
        popplast.run(hang_spec, executor="ray", eval_timeout=-1, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert not (tmp_path / "m.db").exists()
