"""Users' own training code as the objective: a module written outside the package, named in a search file,
run by the GA, Gen-Soup, PBT, an Optuna sampler and an evolution strategy, locally and on Ray; what MLflow
then holds; failures."""

from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient

import popplast
from popplast.cli.main import main
from popplast.errors import SpecError
from popplast.strategies.build import STRATEGIES
from tests.helpers import individuals, lineage, write_user_objective

pytestmark = pytest.mark.slow


@pytest.fixture
def user_spec(tmp_path):
    return write_user_objective(tmp_path / "project")


def run(spec, tmp_path, name, **kw):
    uri = f"sqlite:///{tmp_path / name}.db"
    options = dict(tracking_uri=uri, optuna_storage=f"sqlite:///{tmp_path / name}-optuna.db", progress=False)
    return popplast.run(spec, **{**options, **kw}), uri


@pytest.mark.parametrize("method", ["ga", "gensoup", "tpe", "pbt", "openai"])
def test_a_users_objective_runs_on_ray_with_two_workers(method, user_spec, tmp_path, ray_address):
    result, uri = run(user_spec, tmp_path, method, method=method, workers=2, budget_evals=12)
    rows = individuals(uri, result.search_run_id)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"} and result.failed == 0
    client = MlflowClient(uri)
    by_id = {r["id"]: r for r in rows}
    inheriting = 0
    for row in rows:
        run_ = client.get_run(row["run_id"])
        assert run_.data.metrics["fitness"] == pytest.approx(-run_.data.metrics["loss"])  # minimised
        steps = [m.step for m in client.get_metric_history(row["run_id"], "distance")]
        assert steps == [1, 2, 3]  # trial.report, per step
        tags = run_.data.tags
        weights = [float(w) for w in tags["popplast.fusion_weights"].split(",") if w]
        if method in ("gensoup", "pbt") and row["parents"] and max(weights, default=0) == 1.0:
            parent = client.get_run(by_id[row["parents"][0]]["run_id"]).data.tags
            assert tags["popplast.inherited_state_hash"] == parent["popplast.returned_state_hash"]
            inheriting += 1
    assert (inheriting > 0) == (method in ("gensoup", "pbt"))
    if method == "pbt":  # every member after the first segment goes on from one member's state
        assert inheriting == 8
    search = client.get_run(result.search_run_id)
    assert search.data.params["objective"] == "userobj:fit" and search.data.params["fitness.mode"] == "minimize"
    assert (
        result.best_fitness == max(r["fitness"] for r in rows) and "fitness (−loss, loss minimised)" in result.summary()
    )


@pytest.mark.parametrize(
    "method",
    [  # a representative of each family in make test; the others in the slow tier
        m if m in ("ga", "gensoup", "pbt", "tpe") else pytest.param(m, marks=pytest.mark.cluster)
        for m in STRATEGIES.names()
    ],
)
def test_same_seed_same_lineage_with_the_ray_and_the_local_executor(method, user_spec, tmp_path, ray_address):
    on_ray, uri_a = run(user_spec, tmp_path, "a", method=method, workers=2)
    local, uri_b = run(user_spec, tmp_path, "b", method=method, executor="local")
    a, b = individuals(uri_a, on_ray.search_run_id), individuals(uri_b, local.search_run_id)
    assert lineage(a) == lineage(b) and [r["fitness"] for r in a] == [r["fitness"] for r in b]


def test_a_function_passed_from_python_and_failures_that_do_not_stop_the_search(user_spec, tmp_path):
    calls = []

    def fit(config, trial):
        calls.append(trial.id)
        if config["x"] > 0.5:
            raise ValueError("boom")
        if config["x"] < -0.5:
            return float("nan")
        if config["y"] > 0.5:
            return {"something_else": 1.0}
        if config["y"] < -0.5:
            return {"loss": 1.0}, "not a state"
        return {"loss": config["x"] ** 2 + float(torch.rand(()))}  # torch's generator: seeded per trial

    result, uri = run(user_spec, tmp_path, "p", objective=fit, executor="local", generations=4)
    rows = individuals(uri, result.search_run_id)
    assert len(calls) == len(rows) == 16 and result.failed == sum(r["status"] == "failed" for r in rows) > 0
    errors = {
        MlflowClient(uri).get_run(r["run_id"]).data.tags.get("popplast.error", "").split("\n")[0]
        for r in rows
        if r["status"] == "failed"
    }
    known = (
        "ValueError: boom",
        "FloatingPointError: the objective's loss is nan",
        "KeyError: \"the objective returned no 'loss' metric",
        "TypeError: an objective's state is a mapping of tensors or arrays, got str",
    )
    assert errors and all(e.startswith(known) for e in errors), errors
    again, uri_again = run(user_spec, tmp_path, "q", objective=fit, executor="local", generations=4)
    assert [r["fitness"] for r in individuals(uri_again, again.search_run_id)] == [r["fitness"] for r in rows]


@pytest.mark.parametrize("method", ["ga", "gensoup"])
def test_a_users_objective_offers_the_hooks_the_cnn_trainer_has(method, user_spec, tmp_path):
    """`fit.prepare(spec)` runs in the driver before any evaluation, and a SpecError it raises refuses the
    search with nothing recorded; `fit.answer(result, state)` gets the best individual's trained state (an
    inheriting method's; None otherwise) and its metrics are the result's `answer_metrics`."""
    seen: list = []

    def fit(config, trial):
        seen.append("evaluate")
        return {"loss": config["x"] ** 2}, {"w": torch.tensor([config["x"]])}

    def prepare(spec):
        seen.append("prepare")
        if spec.strategy.seed == 99:
            raise SpecError(spec.source, "fixed.data", "the data set is not there.")

    def answer(result, state):
        seen.append(("answer", None if state is None else float(state["w"][0])))
        return {"answered": result.best_fitness}

    fit.prepare, fit.answer = prepare, answer
    with pytest.raises(SpecError, match="at fixed.data: the data set is not there"):
        run(user_spec, tmp_path, "refused", objective=fit, executor="local", method=method, seed=99)
    assert seen == ["prepare"] and not MlflowClient(f"sqlite:///{tmp_path}/refused.db").search_experiments(
        filter_string="name != 'Default'"
    )
    seen.clear()
    result, _ = run(user_spec, tmp_path, method, objective=fit, executor="local", method=method, generations=2)
    assert seen[0] == "prepare" and seen[1:-1] == ["evaluate"] * (len(seen) - 2)
    kind, state = seen[-1]
    assert kind == "answer"
    if method == "gensoup":  # the best individual's own trained state
        assert state == pytest.approx(result.best_config["x"], abs=1e-6)
    else:
        assert state is None
    assert result.answer_metrics == {"answered": result.best_fitness}
    assert "the objective's answer: answered" in result.summary()


@pytest.mark.parametrize(
    "line, expected",
    [
        ("objective: nosuchmodule:fit", "at objective: cannot import 'nosuchmodule'"),
        ("objective: userobj:nothere", "at objective: the module 'userobj'"),
        ("objective: userobj", "at objective: expected 'module:function'"),
    ],
)
def test_an_objective_that_cannot_be_found_is_a_clear_error(line, expected, user_spec, tmp_path, capsys):
    user_spec.write_text(user_spec.read_text().replace("objective: userobj:fit", line))
    code = main(["run", str(user_spec), "--executor", "local", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err


def test_tune_methods_and_retrain_are_refused_for_a_users_objective(user_spec, tmp_path):
    with pytest.raises(SpecError, match="--method: tune-pbt runs popplast's CNN trainer on Ray Tune"):
        run(user_spec, tmp_path, "r", method="tune-pbt")
    with pytest.raises(SpecError, match="--retrain: retraining rebuilds popplast's CNN"):
        run(user_spec, tmp_path, "r", executor="local", retrain=True)


def test_names_mlflow_refuses_fail_their_individual_and_the_search_ends_normally(user_spec, tmp_path):
    """A metric returned or reported, or a tag set, under a name MLflow refuses: that individual is FAILED in
    MLflow with the name in its error (MLflow would have refused its whole run), the others are logged."""

    def fit(config, trial):
        trial.report(1, distance=1.0)
        trial.set_tag("kept", "yes")
        if trial.id == "g000-i001":
            return {"loss": 1.0, "acc(%)": 0.5}
        if trial.id == "g001-i002":
            trial.report(1, **{"val loss?": 1.0})
        if trial.id == "g002-i003":
            trial.set_tag("note(1)", "mine")
        return {"loss": config["x"] ** 2}

    result, uri = run(user_spec, tmp_path, "names", objective=fit, executor="local")
    rows = {r["id"]: r for r in individuals(uri, result.search_run_id)}
    assert len(rows) == result.evaluations == 12 and result.failed == 3
    client = MlflowClient(uri)
    expected = {
        "g000-i001": "ValueError: the objective returned a metric named 'acc(%)', which MLflow refuses: names may",
        "g001-i002": "ValueError: the objective reported a metric named 'val loss?', which MLflow refuses",
        "g002-i003": "ValueError: the objective set a tag named 'note(1)', which MLflow refuses",
    }
    for individual, error in expected.items():
        row = rows[individual]
        assert row["mlflow_status"] == "FAILED" and row["status"] == "failed"
        run_ = client.get_run(row["run_id"])
        assert run_.data.tags["popplast.error"].startswith(error)
        assert run_.data.tags["popplast.kept"] == "yes"  # what MLflow takes of the failed run is logged
        assert [m.value for m in client.get_metric_history(row["run_id"], "distance")] == [1.0]
    assert all(r["mlflow_status"] == "FINISHED" for i, r in rows.items() if i not in expected)
    assert client.get_run(result.search_run_id).info.status == "FINISHED"


def test_a_value_that_is_no_number_is_told_by_its_type_and_a_short_excerpt():
    from popplast.core.individual import Individual
    from popplast.objectives.function import FunctionEvaluator
    from popplast.spec.fitness import FitnessSpec
    from popplast.spec.search import Fidelity

    def returns(value):
        evaluator = FunctionEvaluator(lambda config, trial: value, FitnessSpec("loss", "minimize"), Fidelity())
        result = evaluator.evaluate(Individual("g000-i000", (0.5,), 0), {"x": 0.5})
        return result.error.splitlines()[0]

    state = {"w": [0.25] * 100_000, "b": torch.zeros(1000)}
    line = returns({"loss": 1.0, "state": state})  # the state among the metrics
    assert line.startswith("TypeError: the objective returned state = dict {") and len(line) < 300
    assert line.endswith(
        "not a number; return metrics, state (the mapping of numbers first, then the mapping of tensors or arrays)"
    )
    line = returns(state)  # the state in the metrics' place
    assert line.startswith("TypeError: the objective returned w = list [0.25, ") and len(line) < 300
    line = returns({"loss": torch.ones(3)})
    assert "= Tensor tensor([1., 1., 1.]), not a number; a metric is one number (float(x), or x.item()" in line


def test_loading_an_objective_leaves_the_python_path_as_it_was(tmp_path):
    """Its folder is on the path while the module is imported, so what it imports beside it is found."""
    import sys

    from popplast.objectives.load import ObjectiveError, load_objective

    (tmp_path / "pathcheck_helper.py").write_text("SCALE = 2.0\n")
    (tmp_path / "pathcheck_obj.py").write_text(
        "from pathcheck_helper import SCALE\n\ndef fit(config, trial):\n    return SCALE * config['x']\n"
    )
    before = list(sys.path)
    try:
        assert load_objective("pathcheck_obj:fit", str(tmp_path))({"x": 1.5}, None) == 3.0
        assert sys.path == before
        with pytest.raises(ObjectiveError, match="cannot import 'pathcheck_missing'"):
            load_objective("pathcheck_missing:fit", str(tmp_path))
        assert sys.path == before
    finally:
        for name in ("pathcheck_obj", "pathcheck_helper"):
            sys.modules.pop(name, None)
