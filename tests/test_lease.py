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

from popplast.cli import main
from popplast.tracking.lease import HEARTBEAT, HOLDER, TIMEOUT, check_lease
from popplast.tracking.search_run import open_experiment
from tests.helpers import wait_for_search_run

BIN = os.path.join(os.path.dirname(sys.executable), "popplast")


def _running_run(uri: str, holder: str, heartbeat: float) -> str:
    client = MlflowClient(uri)
    run = client.create_run(open_experiment(client, "lease"), tags={HOLDER: holder, HEARTBEAT: f"{heartbeat:.0f}"})
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
    gone = _running_run(uri, f"{socket.gethostname()}:{child.pid}", time.time())
    assert "which no longer runs" in check_lease(uri, gone)
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
