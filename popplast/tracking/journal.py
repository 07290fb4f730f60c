"""A search's journal on the driver's disk: every event of its tracking, appended before the search goes on
and fsynced before it is shipped to MLflow (tracking/outbox.py ships it), and the checkpoint files' local copy.

An event is written and flushed to the operating system at once, so the driver's death loses none; the disk
sync is the sender's, once per batch it ships (about 1 ms each here, which per event would cost the search
loop more than everything else it does), and at once for a checkpoint. A machine that loses power loses at
most what the sender had not yet picked up, results evaluated since the last checkpoint, which a resumed
search evaluates again.

The folder `popplast-journal/SEARCH_RUN_ID/` holds `search.json` (which search, where it is tracked),
`journal.jsonl` (the events, one JSON line each), `sent.jsonl` (how many have been dealt with, in order:
shipped, or refused), `refused.jsonl` (the events MLflow refused, by their place in the journal, with its
answer; and those shipped later, once their cause was fixed) and `checkpoint/` (state files and weights, each
copied whole under a temporary name and renamed once synced). A journal is done with only when every event
is in MLflow: none unshipped and none refused.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import socket
import threading
from typing import Any, Mapping

from popplast.core.result import EvalResult
from popplast.errors import PopplastError

log = logging.getLogger(__name__)

JOURNAL, SENT, REFUSED, HEADER, LOCK = "journal.jsonl", "sent.jsonl", "refused.jsonl", "search.json", "lock"


def journal_root(tracking_uri: str) -> str:
    """Where searches' journals live unless told (POPPLAST_JOURNAL_DIR): beside a local store's database or
    folder, else `./popplast-journal`."""
    if os.environ.get("POPPLAST_JOURNAL_DIR"):
        return os.environ["POPPLAST_JOURNAL_DIR"]
    for prefix in ("sqlite:///", "file://"):
        if tracking_uri.startswith(prefix):
            path = tracking_uri[len(prefix) :]
            return os.path.join(os.path.dirname(os.path.abspath(path)) or ".", "popplast-journal")
    return os.path.abspath("popplast-journal")


def _append(path: str, record: Mapping[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _lines(path: str) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a last line cut short by the driver's death is left out."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                break
    return out


def _cut_partial_line(path: str) -> None:
    """A last line cut short by a driver's death goes before more are appended: joined to the next event it
    would hide that event and every later one from `_lines`. It was never shipped (events are shipped only
    once written whole)."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)  # rare (a death mid-write): the file read once


def result_to_dict(r: EvalResult) -> dict[str, Any]:
    return {
        "individual_id": r.individual_id,
        "fitness": r.fitness,
        "metrics": r.metrics,
        "history": r.history,
        "error": r.error,
        "worker": r.worker,
        "tags": r.tags,
        "retries": r.retries,
        **({"stopped_at": r.stopped_at} if r.stopped_at is not None else {}),
    }


def result_from_dict(d: Mapping[str, Any]) -> EvalResult:
    history = {k: [tuple(p) if isinstance(p, list) else p for p in v] for k, v in d.get("history", {}).items()}
    return EvalResult(
        d["individual_id"],
        d["fitness"],
        dict(d["metrics"]),
        history,
        d.get("error"),
        worker=d.get("worker", ""),
        tags=dict(d.get("tags", {})),
        retries=list(d.get("retries", [])),
        stopped_at=d.get("stopped_at"),
    )


class Journal:
    """The journal folder of one search: its header, events, acknowledgements and checkpoint copy."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.checkpoint = os.path.join(directory, "checkpoint")
        # held while checkpoint files are brought in and journalled, and while the sender sweeps the local
        # copy: files copied for an event not yet journalled must not look unneeded to the sweep
        self.files = threading.Lock()
        self._log: Any = None  # journal.jsonl, open for appending from the first event
        self._log_lock = threading.Lock()
        self._lock: Any = None  # the folder's lock file while this process ships it

    @classmethod
    def create(
        cls, root: str, header: Mapping[str, Any], claimed: "Journal | None" = None, checkpointed: int = 0
    ) -> "Journal":
        """The journal folder of the search `header` names, under `root` (or `claimed`, a folder this process
        locked before it took the search's lease), locked by this process. A journal an earlier driver left
        there is adopted unless a driver after it has checkpointed (`checkpointed`: the search run's
        `popplast.checkpoint_fence`): the newest checkpoint is then still its own or older, so this driver
        ships its backlog first (each individual looked for in MLflow), then goes on from the newest
        checkpoint, and the backlog is its own. One a later driver has checkpointed after is moved aside to
        `SEARCH_RUN_ID.fenceN`, for `popplast sync`, which passes over what it left."""
        journal = claimed or cls.claim(os.path.join(root, str(header["search_run_id"])))
        path = os.path.join(journal.directory, HEADER)
        if not os.path.exists(path):
            write_whole(path, json.dumps(dict(header)).encode())
            return journal
        found, fence = journal.header().get("fence"), header.get("fence")
        if fence is None or found == fence:
            return journal
        if found is None or checkpointed <= int(found):
            write_whole(path, json.dumps({**journal.header(), "fence": fence}).encode())
            return journal
        aside = f"{journal.directory}.fence{found}"
        for n in itertools.count(1):
            if not os.path.exists(aside):
                break
            aside = f"{journal.directory}.fence{found}-{n}"
        os.rename(journal.directory, aside)
        journal.close()
        log.warning(
            "%s was written under fence %s, before a driver that has checkpointed since: moved aside to %s; "
            "`popplast sync %s` ships what is still wanted of it",
            journal.directory,
            found,
            aside,
            aside,
        )
        return cls.create(root, header, cls.claim(journal.directory), checkpointed)

    @classmethod
    def claim(cls, directory: str) -> "Journal":
        """The folder, made if need be and locked by this process (JournalBusy), before anything else."""
        journal = cls(directory)
        os.makedirs(os.path.join(journal.checkpoint, "weights"), exist_ok=True)
        journal.lock()
        return journal

    def lock(self) -> None:
        """Hold the folder for this process (an exclusive lock on its `lock` file, released by `close` or the
        process's death): one sender per journal, or two would ship its backlog twice. Raises JournalBusy."""
        import fcntl

        if self._lock is not None:  # held already (Journal.claim, Journal.create)
            return
        path = os.path.join(self.directory, LOCK)
        handle = open(path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise JournalBusy(f"{self.directory} is being shipped by {holder}; wait for it to end") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()}:{os.getpid()}")
        handle.flush()
        self._lock = handle

    def header(self) -> dict[str, Any]:
        with open(os.path.join(self.directory, HEADER)) as f:
            return dict(json.load(f))

    def events(self) -> list[dict[str, Any]]:
        return _lines(os.path.join(self.directory, JOURNAL))

    def sent(self) -> int:
        """How many events have been shipped (they are shipped in order)."""
        acks = _lines(os.path.join(self.directory, SENT))
        return int(acks[-1]["sent"]) if acks else 0

    def pending(self) -> list[dict[str, Any]]:
        events = self.events()
        return events[self.sent() :]

    def pending_head(self, most: int) -> tuple[list[dict[str, Any]], int, int, list[dict[str, Any]]]:
        """The first `most` unshipped events; how many more follow, the byte offset of the first of those
        (`read_from`), and the checkpoint events among them: an earlier driver's backlog, read without
        holding all of it (a last line cut short is left out, as by `_lines`)."""
        sent, head, more, offset, checkpoints = self.sent(), [], 0, 0, []
        path = os.path.join(self.directory, JOURNAL)
        if not os.path.exists(path):
            return head, more, offset, checkpoints
        with open(path, "rb") as f:
            for index in itertools.count():
                start, line = f.tell(), f.readline()
                if not line.endswith(b"\n"):
                    break
                if index < sent:
                    continue
                if len(head) < most:
                    head.append(json.loads(line))
                    continue
                if not more:
                    offset = start
                more += 1
                if line.startswith(b'{"kind": "checkpoint"'):  # json.dumps writes an event's kind first
                    checkpoints.append(json.loads(line))
        return head, more, offset, checkpoints

    def unshipped(self) -> int:
        """How many events are not in MLflow: those not shipped yet (counted without reading them into memory)
        and those it refused."""
        return self.pending_head(0)[1] + len(self.refused())

    def refused(self) -> dict[int, str]:
        """The events MLflow refused and that have not reached it since: their place in the journal (from 0)
        and its answer."""
        out: dict[int, str] = {}
        for record in _lines(os.path.join(self.directory, REFUSED)):
            if "error" in record:
                out[int(record["event"])] = str(record["error"])
            else:
                out.pop(int(record["event"]), None)
        return out

    def refuse(self, index: int, error: str) -> None:
        _append(os.path.join(self.directory, REFUSED), {"event": index, "error": error})

    def resolve(self, index: int, how: str = "shipped") -> None:
        """A refused event reached MLflow after all (`shipped`), or no longer needs to (`superseded`)."""
        _append(os.path.join(self.directory, REFUSED), {"event": index, how: True})

    def later_checkpoint_shipped(self, index: int) -> bool:
        """Whether a checkpoint event after the one at `index` has reached MLflow (its state is newer)."""
        sent, refused = self.sent(), self.refused()
        with open(os.path.join(self.directory, JOURNAL), "rb") as f:
            for place, line in enumerate(itertools.islice(f, index + 1, sent), start=index + 1):
                if line.startswith(b'{"kind": "checkpoint"') and place not in refused:
                    return True
        return False

    def event_at(self, index: int) -> dict[str, Any]:
        """The event at place `index` of the journal."""
        with open(os.path.join(self.directory, JOURNAL), "rb") as f:
            for line in itertools.islice(f, index, index + 1):
                return dict(json.loads(line))
        raise KeyError(f"{self.directory}: the journal has no event {index}")

    def append(self, event: Mapping[str, Any], sync: bool = False) -> int:
        """Write and flush the event (the driver's death loses nothing); `sync`: to disk, too. Returns the
        byte offset its line starts at (`read_from`)."""
        line = json.dumps(event) + "\n"  # ASCII (json's default), so text offsets are byte offsets
        with self._log_lock:
            if self._log is None:
                path = os.path.join(self.directory, JOURNAL)
                _cut_partial_line(path)
                self._log = open(path, "a")
            offset = self._log.tell()
            self._log.write(line)
            self._log.flush()
            if sync:
                os.fsync(self._log.fileno())
        return offset

    def read_from(self, offset: int, count: int) -> tuple[list[dict[str, Any]], int]:
        """`count` events from the line starting at byte `offset` (appended and flushed already), and the
        offset after them."""
        events = []
        with open(os.path.join(self.directory, JOURNAL), "rb") as f:
            f.seek(offset)
            for _ in range(count):
                events.append(json.loads(f.readline()))
            return events, f.tell()

    def sync(self) -> None:
        """Every event appended so far, on disk."""
        with self._log_lock:
            if self._log is not None:
                os.fsync(self._log.fileno())

    def close(self) -> None:
        with self._log_lock:
            if self._log is not None:
                self._log.close()
                self._log = None
        if self._lock is not None:
            self._lock.close()  # the lock goes with the file
            self._lock = None

    def acknowledge(self, count: int) -> None:
        _append(os.path.join(self.directory, SENT), {"sent": count})

    def keep_checkpoint(self, directory: str) -> list[str]:
        """Copy a checkpoint's files (weights/*.npz, state-*.json) in, weights first, each whole under its own
        name only once it is written and synced; returns the weights names it brought."""
        names = []
        weights = os.path.join(directory, "weights")
        for name in sorted(os.listdir(weights)) if os.path.isdir(weights) else []:
            _copy_whole(os.path.join(weights, name), os.path.join(self.checkpoint, "weights", name))
            names.append(os.path.splitext(name)[0])
        for name in sorted(os.listdir(directory)):
            if name.endswith(".json"):
                _copy_whole(os.path.join(directory, name), os.path.join(self.checkpoint, name))
        return names

    def newest_whole_state(self) -> str | None:
        """The path of the newest state file in the local copy whose weights are all there and verify."""
        from popplast.execution.checkpoint_files import check_id, is_state_file, weights_whole

        if not os.path.isdir(self.checkpoint):
            return None
        # other files are no state popplast wrote (see CheckpointStore._states)
        states = [os.path.join(self.checkpoint, n) for n in os.listdir(self.checkpoint) if is_state_file(n)]
        for path in sorted(states, key=generation_of, reverse=True):
            try:
                with open(path) as f:
                    data = json.load(f)
                names, hashes = list(data["weights"]), dict(data.get("weight_hashes", {}))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            files = {n: os.path.join(self.checkpoint, "weights", f"{check_id(n, path)}.npz") for n in names}
            if all(os.path.exists(f) and weights_whole(f, hashes.get(n)) for n, f in files.items()):
                return path
        return None

    def abandon(self) -> None:
        """Let go of a folder claimed for a search that never started: removed if nothing was written in it."""
        if not os.path.exists(os.path.join(self.directory, HEADER)):
            self.remove()
        self.close()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)  # still locked: nobody opens it half removed
        self.close()
        with contextlib.suppress(OSError):  # the root too, once no other search's journal is in it
            os.rmdir(os.path.dirname(self.directory))


class JournalBusy(PopplastError, RuntimeError):
    """Another process holds the journal folder (it ships it)."""


def generation_of(state_path: str) -> int:
    """The generation a checkpoint state file (`state-gNNNN.json`) is of."""
    return int(os.path.basename(state_path)[len("state-g") : -len(".json")])


def write_whole(path: str, data: bytes) -> None:
    """`data` in `path` whole or not at all, on disk before the name points at it: a reader (a resuming driver, a
    job script) never sees half of it, whenever the writer is stopped."""
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _copy_whole(source: str, target: str) -> None:
    tmp = target + ".part"
    shutil.copyfile(source, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
