"""The position-wise optimizer (paper 001) on tiny models, against hand computation and plain SGD."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from popplast.plasticity.positionwise import PositionWise, blocks_of


def _mse(out, target):
    return 0.5 * (out - target).pow(2).sum()


def test_block_l_is_updated_l_times_per_step():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 2))
    blocks = blocks_of(model)
    assert len(blocks) == 3 and isinstance(blocks[0][1], nn.ReLU) and isinstance(blocks[2], nn.Linear)
    stepper = PositionWise(blocks, torch.optim.SGD(model.parameters(), lr=0.1))
    for _ in range(2):
        stepper.step(torch.randn(6, 4), torch.randint(0, 2, (6,)), nn.functional.cross_entropy)
    assert stepper.updates == [2, 4, 6] and stepper.block_backwards == 2 * (1 + 2 + 3)


def test_one_layer_is_plain_gradient_descent():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    stepper = PositionWise([a], torch.optim.SGD(a.parameters(), lr=0.05))
    plain = torch.optim.SGD(b.parameters(), lr=0.05)
    for _ in range(3):
        stepper.step(x, y, _mse)
        plain.zero_grad()
        _mse(b(x), y).backward()
        plain.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_two_scalar_layers_by_hand():
    # out = w2·(w1·x), loss = (out − t)²/2, x = 1, t = 0, w1 = 2, w2 = 3, lr = 0.1
    w1, w2 = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        w1.weight.fill_(2.0)
        w2.weight.fill_(3.0)
    stepper = PositionWise([w1, w2], torch.optim.SGD([*w1.parameters(), *w2.parameters()], lr=0.1))
    stepper.step(torch.ones(1, 1), torch.zeros(1, 1), _mse)
    # k = 1: h = 2 cached; d/dw2 = (3·2)·2 = 12 → w2 = 3 − 1.2 = 1.8
    # k = 2: out = 1.8·2 = 3.6; d/dw2 = 3.6·2 = 7.2 → w2 = 1.08; d/dw1 = 3.6·1.8·1 = 6.48 → w1 = 2 − 0.648
    assert w2.weight.item() == pytest.approx(1.08)
    assert w1.weight.item() == pytest.approx(1.352)


def _chained(blocks, x):
    for block in blocks:
        x = block(x)
    return x


def test_torchvision_resnet_blocks_chain_to_the_model():
    model = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    blocks = blocks_of(model)
    assert len(blocks) == 6
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(_chained(blocks, x), model(x), atol=1e-6)


class _VGGLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        )
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_features_classifier_models_and_a_clear_error_otherwise():
    model = _VGGLike()
    blocks = blocks_of(model)
    assert len(blocks) == 4
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(_chained(blocks, x), model(x))
    with pytest.raises(ValueError, match="cannot split a LSTM into a chain of blocks"):
        blocks_of(nn.LSTM(2, 2))
