"""`popplast compare` end to end on digits, and `popplast report` rebuilding it from MLflow alone."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

import popplast
from popplast.cli.main import main
from popplast.errors import SpecError

pytestmark = pytest.mark.slow
METHODS = ("ga", "tpe", "random")


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    from tests.helpers import SESSION_RAY, TINY_SPEC, write_spec

    SESSION_RAY.running()

    folder = tmp_path_factory.mktemp("compare")
    spec = write_spec(folder, TINY_SPEC, "tiny.yaml")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = popplast.compare(
        spec,
        methods=",".join(METHODS),
        budget_evals=8,
        seeds=2,
        workers=2,
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{folder / 'optuna.db'}",
        out=str(folder / "report"),
        progress=False,
    )
    return result, folder, uri, spec


@pytest.mark.cluster  # a comparison of several methods and seeds (the module fixture, a minute): the slow tier
def test_report_has_a_row_per_method_and_the_curves(comparison):
    result, folder, _, _ = comparison
    assert (result.cells_run, result.cells_skipped, result.failed_cells) == (6, 0, [])
    text = (folder / "report" / "report.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| ") and " | 2 | " in line]
    assert [line.split(" | ")[0][2:] for line in table[:3]] == list(METHODS)
    for line in table[:3]:  # what each method trained on, and its gradient work (8 evaluations of 7 steps)
        cells = line.split(" | ")
        assert cells[-1] == "8 px |" and cells[-2] == "56 ± 0", line
    assert "Target: the median final best validation MCC of tpe" in text
    assert "Fitness is the validation MCC; the test MCC is the best individual's." in text  # the CNN trainer's
    assert (
        "| method | seeds | best validation MCC | test MCC | evaluations | reached | evaluations to target | "
        "epochs to target | seconds to target | wall seconds | training epochs | backward passes | image sizes |"
    ) in text
    assert "| method | seed | search run | best validation MCC | test MCC |" in text
    for pair in ("| ga | tpe | 2 |", "| ga | random | 2 |", "| tpe | random | 2 |"):
        assert text.count(pair) == 2  # test MCC and best validation MCC
    for name in ("anytime_evaluations.png", "anytime_seconds.png", "anytime_epochs.png"):
        data = (folder / "report" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.cluster  # the comparison fixture: the slow tier
def test_mlflow_holds_the_comparison_and_report_rebuilds_it_identically(comparison, tmp_path, capsys):
    result, folder, uri, _ = comparison
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["popplast.role"] == "comparison" and run.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(result.run_id, "report")} == {
        "report/report.md",
        "report/anytime_evaluations.png",
        "report/anytime_seconds.png",
        "report/anytime_epochs.png",
    }
    searches = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'")
    cells = {(s.data.params["method"], s.data.params["seed"]): s.data.params for s in searches}
    assert set(cells) == {(m, s) for m in METHODS for s in ("7", "8")}
    for seed, split in (("7", "0"), ("8", "1")):  # paired: one data split per seed, the same for every method
        assert {cells[(m, seed)]["split_seed"] for m in METHODS} == {split}
        assert {cells[(m, seed)]["budget_evals"] for m in METHODS} == {"8"}

    assert main(["report", result.run_id, "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    for name in ("report.md", "anytime_evaluations.png", "anytime_seconds.png", "anytime_epochs.png"):
        assert (tmp_path / name).read_bytes() == (folder / "report" / name).read_bytes(), name


@pytest.mark.cluster  # the comparison fixture: the slow tier
def test_an_interrupted_comparison_runs_only_its_unfinished_searches(comparison):
    result, folder, uri, spec = comparison
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    [ga8] = client.search_runs(
        [run.info.experiment_id],
        f"tags.mlflow.parentRunId = '{result.run_id}' and params.method = 'ga' and params.seed = '8'",
    )
    client.set_terminated(ga8.info.run_id, status="FAILED")  # as a driver killed in that search leaves it
    again = popplast.compare(
        spec,
        methods=",".join(METHODS),
        budget_evals=8,
        seeds=2,
        workers=2,
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{folder / 'optuna.db'}",
        out=str(folder / "again"),
        resume=result.run_id,
        progress=False,
    )
    assert (again.run_id, again.cells_run, again.cells_skipped) == (result.run_id, 1, 5)
    text = (folder / "again" / "report.md").read_text()
    assert ga8.info.run_id not in text and text.count("| ga | 8 | ") == 1

    with pytest.raises(SpecError, match="--resume: the comparison run .* budget_evals = 8, not 12"):
        popplast.compare(
            spec,
            methods=",".join(METHODS),
            budget_evals=12,
            seeds=2,
            workers=2,
            tracking_uri=uri,
            resume=result.run_id,
            progress=False,
        )


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--methods", "ga,bayes"], "--methods: expected a comma-separated list of ga, gensoup, pbt, tpe"),
        (["--methods", "ga,ga"], "--methods: expected each method once"),
        (["--seeds", "0"], "--seeds: expected an integer >= 1, got 0"),
        (["--methods", "ga,pbt", "--budget-evals", "6"], "--budget-evals: ga evaluates whole generations of 4"),
    ],
)
def test_bad_compare_flags(flags, expected, tmp_path, capsys):
    from tests.helpers import TINY_SPEC, write_spec

    path = write_spec(tmp_path, TINY_SPEC)
    code = main(["compare", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db", *flags])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "m.db").exists(), "nothing may start before the input is checked"


def test_holm_adjusts_a_family_of_p_values_by_hand():
    """p = 0.01, 0.04, 0.03, NaN (no test), 0.5 → the three smallest of four: 4·0.01, max(0.04, 3·0.03 = 0.09),
    max(0.09, 2·0.04 = 0.08) = 0.09; the largest: max(0.09, 1·0.5) = 0.5; NaN stays NaN."""
    import math

    from popplast.reports.stats import holm

    adjusted = holm([0.01, 0.04, 0.03, math.nan, 0.5])
    assert adjusted[:3] == pytest.approx([0.04, 0.09, 0.09]) and adjusted[4] == pytest.approx(0.5)
    assert math.isnan(adjusted[3]) and holm([]) == [] and holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
