"""A search's tracking that never blocks it and never loses a result: a local journal and a background sender.

Every event the search loop reports (an individual finished, a generation's metrics, a checkpoint) is first
appended to `journal.jsonl` in the search's journal folder (one JSON line; a checkpoint's files are copied
into `checkpoint/` under temporary names and renamed first), then queued for a sender thread that ships
events to MLflow in order with the MLflowTracker: up to BATCH finished individuals that follow each other
in one call (one transaction into a database, tracking/bulk_runs.py), anything else one by one, each batch
fsynced in the journal before it goes. The loop never waits on MLflow. At most IN_MEMORY events are queued
in memory; later ones wait in the journal alone and are read back as the queue empties.

A failure is an outage or a refusal (tracking/failures.py). In an outage (the server down, the database
locked, a timeout) the sender waits and tries the same events again, with backoff up to MAX_BACKOFF seconds,
for as long as it lasts; `status()` says so and how much is queued, which the progress line shows. A
refusal (MLflow names the payload) is found event by event, recorded in the journal as refused with
MLflow's answer, and the events behind it go on; it is never counted as shipped. Refused events are tried
again first whenever the journal is opened again (`popplast sync DIR`, `popplast run --resume`), so they
arrive once their cause is fixed (the experiment restored, say).

Events dealt with are acknowledged in `sent.jsonl`. Shipping is idempotent: an individual whose run MLflow
holds terminated is not logged again; one cut short (a run created, never terminated) is deleted and logged
anew. So a journal left by a driver that died during an outage can be shipped later by `popplast sync DIR`
(or by `popplast run --resume`, which ships it first) without a result arriving twice. A journal is removed
when its search ends only if every event is in MLflow.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Mapping

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.tracking.failures import describe, refused
from popplast.tracking.journal import Journal, generation_of, journal_root, result_from_dict, result_to_dict

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5  # seconds before the first retry after an outage; doubled up to MAX_BACKOFF
MAX_BACKOFF = 10.0
BATCH = 500  # finished individuals shipped in one call: a second's worth at the goal of 500 a second
LINGER = 0.25  # seconds an event may wait in the queue for its batch to fill
# events the queue holds in memory (1-3 KB each); later ones wait in the journal alone until it has room, so
# an outage or a server slower than the search grows the journal on disk, not the driver's memory
IN_MEMORY = 10_000


class Outbox:
    """The search loop's tracking observer and checkpoint store: journals, then ships in the background.

    Args:
        tracker: the MLflowTracker of the search run (started or reopened).
        journal: its journal folder.
    """

    def __init__(self, tracker: Any, journal: Journal) -> None:
        journal.lock()  # one sender per journal (JournalBusy): first, before anything is read
        self.tracker = tracker
        self._lease = getattr(tracker, "lease", None)  # kept: the tracker lets go of its own when it is taken
        self.journal = journal
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._arrived: collections.deque[float] = collections.deque()  # when each queued event was added
        self._shipped = journal.sent()
        self.refused = 0  # events MLflow refused (they stay in the journal, recorded as refused)
        self.superseded = 0  # events of a displaced driver's journal, passed over (_supersede_if_stale)
        self._retry = sorted(journal.refused())  # refused before: tried again first, their cause may be fixed
        self._cond = threading.Condition()
        self._closing = False
        self.down_since: float | None = None
        self.last_error = ""
        # an earlier driver's unshipped events: the first IN_MEMORY queued; of those past the queue, in the
        # journal only (an earlier driver's, then any that come while the queue is full): how many, where the
        # first one's line starts, and the checkpoint events among them (few and small: the sweep of the local
        # copy must see them)
        self._stale = 0
        self._supersede_if_stale()
        head, self._spilled, self._spill_at, spilled_checkpoints = journal.pending_head(IN_MEMORY)
        self._spilled_checkpoints: collections.deque[dict[str, Any]] = collections.deque(spilled_checkpoints)
        for event in head:
            self._queue.append(event)
            self._arrived.append(0.0)
        # events at the head of the queue that MLflow may hold already, in part or whole: those a driver that
        # died may have shipped without acknowledging (a batch at most), and those of a failed batch
        self._unsure = max(min(len(self._queue), BATCH), self._stale)
        self._thread = threading.Thread(target=self._send, name="popplast-outbox", daemon=True)
        self._thread.start()

    def _supersede_if_stale(self) -> None:
        """A journal written under a lower fence than the search run's belongs to a driver another one took
        over from (tracking/lease.py). If that later driver has shipped a checkpoint since (the search run's
        `popplast.checkpoint_fence` is above this journal's), everything this journal left unshipped came
        after the checkpoint the later driver resumed from and evaluated again: superseded, never shipped (it
        would overwrite the later checkpoints and delete their weights), and so are its refused generation,
        checkpoint and end events; its refused individuals are still tried, each looked for first. If not
        (the later driver died before its first checkpoint), the backlog is still the newest the search has:
        shipped, every individual looked for in MLflow first, since the later driver may have logged it."""
        from popplast.tracking.lease import CHECKPOINT_FENCE, FENCE

        fence = self.journal.header().get("fence")
        if fence is None:  # a journal from before fences: shipped as it is
            return
        tags = self.tracker.client.get_run(self.tracker.search_run_id).data.tags
        current, checkpointed = int(tags.get(FENCE, "0") or 0), int(tags.get(CHECKPOINT_FENCE, "0") or 0)
        left = self.journal.pending_head(0)[1]
        if checkpointed < int(fence) or (current > int(fence) and checkpointed == int(fence)):
            # no checkpoint of a later driver: this backlog is still wanted, but another driver's journal (an
            # earlier one's, synced; a later one's that logged and died) may have logged the same individuals
            self._stale = left  # so every event is checked against MLflow, not only a batch's worth
            return
        if current <= int(fence):
            return
        for index in [i for i in self._retry if self.journal.event_at(i)["kind"] != "individual"]:
            self.journal.resolve(index, "superseded")
            self._retry.remove(index)
        if not left:
            return
        log.warning(
            "%s was written by a driver that another (fence %d, this journal's %s) took the search run over from "
            "and that has checkpointed since: its %d unshipped events come after the checkpoint that driver "
            "resumed from, which evaluated them again; they are superseded, not shipped",
            self.journal.directory,
            current,
            fence,
            left,
        )
        self._shipped += left
        self.journal.acknowledge(self._shipped)
        self.superseded = left

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

    def search_ended(self, event: Mapping[str, Any]) -> None:
        """The end of the search (MLflowTracker.end_event, or a failure's status and reason): journalled like
        everything else, so an outage at the end loses nothing and a later sync ends the run."""
        self._add(dict(event), sync=True)

    def save_checkpoint(self, directory: str, keep_weights: set[str]) -> None:
        with self.journal.files:
            names = self.journal.keep_checkpoint(directory)
            states = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
            event = {"kind": "checkpoint", "states": states, "weights": names, "keep": sorted(keep_weights)}
            self._add(event, sync=True)

    def load_checkpoint(self, directory: str) -> str | None:
        """The local copy's newest whole state when MLflow holds none newer (no download), else MLflow's."""
        with self.journal.files:
            local = self.journal.newest_whole_state()
        if local is not None:
            stored = self.tracker.newest_state()
            if stored is None or generation_of(stored) <= generation_of(local):
                return local  # its weights lie in weights/ beside it, as load() expects
        return self.tracker.load_checkpoint(directory)

    def _add(self, event: dict[str, Any], sync: bool = False) -> None:
        offset = self.journal.append(event, sync)
        with self._cond:
            if self._spilled or len(self._queue) >= IN_MEMORY:  # read back from the journal when there is room
                if not self._spilled:
                    self._spill_at = offset
                self._spilled += 1
                if event["kind"] == "checkpoint":
                    self._spilled_checkpoints.append(event)
            else:
                self._queue.append(event)
                self._arrived.append(time.monotonic())
            self._cond.notify_all()

    # what the driver asks

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue) + self._spilled + len(self._retry)

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
            while (self._queue or self._spilled or self._retry) and self._thread.is_alive():
                if not told and on_wait is not None and self.down_since is not None:
                    on_wait(
                        f"MLflow at {self.tracker.tracking_uri} is unreachable ({self.last_error}); {self.queued} "
                        f"events wait in {self.journal.directory}. Waiting for it; interrupted, they stay there for "
                        f"`popplast sync {self.journal.directory}`"
                    )
                    told = True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(1.0 if left is None else min(left, 1.0))
            return not (self._queue or self._spilled or self._retry)  # the sender stopped (displaced), or done

    def close(self) -> None:
        """Stop the sender (what is unshipped stays in the journal)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=MAX_BACKOFF + 5)
        if self._thread.is_alive():  # a call into MLflow that hangs: the lock stays held until this process ends
            log.warning("the journal's sender is still in a call to MLflow; %s stays locked", self.journal.directory)
            return
        self.journal.close()

    def finish(self) -> None:
        """After a search that ended: the journal has done its work if every event is in MLflow; else it stays,
        the only place that holds what is missing."""
        self.close()
        left = self.journal.unshipped()  # counted, not read: the journal holds the whole search
        if left == 0:
            self.journal.remove()
            return
        refusals = self.journal.refused()
        log.error(
            "%d journal events are not in MLflow (%d of them refused: %s); they stay in %s, and "
            "`popplast sync %s` ships them once the cause is fixed",
            left,
            len(refusals),
            "; ".join(f"event {k}: {v}" for k, v in list(refusals.items())[:3]) or "none",
            self.journal.directory,
            self.journal.directory,
        )

    # the sender

    def _send(self) -> None:
        if not self._retry_refused():
            return
        backoff, single, single_until = FIRST_BACKOFF, False, 0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                single = single and self._shipped < single_until
                linger = self._arrived[0] + LINGER - time.monotonic()
                if not single and self._queue[0]["kind"] == "individual" and linger > 0:
                    # a moment for more to come: a batch's fixed cost (two syncs, a transaction) is paid once
                    # for many, not once for each result of a search whose results trickle in
                    if self._cond.wait_for(lambda: self._closing or len(self._queue) >= BATCH, timeout=linger):
                        if self._closing:
                            return
                batch = self._head(1 if single else BATCH)
            try:
                if not self._still_ours():
                    return
                self.journal.sync()
                ship_batch(self.tracker, self.journal, batch, self._unsure > 0, self._checkpoints_behind)
            except Exception as e:
                self.last_error = describe(e)
                self._unsure = max(self._unsure, len(batch))  # MLflow may hold some of them: look first
                if refused(e) and len(batch) > 1:
                    # which one: one by one, through the whole of the failed batch (a batch again after the
                    # first success would meet the same refusal, and the search for it would be quadratic)
                    single, single_until = True, self._shipped + len(batch)
                    continue
                if refused(e):
                    self._refuse(batch[0], self.last_error)
                    continue
                if not self._wait_out(backoff):  # an outage: the same events again once it is over
                    return
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = FIRST_BACKOFF
            self._unsure = max(0, self._unsure - len(batch))
            self._reachable()
            self._done(len(batch))

    def _retry_refused(self) -> bool:
        """Events refused before, tried again in the journal's order (outages waited out); False when closed."""
        backoff = FIRST_BACKOFF
        while self._retry and not self._closing:
            index = self._retry[0]
            event = self.journal.event_at(index)
            try:
                if not self._still_ours():
                    return False
                if event["kind"] == "checkpoint" and self.journal.later_checkpoint_shipped(index):
                    self.journal.resolve(index, "superseded")  # a newer state is in MLflow: this one is not needed
                else:
                    self.journal.sync()
                    ship(self.tracker, self.journal, event, True, self._checkpoints_behind)
                    self.journal.resolve(index)
            except Exception as e:
                self.last_error = describe(e)
                if not refused(e):
                    if not self._wait_out(backoff):
                        return False
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                self.journal.refuse(index, self.last_error)
                self.refused += 1
                log.error("MLflow refused journal event %d again (%s)", index, self.last_error)
                self._clear_cut_short(event)
            backoff = FIRST_BACKOFF
            self._reachable()
            with self._cond:
                self._retry.pop(0)
                self._cond.notify_all()
        return True

    def _still_ours(self) -> bool:
        """Whether this driver still holds the search run (its lease's token is there, read now; an outage
        raises): one taken over stops before writing, and what is unshipped stays in the journal."""
        lease = self._lease
        if lease is None or lease.still_mine():
            return True
        log.warning(
            "the search run was taken over by %s; %d events stay in %s", lease.lost, self.queued, self.journal.directory
        )
        return False

    def _refuse(self, event: Mapping[str, Any], error: str) -> None:
        """MLflow refused the event at the head of the queue: recorded as refused, and the next one's turn."""
        log.error("MLflow refused journal event %d (%s); it stays in %s", self._shipped, error, self.journal.directory)
        self.journal.refuse(self._shipped, error)
        self.refused += 1
        self._clear_cut_short(event)
        self._unsure = max(0, self._unsure - 1)
        self._done(1)

    def _clear_cut_short(self, event: Mapping[str, Any]) -> None:
        """A refused individual leaves no run of it cut short behind (a refusal part-way through a write)."""
        if event["kind"] == "individual":
            with contextlib.suppress(Exception):  # what is left is cleared on the next try of the event
                self.tracker.has_logged(event["individual"]["id"])

    def _wait_out(self, seconds: float) -> bool:
        """An outage: say so once, wait `seconds`; False when the outbox is closed meanwhile."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("MLflow unreachable (%s); results are journalled and shipped later", self.last_error)
        with self._cond:
            return not self._cond.wait_for(lambda: self._closing, timeout=seconds)

    def _reachable(self) -> None:
        if self.down_since is not None:
            log.warning("MLflow reachable again after %.0f s", time.monotonic() - self.down_since)
            self.down_since = None

    def _head(self, most: int) -> list[dict[str, Any]]:
        """The events to ship next: finished individuals in a row from the head of the queue, up to `most`
        (where the tracker takes them in one call), else the head event alone."""
        batch = [self._queue[0]]
        if batch[0]["kind"] == "individual" and hasattr(self.tracker, "individuals_finished"):
            for event in itertools.islice(self._queue, 1, most):
                if event["kind"] != "individual":
                    break
                batch.append(event)
        return batch

    def _checkpoints_behind(self) -> list[dict[str, Any]]:
        """The checkpoint events queued behind the head of the queue."""
        with self._cond:
            queued = [e for e in itertools.islice(self._queue, 1, None) if e["kind"] == "checkpoint"]
            return queued + list(self._spilled_checkpoints)

    def _done(self, count: int) -> None:
        """The `count` events at the head of the queue are dealt with: acknowledged, and the next ones' turn."""
        self._shipped += count
        self.journal.acknowledge(self._shipped)
        with self._cond:
            for _ in range(count):
                self._queue.popleft()
                self._arrived.popleft()
            self._cond.notify_all()
        self._refill()

    def _refill(self) -> None:
        """Events that waited in the journal alone, read back into the queue once it is half empty (the file
        read outside the lock: the loop goes on journalling behind them meanwhile)."""
        with self._cond:
            room = IN_MEMORY - len(self._queue)
            if not self._spilled or room < IN_MEMORY // 2:
                return
            count, offset = min(room, self._spilled), self._spill_at
        events, after = self.journal.read_from(offset, count)
        with self._cond:
            for event in events:
                self._queue.append(event)
                self._arrived.append(0.0)  # they waited long enough: no lingering for a batch
                if event["kind"] == "checkpoint":
                    self._spilled_checkpoints.popleft()
            self._spill_at, self._spilled = after, self._spilled - count
            self._cond.notify_all()


def ship_batch(
    tracker: Any, journal: Journal, events: list[Mapping[str, Any]], check: bool, later: Callable[[], list[Any]]
) -> None:
    """Apply journalled events to MLflow: finished individuals in a row in one call, others one by one.
    `check`: they may have been shipped in part before (a retry, or the first events after a restart), so
    what MLflow holds of them is looked at first. `later()`: the checkpoint events queued behind the head."""
    if len(events) == 1 or any(e["kind"] != "individual" for e in events):
        for event in events:
            ship(tracker, journal, event, check, later)
        return
    tracker.individuals_finished(_unshipped(tracker, events, check))


def ship(tracker: Any, journal: Journal, event: Mapping[str, Any], check: bool, later: Callable[[], list[Any]]) -> None:
    """Apply one journalled event to MLflow (see ship_batch)."""
    kind = event["kind"]
    if kind == "individual":
        for finished in _unshipped(tracker, [event], check):
            tracker.individual_finished(*finished)
    elif kind == "generation":
        tracker.generation_finished(int(event["generation"]), event["metrics"])
    elif kind == "checkpoint":
        _ship_checkpoint(tracker, journal, event, later)
    elif kind == "end":
        tracker.ship_end(event)
    else:
        raise ValueError(f"{journal.directory}: unknown journal event {kind!r}")


def _unshipped(tracker: Any, events: list[Mapping[str, Any]], check: bool) -> list[tuple[Any, Any, EvalResult]]:
    """The (individual, config, result) of finished-individual events, less those MLflow holds whole (`check`)."""
    out = []
    for event in events:
        individual = Individual.from_dict(event["individual"])
        if check and tracker.has_logged(individual.id):
            continue
        out.append((individual, event["config"], result_from_dict(event["result"])))
    return out


def _ship_checkpoint(tracker: Any, journal: Journal, event: Mapping[str, Any], queued: Callable[[], list[Any]]) -> None:
    keep = set(event["keep"])
    weights = [os.path.join(journal.checkpoint, "weights", f"{name}.npz") for name in event["weights"]]
    fence = journal.header().get("fence")
    if fence is not None:  # whose checkpoint is the newest, set first: a stale journal's sync reads it
        from popplast.tracking.lease import CHECKPOINT_FENCE  # (_supersede_if_stale) and must never miss one

        tracker.client.set_tag(tracker.search_run_id, CHECKPOINT_FENCE, str(fence))
    tracker.upload_checkpoint(weights, [os.path.join(journal.checkpoint, s) for s in event["states"]], keep)
    # the local copy keeps only what this state and the later journalled ones may need (read under the lock
    # a checkpoint is journalled under, so that none is half there)
    with journal.files:
        later = queued()
        needed = keep.union(*(set(e["keep"]) | set(e["weights"]) for e in later))
        states = set(event["states"]).union(*(e["states"] for e in later))
        folder = os.path.join(journal.checkpoint, "weights")
        for name in os.listdir(folder):
            if name.endswith(".npz") and name[: -len(".npz")] not in needed:
                os.remove(os.path.join(folder, name))
        for name in os.listdir(journal.checkpoint):
            if name.endswith(".json") and name not in states:
                os.remove(os.path.join(journal.checkpoint, name))


def open_outbox(tracker: Any, root: str | None = None, claimed: Journal | None = None) -> Outbox:
    """The outbox of the tracker's search run, in its journal folder under `root` (journal_root by default)
    or `claimed` (Journal.claim); events an earlier driver left unshipped there are queued first."""
    lease = getattr(tracker, "lease", None)
    header = {
        "tracking_uri": tracker.tracking_uri,
        "experiment": tracker.experiment,
        "search_run_id": tracker.search_run_id,
        "method": tracker.method,
        "gene_names": list(tracker.gene_names),
        **({"fence": lease.fence} if lease is not None else {}),  # whose journal it is (tracking/lease.py)
    }
    from popplast.tracking.lease import CHECKPOINT_FENCE

    checkpointed = int(tracker.client.get_run(tracker.search_run_id).data.tags.get(CHECKPOINT_FENCE, "0") or 0)
    return Outbox(tracker, Journal.create(root or journal_root(tracker.tracking_uri), header, claimed, checkpointed))
