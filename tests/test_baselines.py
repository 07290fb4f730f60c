"""Optuna and Ray Tune baselines end to end on digits: the same evaluator, the MLflow layout, resume."""

from __future__ import annotations

import math

import optuna
import pytest
from mlflow import MlflowClient

import popplast
from popplast.cli.main import main
from popplast.errors import SpecError
from popplast.reports.lineage import draw_lineage
from tests.helpers import individuals, lineage, write_spec

pytestmark = pytest.mark.slow


def test_tpe_study_through_popplasts_executor_and_its_resume(tiny_spec, tracking_uri, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    options = dict(method="tpe", executor="local", tracking_uri=tracking_uri, optuna_storage=storage, progress=False)
    first = popplast.run(tiny_spec, budget_evals=6, **options)
    rows = individuals(tracking_uri, first.search_run_id)
    assert len(rows) == 6 == first.evaluations
    for row in rows:  # sampled trials are individuals without parents, in rows of the population (4)
        assert (row["method"], row["operator"], row["parents"], row["status"]) == ("tpe", "sample", [], "ok")
    assert [r["id"] for r in rows] == ["g000-i000", "g000-i001", "g000-i002", "g000-i003", "g001-i000", "g001-i001"]
    study = optuna.load_study(study_name="tiny-tpe-seed7", storage=storage)
    assert [t.value for t in study.trials] == [r["fitness"] for r in rows]
    client = MlflowClient(tracking_uri)
    for trial, row in zip(study.trials, rows):  # the values a trial chose are the configuration that trained
        assert trial.user_attrs["popplast.individual"]["id"] == row["id"]
        params = client.get_run(row["run_id"]).data.params
        for name, value in trial.params.items():
            if isinstance(value, float):
                assert math.isclose(float(params[name]), value, rel_tol=1e-9), name
            else:
                assert params[name] == str(value), name

    with pytest.raises(
        SpecError, match=f"--study-name: the study 'tiny-tpe-seed7' already exists.*--resume {first.search_run_id}"
    ):
        popplast.run(tiny_spec, budget_evals=6, **options)
    options.pop("method")  # the search run knows its method, spec and study
    resumed = popplast.run(budget_evals=9, resume=first.search_run_id, **options)
    assert resumed.search_run_id == first.search_run_id  # one search run holds the whole study
    assert resumed.evaluations == 9
    after = individuals(tracking_uri, first.search_run_id)
    assert len(after) == 9 and all(len(r["genes"]) == 3 for r in after)  # resumed trials log their genes too
    assert [r["id"] for r in after][6:] == ["g002-i000", "g002-i001", "g002-i002"]  # what is left of the budget
    trials = optuna.load_study(study_name="tiny-tpe-seed7", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 9
    assert [t.user_attrs["popplast.individual"]["id"] for t in trials] == [r["id"] for r in after]
    assert resumed.best_fitness == max(t.value for t in trials)


def test_the_same_seed_gives_the_same_trials(tiny_spec, tmp_path):
    runs = []
    for name in ("a", "b"):
        uri = f"sqlite:///{tmp_path / name}.db"
        result = popplast.run(
            tiny_spec,
            method="random",
            budget_evals=5,
            executor="local",
            tracking_uri=uri,
            optuna_storage=f"sqlite:///{tmp_path / name}-optuna.db",
            progress=False,
        )
        runs.append(lineage(individuals(uri, result.search_run_id)))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("method", ["cmaes", "nsga2"])
def test_other_samplers_run_the_same_budget(method, tiny_spec, tracking_uri, tmp_path):
    result = popplast.run(
        tiny_spec,
        method=method,
        budget_evals=5,
        executor="local",
        tracking_uri=tracking_uri,
        optuna_storage=f"sqlite:///{tmp_path / 'o.db'}",
        progress=False,
    )
    rows = individuals(tracking_uri, result.search_run_id)
    assert len(rows) == 5 and {r["method"] for r in rows} == {method}


@pytest.mark.cluster  # Ray Tune's PBT (15 s): the slow tier
def test_tune_pbt_exploits_as_single_parent_edges(ray_address, tiny_spec, tracking_uri, tmp_path):
    result = popplast.run(tiny_spec, method="tune-pbt", budget_evals=12, tracking_uri=tracking_uri, progress=False)
    rows = individuals(tracking_uri, result.search_run_id)
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == 12 and {r["generation"] for r in rows} == {0, 1, 2}
    for row in rows:
        assert row["method"] == "tune-pbt"
        if row["generation"] == 0:
            assert row["operator"] == "init" and row["parents"] == []
        else:
            assert row["operator"] in ("inherit", "exploit") and len(row["parents"]) == 1
            parent = by_id[row["parents"][0]]
            assert parent["generation"] == row["generation"] - 1
            # a trial continues its own segments unless it exploited another trial's checkpoint
            assert (parent["id"][-4:] == row["id"][-4:]) == (row["operator"] == "inherit")
    # synchronous PBT with a quarter of 4 trials: every boundary replaces the worst trial by the best
    assert sum(r["operator"] == "exploit" for r in rows) == 2
    html, png = draw_lineage(tracking_uri, result.search_run_id, str(tmp_path), log=False)
    assert html.endswith("lineage.html") and png.endswith("lineage.png")


@pytest.mark.cluster  # Ray Tune's PBT (15 s): the slow tier
def test_tune_pbt_trains_no_more_segments_at_once_than_its_workers(ray_address, tiny_spec, tracking_uri):
    """--workers 1 on a 2-CPU Ray instance: Tune would run 2 trials at once; the segments' training intervals
    (tagged by each segment as it held its slot) must not overlap."""
    result = popplast.run(
        tiny_spec, method="tune-pbt", budget_evals=8, workers=1, tracking_uri=tracking_uri, progress=False
    )
    client = MlflowClient(tracking_uri)
    spans = sorted(
        (float(t["popplast.began"]), float(t["popplast.ended"]))
        for t in (client.get_run(r["run_id"]).data.tags for r in individuals(tracking_uri, result.search_run_id))
    )
    assert len(spans) == 8
    assert all(end <= next_begin for (_, end), (next_begin, _) in zip(spans, spans[1:])), spans


def test_tune_tpe_trials_are_individuals_without_parents(ray_address, tiny_spec, tracking_uri):
    result = popplast.run(tiny_spec, method="tune-tpe", budget_evals=4, tracking_uri=tracking_uri, progress=False)
    rows = individuals(tracking_uri, result.search_run_id)
    assert sorted(r["id"] for r in rows) == ["g000-i000", "g000-i001", "g000-i002", "g000-i003"]
    assert {(r["method"], r["operator"], r["status"]) for r in rows} == {("tune-tpe", "sample", "ok")}
    assert result.best_run_id in {r["run_id"] for r in rows}


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--method", "tune-pbt", "--executor", "local"], "--executor: the tune-pbt method runs on Ray Tune"),
        (["--resume", "0123abcd"], "--resume: no search run '0123abcd' in the MLflow store"),
        (["--budget-evals", "6"], "--budget-evals: ga evaluates whole generations of 4"),
        (["--method", "tpe", "--optuna-storage", "nosuch://x"], "--optuna-storage: cannot open the Optuna storage"),
    ],
)
def test_bad_baseline_flags(flags, expected, tmp_path, capsys):
    from tests.helpers import TINY_SPEC

    path = write_spec(tmp_path, TINY_SPEC)
    code = main(
        [
            "run",
            str(path),
            "--executor",
            "local",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/m.db",
            "--optuna-storage",
            f"sqlite:///{tmp_path}/o.db",
            *flags,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err


def test_tune_pbt_needs_a_float_gene(tmp_path, capsys):
    path = write_spec(
        tmp_path,
        """
        dataset: {name: digits}
        fidelity: {image_size: 8, epochs: 1}
        strategy: {population: 4, generations: 2}
        space:
          optimizer: {type: categorical, choices: [adam, sgd]}
        """,
    )
    assert main(["run", str(path), "--method", "tune-pbt", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    assert "at space: tune-pbt perturbs float genes, and this space has none" in capsys.readouterr().err
