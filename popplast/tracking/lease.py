"""One driver per search: a lease on the search run, held by the driver that logs into it.

The holder (`host:pid`) and a heartbeat (seconds since the epoch, renewed every HEARTBEAT seconds by a
background thread with its own MLflow client) are tags of the search run. Another driver may resume the
search only when the lease is not live: the run is not RUNNING, or its holder is a process of this machine
that no longer exists, or the heartbeat is older than TIMEOUT (the holder's machine is gone); `force` takes
a live lease at once (the holder then writes into a run it no longer owns: the user asked for that).
"""

from __future__ import annotations

import os
import socket
import threading
import time

from mlflow import MlflowClient

from popplast.core.errors import COMMAND_LINE, SpecError

HOLDER = "popplast.lease_holder"
HEARTBEAT = "popplast.lease_heartbeat"
HEARTBEAT_SECONDS = 15.0
TIMEOUT = 60.0  # a heartbeat this old means its driver is gone (four missed beats)


def me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def check_lease(tracking_uri: str, run_id: str, force: bool = False) -> str | None:
    """Before a resume: SpecError when another driver holds the search run; else a line to say when a lease
    is taken over (None when there was nothing to take)."""
    run = MlflowClient(tracking_uri).get_run(run_id)
    holder = run.data.tags.get(HOLDER, "")
    if run.info.status != "RUNNING" or not holder or holder == me():
        return None
    age = time.time() - float(run.data.tags.get(HEARTBEAT, "0") or 0)
    host, _, pid = holder.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return f"taking over the search run from {holder}, which no longer runs"
    if age > TIMEOUT:
        return f"taking over the search run from {holder}, whose last heartbeat was {age:.0f} s ago"
    if force:
        return f"taking over the search run from {holder} (--force; its last heartbeat was {age:.0f} s ago)"
    raise SpecError(
        COMMAND_LINE,
        "--resume",
        f"the search run {run_id} is being run by {holder} (last heartbeat {age:.0f} s ago); stop that driver, "
        f"or wait {TIMEOUT:.0f} s after it died, or pass --force to take the search over.",
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class Lease:
    """Holds the lease on `run_id` from `hold()` to `release()`."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.tracking_uri, self.run_id = tracking_uri, run_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self) -> None:
        client = MlflowClient(self.tracking_uri)
        client.set_tag(self.run_id, HOLDER, me())
        client.set_tag(self.run_id, HEARTBEAT, f"{time.time():.0f}")
        self._thread = threading.Thread(target=self._beat, args=(client,), name="popplast-lease", daemon=True)
        self._thread.start()

    def _beat(self, client: MlflowClient) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                client.set_tag(self.run_id, HEARTBEAT, f"{time.time():.0f}")
            except Exception:  # an outage: the next beat tries again; a lease that lapses is the cost
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
