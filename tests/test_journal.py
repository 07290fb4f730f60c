"""The journal and its sender (tracking/journal.py) against a real MLflow store: events arrive in order and
once, a result cut short in MLflow is logged again whole, a cut-short last line is ignored, bad folders are
refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from popplast.cli.main import main
from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.spec.search import SearchSpec
from popplast.tracking.fail_fast import failing_fast
from popplast.tracking.journal import Journal
from popplast.tracking.mlflow_tracker import MLflowTracker
from popplast.tracking.outbox import open_outbox
from tests.helpers import TINY_SPEC, individuals, write_spec

BIN = os.path.join(os.path.dirname(sys.executable), "popplast")


@pytest.fixture
def tracker(tmp_path, tracking_uri):
    t = MLflowTracker(tracking_uri, "journal-test", "ga")
    t.start_search(SearchSpec.from_yaml(write_spec(tmp_path, TINY_SPEC)), {})
    yield t
    t.release_lease()


def _individual(slot: int, parents: tuple[str, ...] = ()) -> Individual:
    return Individual(
        f"g000-i{slot:03d}", (0.5, 0.5, 0.5, 0.5), 0, parents, "crossover" if parents else "init", seed=slot
    )


def test_events_are_journalled_then_shipped_in_order_and_the_journal_goes(tracker, journal_dir):
    outbox = open_outbox(tracker)
    journal = outbox.journal
    for slot in range(3):
        outbox.individual_finished(
            _individual(slot), {"lr": 0.1}, EvalResult(f"g000-i{slot:03d}", 0.5 + slot, {"acc": 1.0})
        )
    outbox.generation_finished(0, {"best": 2.5})
    assert [e["kind"] for e in journal.events()] == ["individual"] * 3 + ["generation"]  # on disk before shipping
    assert outbox.drain(timeout=60)
    assert journal.sent() == 4
    rows = individuals(tracker.tracking_uri, tracker.search_run_id)
    assert [(r["id"], r["fitness"]) for r in rows] == [("g000-i000", 0.5), ("g000-i001", 1.5), ("g000-i002", 2.5)]
    history = MlflowClient(tracker.tracking_uri).get_metric_history(tracker.search_run_id, "generation_best")
    assert [m.value for m in history] == [2.5]
    outbox.finish()
    assert not (journal_dir / tracker.search_run_id).exists()


def test_a_result_cut_short_in_mlflow_is_logged_again_whole_once(tracker):
    client = tracker.client
    # what a driver killed between create_run and set_terminated leaves: a run of the individual, unterminated
    client.create_run(
        tracker.experiment_id,
        tags={
            "mlflow.parentRunId": tracker.search_run_id,
            "popplast.individual_id": "g000-i000",
            "popplast.status": "ok",
        },
    )
    assert not tracker.has_logged("g000-i000")  # ... which is deleted
    tracker.individual_finished(_individual(0), {}, EvalResult("g000-i000", 1.0))
    assert tracker.has_logged("g000-i000")
    assert [r["id"] for r in individuals(tracker.tracking_uri, tracker.search_run_id)] == ["g000-i000"]


def test_a_journal_left_behind_is_shipped_by_sync_once(tracker, journal_dir, capsys):
    outbox = open_outbox(tracker)
    outbox.close()  # the sender stops before shipping (as a driver killed during an outage)
    for slot in range(2):
        outbox.journal.append(
            {
                "kind": "individual",
                "individual": _individual(slot).to_dict(),
                "config": {},
                "result": {"individual_id": f"g000-i{slot:03d}", "fitness": 1.0, "metrics": {}, "history": {}},
            }
        )
    with open(outbox.journal.directory + "/journal.jsonl", "a") as f:
        f.write('{"kind": "individ')  # the last line, cut short by the driver's death
    directory = outbox.journal.directory
    assert main(["sync", directory]) == 0
    assert f"shipped 2 journalled events to the search run {tracker.search_run_id}" in capsys.readouterr().out
    assert len(individuals(tracker.tracking_uri, tracker.search_run_id)) == 2
    assert not (journal_dir / tracker.search_run_id).exists()


def test_sync_refuses_a_folder_that_is_no_journal_and_a_live_search(tracker, tmp_path, capsys):
    assert main(["sync", str(tmp_path)]) == 2
    assert "not a popplast journal folder" in capsys.readouterr().err
    outbox = open_outbox(tracker)
    outbox.close()
    # this process holds the search's lease: another one may not ship its journal
    other = subprocess.run([BIN, "sync", outbox.journal.directory], capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "still runs the search run" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert json.loads(open(f"{outbox.journal.directory}/search.json").read())["search_run_id"] == tracker.search_run_id
    assert Journal(outbox.journal.directory).pending() == []


def test_resume_reads_the_local_copy_of_a_checkpoint_unless_mlflow_holds_a_newer_one(tracker, monkeypatch):
    import numpy as np

    from popplast.execution.checkpoint import Checkpoint, Checkpointer, load
    from popplast.strategies.ga import GAState

    outbox = open_outbox(tracker)
    rng = np.random.default_rng(0)
    weights = {"g000-i000": {"w": np.arange(3.0)}}
    first = Checkpoint(0, GAState(generation=0), rng.bit_generator.state, weights=weights)
    Checkpointer(outbox, lambda w: w).save(first)
    assert outbox.drain(timeout=60)  # shipped: MLflow and the local copy hold the same state

    downloads = []
    real = tracker.load_checkpoint
    monkeypatch.setattr(tracker, "load_checkpoint", lambda d: downloads.append(d) or real(d))
    local = load(outbox, GAState.from_dict)
    assert local is not None and local.generation == 0 and downloads == []  # read here, nothing downloaded
    assert np.array_equal(local.weights["g000-i000"]["w"], np.arange(3.0))

    # another driver went on elsewhere and checkpointed generation 1: MLflow's is newer, and is the one read
    Checkpointer(tracker, lambda w: w).save(Checkpoint(1, GAState(generation=1), rng.bit_generator.state))
    newer = load(outbox, GAState.from_dict)
    assert newer is not None and newer.generation == 1 and len(downloads) == 1
    outbox.close()


def test_an_event_mlflow_refuses_is_kept_as_refused_and_never_counted_as_shipped(tracker, journal_dir, capsys):
    """Not an outage: MLflow names the payload (a metric name it rejects). The events after it still arrive;
    the refused one stays in the journal, recorded as refused with MLflow's answer; the search's end keeps the
    journal, and `popplast sync` tries it again, says it is still refused (exit 1) and keeps it too."""
    outbox = open_outbox(tracker)
    bad = EvalResult("g000-i000", 1.0, {"bad*name": 1.0})
    outbox.individual_finished(_individual(0), {}, bad)
    outbox.individual_finished(_individual(1), {}, EvalResult("g000-i001", 2.0))
    assert outbox.drain(timeout=120)
    assert outbox.refused == 1
    assert [r["id"] for r in individuals(tracker.tracking_uri, tracker.search_run_id)] == ["g000-i001"]
    outbox.finish()
    journal = Journal(str(journal_dir / tracker.search_run_id))
    assert list(journal.refused()) == [0] and "bad*name" in journal.refused()[0]
    assert journal.unshipped() == 1 and journal.sent() == 2
    tracker.release_lease()
    capsys.readouterr()
    assert main(["sync", journal.directory]) == 1
    err = capsys.readouterr().err
    assert "MLflow refused journal event 0: " in err and "bad*name" in err
    assert list(Journal(journal.directory).refused()) == [0]  # still the only place that holds it


def test_a_refused_event_arrives_once_its_cause_is_fixed(tracker, journal_dir, capsys):
    """The experiment was deleted while the search ran (MLflow refuses runs in it): the individuals are kept
    as refused. Once it is restored, `popplast sync` ships them, each once, and removes the journal."""
    outbox = open_outbox(tracker)
    tracker.client.delete_experiment(tracker.experiment_id)
    for slot in range(3):
        outbox.individual_finished(_individual(slot), {}, EvalResult(f"g000-i{slot:03d}", float(slot)))
    assert outbox.drain(timeout=120) and outbox.refused == 3
    outbox.finish()
    journal = Journal(str(journal_dir / tracker.search_run_id))
    assert sorted(journal.refused()) == [0, 1, 2]
    tracker.release_lease()
    tracker.client.restore_experiment(tracker.experiment_id)
    assert main(["sync", journal.directory]) == 0
    assert "shipped 3 journalled events" in capsys.readouterr().out
    rows = individuals(tracker.tracking_uri, tracker.search_run_id)
    assert sorted((r["id"], r["fitness"]) for r in rows) == [("g000-i000", 0.0), ("g000-i001", 1.0), ("g000-i002", 2.0)]
    assert not (journal_dir / tracker.search_run_id).exists()


def test_failures_are_refusals_only_when_mlflow_names_the_payload(tracker, tmp_path):
    """Real failures of real stores: a name MLflow rejects and a deleted run are refusals; a locked SQLite
    database, a server nobody listens on and a 503 are outages."""
    import sqlite3

    from mlflow.exceptions import MlflowException, RestException

    from popplast.tracking.failures import refused

    def caught(call):
        try:
            call()
        except Exception as e:  # what the store raised
            return e
        raise AssertionError("no failure")

    client = tracker.client
    assert refused(caught(lambda: client.log_metric(tracker.search_run_id, "bad*name", 1.0)))
    gone = client.create_run(tracker.experiment_id).info.run_id
    client.delete_run(gone)
    assert refused(caught(lambda: client.log_metric(gone, "x", 1.0)))
    with failing_fast():  # MLflow's client would retry for minutes
        assert not refused(caught(lambda: MlflowClient("http://127.0.0.1:9").get_run(gone)))
    assert not refused(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "database down"}))
    assert not refused(RestException({"error_code": "503", "message": "Service Unavailable"}))
    assert not refused(MlflowException("(sqlite3.OperationalError) database is locked", error_code="BAD_REQUEST"))
    assert refused(FileNotFoundError("checkpoint/weights/g000-i000.npz"))
    # decided positively for outages: a bug, or credentials MLflow does not take, never waited on for ever
    assert refused(AttributeError("'NoneType' object has no attribute 'run_id'"))
    assert refused(RestException({"error_code": "UNAUTHENTICATED", "message": "bad token"}))
    assert not refused(MlflowException("QueuePool limit of size 5 overflow 10 reached", error_code="BAD_REQUEST"))
    import requests

    def answered(status: int) -> requests.HTTPError:  # what requests raises for an artifact upload's answer
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(f"{status} for url: http://127.0.0.1/api/2.0/mlflow-artifacts", response=response)

    assert refused(answered(403)) and refused(answered(413))
    assert not refused(answered(503)) and not refused(answered(429))
    assert refused(PermissionError(13, "Permission denied", "/srv/mlruns"))
    import sqlalchemy

    path = tracker.tracking_uri[len("sqlite:///") :]
    lock = sqlite3.connect(path, isolation_level=None, timeout=0)
    lock.execute("BEGIN EXCLUSIVE")
    try:  # what MLflow's engine raises once its busy timeout (20 s) has passed, at once
        engine = sqlalchemy.create_engine(tracker.tracking_uri, connect_args={"timeout": 0})
        with engine.connect() as conn:
            locked = caught(lambda: conn.execute(sqlalchemy.text("INSERT INTO tags VALUES ('k', 'v', 'r')")))
        assert "locked" in str(locked) and not refused(locked)
    finally:
        lock.execute("ROLLBACK")
        lock.close()


def test_past_its_memory_the_queue_waits_in_the_journal_and_everything_arrives_in_order(
    tracker, journal_dir, monkeypatch, tmp_path
):
    """MLflow slower than the search (here: its first shipment held back) grows the journal on disk, not
    the driver's memory: past IN_MEMORY events the rest are read back from the journal as the queue empties,
    a checkpoint among them included."""
    import threading

    import numpy as np

    from popplast.execution.checkpoint import Checkpoint, Checkpointer
    from popplast.strategies.ga import GAState
    from popplast.tracking import outbox as outbox_module

    monkeypatch.setattr(outbox_module, "IN_MEMORY", 4)
    gate = threading.Event()
    real = tracker.individuals_finished
    monkeypatch.setattr(tracker, "individuals_finished", lambda finished: gate.wait(60) and real(finished))
    monkeypatch.setattr(tracker, "individual_finished", lambda *finished: gate.wait(60) and real([finished]))
    outbox = open_outbox(tracker)
    for slot in range(13):
        outbox.individual_finished(_individual(slot), {}, EvalResult(f"g000-i{slot:03d}", float(slot)))
        if slot == 9:
            outbox.generation_finished(0, {"best": 9.0})
            state = Checkpoint(0, GAState(generation=0), np.random.default_rng(0).bit_generator.state)
            Checkpointer(outbox, lambda w: w).save(state)
    assert len(outbox._queue) <= 4 and outbox.queued == 15  # the other 11 in the journal alone
    gate.set()
    assert outbox.drain(timeout=120)
    rows = individuals(tracker.tracking_uri, tracker.search_run_id)
    assert [(r["id"], r["fitness"]) for r in rows] == [(f"g000-i{k:03d}", float(k)) for k in range(13)]
    history = MlflowClient(tracker.tracking_uri).get_metric_history(tracker.search_run_id, "generation_best")
    assert [m.value for m in history] == [9.0]
    assert tracker.newest_state() is not None and outbox.journal.sent() == 15
    outbox.finish()
    assert not (journal_dir / tracker.search_run_id).exists()


def test_an_earlier_drivers_backlog_past_the_memory_is_read_back_as_the_queue_empties(
    tracker, journal_dir, monkeypatch
):
    from popplast.tracking import outbox as outbox_module

    monkeypatch.setattr(outbox_module, "IN_MEMORY", 4)
    first = open_outbox(tracker)
    first.close()  # the sender stops before shipping (a driver killed during an outage)
    for slot in range(9):
        first.individual_finished(_individual(slot), {}, EvalResult(f"g000-i{slot:03d}", float(slot)))
    with open(first.journal.directory + "/journal.jsonl", "a") as f:
        f.write('{"kind": "individ')  # the last line, cut short by the driver's death
    again = open_outbox(tracker)  # the next driver: 4 queued, 5 left in the journal, then its own event
    assert len(again._queue) == 4 and again.queued == 9
    again.generation_finished(0, {"best": 8.0})
    assert again.drain(timeout=120)
    rows = individuals(tracker.tracking_uri, tracker.search_run_id)
    assert [(r["id"], r["fitness"]) for r in rows] == [(f"g000-i{k:03d}", float(k)) for k in range(9)]
    history = MlflowClient(tracker.tracking_uri).get_metric_history(tracker.search_run_id, "generation_best")
    assert [m.value for m in history] == [8.0] and again.journal.sent() == 10
    again.finish()
    assert not (journal_dir / tracker.search_run_id).exists()


def test_an_event_cut_short_by_a_death_is_cut_before_the_next_is_journalled(tmp_path):
    journal = Journal.create(str(tmp_path), {"search_run_id": "r1"})
    journal.append({"kind": "generation", "generation": 0, "metrics": {}})
    journal.close()
    with open(os.path.join(journal.directory, "journal.jsonl"), "a") as f:
        f.write('{"kind": "gener')  # the driver died writing it
    again = Journal(journal.directory)  # the next driver
    offset = again.append({"kind": "generation", "generation": 1, "metrics": {}})
    assert [e["generation"] for e in again.events()] == [0, 1]
    assert again.read_from(offset, 1)[0] == [{"kind": "generation", "generation": 1, "metrics": {}}]
    again.close()


def test_sync_stopped_by_sigterm_says_what_it_left_and_leaves_the_run_as_it_was(tracker, tmp_path):
    """The sender fails on an event and tries it again (an outage: the artifact store cannot take the
    checkpoint) while SIGTERM comes: sync marks no run (it ships into a search it does not own) and says so;
    the event stays in the journal."""
    import signal

    outbox = open_outbox(tracker)
    outbox.close()
    state = os.path.join(outbox.journal.checkpoint, "state-g0000.json")
    with open(state, "w") as f:
        f.write("{}")
    event = {"kind": "checkpoint", "states": ["state-g0000.json"], "weights": [], "keep": []}
    outbox.journal.append(event)
    artifacts = tracker.client.get_run(tracker.search_run_id).info.artifact_uri[len("file://") :]
    os.makedirs(artifacts, exist_ok=True)
    # the folder a symbolic link to itself: every write fails with an OSError that is no refusal, as a store's
    # disk that fails does (ELOOP)
    os.symlink(os.path.join(artifacts, "checkpoint"), os.path.join(artifacts, "checkpoint"))
    tracker.fail_search("interrupted by SIGTERM")  # its driver stopped, as `popplast run` does on SIGTERM
    client, run_id = MlflowClient(tracker.tracking_uri), tracker.search_run_id
    assert client.get_run(run_id).info.status == "KILLED"
    directory = outbox.journal.directory
    sync = subprocess.Popen([BIN, "sync", directory], stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in sync.stderr:  # MLflow's own log lines come first
            seen.append(line)
            if "Waiting for it" in line:
                break
        assert "Waiting for it" in seen[-1], seen
        sync.send_signal(signal.SIGTERM)
        err = sync.stderr.read()
        assert sync.wait(timeout=60) == 143
    finally:
        sync.kill()
    assert "marked KILLED" not in err and "Traceback" not in err
    assert (
        f"popplast: interrupted by SIGTERM; the search run's status is left as it was; the events not yet "
        f"shipped stay in {directory}, and `popplast sync {directory}` ships them." in err
    )
    assert client.get_run(run_id).info.status == "KILLED"
    assert Journal(directory).pending() == [event]


def test_one_sender_per_journal(tracker, capsys):
    """Two senders on one journal ship its backlog twice: the second is refused while the first holds it (a
    sync of the folder too), and may take it once the first has let go."""
    from popplast.tracking.journal import JournalBusy
    from popplast.tracking.outbox import Outbox

    outbox = open_outbox(tracker)
    with pytest.raises(JournalBusy, match="is being shipped by"):
        Outbox(tracker, Journal(outbox.journal.directory))
    tracker.fail_search("interrupted by SIGTERM")  # no live lease: what stops the sync here is the folder's lock
    other = subprocess.run([BIN, "sync", outbox.journal.directory], capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "is being shipped by" in other.stderr, other.stderr
    outbox.close()
    again = Outbox(tracker, Journal(outbox.journal.directory))
    again.close()


def test_a_resume_from_another_folder_finds_the_earlier_journal_by_the_search_runs_tag(tracker, tmp_path, monkeypatch):
    """An earlier driver journalled into folder A and died with an event unshipped; a driver resumed where
    journals go elsewhere (B: another current folder, for an http store) adopts A's journal from the search
    run's tag, ships the event and leaves no journal behind (issue 31)."""
    from popplast.search.tracking import JOURNAL_TAG, claim_journal, open_journal

    monkeypatch.setenv("POPPLAST_JOURNAL_DIR", str(tmp_path / "A"))
    outbox = open_journal(tracker, progress=False)
    outbox.close()  # the driver dies: the sender stops, what it journals stays unshipped
    outbox.individual_finished(_individual(0), {}, EvalResult("g000-i000", 1.0))
    outbox.journal.close()
    tag = MlflowClient(tracker.tracking_uri).get_run(tracker.search_run_id).data.tags[JOURNAL_TAG]
    assert tag.endswith(str(tmp_path / "A" / tracker.search_run_id))
    monkeypatch.setenv("POPPLAST_JOURNAL_DIR", str(tmp_path / "B"))
    claimed = claim_journal(tracker.tracking_uri, tracker.search_run_id, progress=False)  # as a resume does
    again = open_journal(tracker, False, claimed)  # ships A's backlog first
    assert again.journal.directory == str(tmp_path / "A" / tracker.search_run_id)
    assert [r["id"] for r in individuals(tracker.tracking_uri, tracker.search_run_id)] == ["g000-i000"]
    again.finish()
    assert not (tmp_path / "A" / tracker.search_run_id).exists() and not (tmp_path / "B").exists()


def test_a_sender_whose_lease_was_taken_writes_nothing_more(tracker, journal_dir):
    """Another driver took the search run (its token replaced the lease's) between two of this sender's
    batches: the sender reads the token before writing, stops, and the result stays in the journal."""
    from popplast.tracking.lease import HOLDER, TOKEN

    outbox = open_outbox(tracker)
    outbox.individual_finished(_individual(0), {}, EvalResult("g000-i000", 1.0))
    assert outbox.drain(timeout=60)
    tracker.client.set_tag(tracker.search_run_id, TOKEN, "someone-else")
    tracker.client.set_tag(tracker.search_run_id, HOLDER, "elsewhere:1")
    outbox.individual_finished(_individual(1), {}, EvalResult("g000-i001", 2.0))
    assert not outbox.drain(timeout=60)  # the sender stopped with the event unshipped
    assert [r["id"] for r in individuals(tracker.tracking_uri, tracker.search_run_id)] == ["g000-i000"]
    assert tracker.lease.lost == "elsewhere:1"
    outbox.finish()
    assert Journal(str(journal_dir / tracker.search_run_id)).unshipped() == 1


def test_a_description_mlflow_refuses_never_holds_up_the_generation(tracker, journal_dir):
    """A parent's run deleted (not active) while its child is logged: the parent's description is refused
    and dropped, and the generation's summary still arrives."""
    outbox = open_outbox(tracker)
    outbox.individual_finished(_individual(0), {}, EvalResult("g000-i000", 1.0))
    assert outbox.drain(timeout=60)
    tracker.client.delete_run(tracker.run_ids["g000-i000"])
    child = Individual("g001-i000", (0.5,) * 4, 1, ("g000-i000",), "mutation", seed=9)
    outbox.individual_finished(child, {}, EvalResult("g001-i000", 2.0))
    outbox.generation_finished(1, {"best": 2.0})
    assert outbox.drain(timeout=60) and outbox.refused == 0
    history = MlflowClient(tracker.tracking_uri).get_metric_history(tracker.search_run_id, "generation_best")
    assert [m.value for m in history] == [2.0]
    outbox.finish()


def test_journals_of_the_driver_taken_over_from_are_adopted_and_older_ones_moved_aside(tmp_path, caplog):
    """A resumed driver (fence 2) adopts the journal of the one it took over from (fence 1); a journal older
    than the search's newest checkpoint (a driver in between, fence 3, checkpointed) is moved aside for
    `popplast sync`."""
    header = {"search_run_id": "r", "tracking_uri": "sqlite:///x.db", "fence": 1}
    first = Journal.create(str(tmp_path), header)
    first.append({"kind": "generation", "generation": 0, "metrics": {}})
    first.close()
    adopted = Journal.create(str(tmp_path), {**header, "fence": 2})
    assert adopted.header()["fence"] == 2 and len(adopted.pending()) == 1
    adopted.close()
    fresh = Journal.create(str(tmp_path), {**header, "fence": 4}, checkpointed=3)
    assert fresh.header()["fence"] == 4 and fresh.pending() == []
    assert len(Journal(str(tmp_path / "r.fence2")).pending()) == 1 and "moved aside" in caplog.text
    fresh.close()


def test_sync_says_in_one_line_when_mlflow_does_not_answer(tmp_path, capsys):
    journal = Journal.create(str(tmp_path), {"search_run_id": "r", "tracking_uri": "http://127.0.0.1:9", "fence": 1})
    journal.close()
    assert main(["sync", journal.directory]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("popplast: error: ") and "did not answer" in err and "nothing was shipped" in err
    assert len(err.splitlines()) == 1 and os.path.isdir(journal.directory)


def test_a_sync_refused_for_a_locked_journal_leaves_the_lease_alone(tracker):
    """The folder is locked before the lease is taken: a sync of a journal another process ships writes no
    lease tag."""
    from popplast.tracking.lease import TOKEN

    outbox = open_outbox(tracker)
    tracker.fail_search("interrupted by SIGTERM")  # the lease released: only the folder's lock stops the sync
    before = MlflowClient(tracker.tracking_uri).get_run(tracker.search_run_id).data.tags[TOKEN]
    assert main(["sync", outbox.journal.directory]) == 2
    assert MlflowClient(tracker.tracking_uri).get_run(tracker.search_run_id).data.tags[TOKEN] == before
    outbox.close()
