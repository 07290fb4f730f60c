"""Artificial astrocytes: a planted activation pattern scales exactly the expected channels; Str = Weak = 1
is bit-identical to training without astrocytes."""

import pytest
import torch
from torch import nn

from popplast.plasticity.astrocytes import Astrocytes
from popplast.spec.search import DatasetSpec, Fidelity
from popplast.training.config import TrainConfig
from popplast.training.data import load_split
from popplast.training.models import build_model
from popplast.training.train import train


def planted_conv() -> nn.Conv2d:
    """1 input channel, 3 filters (1×1): channel 0 always strongly positive, 1 strongly negative, 2 zero."""
    conv = nn.Conv2d(1, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([5.0, -5.0, 0.0]).view(3, 1, 1, 1))
    return conv


def test_planted_pattern_scales_exactly_the_expected_channels():
    conv = planted_conv()
    astro = Astrocytes(conv, strong=1.5, weak=0.5, ng=3, sensitivity=2.0)
    x = torch.ones(4, 1, 2, 2)
    for _ in range(2):  # two passes: A = [2, −2, 0], not beyond ±AS yet
        conv(x)
        astro.apply_pending()
    assert conv.weight.view(-1).tolist() == [5.0, -5.0, 0.0]
    conv(x)  # third pass: A = [3, −3, 0] → channel 0 × Str, channel 1 × Weak, channel 2 untouched
    assert conv.weight.view(-1).tolist() == [5.0, -5.0, 0.0], "nothing changes before the optimizer step"
    astro.apply_pending()
    assert conv.weight.view(-1).tolist() == [7.5, -2.5, 0.0]
    assert astro.modulations == 2 and astro.layers[0].passes == 0 and astro.layers[0].counter.abs().sum() == 0


def test_no_counting_in_eval_mode_and_text_variant_counts_positive_fraction():
    conv = planted_conv().eval()
    astro = Astrocytes(conv, ng=1, counter="nonzero_fraction")
    conv(torch.ones(2, 1, 2, 2))
    assert astro.layers[0].passes == 0
    conv.train()
    conv(torch.ones(2, 1, 2, 2))
    assert astro.layers[0].pending is not None  # NG = 1: decided at once; fractions [1, 0, 0] stay within ±2
    assert astro.layers[0].pending.tolist() == [1.0, 1.0, 1.0]


def test_with_an_optimizer_training_still_backpropagates():
    conv = planted_conv()
    optimizer = torch.optim.SGD(conv.parameters(), lr=0.0)
    astro = Astrocytes(conv, strong=2.0, weak=0.5, ng=1, sensitivity=0.5)
    astro.attach(optimizer)
    loss = conv(torch.ones(4, 1, 2, 2)).sum()
    loss.backward()  # the weights are still the ones the forward pass used
    optimizer.step()
    assert conv.weight.view(-1).tolist() == [10.0, -2.5, 0.0]


@pytest.mark.parametrize("architecture", ["lenet5", "small_vgg"])
def test_str_weak_one_is_bit_identical_to_no_astrocytes(architecture):
    data = load_split(DatasetSpec("digits"), 8, 1, 300)
    fidelity = Fidelity(image_size=8, epochs=2, batch_size=32)
    states = []
    for config in (TrainConfig(architecture), TrainConfig(architecture, astro_str=1.0, astro_weak=1.0, astro_as=0.0)):
        torch.manual_seed(0)
        model = build_model(architecture, 1, 10)
        train(model, config, data, fidelity, torch.device("cpu"), torch.Generator().manual_seed(0))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_astrocytes_change_training_when_str_is_not_one():
    data = load_split(DatasetSpec("digits"), 8, 1, 300)
    fidelity = Fidelity(image_size=8, epochs=1, batch_size=32)
    weights = []
    for config in (TrainConfig("lenet5"), TrainConfig("lenet5", astro_str=1.2, astro_weak=0.8, astro_as=0.0)):
        torch.manual_seed(0)
        model = build_model("lenet5", 1, 10)
        train(model, config, data, fidelity, torch.device("cpu"), torch.Generator().manual_seed(0))
        weights.append(model[0].weight.clone())
    assert not torch.equal(*weights)


def test_attaches_to_every_conv_of_a_torchvision_model():
    model = build_model("mobilenet_v3_small", 3, 5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    astro = Astrocytes(model, strong=1.1, weak=0.9, ng=1, sensitivity=0.0)
    model.train()
    model(torch.randn(2, 3, 32, 32))
    assert len(astro.layers) == len(convs) > 40
    assert all(layer.pending is not None for layer in astro.layers)
    astro.apply_pending()
    assert astro.modulations > 0
