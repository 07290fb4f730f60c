"""Individuals written in bulk into MLflow's database (tracking/bulk_runs.py) read back through MlflowClient
exactly as the same individuals logged through MLflow's API; a batch is all or nothing; what MLflow's API
would refuse still goes through it; the outbox ships a backlog in batches."""

from __future__ import annotations

import math
import re

import pytest
import sqlalchemy
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

import popplast
from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.errors import SpecError
from popplast.spec.search import SearchSpec
from popplast.tracking.bulk_runs import BulkRuns, RunRecord, open_bulk
from popplast.tracking.journal import Journal
from popplast.tracking.mlflow_tracker import MLflowTracker
from popplast.tracking.outbox import BATCH, Outbox, open_outbox
from popplast.tracking.run_writers import ApiWriter, BulkWriter
from tests.helpers import TINY_SPEC, MlflowServer, individuals, write_spec


def _tracker(tmp_path, uri: str, experiment: str, bulk: bool) -> MLflowTracker:
    t = MLflowTracker(uri, experiment, "ga")
    t.start_search(SearchSpec.from_yaml(write_spec(tmp_path, TINY_SPEC)), {})
    if not bulk:
        t.writer = ApiWriter(t.client)  # the API path, as for a tracking server
    return t


def _finished() -> list[tuple[Individual, dict, EvalResult]]:
    """Every kind of result the tracker writes: ok with a history by epoch and by (step, value), failed,
    stopped early, retried twice, NaN and infinite metrics, children of parents in the same batch."""
    a = Individual("g000-i000", (0.1, 0.2, 0.3), 0, seed=1)
    b = Individual("g000-i001", (0.4, 0.5, 0.6), 0, seed=2)
    c = Individual("g001-i000", (0.1, 0.5, 0.3), 1, ("g000-i000", "g000-i001"), "crossover", (0.25, 0.75), seed=3)
    d = Individual("g001-i001", (0.2, 0.5, 0.9), 1, ("g000-i000",), "mutation", seed=4)
    e = Individual("g001-i002", (0.3, 0.3, 0.3), 1, ("g001-i000",), "mutation", seed=5)
    return [
        (
            a,
            {"lr": 0.1, "layers": [1, 2]},
            EvalResult(a.id, 0.5, {"acc": 0.9}, {"loss": [1.0, 0.5, 0.25]}, worker="h:1"),
        ),
        (b, {"lr": 0.2}, EvalResult(b.id, None, {}, {}, error="ValueError: bad\n  frame", worker="h:2")),
        (
            c,
            {"lr": 0.3},
            EvalResult(
                c.id,
                0.7,
                {"score": 0.7, "nan": math.nan, "inf": -math.inf},
                {"score": [(3, 0.2), (6, 0.7)]},
                tags={"h": "x"},
            ),
        ),
        (d, {"lr": 0.4}, EvalResult(d.id, 0.6, {"score": 0.6}, {"score": [(3, 0.6)]}, stopped_at=3)),
        (e, {"lr": 0.5}, EvalResult(e.id, 0.8, {"acc": 0.8}, retries=["worker died", "node lost"], worker="h:3")),
    ]


def _view(client: MlflowClient, tracker: MLflowTracker) -> dict[str, dict]:
    """Everything MLflow holds of a search's child runs, keyed by run name, with run ids and times written
    as what they stand for (run ids by run names, times relative to the run's start)."""
    runs = client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.search_run_id}'")
    names = {r.info.run_id: r.info.run_name for r in runs}
    names[tracker.search_run_id] = "SEARCH"

    def plain(text: str) -> str:
        return re.sub(r"[0-9a-f]{32}", lambda m: names.get(m.group(0), "?"), text).replace(
            f"experiments/{tracker.experiment_id}/", "experiments/E/"
        )

    def num(v: float) -> float | str:
        return "NaN" if math.isnan(v) else v

    out = {}
    for r in runs:
        start = r.info.start_time
        assert r.info.end_time is not None and r.info.end_time >= start
        assert r.info.artifact_uri.endswith(f"{r.info.run_id}/artifacts")
        histories = {
            key: [(m.step, num(m.value), m.timestamp - start) for m in client.get_metric_history(r.info.run_id, key)]
            for key in r.data.metrics
        }
        out[r.info.run_name] = {
            "status": r.info.status,
            "stage": r.info.lifecycle_stage,
            "user": r.info.user_id,
            "tags": {k: plain(v) for k, v in r.data.tags.items()},
            "params": dict(r.data.params),
            "metrics": {k: num(v) for k, v in r.data.metrics.items()},
            "histories": {k: sorted(((s, v) for s, v, _ in h), key=str) for k, h in histories.items()},
            "times": {k: sorted({t for _, _, t in h}) for k, h in histories.items()},
        }
    return out


def test_bulk_runs_read_back_as_the_apis_do(tmp_path, tracking_uri):
    api = _tracker(tmp_path, tracking_uri, "api", bulk=False)
    bulk = _tracker(tmp_path, tracking_uri, "bulk", bulk=True)
    assert isinstance(bulk.writer, BulkWriter) and isinstance(bulk.writer.bulk, BulkRuns)
    for tracker in (api, bulk):
        tracker.individuals_finished(_finished())
        tracker.generation_finished(1, {"best": 0.8})  # the parents' descriptions, now listing their children
    client = MlflowClient(tracking_uri)
    expected, got = _view(client, api), _view(client, bulk)
    assert (
        sorted(got)
        == sorted(expected)
        == [
            "g000-i000",
            "g000-i001",
            "g001-i000",
            "g001-i001",
            "g001-i002",
            "g001-i002-attempt1",
            "g001-i002-attempt2",
        ]
    )
    for name in expected:
        assert got[name] == expected[name], name
    assert got["g001-i000"]["tags"]["popplast.parent_run_ids"] == "g000-i000,g000-i001"
    assert "Children: [g001-i000]" in got["g000-i001"]["tags"]["mlflow.note.content"]
    assert got["g001-i000"]["metrics"]["nan"] == "NaN"
    assert got["g001-i000"]["metrics"]["inf"] == -1.7976931348623157e308
    # popplast's own readers see the same lineage
    strip = lambda rows: [{k: v for k, v in r.items() if "run" not in k} for r in rows]  # noqa: E731
    assert strip(individuals(tracking_uri, bulk.search_run_id)) == strip(individuals(tracking_uri, api.search_run_id))
    assert bulk.has_logged("g001-i002") and not bulk.has_logged("g009-i000")


def test_a_batch_is_written_whole_or_not_at_all(tmp_path, tracking_uri):
    tracker = _tracker(tmp_path, tracking_uri, "atomic", bulk=True)
    writer = tracker.writer.bulk
    first = RunRecord("one", {"mlflow.parentRunId": tracker.search_run_id}, "FINISHED")
    twin = RunRecord("two", {}, "FINISHED", run_id=first.run_id)  # the database refuses a second run of that id
    with pytest.raises(MlflowException) as refused:  # as MLflow's API raises it: a refusal, not an outage
        writer.write(tracker.experiment_id, [first, twin])
    assert isinstance(refused.value.__cause__, sqlalchemy.exc.IntegrityError)
    runs = MlflowClient(tracking_uri).search_runs([tracker.experiment_id], run_view_type=ViewType.ALL)
    assert [r.info.run_id for r in runs] == [tracker.search_run_id]  # not even the first


def test_what_mlflow_would_not_take_as_it_is_goes_through_its_api_in_order(tmp_path, tracking_uri):
    tracker = _tracker(tmp_path, tracking_uri, "refused", bulk=True)

    def one(i: int, config: dict, metrics: dict) -> tuple:
        return Individual(f"g000-i00{i}", (0.5,) * 3, 0, seed=i), config, EvalResult(f"g000-i00{i}", 1.0, metrics)

    long = one(1, {"lr": "x" * 7000}, {})  # over MLflow's 6,000 characters: its client truncates it
    refused = one(3, {}, {"bad*name": 1.0})  # a metric name MLflow refuses
    with pytest.raises(Exception, match="bad\\*name"):  # MLflow's own message
        tracker.individuals_finished([one(0, {}, {}), long, one(2, {}, {}), refused, one(4, {}, {})])
    assert [tracker.has_logged(f"g000-i00{i}") for i in range(5)] == [True, True, True, False, False]
    run = MlflowClient(tracking_uri).get_run(tracker.run_ids["g000-i001"])
    assert len(run.data.params["lr"]) == 6000


def test_a_server_or_the_switch_means_mlflows_api(monkeypatch, tracking_uri):
    assert open_bulk(MlflowClient("http://127.0.0.1:9")) is None  # not contacted: a server is never written in bulk
    assert open_bulk(MlflowClient(tracking_uri)) is not None
    monkeypatch.setenv("POPPLAST_BULK_TRACKING", "0")
    assert open_bulk(MlflowClient(tracking_uri)) is None


class Counting:
    """The real tracker, counting the calls the sender makes to it."""

    def __init__(self, inner: MLflowTracker) -> None:
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        value = getattr(self.inner, name)
        if name in ("individuals_finished", "individual_finished", "generation_finished"):

            def counted(*args):
                self.calls.append((name, len(args[0]) if name == "individuals_finished" else 1))
                return value(*args)

            return counted
        return value


def test_the_outbox_ships_a_backlog_in_batches_in_order(tmp_path, tracking_uri):
    tracker = _tracker(tmp_path, tracking_uri, "backlog", bulk=True)
    outbox = open_outbox(tracker)
    outbox.close()  # a backlog: the events wait in the journal, as after an outage
    n = BATCH + 20
    for i in range(n):
        outbox.individual_finished(
            Individual(f"g000-i{i:04d}", (0.5,) * 3, 0, seed=i), {}, EvalResult(f"g000-i{i:04d}", i)
        )
    outbox.generation_finished(0, {"best": n - 1.0})
    outbox.individual_finished(Individual("g001-i0000", (0.5,) * 3, 1, seed=0), {}, EvalResult("g001-i0000", -1.0))
    counting = Counting(tracker)
    sender = Outbox(counting, Journal(outbox.journal.directory))
    assert sender.drain(timeout=120)
    sender.finish()
    # the first batch is checked against what MLflow holds (the first after a restart); nothing was there
    assert [c for c in counting.calls] == [
        ("individuals_finished", BATCH),
        ("individuals_finished", 20),
        ("generation_finished", 1),
        ("individual_finished", 1),
    ]
    rows = individuals(tracking_uri, tracker.search_run_id)
    assert [r["fitness"] for r in rows if r["id"].startswith("g000")] == [float(i) for i in range(n)]
    assert len(rows) == n + 1
    tracker.release_lease()


def test_a_batch_that_fails_part_way_is_not_shipped_twice(tmp_path, tracking_uri):
    """The individuals before a refused one in its batch were written; the sender, going one by one, finds
    them in MLflow and passes over the refused one: each of the others is there once."""
    tracker = _tracker(tmp_path, tracking_uri, "part-way", bulk=True)
    counting = Counting(tracker)
    outbox = open_outbox(counting)
    with outbox._cond:  # the sender waits for the lock: it takes the four as one batch
        for i in range(4):
            metrics = {"bad*name": 1.0} if i == 2 else {}
            individual = Individual(f"g000-i00{i}", (0.5,) * 3, 0, seed=i)
            outbox.individual_finished(individual, {}, EvalResult(individual.id, i, metrics))
    assert outbox.drain(timeout=120)
    assert outbox.refused == 1
    assert counting.calls[0] == ("individuals_finished", 4)
    runs = MlflowClient(tracking_uri).search_runs(
        [tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.search_run_id}'"
    )
    assert sorted(r.info.run_name for r in runs) == ["g000-i000", "g000-i001", "g000-i003"]
    outbox.finish()
    tracker.release_lease()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 the module's server tests share (each its own experiment)."""
    started = MlflowServer(tmp_path_factory.mktemp("server"))
    started.start()
    try:
        yield started
    finally:
        started.stop()


def test_a_servers_runs_written_into_its_database_read_back_through_it_as_the_apis(tmp_path, server, monkeypatch):
    """POPPLAST_TRACKING_DB: individuals go into the server's database in bulk, everything else through the
    server; the server shows them as it shows runs logged through it."""
    api = _tracker(tmp_path, server.url, "api", bulk=True)
    assert isinstance(api.writer, ApiWriter) and not isinstance(api.writer, BulkWriter)  # a server alone: the API
    monkeypatch.setenv("POPPLAST_TRACKING_DB", f"sqlite:///{server.folder / 'server.db'}")
    bulk = _tracker(tmp_path, server.url, "bulk", bulk=True)
    assert isinstance(bulk.writer, BulkWriter) and isinstance(bulk.writer.bulk, BulkRuns)
    for tracker in (api, bulk):
        tracker.individuals_finished(_finished())
        tracker.generation_finished(1, {"best": 0.8})
    client = MlflowClient(server.url)
    expected, got = _view(client, api), _view(client, bulk)
    assert len(got) == 7 and got == expected
    assert bulk.has_logged("g001-i000")  # read through the server


def test_a_database_that_is_not_the_servers_is_refused_by_name(tmp_path, server, monkeypatch, tracking_uri):
    monkeypatch.setenv("POPPLAST_TRACKING_DB", f"sqlite:///{tmp_path / 'nowhere.db'}")
    with pytest.raises(SpecError, match="POPPLAST_TRACKING_DB .*nowhere.db does not exist"):
        MLflowTracker(server.url, "x", "ga")
    MLflowTracker(tracking_uri, "other", "ga")  # a database of its own, without the server's experiment
    monkeypatch.setenv("POPPLAST_TRACKING_DB", tracking_uri)
    with pytest.raises(SpecError, match="is not the tracking server's database: it holds no experiment 'x'"):
        MLflowTracker(server.url, "x", "ga")


def test_a_search_into_a_server_and_its_database_ends_whole(tiny_spec, tmp_path, server, monkeypatch):
    monkeypatch.setenv("POPPLAST_TRACKING_DB", f"sqlite:///{server.folder / 'server.db'}")
    result = popplast.run(tiny_spec, executor="local", generations=2, tracking_uri=server.url, progress=False)
    rows = individuals(server.url, result.search_run_id)
    assert len(rows) == 8 and all(r["mlflow_status"] == "FINISHED" for r in rows)
    assert all(len(r["parent_runs"]) == len(r["parents"]) for r in rows)  # every parent's run id, as logged
    search = MlflowClient(server.url).get_run(result.search_run_id)
    assert search.info.status == "FINISHED" and search.data.tags["popplast.best_individual_id"] == result.best.id


def test_a_failed_batch_leaves_no_phantom_parent(tmp_path, tracking_uri):
    """A batch whose transaction failed wrote no run: none of its run ids may become a parent's run id. Sent
    again through the outbox after the failure, every child names runs that exist, the parents' descriptions
    are written and the search ends (issue 31)."""
    tracker = _tracker(tmp_path, tracking_uri, "phantom", bulk=True)
    writer = tracker.writer.bulk
    real, failures = writer.write, []

    def fails_once(experiment_id, records):
        if not failures:
            failures.append(len(records))
            raise sqlalchemy.exc.OperationalError("INSERT INTO runs", {}, Exception("database is locked"))
        return real(experiment_id, records)

    writer.write = fails_once
    finished = _finished()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        tracker.individuals_finished(finished)
    assert failures == [7] and not tracker.run_ids  # nothing was written, so nothing is known
    outbox = open_outbox(tracker)  # the sender ships them again, checking what MLflow holds first
    for individual, config, result in finished:
        outbox.individual_finished(individual, config, result)
    outbox.generation_finished(1, {"best": 0.8})
    outbox.search_ended({"kind": "end", "status": "FAILED", "reason": None})
    assert outbox.drain(timeout=60) and outbox.refused == 0
    outbox.finish()
    client = MlflowClient(tracking_uri)
    assert client.get_run(tracker.search_run_id).info.status == "FAILED"  # its end arrived too
    runs = {r.info.run_id: r for r in client.search_runs([tracker.experiment_id])}
    for run in runs.values():
        for parent in filter(None, run.data.tags.get("popplast.parent_run_ids", "").split(",")):
            assert parent in runs, (run.info.run_name, parent)
    assert runs[tracker.run_ids["g001-i000"]].data.tags["popplast.parent_run_ids"] == ",".join(
        tracker.run_ids[p] for p in ("g000-i000", "g000-i001")
    )
    tracker.release_lease()


def test_the_bulk_writer_works_in_mlflows_own_sessions_and_refuses_as_it_does(tmp_path, tracking_uri):
    """MLflow's session set-up applies (SQLite's foreign keys on, its busy timeout); tags of a run that does not
    exist or is deleted are refused as MlflowClient.set_tag refuses them, and nothing is written."""
    from popplast.tracking.failures import refused

    tracker = _tracker(tmp_path, tracking_uri, "sessions", bulk=True)
    writer = tracker.writer.bulk
    with writer._transaction() as session:
        pragmas = [session.execute(sqlalchemy.text(f"PRAGMA {p}")).scalar() for p in ("foreign_keys", "busy_timeout")]
    assert pragmas == [1, 20000]
    record = RunRecord("one", {"mlflow.parentRunId": tracker.search_run_id}, "FINISHED")
    writer.write(tracker.experiment_id, [record])
    with pytest.raises(MlflowException, match="not found") as missing:
        writer.set_tags([(record.run_id, "a", "1"), ("0" * 32, "a", "1")])
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST" and refused(missing.value)
    client = MlflowClient(tracking_uri)
    client.delete_run(record.run_id)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        writer.set_tags([(record.run_id, "a", "1")])
    client.restore_run(record.run_id)
    assert "a" not in client.get_run(record.run_id).data.tags  # neither call wrote anything
    writer.set_tags([(record.run_id, "a", "1")])
    assert client.get_run(record.run_id).data.tags["a"] == "1"
    tracker.release_lease()


def test_bulk_tracking_only_with_the_mlflow_releases_it_was_tested_with(monkeypatch, tracking_uri, caplog):
    from popplast.tracking import bulk_runs

    assert open_bulk(MlflowClient(tracking_uri)) is not None
    monkeypatch.setattr(bulk_runs, "_mlflow_version", lambda: "3.18.0")
    assert open_bulk(MlflowClient(tracking_uri)) is None
    assert "bulk tracking is tested with MLflow 3.17.x, not 3.18.0" in caplog.text
