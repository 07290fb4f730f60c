"""The plasticity mechanisms as genes: the shipped search-space files check, and a search runs them."""

from __future__ import annotations

import glob
import os

import pytest

import popplast
from popplast.core.individual import Individual
from popplast.objectives.cnn import cnn_evaluator
from popplast.spec.search import DatasetSpec, Fidelity, SearchSpec
from popplast.training.config import check_spec
from tests.helpers import individuals

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shipped_search_space_files_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "source_digits0-4.pt").touch()  # digits_transfer_ndhtl.yaml's checkpoint, made by a command
    checked = []
    for path in sorted(glob.glob(os.path.join(ROOT, "search_spaces", "*.yaml"))):
        name = os.path.basename(path)
        if name in ("rules_classification.yaml", "gencnn_thesis.yaml"):  # a rules file; a user's image folder
            continue
        spec = SearchSpec.from_yaml(path)
        if spec.objective is not None:  # its own objective's genes (noisy_digits.yaml): not the CNN trainer's
            continue
        check_spec(spec)
        checked.append(name)
    assert {
        "digits_metaplastic.yaml",
        "digits_positionwise.yaml",
        "digits_transfer_ndhtl.yaml",
        "digits_gencnn.yaml",
    } <= set(checked)


@pytest.mark.parametrize(
    "config",
    [
        {"optimizer": "sgd_nesterov", "metaplastic_b": 1.0},
        {"optimizer": "positionwise_sgd"},
        {"optimizer": "positionwise_adam"},
    ],
)
def test_each_mechanism_trains_through_the_evaluator(config):
    evaluator = cnn_evaluator(
        DatasetSpec("digits"), Fidelity(image_size=8, epochs=1, batch_size=64, max_train_samples=200), threads=1
    )
    individual = Individual("g000-i000", (), 0, seed=3)
    result = evaluator.evaluate(individual, {"architecture": "lenet5", **config})
    plain = evaluator.evaluate(
        individual,
        {
            "architecture": "lenet5",
            "optimizer": config["optimizer"].replace("positionwise_", ""),
            **({"metaplastic_b": 0.0} if "metaplastic_b" in config else {}),
        },
    )
    assert result.ok and plain.ok, (result.error, plain.error)
    assert result.tags["trained_weights_hash"] != plain.tags["trained_weights_hash"]  # the mechanism acted
    assert result.tags["initial_weights_hash"] == plain.tags["initial_weights_hash"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, gene", [("digits_metaplastic.yaml", "metaplastic_b"), ("digits_positionwise.yaml", "optimizer")]
)
def test_a_ga_search_over_the_mechanism(name, gene, tracking_uri):
    result = popplast.run(
        os.path.join(ROOT, "search_spaces", name),
        population=4,
        generations=1,
        epochs=1,
        image_size=8,
        executor="local",
        tracking_uri=tracking_uri,
        progress=False,
    )
    rows = individuals(tracking_uri, result.search_run_id)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert f"gene.{gene}" in rows[0]["genes"]
