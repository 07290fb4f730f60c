"""Transfer with a plain or an NDHTL head (paper 003) as a search option: from a source checkpoint to a target
made of some classes of the data set."""

from __future__ import annotations

import pytest
import torch

import popplast
from popplast.errors import SpecError
from popplast.spec.search import DatasetSpec
from popplast.training.config import resolve
from popplast.training.data import load_split
from popplast.training.heads import build_for
from popplast.training.models import build_model
from popplast.training.transfer import PlasticModel, class_subset, train_source
from tests.helpers import individuals, write_spec

SPEC = """
dataset: {{name: digits, split_seed: 0}}
fidelity: {{image_size: 8, epochs: 1, batch_size: 32, max_train_samples: 400}}
strategy: {{method: ga, population: 4, generations: 1, seed: 3}}
fixed: {{architecture: lenet5, optimizer: sgd, source_checkpoint: {checkpoint}, classes: [5, 6, 7, 8, 9]}}
space:
  head: {{type: categorical, choices: [linear, ndhtl]}}
  ndhtl_eta: {{type: float, low: 0.001, high: 0.1, log: true}}
  ndhtl_episode: {{type: int, low: 4, high: 16}}
  ndhtl_clip: {{type: float, low: 0.1, high: 1.0}}
"""


@pytest.fixture
def source_checkpoint(tmp_path):
    """LeNet-5 trained briefly on digits 0-4."""
    data = load_split(DatasetSpec("digits"), 8, 1, None)
    torch.manual_seed(0)
    model = build_model("lenet5", 1, 5)
    train_source(
        model, class_subset(data.train, range(5)), epochs=1, lr=0.01, generator=torch.Generator().manual_seed(0)
    )
    path = tmp_path / "source.pt"
    torch.save(model.state_dict(), path)
    return path


def test_the_backbone_comes_from_the_checkpoint_and_the_head_is_new(source_checkpoint):
    state = torch.load(source_checkpoint, weights_only=True)
    generator = torch.Generator().manual_seed(1)
    for head in ("linear", "ndhtl"):
        cfg = resolve({"head": head}, {"architecture": "lenet5", "source_checkpoint": str(source_checkpoint)})
        model = build_for(cfg, 1, 5, generator)
        backbone = model.backbone if head == "ndhtl" else model[0]
        assert torch.equal(backbone[0].weight, state["0.weight"])  # the first conv, as trained on the source
        assert isinstance(model, PlasticModel) == (head == "ndhtl")
        assert model(torch.randn(12, 1, 8, 8)).shape == (12, 5)


@pytest.mark.slow
def test_a_transfer_search_over_the_head(source_checkpoint, tmp_path, tracking_uri):
    spec = write_spec(tmp_path, SPEC.format(checkpoint=source_checkpoint))
    result = popplast.run(spec, executor="local", tracking_uri=tracking_uri, progress=False)
    rows = individuals(tracking_uri, result.search_run_id)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert result.best_metrics["test_accuracy"] > 0.2  # five target classes: better than chance


@pytest.mark.parametrize(
    "change, expected",
    [
        (("source.pt", "nosuch.pt"), "fixed.source_checkpoint: expected the path of a state dict"),
        (("classes: [5, 6, 7, 8, 9]", "classes: [5]"), "fixed.classes: expected a list of at least two"),
        (("choices: [linear, ndhtl]", "choices: [linear, hebbian]"), "space.head.choices: unknown head 'hebbian'"),
    ],
)
def test_bad_transfer_settings(change, expected, source_checkpoint, tmp_path):
    spec = write_spec(tmp_path, SPEC.format(checkpoint=source_checkpoint).replace(*change))
    with pytest.raises(SpecError, match=expected):
        popplast.run(spec, executor="local", tracking_uri=f"sqlite:///{tmp_path}/m.db", progress=False)


def test_the_ablation_keeps_the_head_linear(source_checkpoint):
    from popplast.training.transfer import finetune_ndhtl, split_head

    data = load_split(DatasetSpec("digits"), 8, 1, None)
    model = build_model("lenet5", 1, 5)
    model.load_state_dict(torch.load(source_checkpoint, weights_only=True))
    backbone, features = split_head(model)
    target = class_subset(data.train, range(5, 10))
    for plastic in (True, False):
        tuned = finetune_ndhtl(
            backbone, 5, features, target, 40, 0.1, torch.Generator().manual_seed(0), episode=10, plastic=plastic
        )
        assert (float(tuned.head.alpha.detach().abs().sum()) == 0.0) == (not plastic)
