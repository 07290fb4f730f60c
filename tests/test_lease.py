"""One driver per search: a second driver's --resume of a live search is refused naming the first; a lease
whose holder is gone (a process of this machine that no longer runs, or a heartbeat too old) is taken over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from popplast.cli.main import main
from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.tracking.lease import HEARTBEAT, HOLDER, PID_NAMESPACE, TIMEOUT, check_lease, pid_namespace
from popplast.tracking.search_run import open_experiment
from tests.helpers import individuals, wait_for_search_run

BIN = os.path.join(os.path.dirname(sys.executable), "popplast")


def _running_run(uri: str, holder: str, heartbeat: float, namespace: str | None = None) -> str:
    client = MlflowClient(uri)
    tags = {HOLDER: holder, HEARTBEAT: f"{heartbeat:.0f}"}
    if namespace is not None:
        tags[PID_NAMESPACE] = namespace
    run = client.create_run(open_experiment(client, "lease"), tags=tags)
    return run.info.run_id


def test_a_lease_is_live_until_its_heartbeat_is_old(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    live = _running_run(uri, "elsewhere:123", time.time())
    with pytest.raises(Exception, match="is being run by elsewhere:123 .*pass --force"):
        check_lease(uri, live)
    assert "--force" in check_lease(uri, live, force=True)
    stale = _running_run(uri, "elsewhere:123", time.time() - TIMEOUT - 30)
    assert "whose last heartbeat was" in check_lease(uri, stale)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process of this machine that has ended
    gone = _running_run(uri, f"{socket.gethostname()}:{child.pid}", time.time(), pid_namespace())
    assert "which no longer runs" in check_lease(uri, gone)
    # a container sharing this host name has PIDs of its own: its holder's PID says nothing here
    other = _running_run(uri, f"{socket.gethostname()}:{child.pid}", time.time(), "4026531836-elsewhere")
    with pytest.raises(Exception, match="is being run by"):
        check_lease(uri, other)
    MlflowClient(uri).set_terminated(live, status="KILLED")
    assert check_lease(uri, live) is None  # a search no driver runs is free to resume


@pytest.mark.slow
def test_a_second_driver_cannot_resume_a_live_search(tiny_spec, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    spec = tiny_spec.parent / "long.yaml"
    spec.write_text(tiny_spec.read_text().replace("generations: 3", "generations: 200"))
    first = subprocess.Popen(
        [BIN, "run", str(spec), "--executor", "local", "--tracking-uri", uri, "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run_id = wait_for_search_run(tmp_path / "m.db", lambda client, run: bool(run.data.tags.get(HOLDER)))
        assert main(["run", "--resume", run_id, "--executor", "local", "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err
        assert f"--resume: the search run {run_id} is being run by {socket.gethostname()}:{first.pid}" in err
        assert main(["run", str(spec), "--force", "--tracking-uri", uri]) == 2
        assert "--force: takes a search over; it goes with --resume" in capsys.readouterr().err
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)


def test_drivers_that_take_a_lease_at_once_leave_one_holder(tmp_path):
    """Compare-and-set: eight takers race for a free lease; one holds it, the others back off by name."""
    import threading

    from popplast.tracking.lease import FENCE, acquire

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(open_experiment(client, "race")).info.run_id
    won, lost = [], []

    def take():
        try:
            won.append(acquire(uri, run_id))
        except Exception as e:  # SpecError: another took it at the same moment
            lost.append(str(e))

    takers = [threading.Thread(target=take) for _ in range(8)]
    for t in takers:
        t.start()
    for t in takers:
        t.join()
    assert len(won) == 1 and len(lost) == 7, lost
    assert all("took the search run" in e for e in lost)
    tags = client.get_run(run_id).data.tags
    assert tags["popplast.lease_token"] == won[0].token and int(tags[FENCE]) >= 1
    won[0].release()
    assert client.get_run(run_id).data.tags[HEARTBEAT] == "0" and check_lease(uri, run_id) is None


def test_a_driver_whose_lease_was_taken_notices_and_writes_nothing_more(tmp_path, monkeypatch):
    from popplast.tracking import lease as leases

    monkeypatch.setattr(leases, "HEARTBEAT_SECONDS", 0.2)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(open_experiment(client, "taken")).info.run_id
    first = leases.acquire(uri, run_id, fresh=True)
    first.check()
    second = leases.acquire(uri, run_id, force=True)
    assert second.fence == first.fence + 1
    deadline = time.time() + 10
    while first.lost is None and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(leases.LeaseLost, match="took the search run"):
        first.check()
    first.release()  # not its own any more: the taker's heartbeat is left alone
    assert client.get_run(run_id).data.tags[HEARTBEAT] != "0"
    second.release()


def _stale_journal(tiny_spec, tmp_path, monkeypatch):
    """Driver A checkpoints generation 0 into MLflow, then journals an individual of generation 1 and
    checkpoints of generations 1-2 it never ships (its process stopped during an outage), and dies. Driver B
    takes the search over (fence 2), its journal in another folder. Returns A's journal folder, B and a maker
    of checkpoints."""
    import numpy as np

    from popplast.execution.checkpoint import Checkpoint, Checkpointer
    from popplast.spec.search import SearchSpec
    from popplast.strategies.ga import GAState
    from popplast.tracking.lease import acquire
    from popplast.tracking.mlflow_tracker import MLflowTracker
    from popplast.tracking.outbox import open_outbox

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    spec = SearchSpec.from_yaml(tiny_spec)
    a = MLflowTracker(uri, "stale", "ga")
    a.start_search(spec, {})
    outbox = open_outbox(a)
    rng = np.random.default_rng(0)

    def point(generation: int, value: float) -> Checkpoint:
        weights = {f"g{generation:03d}-i000": {"w": np.full(3, value)}}
        return Checkpoint(generation, GAState(generation=generation), rng.bit_generator.state, weights=weights)

    Checkpointer(outbox, lambda w: w).save(point(0, 0.0))
    assert outbox.drain(timeout=60)
    outbox.close()  # A's sender stops; what it journals from here stays unshipped
    sibling = Individual("g001-i001", (0.5,) * 4, 1, (), "init", seed=2)
    outbox.individual_finished(sibling, {}, EvalResult(sibling.id, 0.75))
    child = Individual("g001-i000", (0.5,) * 4, 1, (), "init", seed=1)
    outbox.individual_finished(child, {}, EvalResult(child.id, 0.25))
    for generation in (1, 2):
        Checkpointer(outbox, lambda w: w).save(point(generation, -1.0))
    directory = outbox.journal.directory
    outbox.journal.close()
    a.lease.release()

    monkeypatch.setenv("POPPLAST_JOURNAL_DIR", str(tmp_path / "b-journal"))
    b = MLflowTracker(uri, "stale", "ga")
    b.lease = acquire(uri, a.search_run_id)
    assert b.reopen_search(a.search_run_id, spec) and b.lease.fence == 2
    return directory, b, point, child


def test_a_stale_journals_sync_leaves_the_newer_drivers_checkpoint_and_weights(
    tiny_spec, tmp_path, monkeypatch, capsys
):
    """B checkpoints generations 1-3 with weights. A later `popplast sync` of A's journal overwrites nothing
    of B's and deletes none of its weights: A's events are superseded (issue 31: sync overwrote
    state-g0005 and deleted g6-g7's weights)."""
    import numpy as np

    from popplast.execution.checkpoint import Checkpointer, load
    from popplast.strategies.ga import GAState
    from popplast.tracking.lease import CHECKPOINT_FENCE, FENCE
    from popplast.tracking.outbox import open_outbox

    directory, b, point, _ = _stale_journal(tiny_spec, tmp_path, monkeypatch)
    outbox = open_outbox(b)
    for generation in (1, 2, 3):
        Checkpointer(outbox, lambda w: w).save(point(generation, float(generation)))
    assert outbox.drain(timeout=60)
    outbox.finish()
    b.client.set_terminated(b.search_run_id, "FINISHED")
    b.release_lease()

    assert main(["sync", directory]) == 0
    newest = load(b, GAState.from_dict)
    assert newest is not None and newest.generation == 3
    assert np.array_equal(newest.weights["g003-i000"]["w"], np.full(3, 3.0))
    assert b.newest_state() == "state-g0003.json"
    assert "shipped 0 journalled events" in capsys.readouterr().out and not os.path.exists(directory)
    tags = MlflowClient(b.tracking_uri).get_run(b.search_run_id).data.tags
    assert tags[FENCE] == "2" and tags[CHECKPOINT_FENCE] == "2"  # a sync takes no new fence
    assert individuals(b.tracking_uri, b.search_run_id) == []  # A's generation-1 individual: B's to evaluate


def test_a_stale_journal_whose_taker_never_checkpointed_is_shipped_each_individual_once(
    tiny_spec, tmp_path, monkeypatch, capsys
):
    """B logs the same generation-1 individual A had journalled, then dies before its first checkpoint. A's
    journal is then still the newest the search has: its sync ships A's checkpoints (state g2 is the newest)
    and logs the individual B logged already not a second time (every event checked, not only a batch: one
    event here, and that individual is the second)."""
    from popplast.execution.checkpoint import load
    from popplast.strategies.ga import GAState
    from popplast.tracking import outbox as outbox_module
    from popplast.tracking.outbox import open_outbox

    monkeypatch.setattr(outbox_module, "BATCH", 1)

    directory, b, _, child = _stale_journal(tiny_spec, tmp_path, monkeypatch)
    outbox = open_outbox(b)
    outbox.individual_finished(child, {}, EvalResult(child.id, 0.5))
    assert outbox.drain(timeout=60)
    outbox.close()  # B dies: its lease lapses
    b.release_lease()

    assert main(["sync", directory]) == 0
    rows = individuals(b.tracking_uri, b.search_run_id)
    assert sorted((r["id"], r["fitness"]) for r in rows) == [("g001-i000", 0.5), ("g001-i001", 0.75)]
    assert load(b, GAState.from_dict).generation == 2
    assert "shipped 4 journalled events" in capsys.readouterr().out and not os.path.exists(directory)


def _finished_search(spec, folder, uri: str) -> str:
    """A tiny search run to its end by `popplast run` in a process of its own: its search run id."""
    done = subprocess.run(
        [BIN, "run", str(spec), "--executor", "local", "--tracking-uri", uri, "--quiet"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("MLflow: search run"))
    return line.split()[3].rstrip(",")


@pytest.mark.cluster  # three drivers in turn: the slow tier
def test_two_resumes_started_together_leave_one_driver(tiny_spec, tmp_path):
    """Two `popplast run --resume` of one search at the same moment: one goes on, the other backs off by name;
    MLflow then holds every individual of the longer search once."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    run_id = _finished_search(tiny_spec, tmp_path, uri)
    command = [BIN, "run", "--resume", run_id, "--generations", "5", "--executor", "local", "--tracking-uri", uri]
    both = [
        subprocess.Popen([*command, "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in both]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(err for code, err in outcomes if code == 2)
    # it met the winner's lock on the journal folder, or its lease, or lost the compare-and-set
    assert any(m in loser for m in ("is being shipped by", "took the search run", "is being run by")), loser
    from tests.helpers import individuals

    ids = [r["id"] for r in individuals(uri, run_id)]
    assert len(ids) == len(set(ids)) == 20


@pytest.mark.cluster  # a driver, a sync and a resume in turn: the slow tier
def test_a_resume_while_a_sync_ships_the_same_search_is_refused(tiny_spec, tmp_path):
    """`popplast sync` holds the search's lease while it waits out an outage (here an artifact store that cannot
    take a checkpoint); a `--resume` started meanwhile is refused naming it, so the backlog is shipped by one
    of them, once (issue 31: 1,500 events became 2,500 runs)."""
    from popplast.tracking.journal import Journal, journal_root

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    run_id = _finished_search(tiny_spec, tmp_path, uri)
    header = {"tracking_uri": uri, "experiment": "tiny", "search_run_id": run_id, "method": "ga"}
    journal = Journal.create(journal_root(uri), {**header, "gene_names": ["lr_scale"], "fence": 1})
    with open(os.path.join(journal.checkpoint, "state-g0009.json"), "w") as f:
        f.write("{}")
    journal.append({"kind": "checkpoint", "states": ["state-g0009.json"], "weights": [], "keep": []})
    journal.close()
    artifacts = MlflowClient(uri).get_run(run_id).info.artifact_uri[len("file://") :]
    os.replace(os.path.join(artifacts, "checkpoint"), os.path.join(artifacts, "checkpoint.moved"))
    # the folder a symbolic link to itself: every write fails with an OSError that is no refusal (ELOOP), as a
    # store's failing disk does: an outage the sync waits out
    os.symlink(os.path.join(artifacts, "checkpoint"), os.path.join(artifacts, "checkpoint"))
    sync = subprocess.Popen([BIN, "sync", journal.directory], stderr=subprocess.PIPE, text=True)
    try:
        for line in sync.stderr:
            if "Waiting for it" in line:
                break
        resume = subprocess.run(
            [BIN, "run", "--resume", run_id, "--generations", "4", "--executor", "local", "--tracking-uri", uri],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # refused before it takes anything: the sync holds the lease (and the journal folder)
        assert resume.returncode == 2 and "is being run by" in resume.stderr, resume.stderr
    finally:
        sync.send_signal(signal.SIGTERM)
        sync.wait(timeout=60)
