"""The tracking side of `popplast.run`: the MLflow tracker it opens, the search run it starts or reopens,
what marks that run failed, the observers a search reports to, and the family tree drawn at the end."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

from popplast.console import say
from popplast.errors import COMMAND_LINE, SpecError
from popplast.search.session import interrupted
from popplast.spec.search import SearchSpec
from popplast.tracking.failures import describe

log = logging.getLogger(__name__)


def tracker_for(tracking_uri: str, experiment: str, method: str, parent_run_id: str | None) -> Any:
    from popplast.tracking.mlflow_tracker import MLflowTracker

    try:
        return MLflowTracker(tracking_uri, experiment, method, parent_run_id)
    except SpecError:
        raise
    except Exception as e:  # MLflow raises many types for a bad URI; all mean the same to the user
        raise SpecError(
            COMMAND_LINE,
            "--tracking-uri",
            f"cannot open the MLflow tracking store {tracking_uri!r} ({type(e).__name__}: {e}).",
        ) from None


def start_tracking(
    tracker: Any, spec: SearchSpec, budget: int, settings: dict[str, Any], study: Any, resume: str | None
) -> None:
    """A new search run with the spec it runs, or a resumed search's own run; an Optuna study records the
    search run its trials are logged in."""
    if resume:
        if not tracker.reopen_search(resume, spec):
            raise SpecError(
                COMMAND_LINE,
                "--resume",
                f"the search run {resume} is not in the experiment {tracker.experiment_id} of {tracker.tracking_uri}.",
            )
        return
    if study is not None:
        settings = {**settings, "study_name": study.study_name}
    tracker.start_search(spec, settings)
    tracker.log_spec(spec, budget)
    if study is not None:
        from popplast.integrations.optuna_study import USER_SEARCH_RUN

        study.set_user_attr(USER_SEARCH_RUN, tracker.search_run_id)


def write_run_id(path: str | os.PathLike, search_run_id: str) -> None:
    """The search run's id in `path`, whole or not at all: a job script reads it to resume the search, and
    may be stopped at any moment, this write included."""
    from popplast.tracking.journal import write_whole

    write_whole(os.fspath(path), (search_run_id + "\n").encode())


@contextlib.contextmanager
def releasing_lease(tracker: Any, claimed: Any = None) -> Iterator[None]:
    """The search run's lease given back however the search stops (its heartbeat would keep it live for as
    long as this process runs), and the journal folder claimed for it (claim_journal)."""
    try:
        yield
    except BaseException:
        tracker.release_lease()
        if claimed is not None and getattr(tracker, "outbox", None) is None:  # else the outbox's to close
            claimed.abandon()
        raise


OUTBOX_GRACE = 10.0  # seconds a failing search still gives journalled results to reach MLflow


@contextlib.contextmanager
def failing(tracker: Any) -> Iterator[None]:
    """Failed or interrupted: the runs logged so far stay, and the search run says FAILED, or KILLED with
    the signal that stopped it, through the journal while one is open (an outage then neither hides the
    search's own error nor loses the status: the journal keeps it for `popplast sync`); nothing when another
    driver took the search over."""
    try:
        yield
    except BaseException as e:
        stop = interrupted(e)
        reason = str(stop) if stop else None
        if stop is not None:
            e.search_run_id = tracker.search_run_id  # type: ignore[attr-defined]  # for the command's last line
        end_failed(tracker, reason)
        raise


def end_failed(tracker: Any, reason: str | None) -> None:
    """The search run marked FAILED (or KILLED with `reason`), never raising: the failure that got here is the
    one to report."""
    from popplast.tracking.fail_fast import failing_fast

    outbox = getattr(tracker, "outbox", None)
    if outbox is not None and tracker.displaced:  # its sender stops before writing more; the journal stays
        outbox.close()
        tracker.outbox = outbox = None
    if outbox is None or tracker.displaced or not tracker.search_run_id:
        try:
            with failing_fast():  # MLflow's client would retry for minutes before the error is reported
                tracker.fail_search(reason)
        except Exception as e:  # MLflow unreachable too: the search's own error is the one that matters
            log.warning("could not mark the search run %s ended (%s)", tracker.search_run_id, describe(e))
        return
    with failing_fast():  # the sender's calls too: a call retried for minutes would outlast the grace
        outbox.search_ended({"kind": "end", "status": "KILLED" if reason else "FAILED", "reason": reason})
        if not outbox.drain(timeout=OUTBOX_GRACE):  # what can still reach MLflow; the rest stays journalled
            log.warning("MLflow did not take the search's end in time; it stays in %s", outbox.journal.directory)
        outbox.close()
    tracker.outbox = None
    tracker.release_lease()


JOURNAL_TAG = "popplast.journal"  # where the search's journal is: host:folder


def claim_journal(tracking_uri: str, search_run_id: str, progress: bool, force: bool = False) -> Any:
    """The journal folder a resumed search will ship from, locked before its lease is taken (so a driver never
    holds the lease of a search whose journal another process ships): the earlier driver's, where the search
    run's `popplast.journal` tag says it is on this machine (for an http store journals live under the current
    folder, so a resume from another folder adopts it), else the usual place. One on another machine is
    named, for `popplast sync` there. A folder another process ships is a SpecError, unless `force` (that
    process hangs, say): then this driver journals into a folder of its own, and the other's journal is left
    for `popplast sync`, which passes over what it holds once this driver has checkpointed."""
    import os
    import socket

    from mlflow import MlflowClient

    from popplast.tracking.journal import Journal, JournalBusy, journal_root

    earlier = MlflowClient(tracking_uri).get_run(search_run_id).data.tags.get(JOURNAL_TAG, "")
    host, _, folder = earlier.partition(":")
    directory = os.path.join(journal_root(tracking_uri), search_run_id)
    if earlier and host == socket.gethostname() and os.path.isdir(folder):
        directory = folder
    elif earlier and host != socket.gethostname():
        say(
            progress,
            f"[popplast] the earlier driver's journal is on {host} at {folder}: what it had not shipped, run "
            f"`popplast sync {folder}` there (a sync after this driver's checkpoints passes over it)",
        )
    try:
        return Journal.claim(directory)
    except JournalBusy as e:
        if not force:
            raise SpecError(COMMAND_LINE, "--resume", f"{e} before resuming the search, or pass --force.") from None
        say(progress, f"[popplast] {e}: --force, so this driver journals into a folder of its own")
        return Journal.claim(f"{directory}.taken-{os.getpid()}")


def open_journal(tracker: Any, progress: bool, claimed: Any = None) -> Any:
    """The search's outbox (tracking/outbox.py), opened on the tracker's search run in its journal folder
    (`claimed` for a resumed search: claim_journal): what the loop and the end of the search report to. An
    earlier driver's events left in that journal are shipped first."""
    import socket

    from popplast.tracking.outbox import open_outbox

    outbox = open_outbox(tracker, None, claimed)
    tracker.outbox = outbox
    try:  # where this journal is, for a later resume; not having it only costs a later driver the search
        tracker.client.set_tag(tracker.search_run_id, JOURNAL_TAG, f"{socket.gethostname()}:{outbox.journal.directory}")
    except Exception as e:
        log.warning("could not record where the journal is (%s)", describe(e))
    if outbox.queued:
        say(progress, f"[popplast] shipping {outbox.queued} journalled events of an earlier driver")
        outbox.drain(on_wait=lambda message: say(progress, f"[popplast] {message}"))
    return outbox


def end_search(tracker: Any, result: Any, final: dict[str, Any], progress: bool) -> None:
    """The search run ended FINISHED with its results, descriptions and drawings: through the journal when one
    is open (the end waits for MLflow, saying so; interrupted, `popplast sync` ends the run later), else at
    once. The result learns where the lineage page is and the workers' utilisation."""
    from popplast.tracking.fail_fast import failing_fast

    outbox = getattr(tracker, "outbox", None)
    if outbox is None:
        tracker.end_search(result, final)
    else:
        with failing_fast():
            outbox.search_ended(tracker.end_event(result, final))
            try:
                outbox.drain(on_wait=lambda message: say(progress, f"[popplast] {message}"))
            except BaseException as e:  # interrupted while MLflow was away: the end waits in the journal
                outbox.close()
                e.journalled_end = outbox.journal.directory  # type: ignore[attr-defined]  # the command says so
                raise
            if tracker.displaced:  # taken over during the end: the end stays in the journal, not shipped
                outbox.close()
                tracker.outbox = None
                tracker.lease.check()
            outbox.finish()
        tracker.outbox = None
        tracker.release_lease()
    result.lineage_html, result.worker_utilisation = tracker.drawn


@contextlib.contextmanager
def observing(
    tracker: Any,
    progress: bool,
    rows: int,
    total: int,
    done: int = 0,
    status: Any = None,
    epochs: tuple[int, float] | None = None,
    workers: int = 0,
) -> Iterator[list[Any]]:
    """The tracker and, with `progress`, a progress display that is closed however the search ends;
    `status()` adds a few words to its line (the outbox's, while MLflow is unreachable); `epochs`: a budget in
    training epochs and how many an earlier driver spent, which the display counts instead of evaluations;
    `workers`: the pool's size, for the share of their time the workers spend evaluating."""
    observers: list[Any] = [tracker]
    if progress:
        from popplast.search.progress import SearchProgress

        shown = SearchProgress(
            rows, total=total, done=done, status=status, epochs=epochs[0] if epochs else None, workers=workers
        )
        shown.epochs = epochs[1] if epochs else 0.0
        observers.append(shown)
    try:
        yield observers
    finally:
        for observer in observers:
            if observer is not tracker and hasattr(observer, "close"):  # the tracker is its caller's to close
                observer.close()


class LeaseWatch:
    """An observer that stops the search (LeaseLost) at the first result after another driver took the search
    run over from this one (tracking/lease.py): nothing more of this driver's reaches the run."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker

    def individual_finished(self, *_: Any) -> None:
        if self.tracker.lease is not None:
            self.tracker.lease.check()

    def generation_finished(self, *_: Any) -> None:
        self.individual_finished()
