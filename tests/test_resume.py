"""Resuming from the search run alone: what may change (a longer search) and what may not. Killed drivers and
their exact resume are in tests/test_faults.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

import popplast
from popplast.errors import SpecError
from popplast.execution.checkpoint_files import state_file
from popplast.tracking.checkpoint_store import newest_first
from tests.helpers import individuals, lineage

pytestmark = pytest.mark.slow


def test_a_finished_search_extended_is_the_longer_search(tiny_spec, tracking_uri, tmp_path):
    options = dict(executor="local", tracking_uri=tracking_uri, progress=False)
    first = popplast.run(tiny_spec, **options)
    with pytest.raises(SpecError, match=f"--resume: the search run {first.search_run_id} finished its 12 evaluations"):
        popplast.run(resume=first.search_run_id, **options)
    with pytest.raises(SpecError, match="was started with strategy.seed = 7, but the flags say 8"):
        popplast.run(resume=first.search_run_id, seed=8, generations=4, **options)
    with pytest.raises(SpecError, match="was started with fidelity.epochs = 1, but .*tiny.yaml says 2"):
        tiny_spec.write_text(tiny_spec.read_text().replace("epochs: 1", "epochs: 2"))
        popplast.run(tiny_spec, resume=first.search_run_id, generations=4, **options)

    _checkpoint_file(tracking_uri, first.search_run_id, "state-g0002.json").write_text("{")  # cut short
    kept = _checkpoint_file(tracking_uri, first.search_run_id, "state-g0001.json")
    state = json.loads(kept.read_text())
    assert 0 < state["seconds"] < first.wall_seconds
    # An earlier driver's time far above anything this one spends, so that the bounds below hold however long
    # this driver's own start and end take: the wall time is the earlier drivers' up to the checkpoint plus its own.
    before = state["seconds"] = 1000.0
    kept.write_text(json.dumps(state))
    started = time.perf_counter()
    longer = popplast.run(resume=first.search_run_id, generations=4, **options)  # from generation 1's
    this_driver = time.perf_counter() - started
    assert longer.search_run_id == first.search_run_id and longer.evaluations == 16
    assert before < longer.wall_seconds <= before + this_driver
    reference_uri = f"sqlite:///{tmp_path / 'reference.db'}"
    tiny_spec.write_text(tiny_spec.read_text().replace("epochs: 2", "epochs: 1"))
    reference = popplast.run(tiny_spec, generations=4, executor="local", tracking_uri=reference_uri, progress=False)
    got, expected = individuals(tracking_uri, first.search_run_id), individuals(reference_uri, reference.search_run_id)
    assert lineage(got) == lineage(expected) and [r["fitness"] for r in got] == [r["fitness"] for r in expected]
    assert (longer.best.id, longer.best_fitness) == (reference.best.id, reference.best_fitness)


def test_resume_needs_a_search_run(tiny_spec, tracking_uri):
    first = popplast.run(tiny_spec, generations=1, executor="local", tracking_uri=tracking_uri, progress=False)
    best_run = first.best_run_id  # an individual's run, not the search's
    with pytest.raises(SpecError, match=f"the MLflow run {best_run} is not a popplast search run"):
        popplast.run(resume=best_run, tracking_uri=tracking_uri, progress=False)


def test_no_whole_checkpoint_is_an_error_not_a_fresh_start(tiny_spec, tracking_uri):
    first = popplast.run(tiny_spec, generations=2, executor="local", tracking_uri=tracking_uri, progress=False)
    for name in ("state-g0000.json", "state-g0001.json"):
        _checkpoint_file(tracking_uri, first.search_run_id, name).write_text("{")
    with pytest.raises(SpecError, match="has checkpoints .* but none is whole"):
        popplast.run(
            resume=first.search_run_id, generations=3, executor="local", tracking_uri=tracking_uri, progress=False
        )
    assert len(individuals(tracking_uri, first.search_run_id)) == 8  # nothing deleted


def test_resume_draws_no_download_bars(tiny_spec, tracking_uri, capfd):
    first = popplast.run(tiny_spec, generations=1, executor="local", tracking_uri=tracking_uri, progress=False)
    capfd.readouterr()
    popplast.run(resume=first.search_run_id, generations=2, executor="local", tracking_uri=tracking_uri, progress=False)
    out, err = capfd.readouterr()
    assert "Downloading artifacts" not in out + err


def test_the_newest_checkpoint_is_the_latest_generation_past_9999():
    names = [f"checkpoint/{state_file(g)}" for g in (9, 9999, 10000, 10001, 100)]
    assert newest_first(names) == [f"checkpoint/{state_file(g)}" for g in (10001, 10000, 9999, 100, 9)]


def _checkpoint_file(tracking_uri: str, run_id: str, name: str) -> Path:
    uri = MlflowClient(tracking_uri).get_run(run_id).info.artifact_uri
    return Path(uri.removeprefix("file://")) / "checkpoint" / name
