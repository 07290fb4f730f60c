"""Every file in search_spaces/ runs as shipped, copied into a folder of its own (as a fresh clone would have
it): on a tiny budget, in this process; and the transfer file's model is rebuilt for --retrain with each head."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

import popplast
from popplast.cli.main import main
from popplast.search.evolve_rules import evolve_rules

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
NEEDS_A_GPU_AND_IMAGES = "gencnn_thesis.yaml"
RULES = "rules_classification.yaml"
TINY = dict(population=2, generations=1, epochs=1, executor="local", progress=False)

pytestmark = pytest.mark.slow


def copied(name: str, folder: Path) -> Path:
    """The file, and the objective module it names beside it (a user objective shipped with the file)."""
    objective = (yaml.safe_load((SPACES / name).read_text()) or {}).get("objective")
    if objective:
        module = objective.split(":")[0] + ".py"
        shutil.copy(SPACES / module, folder / module)
    return Path(shutil.copy(SPACES / name, folder / name))


@pytest.mark.parametrize(
    "name", sorted(p.name for p in SPACES.glob("*.yaml") if p.name not in (NEEDS_A_GPU_AND_IMAGES, RULES))
)
def test_every_search_file_runs_as_shipped(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path.parent)  # nothing may land in the working tree, and nothing may come from it
    path = copied(name, tmp_path)
    transfer = name == "digits_transfer_ndhtl.yaml"  # with progress: it says when it makes its source backbone
    result = popplast.run(path, tracking_uri=f"sqlite:///{tmp_path}/m.db", **{**TINY, "progress": transfer})
    assert result.evaluations == 2 and result.failed == 0, name
    if transfer:  # its source backbone was made beside it (not in the current directory), once
        made = tmp_path / "source_digits0-4.pt"
        assert (
            made.is_file()
            and "training the source backbone (lenet5 on classes [0, 1, 2, 3, 4])" in capsys.readouterr().err
        )
        stamp = os.stat(made).st_mtime_ns
        popplast.run(path, tracking_uri=f"sqlite:///{tmp_path}/m.db", **TINY)
        assert os.stat(made).st_mtime_ns == stamp


@pytest.mark.parametrize(
    "name, watched",
    [("noisy_digits.yaml", ("val_mcc",)), ("noisy_digits_budget.yaml", ("val_mcc", "params"))],
)
def test_the_benchmark_task_runs_on_a_tiny_budget_with_a_stopper(name, watched, tmp_path, monkeypatch):
    """search_spaces/noisy_digits.yaml (the benchmark where methods differ) and its two-objective form under a
    size budget, on Ray's stand-in, the local executor: the objective reports what the stopper watches every
    epoch (both objectives for MO-ASHA), ASHA stops some at epoch 1, and the budget file's front holds only
    networks within its parameter budget."""
    from mlflow import MlflowClient

    from tests.helpers import individuals

    monkeypatch.chdir(tmp_path.parent)
    path = copied(name, tmp_path)
    uri = f"sqlite:///{tmp_path}/m.db"
    result = popplast.run(
        path, tracking_uri=uri, **{**TINY, "population": 6, "generations": 2, "epochs": 3}, method="ga+asha"
    )
    rows = individuals(uri, result.search_run_id)
    assert result.failed == 0 and len(rows) == 12
    client = MlflowClient(uri)
    for row in rows:
        trained = 1 if row["status"] == "stopped" else 3
        for metric in watched:
            steps = {m.step for m in client.get_metric_history(row["run_id"], metric)}
            assert sorted(steps) == list(range(1, trained + 1))
    assert {r["status"] for r in rows} == {"ok", "stopped"}
    assert -1.0 <= result.best_fitness <= 1.0 and "test_mcc" in result.best_metrics
    if len(watched) > 1:
        assert result.front["members"] and all(m["objectives"]["params"] <= 5000 for m in result.front["members"])


def test_the_rules_file_runs_as_shipped(tmp_path):
    result = evolve_rules(
        copied(RULES, tmp_path),
        generations=1,
        population=4,
        executor="local",
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        progress=False,
    )
    assert len(result.rules) == 304


def test_the_thesis_file_stops_with_a_clear_message_without_its_images_or_weights(tmp_path, monkeypatch, capsys):
    path = copied(NEEDS_A_GPU_AND_IMAGES, tmp_path)
    uri = ["--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
    assert main(["run", str(path), *uri]) == 2
    assert (
        f"at dataset.path: expected an existing image folder, but {tmp_path / 'data' / 'images'}"
        in capsys.readouterr().err
    )
    for label in ("a", "b"):  # the folder the file names, relative to it; then the pretrained weights
        (tmp_path / "data" / "images" / label).mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache; offline, nothing to download
    assert main(["run", str(path), *uri]) == 2
    err = capsys.readouterr().err
    assert "at space.pretrained" in err or "at fixed.pretrained" in err or "at dataset" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("head", ["linear", "ndhtl"])
@pytest.mark.cluster  # two retrains of the shipped transfer files (18 s): the slow tier
def test_retrain_rebuilds_the_model_the_evaluation_trained(head, tmp_path):
    """--retrain with the transfer file: 5 target classes out of digits' 10 and, for ndhtl, the plastic head;
    the model rebuilt to hold the retrained weights must be the one the evaluation built."""
    spec = yaml.safe_load((SPACES / "digits_transfer_ndhtl.yaml").read_text())
    del spec["space"]["head"], spec["strategy"]["crossover"]["head"], spec["strategy"]["mutation"]["head"]
    spec["fixed"]["head"] = head
    path = tmp_path / f"transfer_{head}.yaml"
    path.write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{tmp_path}/m.db"
    result = popplast.run(path, tracking_uri=uri, retrain=True, **TINY)
    assert result.best_config["head"] == head and 0 <= result.retrain_metrics["test_accuracy"] <= 1
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(uri)
    model = mlflow.pytorch.load_model(result.model_uri)
    assert model(torch.zeros(4, 1, 16, 16)).shape == (4, 5)  # the five target classes
