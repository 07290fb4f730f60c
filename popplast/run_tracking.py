"""The tracking side of `popplast.run`: the MLflow tracker it opens, the search run it starts or reopens,
what marks that run failed, the observers a search reports to, and the family tree drawn at the end."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from popplast.core.errors import COMMAND_LINE, SpecError
from popplast.core.spec import SearchSpec
from popplast.session import interrupted


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
        from popplast.baselines.optuna_search import USER_SEARCH_RUN

        study.set_user_attr(USER_SEARCH_RUN, tracker.search_run_id)


@contextlib.contextmanager
def releasing_lease(tracker: Any) -> Iterator[None]:
    """The search run's lease given back however the search stops (its heartbeat would keep it live for as
    long as this process runs)."""
    try:
        yield
    except BaseException:
        tracker.release_lease()
        raise


@contextlib.contextmanager
def failing(tracker: Any) -> Iterator[None]:
    """Failed or interrupted: the runs logged so far stay, and the search run says FAILED, or KILLED with
    the signal that stopped it."""
    try:
        yield
    except BaseException as e:
        stop = interrupted(e)
        tracker.fail_search(str(stop) if stop else None)
        if stop is not None:
            e.search_run_id = tracker.search_run_id  # type: ignore[attr-defined]  # for the command's last line
        raise


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
        from popplast.progress import SearchProgress

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


def draw_search_lineage(tracker: Any, result: Any) -> None:
    """lineage.html, lineage.png and workers.png as artifacts of the search run; the result learns where the
    HTML page is and the workers' utilisation."""
    import tempfile

    from popplast.tracking.lineage import draw_lineage
    from popplast.tracking.search_run import individual_runs
    from popplast.tracking.utilisation import draw_workers

    tracking_uri, search_run_id = tracker.tracking_uri, tracker.search_run_id
    runs = individual_runs(tracker.client, tracker.experiment_id, search_run_id)  # read once for both drawings
    with tempfile.TemporaryDirectory() as tmp:
        draw_lineage(tracking_uri, search_run_id, tmp, runs=runs)
        _, result.worker_utilisation = draw_workers(tracking_uri, search_run_id, tmp, runs=runs)
    uri = tracker.client.get_run(tracker.search_run_id).info.artifact_uri.rstrip("/") + "/lineage.html"
    result.lineage_html = uri[len("file://") :] if uri.startswith("file://") else uri


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
