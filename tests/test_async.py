"""Asynchronous (steady-state) evolution: the strategy by hand, the replay mode's lineage on the local
executor and on Ray, a real asynchronous run keeping 2 Ray workers busy, and a killed driver resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast
from popplast.errors import SpecError
from popplast.spec.search import SearchSpec
from popplast.strategies.steady_state import SteadyStateGA
from tests.helpers import individuals, lineage, write_spec

OBJECTIVE = '''
import time


def fit(config, trial):
    """Costs ×1 to ×8 by the gene `arch` (as the thesis' nine architectures differ), fitness from x."""
    time.sleep(0.04 * (1 + int(config["arch"])))
    return {"score": -(config["x"] - 0.3) ** 2}
'''

SPEC = """
objective: sleepobj:fit
fitness: {metric: score, mode: maximize}
strategy: {method: ga, population: 6, generations: 4, seed: 1, schedule: async}
space:
  x: {type: float, low: 0.0, high: 1.0}
  arch: {type: int, low: 0, high: 7}
"""


@pytest.fixture
def async_spec(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "sleepobj.py").write_text(textwrap.dedent(OBJECTIVE))
    return write_spec(folder, SPEC, "search.yaml")


def run(spec, tmp_path, name, **kw):
    return popplast.run(spec, tracking_uri=f"sqlite:///{tmp_path / name}.db", progress=False, **kw)


def rows_of(tmp_path, name, result):
    return sorted(individuals(f"sqlite:///{tmp_path / name}.db", result.search_run_id), key=lambda r: r["id"])


def ga(replacement="aging"):
    return SteadyStateGA(n_genes=2, population=3, crossover=(0.9, 0.9), mutation=(0.2, 0.2), replacement=replacement)


def test_the_first_births_are_random_then_children_of_the_living_population():
    strategy, rng, state = ga(), np.random.default_rng(0), ga().init()
    asked = []
    for _ in range(3):
        (child,), state = strategy.ask(state, rng)
        asked.append(child)
    assert [c.id for c in asked] == ["g000-i000", "g000-i001", "g000-i002"] and {c.operator for c in asked} == {"init"}
    assert state.births == 3 and [c.id for c in state.in_flight] == [c.id for c in asked]
    state, metrics = strategy.tell(state, {"g000-i001": 0.5, "g000-i000": 0.2})  # any order, in two calls
    assert metrics == {} and [m.id for m in state.members] == ["g000-i001", "g000-i000"]
    (child,), state = strategy.ask(state, rng)  # bred at once from the two members, the third still running
    assert child.id == "g001-i000" and child.generation == 1 and set(child.parent_ids) <= {"g000-i000", "g000-i001"}
    state, metrics = strategy.tell(state, {"g000-i002": None})  # a failure never joins
    assert [m.id for m in state.members] == ["g000-i001", "g000-i000"] and metrics["failed"] == 1.0
    assert metrics["best"] == 0.5 and state.best.id == "g000-i001"
    assert strategy.state_from_dict(state.to_dict()) == state
    with pytest.raises(KeyError):
        strategy.tell(state, {"g000-i002": 0.1})  # told already


@pytest.mark.parametrize("replacement, leaves", [("aging", "g000-i000"), ("worst", "g000-i002")])
def test_the_oldest_or_the_worst_leaves_when_a_child_joins(replacement, leaves):
    strategy, rng = ga(replacement), np.random.default_rng(1)
    state = strategy.init()
    for _ in range(4):
        _, state = strategy.ask(state, rng)
    state, _ = strategy.tell(state, {"g000-i000": 0.9, "g000-i001": 0.5, "g000-i002": 0.1})
    state, _ = strategy.tell(state, {"g001-i000": 0.3})
    assert len(state.members) == 3 and leaves not in {m.id for m in state.members}
    assert "g001-i000" in {m.id for m in state.members}


def test_schedule_async_is_checked_like_the_rest_of_the_file():
    base = {"objective": "m:f", "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    spec = SearchSpec.from_dict({**base, "strategy": {"schedule": "async", "replacement": "worst"}}, "s.yaml")
    assert (spec.strategy.schedule, spec.strategy.replacement, spec.strategy.replay) == ("async", "worst", False)
    assert SearchSpec.from_dict(spec.to_dict(), "s.yaml") == spec
    for strategy, key in (
        ({"schedule": "steady"}, "strategy.schedule"),
        ({"schedule": "async", "method": "tpe"}, "strategy.schedule"),
        ({"schedule": "async", "replacement": "random"}, "strategy.replacement"),
        ({"replay": True}, "strategy.replay"),
    ):
        with pytest.raises(SpecError) as e:
            SearchSpec.from_dict({**base, "strategy": strategy}, "s.yaml")
        assert e.value.key == key


def test_asynchronous_pbt_judges_each_member_when_its_segment_ends():
    from popplast.spec.space import Gene
    from popplast.strategies.async_pbt import AsyncPBT
    from popplast.strategies.pbt import PBT

    genes = [Gene("x", "float", 0.0, 1.0)]
    strategy = AsyncPBT(PBT(1, 4, (0.0,), (0.0,), elitism=False, genes=genes), segments=2)
    rng, state = np.random.default_rng(2), strategy.init()
    for _ in range(4):
        (child,), state = strategy.ask(state, rng)
    assert child.id == "g000-i003" and child.operator == "init"
    state, _ = strategy.tell(state, {"g000-i002": 0.1, "g000-i000": 0.9})
    (worst,), state = strategy.ask(state, rng)  # member 2 ended first; bottom of the two scores: it exploits 0
    assert (worst.id, worst.operator, worst.parent_ids) == ("g001-i002", "exploit", ("g000-i000",))
    (top,), state = strategy.ask(state, rng)
    assert (top.id, top.operator, top.parent_ids, top.genome) == (
        "g001-i000",
        "inherit",
        ("g000-i000",),
        state.latest[0].genome,
    )
    nothing, state = strategy.ask(state, rng)  # every member is training: nothing until one ends
    assert nothing == ()
    state, _ = strategy.tell(state, {"g001-i002": 0.5})
    assert strategy.ask(state, rng)[0] == ()  # member 2 has trained its 2 segments
    assert strategy.state_from_dict(state.to_dict()) == state


@pytest.mark.slow
@pytest.mark.cluster  # a replay on Ray (20 s each); the local executor's replays stay in make test
@pytest.mark.parametrize("method", ["ga", "gensoup", "pbt"])
def test_replay_gives_the_same_lineage_on_the_local_executor_and_on_ray(method, async_spec, tmp_path, ray_address):
    async_spec.write_text(async_spec.read_text().replace("method: ga", f"method: {method}"))
    spec = SearchSpec.from_yaml(async_spec)
    replayed = spec.from_dict(
        {**spec.to_dict(), "strategy": {**spec.to_dict()["strategy"], "replay": True}}, spec.source
    )
    on_ray = run(replayed, tmp_path, "ray", workers=2)
    local = run(replayed, tmp_path, "local", executor="local", workers=2)
    again = run(replayed, tmp_path, "again", executor="local", workers=2)
    a, b, c = rows_of(tmp_path, "ray", on_ray), rows_of(tmp_path, "local", local), rows_of(tmp_path, "again", again)
    assert len(a) == 24 and lineage(a) == lineage(b) == lineage(c)
    assert [r["fitness"] for r in a] == [r["fitness"] for r in b]
    assert any(r["parents"] for r in a if r["id"] >= "g001")


@pytest.mark.slow
def test_an_asynchronous_search_on_ray_keeps_both_workers_busy(async_spec, tmp_path, ray_address):
    result = run(async_spec, tmp_path, "busy", workers=2)
    client = MlflowClient(f"sqlite:///{tmp_path / 'busy'}.db")
    runs = [client.get_run(r["run_id"]).data.tags for r in rows_of(tmp_path, "busy", result)]
    assert len(runs) == 24 and result.failed == 0
    by_worker: dict[str, list] = {}
    for tags in runs:
        by_worker.setdefault(tags["popplast.worker"], []).append(
            (float(tags["popplast.started"]), float(tags["popplast.ended"]))
        )
    assert len(by_worker) == 2
    # each worker's evaluations one after another, never two at once; how short the gaps between them are
    # is a speed figure, measured by benchmarks/async_utilisation.py (a bound here failed on a loaded machine)
    for spans in by_worker.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # no generation barrier: some individual of a later cohort of births started before one of an earlier
    # cohort ended (a generational search never does; with costs ×1 to ×8, nearly every cohort boundary does)
    born = [(int(t["popplast.generation"]), float(t["popplast.started"]), float(t["popplast.ended"])) for t in runs]
    assert any(g2 > g1 and s2 < e1 for g1, _, e1 in born for g2, s2, _ in born)
    search = client.get_run(result.search_run_id)
    assert search.data.metrics["worker_utilisation"] == pytest.approx(result.worker_utilisation)
    assert "workers.png" in {a.path for a in client.list_artifacts(result.search_run_id)}


@pytest.mark.cluster  # a driver process killed and resumed: the slow tier
def test_a_killed_driver_resumes_an_asynchronous_search_losing_no_finished_evaluation(async_spec, tmp_path):
    text = async_spec.read_text().replace("schedule: async", "schedule: async, replay: true")
    async_spec.write_text(text)
    expected = rows_of(tmp_path, "whole", run(async_spec, tmp_path, "whole", executor="local", workers=2))
    store = tmp_path / "killed.db"
    command = [
        sys.executable,
        "-m",
        "popplast.cli.main",
        "run",
        str(async_spec),
        "--executor",
        "local",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        [*command, "--tracking-uri", f"sqlite:///{store}", "--quiet"],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client, deadline = MlflowClient(f"sqlite:///{store}"), time.monotonic() + 120
    search_run = None
    while time.monotonic() < deadline:  # killed once the first checkpoint is written and more has finished
        time.sleep(0.1)
        found = (
            [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
            if store.exists()
            else []
        )
        search = [r for r in found if r.data.tags.get("popplast.role") == "search"]
        if search and len([r for r in found if "popplast.individual_id" in r.data.tags]) >= 9:
            search_run = search[0].info.run_id
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert search_run is not None
    checkpoint = popplast_checkpoint_results(client, search_run)
    resumed = run(None, tmp_path, "killed", executor="local", workers=2, resume=search_run)
    rows = rows_of(tmp_path, "killed", resumed)
    assert lineage(rows) == lineage(expected) and [r["fitness"] for r in rows] == [r["fitness"] for r in expected]
    kept = {r["id"]: r["run_id"] for r in rows}
    assert checkpoint and all(kept.get(k) == v for k, v in checkpoint.items())  # their runs are the originals


def popplast_checkpoint_results(client, search_run):
    """The individuals the newest checkpoint holds, with their runs as the killed driver logged them."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        states = sorted(a.path for a in client.list_artifacts(search_run, "checkpoint") if a.path.endswith(".json"))
        if not states:
            return {}
        path = client.download_artifacts(search_run, states[-1], tmp)
        with open(path) as f:
            ids = set(json.load(f)["results"])
    runs = client.search_runs([client.get_run(search_run).info.experiment_id])
    return {
        r.data.tags["popplast.individual_id"]: r.info.run_id
        for r in runs
        if r.data.tags.get("popplast.individual_id") in ids
    }


@pytest.mark.slow
def test_asynchronous_gensoup_children_inherit_their_parents_exact_weights(tmp_path, ray_address):
    from tests.helpers import write_user_objective

    spec = write_user_objective(tmp_path / "project")
    spec.write_text(spec.read_text().replace("method: ga", "method: gensoup\n  schedule: async"))
    result = run(spec, tmp_path, "soup", workers=2)
    rows = rows_of(tmp_path, "soup", result)
    client = MlflowClient(f"sqlite:///{tmp_path / 'soup'}.db")
    tags = {r["id"]: client.get_run(r["run_id"]).data.tags for r in rows}
    inherited = 0
    for row in rows:
        weights = [float(w) for w in row["fusion"].split(",") if w]
        if row["parents"] and max(weights, default=0) == 1.0:
            parent = tags[row["parents"][0]]
            assert tags[row["id"]]["popplast.inherited_state_hash"] == parent["popplast.returned_state_hash"]
            inherited += 1
        elif row["parents"]:  # a fusion: of states that were alive when it was asked
            assert tags[row["id"]]["popplast.inherited_state_hash"]
    assert len(rows) == 12 and inherited > 0 and result.failed == 0


def test_islands_send_their_best_to_their_neighbours():
    from popplast.strategies.islands import Islands

    strategy = Islands(ga(), count=2, migration_interval=3, topology="ring", migrants=1)
    rng, state = np.random.default_rng(4), strategy.init()
    asked = []
    for _ in range(6):
        (child,), state = strategy.ask(state, rng)
        asked.append(child)
    assert [c.id for c in asked] == [f"g000-i00{k}" for k in range(6)]  # ids over both islands
    assert [state.island_of[c.id] for c in asked] == [0, 1, 0, 1, 0, 1]
    state, _ = strategy.tell(state, {"g000-i000": 0.1, "g000-i002": 0.7, "g000-i004": 0.3})  # island 0: 3 results
    assert state.migrations == 1 and "g000-i002" in {m.id for m in state.islands[1].members}  # its best, to island 1
    assert strategy.state_from_dict(state.to_dict()) == state


@pytest.mark.slow
def test_an_island_search_draws_its_migration_edges(async_spec, tmp_path):
    text = async_spec.read_text().replace("schedule: async", "schedule: async, islands: 2, migration_interval: 3")
    async_spec.write_text(text)
    result = run(async_spec, tmp_path, "islands", executor="local")
    client = MlflowClient(f"sqlite:///{tmp_path / 'islands'}.db")
    rows = rows_of(tmp_path, "islands", result)
    island = {r["id"]: client.get_run(r["run_id"]).data.tags["popplast.island"] for r in rows}
    crossing = [r for r in rows if any(island[p] != island[r["id"]] for p in r["parents"])]
    assert set(island.values()) == {"0", "1"} and crossing  # children of migrants
    assert client.get_run(result.search_run_id).data.metrics["generation_migrations"] > 0
    page = open(result.lineage_html).read()
    assert "migration" in page and "between islands" in page
