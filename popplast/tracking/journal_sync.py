"""`popplast sync`: a journal an MLflow outage outlived (its driver died before shipping it all), shipped to
its search run by the same sender a search uses (tracking/outbox.py), then removed."""

from __future__ import annotations

import os
from typing import Any

from popplast.errors import PopplastError, SpecError
from popplast.tracking.fail_fast import failing_fast
from popplast.tracking.failures import describe
from popplast.tracking.journal import HEADER, Journal, JournalBusy
from popplast.tracking.outbox import Outbox


def sync(directory: str | os.PathLike, on_wait: Any = None) -> tuple[str, int, dict[int, str]]:
    """Ship what a search's journal folder holds unshipped to its MLflow search run (`popplast sync`), the
    events MLflow refused before first, then remove the folder if every event is in MLflow. Returns (search
    run id, events that reached MLflow, the events MLflow refused again with its answers). Raises SyncError
    for a folder that is no journal, one another process ships, a search a live driver still holds (it ships
    its own journal), MLflow unreachable when the sync starts, and a sync stopped by a driver that took the
    search over meanwhile (what it did not ship stays)."""
    from mlflow import MlflowClient

    from popplast.tracking.lease import HOLDER, acquire
    from popplast.tracking.mlflow_tracker import MLflowTracker

    journal = Journal(os.fspath(directory))
    try:
        header = journal.header()
    except (OSError, ValueError) as e:
        raise SyncError(f"{directory}: not a popplast journal folder ({HEADER}: {e})") from None
    uri, run_id = header["tracking_uri"], header["search_run_id"]
    try:  # the folder first, then the lease: never the lease of a search whose journal another process ships
        journal.lock()
    except JournalBusy as e:
        raise SyncError(str(e)) from None
    try:
        with failing_fast():
            try:  # the search's lease, as its driver held it (the fence stays: the journal is that driver's)
                lease = acquire(uri, run_id, new_fence=False)
            except SpecError:
                holder = MlflowClient(uri).get_run(run_id).data.tags.get(HOLDER, "")
                raise SyncError(
                    f"{directory}: a live driver ({holder}) still runs the search run {run_id} and ships its own "
                    "journal; stop it first"
                ) from None
            except Exception as e:
                raise _unanswered(directory, uri, e) from None
        pending = journal.unshipped()
        try:
            with failing_fast():
                try:
                    tracker = MLflowTracker(uri, header["experiment"], header["method"])
                    tracker.attach(run_id, tuple(header["gene_names"]))
                    tracker.lease = lease
                    outbox = Outbox(tracker, journal)
                except (SpecError, JournalBusy) as e:
                    raise SyncError(f"{directory}: {e}") from None
                except Exception as e:  # an outage as the sync began: the sender waits out those after this
                    raise _unanswered(directory, uri, e) from None
                outbox.drain(on_wait=on_wait)
                outbox.finish()
        finally:
            lease.release()
    finally:
        journal.close()
    kept = os.path.isdir(journal.directory)  # removed once everything arrived
    refused = journal.refused() if kept else {}
    left = journal.unshipped() - len(refused) if kept else 0
    if left:
        why = (
            f"{lease.lost} took the search run {run_id} over"
            if lease.lost
            else f"the sender stopped ({outbox.last_error})"
        )
        raise SyncError(f"{directory}: {why} during the sync; {left} events were not shipped and stay here")
    return run_id, pending - len(refused) - outbox.superseded, refused


def _unanswered(directory: str | os.PathLike, uri: str, error: Exception) -> "SyncError":
    return SyncError(f"{directory}: MLflow at {uri} did not answer ({describe(error)}); nothing was shipped")


class SyncError(PopplastError, ValueError):
    """A folder `popplast sync` cannot ship."""
