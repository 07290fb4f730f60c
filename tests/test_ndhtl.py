"""The NDHTL plastic head (paper 003) on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from popplast.plasticity.ndhtl import PlasticHead


def _head(**kwargs) -> PlasticHead:
    return PlasticHead(4, 3, generator=torch.Generator().manual_seed(0), **kwargs)


def test_no_plasticity_or_no_modulation_is_a_linear_head():
    x = torch.randn(2, 5, 4)
    for zero in ("alpha", "modulator"):
        head = _head(eta=0.5)
        with torch.no_grad():
            if zero == "alpha":
                head.alpha.zero_()
            else:
                head.w_m.zero_()
                head.b_m.zero_()
        linear = x @ head.w + head.b
        assert torch.allclose(head(x), linear, atol=1e-6), zero
    assert float(head.last_hebb.abs().max()) == 0.0  # M = 0: the trace never moves


def test_one_step_by_hand_then_the_second_step_sees_the_trace():
    head = PlasticHead(1, 2, clip=0.5, eta=0.5)
    with torch.no_grad():
        head.w.copy_(torch.tensor([[1.0, -1.0]]))
        head.b.zero_()
        head.alpha.fill_(2.0)
        head.w_m.copy_(torch.tensor([1.0, 0.0]))
        head.b_m.zero_()
    out = head(torch.tensor([[1.0], [1.0]]))
    y1 = torch.softmax(torch.tensor([1.0, -1.0]), 0)
    e1 = 0.5 * y1  # (1 − η)·0 + η·x·y
    hebb = torch.clamp(torch.tanh(y1[0]) * e1, -0.5, 0.5)
    assert torch.allclose(out[0], torch.tensor([1.0, -1.0]))
    assert torch.allclose(out[1], torch.tensor([1.0, -1.0]) + 2.0 * hebb, atol=1e-6)


def test_the_hebbian_trace_stays_within_the_clip():
    head = _head(clip=0.3, eta=0.9)
    with torch.no_grad():
        head.b_m.fill_(5.0)  # M ≈ 1 at every step
    head(10 * torch.randn(3, 30, 4).abs())
    assert float(head.last_hebb.abs().max()) == pytest.approx(0.3)


def test_gradients_reach_alpha_eta_and_the_neuromodulator():
    head = _head()
    logits = head(torch.randn(1, 4, 4))
    torch.nn.functional.cross_entropy(logits.reshape(-1, 3), torch.tensor([0, 1, 2, 0])).backward()
    for name in ("w", "b", "alpha", "eta", "w_m", "b_m"):
        grad = getattr(head, name).grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
