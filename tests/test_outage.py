"""An MLflow outage in the middle of a search, with a real `mlflow server` on 127.0.0.1 killed and started
again: the search does not wait for it and nothing is lost or logged twice (tracking/outbox.py); a driver
killed during the outage leaves a journal that `popplast sync` ships, and `--resume` goes on from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from mlflow import MlflowClient

import popplast
from tests.helpers import individuals, lineage, write_spec

BIN = os.path.join(os.path.dirname(sys.executable), "popplast")
SLOW_OBJECTIVE = '''
import os
import time


def fit(config, trial):
    """Sleeps SLOW_SECONDS, notes when it finished in SLOW_LOG, and scores (x, y) against (0.3, -0.2)."""
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
    if os.environ.get("SLOW_LOG"):
        with open(os.environ["SLOW_LOG"], "a") as f:
            f.write(f"{time.time()}\\n")
    return {"loss": (config["x"] - 0.3) ** 2 + (config["y"] + 0.2) ** 2}
'''
SLOW_SPEC = """
objective: slowobj:fit
fitness: {metric: loss, mode: minimize}
strategy: {method: ga, population: 4, generations: 8, seed: 5}
space:
  x: {type: float, low: -1.0, high: 1.0}
  y: {type: float, low: -1.0, high: 1.0}
"""
OUTAGE = 30.0  # seconds the server is down


def _spec(tmp_path):
    (tmp_path / "slowobj.py").write_text(SLOW_OBJECTIVE)
    return write_spec(tmp_path, SLOW_SPEC, "slow.yaml")


def _undisturbed(spec, tmp_path):
    result = popplast.run(spec, executor="local", tracking_uri=f"sqlite:///{tmp_path / 'ref.db'}", progress=False)
    return result, individuals(f"sqlite:///{tmp_path / 'ref.db'}", result.search_run_id)


def _driver(spec, url, tmp_path, *extra):
    env = {**os.environ, "SLOW_SECONDS": "0.4", "SLOW_LOG": str(tmp_path / "finished.log")}
    command = [BIN, "run", str(spec), "--executor", "local", "--tracking-uri", url, *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _logged(url):
    """(search run id, how many individuals the server holds) once the search run exists, else (None, 0)."""
    client = MlflowClient(url)
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], "tags.`popplast.role` = 'search'"):
            children = client.search_runs(
                [experiment.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'", max_results=1000
            )
            return run.info.run_id, len(children)
    return None, 0


def _wait_logged(url, count, driver, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()
        run_id, logged = _logged(url)
        if logged >= count:
            return run_id
        time.sleep(0.3)
    raise TimeoutError(f"the server did not get {count} individuals within {timeout} s")


def _search_into_an_outage(server, tmp_path):
    """The undisturbed search's result and individuals; then the same search as a driver against `server`,
    killed (SIGKILL) once it holds 4 individuals: (result, individuals, the driver, its search run id)."""
    spec = _spec(tmp_path)
    reference, expected = _undisturbed(spec, tmp_path)
    driver = _driver(spec, server.url, tmp_path)
    run_id = _wait_logged(server.url, 4, driver)
    server.stop(kill=True)
    return reference, expected, driver, run_id


@pytest.mark.cluster  # about a minute of real outage: the slow tier
def test_a_search_goes_on_through_an_outage_and_mlflow_gets_everything_once(
    restartable_mlflow_server, tmp_path, journal_dir
):
    server = restartable_mlflow_server
    reference, expected, driver, run_id = _search_into_an_outage(server, tmp_path)
    down = time.time()
    time.sleep(OUTAGE)
    up = time.time()
    server.start()
    out, err = driver.communicate(timeout=180)
    assert driver.returncode == 0, err
    finished = [float(t) for t in (tmp_path / "finished.log").read_text().split()]
    # the loop did not wait: evaluations went on during the outage, and all of them ended before it did
    assert len(finished) == 32 and sum(down < t < up for t in finished) >= 16 and max(finished) < up
    assert "MLflow unreachable" in err
    rows = individuals(server.url, run_id)
    assert len(rows) == len({r["id"] for r in rows}) == 32  # every individual, once
    assert lineage(rows) == lineage(expected)
    assert [r["fitness"] for r in rows] == [r["fitness"] for r in expected]
    assert MlflowClient(server.url).get_run(run_id).info.status == "FINISHED"
    assert reference.best.id in out
    assert "View run g0" not in out  # no line of MLflow's for each individual's run
    assert not (journal_dir / run_id).exists()  # everything arrived: the journal is gone


@pytest.mark.cluster
def test_a_driver_killed_during_an_outage_leaves_a_journal_that_sync_ships_and_resume_continues(
    restartable_mlflow_server, tmp_path, journal_dir
):
    server = restartable_mlflow_server
    reference, expected, driver, run_id = _search_into_an_outage(server, tmp_path)
    journal = journal_dir / run_id / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        not journal.exists() or journal.read_text().count('"kind": "individual"') < 18
    ):
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=30)
    journalled = journal.read_text().count('"kind": "individual"')
    assert journalled >= 18
    server.start()
    synced = subprocess.run([BIN, "sync", str(journal_dir / run_id)], capture_output=True, text=True, timeout=120)
    assert synced.returncode == 0, synced.stderr
    assert run_id in synced.stdout
    rows = individuals(server.url, run_id)
    assert len(rows) == len({r["id"] for r in rows}) == journalled  # shipped once each, none lost
    assert lineage(rows) == lineage(expected[: len(rows)])
    assert not (journal_dir / run_id).exists()
    resumed = subprocess.run(
        [BIN, "run", "--resume", run_id, "--executor", "local", "--tracking-uri", server.url, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    rows = individuals(server.url, run_id)
    assert lineage(rows) == lineage(expected)
    assert [r["fitness"] for r in rows] == [r["fitness"] for r in expected]
    assert reference.best.id in resumed.stdout


@pytest.mark.cluster  # two real outages of a server that takes seconds to start: the slow tier
def test_the_end_of_a_search_waits_out_an_outage_and_a_failure_keeps_its_own_error(
    tiny_spec, tmp_path, restartable_mlflow_server
):
    """The search's end goes through the journal (issue 31): with the server killed as the search ends, the
    end waits for it and then MLflow holds the finished run with its best run, files and lineage page; a search
    failing during an outage raises its own error, not the outage's, and its FAILED status reaches MLflow with
    `popplast sync`."""
    import threading

    from popplast.core.individual import Individual
    from popplast.core.result import EvalResult, SearchResult
    from popplast.search.tracking import end_search, failing, open_journal
    from popplast.spec.search import SearchSpec
    from popplast.tracking.fail_fast import failing_fast
    from popplast.tracking.journal import journal_root
    from popplast.tracking.journal_sync import sync
    from popplast.tracking.mlflow_tracker import MLflowTracker

    server = restartable_mlflow_server
    spec = SearchSpec.from_yaml(tiny_spec)

    def journalled_search(name):
        tracker = MLflowTracker(server.url, name, "ga")
        tracker.start_search(spec, {})
        with failing_fast():
            outbox = open_journal(tracker, progress=False)
            best = Individual("g000-i000", (0.5, 0.5, 0.5, 0.5), 0, seed=1)
            outbox.individual_finished(best, {"lr": 0.1}, EvalResult(best.id, 0.9, {"acc": 0.9}))
            assert outbox.drain(timeout=60)
        return tracker, best

    tracker, best = journalled_search("ends")
    result = SearchResult("ga", best, {"lr": 0.1}, 0.9, {"acc": 0.9}, tracker.run_ids[best.id], "", "", "", 1, 0, 1.0)
    server.stop(kill=True)
    threading.Timer(8.0, server.start).start()  # back while the end waits for it
    end_search(tracker, result, {"population": []}, progress=False)
    run = MlflowClient(server.url).get_run(tracker.search_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["popplast.best_run_id"] == result.best_run_id
    artifacts = {f.path for f in MlflowClient(server.url).list_artifacts(tracker.search_run_id)}
    assert {"best_individual.json", "final_population.json", "lineage.html"} <= artifacts
    assert result.lineage_html and result.lineage_html.endswith("lineage.html")

    tracker, _ = journalled_search("fails")
    server.stop(kill=True)
    with pytest.raises(RuntimeError, match="the search's own error"):
        with failing(tracker):
            raise RuntimeError("the search's own error")
    server.start()
    sync(os.path.join(journal_root(server.url), tracker.search_run_id))
    assert MlflowClient(server.url).get_run(tracker.search_run_id).info.status == "FAILED"


def _hold_exclusive_lock(database: str, seconds: float) -> threading.Thread:
    """Another connection holding an exclusive lock on the SQLite file for `seconds` (a backup, a migration,
    another program's long transaction): every writer and reader of it waits, then gets "database is
    locked"."""
    import sqlite3

    ready = threading.Event()

    def hold():
        lock = sqlite3.connect(database, isolation_level=None, timeout=60)
        lock.execute("BEGIN EXCLUSIVE")
        ready.set()
        time.sleep(seconds)
        lock.execute("ROLLBACK")
        lock.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert ready.wait(60)
    return holder


def _search_with_the_store_locked(tmp_path, url: str, database: str, seconds: float, during=None):
    """The slow search as a driver into `url`; once 4 individuals are in, `database` is locked for `seconds`
    (`during()` called while it is). The driver's (stdout, stderr, search run id), and when the lock was
    released."""
    spec = _spec(tmp_path)
    reference, expected = _undisturbed(spec, tmp_path)
    driver = _driver(spec, url, tmp_path)
    run_id = _wait_logged(url, 4, driver) if url.startswith("http") else None
    if run_id is None:  # a SQLite store: read it as the test's own client
        deadline = time.monotonic() + 120
        while run_id is None and time.monotonic() < deadline:
            run_id, logged = _logged(url)
            run_id = run_id if logged >= 4 else None
            time.sleep(0.3)
    holder = _hold_exclusive_lock(database, seconds)
    if during is not None:
        during()
    holder.join()
    released = time.time()
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    return reference, expected, run_id, released, out, err


@pytest.mark.cluster  # 150 s of lock: the slow tier
def test_a_sqlite_store_locked_for_150_s_loses_nothing(tmp_path, journal_dir):
    """Issue 31: a lock held by another connection was an outage the sender took for a refusal after five
    tries; the individual it was shipping was lost for good. Now it waits the lock out."""
    database = tmp_path / "locked.db"
    url = f"sqlite:///{database}"
    reference, expected, run_id, _, out, err = _search_with_the_store_locked(tmp_path, url, str(database), 150)
    assert "MLflow unreachable" in err and "refused" not in err
    rows = individuals(url, run_id)
    assert len(rows) == len({r["id"] for r in rows}) == 32  # every individual, once
    assert lineage(rows) == lineage(expected) and [r["fitness"] for r in rows] == [r["fitness"] for r in expected]
    assert MlflowClient(url).get_run(run_id).info.status == "FINISHED" and reference.best.id in out
    assert not (journal_dir / run_id).exists()


@pytest.mark.cluster  # a minute of the server's database locked: the slow tier
def test_a_server_whose_database_is_away_while_it_answers_health_loses_nothing(
    restartable_mlflow_server, tmp_path, journal_dir
):
    """The server keeps answering /health (which reads no database) while its SQLite database is locked for 60
    s by another connection: its calls fail (database is locked, after its busy timeout), which is an outage to
    wait out, not a refusal. The search finishes and MLflow holds every individual once, with the lineage of
    the undisturbed search."""
    import urllib.request

    server = restartable_mlflow_server
    database = str(tmp_path / "server" / "server.db")
    health = []
    reference, expected, run_id, _, out, err = _search_with_the_store_locked(
        tmp_path,
        server.url,
        database,
        60,
        during=lambda: health.append(urllib.request.urlopen(f"{server.url}/health", timeout=5).read()),
    )
    assert health == [b"OK"]  # what a health probe sees while the database is away
    rows = individuals(server.url, run_id)
    assert len(rows) == len({r["id"] for r in rows}) == 32
    assert lineage(rows) == lineage(expected) and [r["fitness"] for r in rows] == [r["fitness"] for r in expected]
    assert MlflowClient(server.url).get_run(run_id).info.status == "FINISHED" and reference.best.id in out
    assert not (journal_dir / run_id).exists()
