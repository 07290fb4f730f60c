"""The progress line of a search: evaluations or epochs, the population's median, the workers' busy share."""

from __future__ import annotations

import io
import time

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.search.progress import SearchProgress


def finished(progress, fitness, epochs=3.0, stopped=None, started=None, ended=None):
    result = EvalResult("g000-i000", fitness, {"epochs": epochs})
    result.stopped_at = stopped
    if started is not None:
        result.tags = {"started": f"{started:.3f}", "ended": f"{ended:.3f}"}
    progress.individual_finished(Individual("g000-i000", (), 0), {}, result)


def test_an_epoch_budget_counts_epochs_and_the_stopped():
    out = io.StringIO()
    progress = SearchProgress(6, total=60, stream=out, epochs=30)
    finished(progress, 0.5, epochs=1.0, stopped=1)
    finished(progress, 0.7, epochs=3.0)
    progress.generation_finished(0, {"median": 0.6})
    line = out.getvalue()
    assert "2 evaluations (1 stopped early)" in line and "4/30 epochs" in line and "median 0.6000" in line
    assert "/6" not in line  # the generations an epoch budget ends in are not known ahead


def test_the_workers_busy_share_comes_from_the_evaluations_own_times():
    out = io.StringIO()
    progress = SearchProgress(2, total=4, stream=out, workers=2)
    now = time.time()
    finished(progress, 0.5, started=now - 10.0, ended=now - 5.0)  # 5 s of work on 2 workers over 10 s
    assert "workers 25% busy" in progress.status_line() or "workers 24% busy" in progress.status_line()


def test_progress_writes_to_stderr_as_it_is_when_the_search_runs(monkeypatch):
    """Imported while stderr was another stream (a test's capture, later closed), the progress display still
    writes to the stderr of the search that uses it."""
    import importlib
    import io
    import sys

    import popplast.search.progress as progress

    gone = io.StringIO()
    monkeypatch.setattr(sys, "stderr", gone)
    module = importlib.reload(progress)
    gone.close()
    now = io.StringIO()
    monkeypatch.setattr(sys, "stderr", now)
    shown = module.SearchProgress(generations=1, population=2)
    shown.generation_finished(0, {"best": 0.5, "median": 0.5})
    assert "[popplast] generation" in now.getvalue()
