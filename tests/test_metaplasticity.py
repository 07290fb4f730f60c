"""Metaplastic conv updates (paper 000) on tiny tensors, against hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from popplast.plasticity.metaplasticity import Metaplasticity, pattern_weights


def test_pattern_weights_by_hand():
    # one sample, two channels, two positions: x = (1, 1) at the first, (0, 0) at the second
    out = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    w = pattern_weights(out, b=math.log(3.0))  # exp(ln3·mean(x²)) = 3 and 1, mean 2
    assert torch.allclose(w.flatten(), torch.tensor([1.5, 0.5]))
    assert float(pattern_weights(torch.randn(4, 8, 5, 5) * 30, b=2.0).mean()) == pytest.approx(1.0, abs=1e-6)


def test_weight_gradient_by_hand_and_input_gradient_untouched():
    conv = nn.Conv2d(1, 1, 1, bias=True)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(0.0)
    x = torch.tensor([[[[1.0, 0.5]]]], requires_grad=True)  # pre-activations 2 and 1
    delta = torch.tensor([[[[1.0, 1.0]]]])
    b = 0.4
    s = torch.tensor([b * 4.0, b * 1.0])
    w = torch.exp(s) / torch.exp(s).mean()
    with Metaplasticity(conv, b):
        gx, gw, gb = torch.autograd.grad(conv(x), [x, conv.weight, conv.bias], delta)
    assert torch.allclose(gx, torch.tensor([[[[2.0, 2.0]]]]))  # W·δ, unscaled
    assert gw.item() == pytest.approx(float(w[0] * 1.0 * 1.0 + w[1] * 1.0 * 0.5))  # Σ_p w_p δ_p x_p
    assert gb.item() == pytest.approx(float(w.sum()))


def test_matches_explicitly_weighted_gradients_on_a_real_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 7, 7, requires_grad=True)
    delta = torch.randn(2, 4, 4, 4)
    plain = conv(x)
    (gx_plain,) = torch.autograd.grad(plain, x, delta)
    weighted = delta * pattern_weights(plain, 0.7)
    gw_ref, gb_ref = torch.autograd.grad(conv(x.detach()), [conv.weight, conv.bias], weighted)
    with Metaplasticity(conv, 0.7):
        out = conv(x)
        gx, gw, gb = torch.autograd.grad(out, [x, conv.weight, conv.bias], delta)
    assert torch.equal(out, plain)
    assert torch.allclose(gx, gx_plain, atol=1e-6)
    assert torch.allclose(gw, gw_ref, atol=1e-5) and torch.allclose(gb, gb_ref, atol=1e-5)
    assert "forward" not in conv.__dict__  # detached again


def _train(b: float) -> list[torch.Tensor]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 2, (8,))
    with Metaplasticity(model, b):
        for _ in range(5):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_b_zero_is_plain_training_exactly_and_b_positive_is_not():
    plain = _train(0.0)
    torch.manual_seed(1)
    reference = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 2, (8,))
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(plain, reference.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(_train(2.0), plain))


def test_negative_b_is_refused():
    with pytest.raises(ValueError, match="B >= 0"):
        Metaplasticity(nn.Conv2d(1, 1, 1), -0.1)
