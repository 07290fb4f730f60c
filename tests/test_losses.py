"""Each loss against its closed form, computed by hand in numpy (ALGORITHMS.md §1)."""

import numpy as np
import pytest
import torch

from popplast.training.losses import LOSSES

Z = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0]])
Y = np.array([0, 2])
K = 3


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def ce(z, y):
    return -log_softmax(z)[np.arange(len(y)), y].mean()


CLOSED_FORM = {
    "cross_entropy": lambda z, y: ce(z, y),
    "label_smoothing": lambda z, y: -(((1 - 0.1) * np.eye(K)[y] + 0.1 / K) * log_softmax(z)).sum(axis=1).mean(),
    "logit_penalty": lambda z, y: ce(z, y) + 4e-4 * (z**2).sum(axis=1).mean(),
    "logit_norm": lambda z, y: ce(z / (0.04 * np.linalg.norm(z, axis=1, keepdims=True)), y),
    "sigmoid_ce": lambda z, y: (np.log1p(np.exp(z)).sum(axis=1) - z[np.arange(len(y)), y]).mean(),
}


def test_every_registered_loss_has_a_closed_form_here():
    assert set(LOSSES.names()) == set(CLOSED_FORM)


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
def test_loss_matches_closed_form(name):
    got = LOSSES[name](torch.tensor(Z, dtype=torch.float64), torch.tensor(Y))
    # logit_norm adds 1e-7 to ‖z‖ so that zero logits stay finite: hence 1e-6, not machine precision
    assert float(got) == pytest.approx(CLOSED_FORM[name](Z, Y), rel=1e-6)


def test_logit_penalty_uses_each_samples_own_logits():
    """The original code penalised the first sample's logits for all; here the second sample's count too."""
    z = torch.tensor(Z)
    y = torch.tensor(Y)
    bigger = z.clone()
    bigger[1] *= 10
    difference = LOSSES["logit_penalty"](bigger, y) - LOSSES["cross_entropy"](bigger, y)
    assert float(difference) == pytest.approx(4e-4 * (bigger**2).sum(dim=1).mean().item())


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
def test_losses_have_finite_gradients_at_zero_logits(name):
    z = torch.zeros(2, 3, requires_grad=True)
    LOSSES[name](z, torch.tensor([0, 1])).backward()
    assert torch.isfinite(z.grad).all()
