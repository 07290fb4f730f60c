"""Every run writer (tracking/run_writers.py) through one contract (issue 31): MLflow's API and the bulk writer
against a real SQLite store, and the in-memory writer the fault tests script to fail. Each is read back
through the protocol's own `runs_of`, so the same assertions hold each to the same promises."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from popplast.tracking.bulk_runs import RunRecord, open_bulk
from popplast.tracking.failures import refused
from popplast.tracking.run_writers import ApiWriter, open_writer
from popplast.tracking.search_run import open_experiment
from tests.memory_writer import MemoryWriter

SEARCH = "s" * 32


@pytest.fixture(params=["api", "bulk", "memory"])
def writer(request, tracking_uri):
    """(the writer, its experiment id); a real search run for the SQL ones to nest runs under."""
    if request.param == "memory":
        yield MemoryWriter(refused={"g000-i009"}), "0"
        return
    client = MlflowClient(tracking_uri)
    experiment = open_experiment(client, "writers")
    search = client.create_run(experiment).info.run_id
    bulk = open_bulk(client) if request.param == "bulk" else None
    chosen = open_writer(client, bulk)
    assert chosen.name == request.param and (bulk is not None) == (request.param == "bulk")
    chosen.search = search  # type: ignore[attr-defined]
    yield chosen, experiment


def _records(search: str, individual: str, fitness: float, retried: int = 0, bad: bool = False) -> list[RunRecord]:
    tags = {"mlflow.parentRunId": search, "popplast.individual_id": individual}
    retry = {**tags, "popplast.status": "retried"}
    attempts = [RunRecord(f"{individual}-attempt{k}", retry, "FAILED") for k in range(retried)]
    metrics = [Metric("fitness", fitness, 1, 0)] + ([Metric("bad*name", 1.0, 1, 0)] if bad else [])
    own = RunRecord(individual, {**tags, "popplast.status": "ok"}, "FINISHED", [Param("lr", "0.1")], metrics)
    return attempts + [own]


def _search(writer) -> str:
    return getattr(writer, "search", SEARCH)


def test_written_runs_are_found_whole_with_their_tags_and_fitness(writer):
    w, experiment = writer
    search = _search(w)
    records = _records(search, "g000-i000", 0.5) + _records(search, "g000-i001", 0.7, retried=2)
    w.write(experiment, records)
    found = w.runs_of(experiment, search, "g000-i001")
    own = [r for r in found if r.tags.get("popplast.status") == "ok"]
    assert len(found) == 3 and len(own) == 1 and all(r.whole for r in found)
    assert own[0].run_id == records[-1].run_id and own[0].fitness == pytest.approx(0.7)
    assert [r.fitness for r in w.runs_of(experiment, search, "g000-i000")] == [pytest.approx(0.5)]
    assert w.runs_of(experiment, search, "g000-i007") == []


def test_a_refused_write_leaves_runs_whole_cut_short_or_absent_and_a_second_write_gives_each_once(writer):
    w, experiment = writer
    search = _search(w)
    good, bad = _records(search, "g000-i000", 0.5), _records(search, "g000-i009", 0.9, bad=True)
    later = _records(search, "g000-i001", 0.6)
    with pytest.raises(Exception) as failure:
        w.write(experiment, good + bad + later)
    assert refused(failure.value)  # MLflow named the payload: not an outage to wait out
    for individual in ("g000-i000", "g000-i009", "g000-i001"):
        runs = w.runs_of(experiment, search, individual)
        assert len(runs) <= 1 and all(r.whole or r.fitness is None for r in runs)
        for run in runs:
            if not run.whole:
                w.delete(run.run_id)  # as the sender does before logging it again
    again = [r for r in _records(search, "g000-i000", 0.5) + later if not w.runs_of(experiment, search, r.name)]
    w.write(experiment, again)
    for individual in ("g000-i000", "g000-i001"):
        assert [r.whole for r in w.runs_of(experiment, search, individual)] == [True]
    assert all(not r.whole for r in w.runs_of(experiment, search, "g000-i009")) or not w.runs_of(
        experiment, search, "g000-i009"
    )


def test_tags_of_a_run_that_is_not_there_or_not_active_are_refused_and_nothing_is_written(writer):
    w, experiment = writer
    search = _search(w)
    records = _records(search, "g000-i000", 0.5)
    w.write(experiment, records)
    run_id = records[-1].run_id
    with pytest.raises(Exception) as missing:
        w.set_tags([(run_id, "note", "a"), ("0" * 32, "note", "a")])
    assert refused(missing.value)
    w.delete(run_id)
    with pytest.raises(Exception) as deleted:
        w.set_tags([(run_id, "note", "b")])
    assert refused(deleted.value)
    w.write(experiment, later := _records(search, "g000-i001", 0.6))
    w.set_tags([(later[-1].run_id, "note", "c")])
    assert w.runs_of(experiment, search, "g000-i001")[0].tags["note"] == "c"


def test_the_api_writer_is_chosen_for_a_tracking_server():
    assert isinstance(open_writer(MlflowClient("http://127.0.0.1:9"), None), ApiWriter)
