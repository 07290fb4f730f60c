"""One writer of a search at a time: a lease on the search run, taken by compare-and-set, fenced, watched.

The lease is tags of the search run: its holder (`host:pid`, for people), a token only the holder knows, a
heartbeat (seconds since the epoch, renewed every HEARTBEAT_SECONDS by a background thread with its own
MLflow client; "0" once released) and the fence, a number that grows by one each time a driver takes the
search (`popplast run` starting or resuming it; `popplast sync`, which ships a journal on behalf of the
driver that wrote it, holds the lease without raising the fence).

Taking it: read the tags; refuse a live lease (a heartbeat under TIMEOUT seconds old whose holder is not
known to be gone; a holder is known gone only when it was a process of this host and of this process's PID
namespace that no longer exists: containers sharing a host name have their own PIDs) unless `force`; write
holder, token, heartbeat and fence in one call; wait SETTLE seconds; read again. MLflow has no atomic
compare-and-set, so a driver that reads back another token lost a race and backs off with an error: of
drivers that start together, one goes on. This is best effort, not consensus: two drivers whose writes and
read-backs straddle each other by more than SETTLE seconds (a store stalled between them) could both go on
with the same fence; the heartbeat's read-back, and the sender's before each batch, then stops the one whose
token is not there within one batch.

Keeping it: each heartbeat reads the token back first. A driver that finds another's token there was taken
over (`--force`, or a heartbeat that lapsed in a long pause): it stops beating, `lost` says who took it, and
the search stops at its next result without writing into a run it no longer holds; its journal stays.
Journals and checkpoint events carry the fence they were written under: a journal whose fence is below the
search run's belongs to a displaced driver, and what it did not ship is superseded (tracking/outbox.py).
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import RunTag

from popplast.errors import COMMAND_LINE, PopplastError, SpecError

HOLDER = "popplast.lease_holder"
HEARTBEAT = "popplast.lease_heartbeat"
TOKEN = "popplast.lease_token"
FENCE = "popplast.lease_fence"
PID_NAMESPACE = "popplast.lease_pid_namespace"
CHECKPOINT_FENCE = "popplast.checkpoint_fence"  # the fence of the journal whose checkpoint MLflow took last
HEARTBEAT_SECONDS = 15.0
TIMEOUT = 60.0  # a heartbeat this old means its driver is gone (four missed beats)
SETTLE = 1.0  # seconds between writing the lease and reading it back (plus up to as much again, drawn)


class LeaseLost(PopplastError, RuntimeError):
    """Another driver took the search run over from this one."""

    exit_code = 1

    def line(self) -> str:
        return f"stopped: {self}; what it had not shipped stays in its journal, superseded"


def me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_namespace() -> str:
    """This process's PID namespace (the boot it belongs to and its inode), so that a PID is compared only
    within the same one: inode numbers are reused after a reboot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # no /proc: no PID is trusted, the heartbeat decides
        return ""


def check_lease(tracking_uri: str, run_id: str, force: bool = False) -> str | None:
    """SpecError when another driver holds the search run; else a line to say when a lease is taken over
    (None when there was nothing to take). Reads only: `acquire` takes it."""
    return _judge(MlflowClient(tracking_uri).get_run(run_id), run_id, force)


def _judge(run: Any, run_id: str, force: bool) -> str | None:
    tags = run.data.tags
    holder, token = tags.get(HOLDER, ""), tags.get(TOKEN)
    beat = float(tags.get(HEARTBEAT, "0") or 0)
    if not holder or beat == 0 or (token is None and run.info.status != "RUNNING") or holder == me():
        return None  # released, never taken, an older popplast's lease of a run that ended, or this process's
    age = time.time() - beat
    host, _, pid = holder.rpartition(":")
    same_namespace = host == socket.gethostname() and tags.get(PID_NAMESPACE, "") == pid_namespace() != ""
    if same_namespace and pid.isdigit() and not _alive(int(pid)):
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
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def acquire(
    tracking_uri: str, run_id: str, force: bool = False, new_fence: bool = True, fresh: bool = False
) -> "Lease":
    """Take the lease on `run_id` (see the module's docstring) and keep it beating; SpecError when it is live
    and not `force`d, or when another driver took it in the same moment. `new_fence`: False for a sync.
    `fresh`: a run this driver has just created, whose id nobody else knows yet (no race to wait out)."""
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    taken = _judge(run, run_id, force)
    fence = int(run.data.tags.get(FENCE, "0") or 0) + (1 if new_fence else 0)
    token = uuid.uuid4().hex
    tags = {HOLDER: me(), TOKEN: token, FENCE: str(fence), PID_NAMESPACE: pid_namespace()}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in {**tags, HEARTBEAT: f"{time.time():.0f}"}.items()])
    if fresh:
        lease = Lease(tracking_uri, run_id, token, fence, taken)
        lease.beat()
        return lease
    time.sleep(SETTLE * (1 + random.random()))  # a rival writing at the same moment has written by now
    found = client.get_run(run_id).data.tags
    if found.get(TOKEN) != token:
        raise SpecError(
            COMMAND_LINE,
            "--resume",
            f"another driver ({found.get(HOLDER, '?')}) took the search run {run_id} at the same moment; "
            "this one backs off.",
        )
    lease = Lease(tracking_uri, run_id, token, fence, taken)
    lease.beat()
    return lease


class Lease:
    """A lease this driver holds (from `acquire`) until `release`; `lost` names who took it meanwhile."""

    def __init__(self, tracking_uri: str, run_id: str, token: str, fence: int, taken: str | None = None) -> None:
        self.tracking_uri, self.run_id, self.token, self.fence = tracking_uri, run_id, token, fence
        self.taken = taken  # the line to say when it was taken over from another driver
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: MlflowClient | None = None  # the sender's, for still_mine

    def beat(self, every: float | None = None) -> None:
        every = HEARTBEAT_SECONDS if every is None else every
        self._thread = threading.Thread(target=self._beat, args=(every,), name="popplast-lease", daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        client = MlflowClient(self.tracking_uri)
        while not self._stop.wait(every):
            try:
                tags = client.get_run(self.run_id).data.tags
                if tags.get(TOKEN) != self.token:
                    self.lost = tags.get(HOLDER, "another driver")
                    return
                if self._stop.is_set():  # released meanwhile: a beat now would make the lease live again
                    return
                client.set_tag(self.run_id, HEARTBEAT, f"{time.time():.0f}")
            except Exception:  # an outage: the next beat tries again; a lease that lapses is the cost
                continue

    def still_mine(self) -> bool:
        """Whether the search run still carries this lease's token, read now (the journal's sender asks before
        each write, so that a driver taken over writes at most the batch in flight); an outage raises."""
        if self.lost is not None:
            return False
        if self._reader is None:
            self._reader = MlflowClient(self.tracking_uri)
        tags = self._reader.get_run(self.run_id).data.tags
        if tags.get(TOKEN) != self.token:
            self.lost = tags.get(HOLDER, "another driver")
        return self.lost is None

    def check(self) -> None:
        """LeaseLost when another driver took the search run over."""
        if self.lost is not None:
            raise LeaseLost(
                f"{self.lost} took the search run {self.run_id} over; this driver stopped and wrote nothing more "
                "into it"
            )

    def release(self) -> None:
        """Stop beating and mark the lease released (if it is still this driver's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.lost is not None:
            return
        from popplast.tracking.fail_fast import failing_fast

        try:
            with failing_fast():  # MLflow's client would retry for minutes: an outage costs seconds here
                client = MlflowClient(self.tracking_uri)
                if client.get_run(self.run_id).data.tags.get(TOKEN) == self.token:
                    client.set_tag(self.run_id, HEARTBEAT, "0")
        except Exception:  # an outage at the very end: the heartbeat lapses in TIMEOUT seconds instead
            pass
