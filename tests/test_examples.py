"""The examples users copy (examples/): each objective with its search file, end to end on a tiny budget."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

import popplast
from tests.helpers import individuals

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.slow


def copy(name: str, folder: Path) -> Path:
    """The example's folder as a user's copy of it: nothing found through the checkout."""
    return Path(shutil.copytree(EXAMPLES / name, folder / name))


def test_a_users_torch_model_inherits_trained_weights_with_gensoup(tmp_path, ray_address, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = copy("moons_mlp", tmp_path) / "moons_gensoup.yaml"
    uri = f"sqlite:///{tmp_path}/m.db"
    result = popplast.run(spec, generations=3, workers=2, tracking_uri=uri, progress=False)
    rows = individuals(uri, result.search_run_id)
    assert len(rows) == 24 and result.failed == 0
    operators = {r["operator"] for r in rows}
    assert {"init", "fusion", "elite"} <= operators
    client = MlflowClient(uri)
    best = client.get_run(result.best_run_id).data.metrics
    assert best["val_accuracy"] > 0.8 and result.best_fitness == pytest.approx(-best["val_loss"])
    later = [r for r in rows if r["generation"] == 2]  # trained 2 epochs on top of their parents' 4
    assert all("popplast.inherited_state_hash" in client.get_run(r["run_id"]).data.tags for r in later)


@pytest.mark.parametrize("method", ["tpe", "ga"])
def test_gradient_boosting_regression_is_searched_by_tpe_and_the_ga(method, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = copy("friedman_boosting", tmp_path) / "friedman_tpe.yaml"
    uri = f"sqlite:///{tmp_path}/m.db"
    result = popplast.run(
        spec,
        method=method,
        population=4,
        generations=2,
        executor="local",
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{tmp_path}/o.db",
        progress=False,
    )
    assert result.evaluations == 8 and result.failed == 0
    assert 0 < result.best_metrics["val_mse"] < 10 and result.best_metrics["val_r2"] > 0.5
    client = MlflowClient(uri)
    steps = sorted(m.step for m in client.get_metric_history(result.best_run_id, "val_mse"))
    assert steps[:2] == [25, 50] and steps[-1] == steps[-2]  # the curve, then the returned value at its end
    assert client.get_run(result.best_run_id).data.metrics["val_mse"] == result.best_metrics["val_mse"]
