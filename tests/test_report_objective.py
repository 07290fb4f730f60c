"""`popplast compare` on a user's objective, tried as a new user would: the report names the file's metrics
(`fitness.metric`, `fitness.test`), and shows nothing that belongs to popplast's CNN trainer."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from mlflow import MlflowClient

import popplast
from popplast.cli.main import main

OBJECTIVE = '''
def fit(config, trial):
    """A 1-D task: how close x is to 0.3 (validation) and to 0.25 (held out)."""
    x = config["x"]
    return {"val_acc": 1.0 - abs(x - 0.3), "test_acc": 1.0 - abs(x - 0.25)}
'''

SPEC = """
objective: tiny:fit
fitness: {metric: val_acc, mode: maximize, test: test_acc}
fidelity: {epochs: 4}
strategy: {method: ga, population: 4, generations: 2, seed: 3}
space:
  x: {type: float, low: -1.0, high: 1.0}
"""


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("objective")
    (folder / "tiny.py").write_text(textwrap.dedent(OBJECTIVE))
    (folder / "search.yaml").write_text(textwrap.dedent(SPEC))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = popplast.compare(
        str(folder / "search.yaml"),
        methods="ga,gensoup",
        budget_evals=8,
        seeds=2,
        executor="local",
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{folder / 'optuna.db'}",
        out=str(folder / "report"),
        progress=False,
    )
    return result, (folder / "report" / "report.md").read_text(), uri


def test_the_report_names_the_files_metrics(compared):
    result, text, uri = compared
    assert result.failed_cells == []
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| method | seeds | "))
    assert header.startswith("| method | seeds | best val_acc | test_acc | evaluations | ")
    assert "Target: the median final best val_acc of ga" in text and "Fitness is the objective's val_acc" in text
    column = header.strip("| ").split(" | ").index("test_acc")
    for method in ("ga", "gensoup"):
        [row] = [line.strip("| ").split(" | ") for line in lines if line.startswith(f"| {method} | 2 | ")]
        assert re.fullmatch(r"0\.\d{4} ± 0\.\d{4}", row[column]), row
    assert "### test_acc" in text and "### best val_acc" in text and text.count("| ga | gensoup | 2 |") == 2
    assert "| method | seed | search run | best val_acc | test_acc |" in text
    searches = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_run(result.run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert {s.data.params["fitness.test"] for s in searches} == {"test_acc"}  # the report reads it from MLflow


def test_nothing_of_the_cnn_trainer_and_no_empty_tests(compared):
    _, text, _ = compared
    assert "MCC" not in text and "nan" not in text.lower()
    assert "image sizes" not in text and "backward passes" not in text


def test_the_lineage_panel_shows_only_what_the_objective_ran_with(compared, tmp_path):
    """Gen-Soup inherits: its individuals' runs record no image size or epochs the 1-D task never used."""
    result, _, uri = compared
    client = MlflowClient(uri)
    experiment = client.get_run(result.run_id).info.experiment_id
    [search] = client.search_runs(
        [experiment], f"tags.mlflow.parentRunId = '{result.run_id}' and params.method = 'gensoup' and params.seed = '3'"
    )
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{search.info.run_id}'")
    assert len(runs) == 8 and all(set(r.data.params) == {"x", "gene.x"} for r in runs)
    page = open(client.download_artifacts(search.info.run_id, "lineage.html", str(tmp_path))).read()
    data = json.loads(page.split('id="lineage-data">', 1)[1].split("</script>", 1)[0])
    assert [set(node["params"]) for node in data["nodes"]] == [{"x"}] * 8
    from popplast.reports.lineage import read_lineage

    assert read_lineage(client, search.info.run_id).fitness_name == "val_acc"  # lineage.png's colour bar says so


@pytest.mark.parametrize(
    "line, expected",
    [
        ("test: 3", "at fitness.test: expected a string, got int 3."),
        ("test: ''", "at fitness.test: expected a string, got str ''."),
        ("test: [test_acc]", "at fitness.test: expected a string, got a list"),
    ],
)
def test_a_bad_held_out_metric_is_one_line(line, expected, tmp_path, capsys):
    (tmp_path / "tiny.py").write_text(textwrap.dedent(OBJECTIVE))
    spec = tmp_path / "search.yaml"
    spec.write_text(textwrap.dedent(SPEC).replace("test: test_acc", line))
    code = main(["run", str(spec), "--executor", "local", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "m.db").exists()
