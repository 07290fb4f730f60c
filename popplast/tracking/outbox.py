"""A search's tracking that never blocks it and never loses a result: a local journal and a background sender.

Every event the search loop reports (an individual finished, a generation's metrics, a checkpoint) is first
appended to `journal.jsonl` in the search's journal folder (one JSON line, fsynced; a checkpoint's files are
copied into `checkpoint/` under temporary names and renamed first), then queued for a sender thread that
ships events to MLflow one by one, in order, with the MLflowTracker. The loop never waits on MLflow. When
shipping fails (the server is down) the sender waits and tries the same event again, with backoff up to
MAX_BACKOFF seconds, for as long as it takes; `status()` says so and how much is queued, which the progress
line shows.

Shipped events are acknowledged in `sent.jsonl`. Shipping is idempotent: an individual whose run MLflow
holds terminated is not logged again; one cut short (a run created, never terminated) is deleted and logged
anew. So a journal left by a driver that died during an outage can be shipped later by `popplast sync DIR`
(or by `popplast run --resume`, which ships it first) without a result arriving twice. A journal whose
events have all arrived is removed when its search ends.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import urllib.request
from typing import Any, Iterator, Mapping

from popplast.core.errors import SpecError
from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.tracking.journal import HEADER, Journal, generation_of, journal_root, result_from_dict, result_to_dict

log = logging.getLogger(__name__)

MAX_BACKOFF = 10.0
REFUSED_AFTER = 5  # failures of one event, with the server answering, after which it is not an outage


class Outbox:
    """The search loop's tracking observer and checkpoint store: journals, then ships in the background.

    Args:
        tracker: the MLflowTracker of the search run (started or reopened).
        journal: its journal folder.
    """

    def __init__(self, tracker: Any, journal: Journal) -> None:
        self.tracker = tracker
        self.journal = journal
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._shipped = journal.sent()
        self.refused = 0  # events MLflow refused while answering (they stay in the journal)
        self._cond = threading.Condition()
        self._closing = False
        self.down_since: float | None = None
        self.last_error = ""
        self._check_first = True  # the first event after a restart may have been cut short
        for event in journal.pending():
            self._queue.append(event)
        self._thread = threading.Thread(target=self._send, name="popplast-outbox", daemon=True)
        self._thread.start()

    # what the search loop calls: journal it, queue it, return at once

    def individual_finished(self, individual: Individual, config: Mapping[str, Any], result: EvalResult) -> None:
        self._add(
            {
                "kind": "individual",
                "individual": individual.to_dict(),
                "config": dict(config),
                "result": result_to_dict(result),
            }
        )

    def generation_finished(self, generation: int, metrics: Mapping[str, float]) -> None:
        self._add({"kind": "generation", "generation": generation, "metrics": dict(metrics)})

    def save_checkpoint(self, directory: str, keep_weights: set[str]) -> None:
        with self.journal.files:
            names = self.journal.keep_checkpoint(directory)
            states = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
            self._add({"kind": "checkpoint", "states": states, "weights": names, "keep": sorted(keep_weights)})

    def load_checkpoint(self, directory: str) -> str | None:
        """The local copy's newest whole state when MLflow holds none newer (no download), else MLflow's."""
        with self.journal.files:
            local = self.journal.newest_whole_state()
        if local is not None:
            stored = self.tracker.newest_state()
            if stored is None or generation_of(stored) <= generation_of(local):
                return local  # its weights lie in weights/ beside it, as load() expects
        return self.tracker.load_checkpoint(directory)

    def _add(self, event: dict[str, Any]) -> None:
        self.journal.append(event)
        with self._cond:
            self._queue.append(event)
            self._cond.notify_all()

    # what the driver asks

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def status(self) -> str | None:
        """A few words for the progress line while MLflow is unreachable, else None."""
        since = self.down_since
        if since is None:
            return None
        return f"MLflow unreachable for {time.monotonic() - since:.0f} s, {self.queued} events queued"

    def drain(self, timeout: float | None = None, on_wait: Any = None) -> bool:
        """Wait until every event has been shipped (True), or `timeout` seconds (False). `on_wait(message)` is
        told once when MLflow is unreachable at that time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        told = False
        with self._cond:
            while self._queue:
                if not told and on_wait is not None and self.down_since is not None:
                    on_wait(
                        f"MLflow at {self.tracker.tracking_uri} is unreachable ({self.last_error}); {len(self._queue)} "
                        f"events wait in {self.journal.directory}. Waiting for it; interrupted, they stay there for "
                        f"`popplast sync {self.journal.directory}`"
                    )
                    told = True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(1.0 if left is None else min(left, 1.0))
        return True

    def close(self) -> None:
        """Stop the sender (what is unshipped stays in the journal)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=MAX_BACKOFF + 5)

    def finish(self) -> None:
        """After a search that ended with everything shipped: the journal has done its work."""
        self.close()
        if self.refused:  # what MLflow refused is only here
            log.error("%d journal events were refused by MLflow; they stay in %s", self.refused, self.journal.directory)
        elif self.journal.sent() >= len(self.journal.events()):
            self.journal.remove()

    # the sender

    def _send(self) -> None:
        backoff, failures = 0.5, 0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                event = self._queue[0]
            try:
                ship(self.tracker, self.journal, event, check=self._check_first)
            except Exception as e:  # any failure of the store: keep the event, wait, try it again
                self.last_error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                self._check_first = True
                failures += 1
                if failures >= REFUSED_AFTER and _answers(self.tracker.tracking_uri):
                    # not an outage: MLflow answers and refuses this event; waiting would hold up the rest
                    log.error(
                        "MLflow refused journal event %d (%s); it stays in %s",
                        self._shipped + 1,
                        self.last_error,
                        self.journal.directory,
                    )
                    self.refused += 1
                    if event["kind"] == "individual":  # no half-written run of it stays behind
                        with contextlib.suppress(Exception):
                            self.tracker.has_logged(event["individual"]["id"])
                    self._done()
                    backoff, failures = 0.5, 0
                    continue
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    log.warning("MLflow unreachable (%s); results are journalled and shipped later", self.last_error)
                with self._cond:
                    if self._cond.wait_for(lambda: self._closing, timeout=backoff):
                        return
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff, failures, self._check_first = 0.5, 0, False
            if self.down_since is not None:
                log.warning("MLflow reachable again after %.0f s", time.monotonic() - self.down_since)
                self.down_since = None
            self._done()

    def _done(self) -> None:
        """The event at the head of the queue is dealt with: acknowledged, and the next one's turn."""
        self._shipped += 1
        self.journal.acknowledge(self._shipped)
        with self._cond:
            self._queue.popleft()
            self._cond.notify_all()


def _answers(tracking_uri: str) -> bool:
    """Whether the tracking store answers at all (a server's /health; a local store always does)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def ship(tracker: Any, journal: Journal, event: Mapping[str, Any], check: bool) -> None:
    """Apply one journalled event to MLflow. `check`: the event may have been shipped in part before (a retry,
    or the first event after a restart), so what MLflow holds of it is looked at first."""
    kind = event["kind"]
    if kind == "individual":
        individual = Individual.from_dict(event["individual"])
        if check and tracker.has_logged(individual.id):
            return
        tracker.individual_finished(individual, event["config"], result_from_dict(event["result"]))
    elif kind == "generation":
        tracker.generation_finished(int(event["generation"]), event["metrics"])
    elif kind == "checkpoint":
        _ship_checkpoint(tracker, journal, event)
    else:
        raise ValueError(f"{journal.directory}: unknown journal event {kind!r}")


def _ship_checkpoint(tracker: Any, journal: Journal, event: Mapping[str, Any]) -> None:
    keep = set(event["keep"])
    weights = [os.path.join(journal.checkpoint, "weights", f"{name}.npz") for name in event["weights"]]
    tracker.upload_checkpoint(weights, [os.path.join(journal.checkpoint, s) for s in event["states"]], keep)
    # the local copy keeps only what this state and the later journalled ones may need
    with journal.files:
        later = [e for e in journal.pending()[1:] if e["kind"] == "checkpoint"]
        needed = keep.union(*(set(e["keep"]) | set(e["weights"]) for e in later))
        states = set(event["states"]).union(*(e["states"] for e in later))
        folder = os.path.join(journal.checkpoint, "weights")
        for name in os.listdir(folder):
            if name.endswith(".npz") and name[: -len(".npz")] not in needed:
                os.remove(os.path.join(folder, name))
        for name in os.listdir(journal.checkpoint):
            if name.endswith(".json") and name not in states:
                os.remove(os.path.join(journal.checkpoint, name))


def open_outbox(tracker: Any, root: str | None = None) -> Outbox:
    """The outbox of the tracker's search run, in its journal folder under `root` (journal_root by default);
    events an earlier driver left unshipped there are queued first."""
    header = {
        "tracking_uri": tracker.tracking_uri,
        "experiment": tracker.experiment,
        "search_run_id": tracker.search_run_id,
        "method": tracker.method,
        "gene_names": list(tracker.gene_names),
    }
    return Outbox(tracker, Journal.create(root or journal_root(tracker.tracking_uri), header))


@contextlib.contextmanager
def failing_fast() -> Iterator[None]:
    """MLflow's HTTP client retries a call for minutes by default; the sender retries forever itself and
    must notice an outage soon to say so. Set for the search unless the user set them, then put back."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
    saved = {k: os.environ.get(k) for k in settings}
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sync(directory: str | os.PathLike, on_wait: Any = None) -> tuple[str, int]:
    """Ship what a search's journal folder holds unshipped to its MLflow search run (`popplast sync`), then
    remove the folder. Returns (search run id, events shipped). Raises SyncError for a folder that is no
    journal, or a search a live driver still holds (it ships its own journal)."""
    from mlflow import MlflowClient

    from popplast.tracking.lease import check_lease
    from popplast.tracking.mlflow_tracker import MLflowTracker

    journal = Journal(os.fspath(directory))
    try:
        header = journal.header()
    except (OSError, ValueError) as e:
        raise SyncError(f"{directory}: not a popplast journal folder ({HEADER}: {e})") from None
    uri, run_id = header["tracking_uri"], header["search_run_id"]
    try:
        check_lease(uri, run_id)
    except SpecError:
        from popplast.tracking.lease import HOLDER

        holder = MlflowClient(uri).get_run(run_id).data.tags.get(HOLDER, "")
        raise SyncError(
            f"{directory}: a live driver ({holder}) still runs the search run {run_id} and ships its own journal; "
            "stop it first"
        ) from None
    pending = len(journal.pending())
    with failing_fast():
        tracker = MLflowTracker(uri, header["experiment"], header["method"])
        tracker.attach(run_id, tuple(header["gene_names"]))
        outbox = Outbox(tracker, journal)
        outbox.drain(on_wait=on_wait)
        outbox.finish()
    return run_id, pending


class SyncError(ValueError):
    """A folder `popplast sync` cannot ship."""
