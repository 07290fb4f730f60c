"""NDHTL: a neuromodulated Hebbian plastic output layer for transfer learning (paper 003; ALGORITHMS.md §6).

On features x (d) of a backbone, with C classes, at step t of an episode:

    logits = x (W + α ⊙ Hebb) + b,              y = softmax(logits)
    E    ← (1 − η) E + η xᵀy                     (eligibility trace, d × C)
    M     = tanh(w_M · y + b_M)                  (neuromodulator, a scalar)
    Hebb ← clamp(Hebb + M E, −c, c)              (c = 0.5)

Learned: W, the per-connection plasticity α (init 0.01·U[0, 1]), the scalar η (init 0.01), w_M, b_M (and the
backbone, fine-tuned). Hebb and E start at zero in every episode of K images; the loss of an episode is
backpropagated through its unrolled steps, one optimizer step per episode (N/K steps per epoch).

Deviations from the paper: episodes may be batched (B episodes side by side, each with its own traces), which
is B independent copies of the paper's batch-1 episodes; the paper's protocol is B = 1. W starts as a linear
layer does (PyTorch's default init), w_M and b_M at zero plus 0.01·N(0, 1) so that M starts near zero.
"""

from __future__ import annotations

import torch
from torch import nn


class PlasticHead(nn.Module):
    """The plastic layer; `forward(features)` takes one episode, (K, d), or a batch of them, (B, K, d), and
    returns the logits of every step, (K, C) or (B, K, C)."""

    def __init__(
        self,
        features: int,
        classes: int,
        clip: float = 0.5,
        eta: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not clip > 0:
            raise ValueError(f"the Hebbian clip must be > 0, got {clip}")
        linear = seeded_linear(features, classes, generator)
        self.w = nn.Parameter(linear.weight.detach().t().clone())  # (d, C)
        self.b = nn.Parameter(linear.bias.detach().clone())
        self.alpha = nn.Parameter(0.01 * torch.rand(features, classes, generator=generator))
        self.eta = nn.Parameter(torch.tensor(float(eta)))
        self.w_m = nn.Parameter(0.01 * torch.randn(classes, generator=generator))
        self.b_m = nn.Parameter(0.01 * torch.randn((), generator=generator))
        self.clip = float(clip)
        self.last_hebb: torch.Tensor | None = None  # the trace at the end of the last episode, for inspection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.dim() == 2
        if single:
            x = x.unsqueeze(0)
        batch, steps, d = x.shape
        hebb = x.new_zeros(batch, d, self.w.shape[1])
        trace = torch.zeros_like(hebb)
        logits = []
        for t in range(steps):
            xt = x[:, t]  # (B, d)
            out = torch.einsum("bd,bdc->bc", xt, self.w + self.alpha * hebb) + self.b
            y = torch.softmax(out, dim=1)
            trace = (1 - self.eta) * trace + self.eta * torch.einsum("bd,bc->bdc", xt, y)
            m = torch.tanh(y @ self.w_m + self.b_m)  # (B,)
            hebb = torch.clamp(hebb + m[:, None, None] * trace, -self.clip, self.clip)
            logits.append(out)
        self.last_hebb = hebb.detach()
        out = torch.stack(logits, dim=1)
        return out[0] if single else out


def seeded_linear(features: int, classes: int, generator: torch.Generator | None) -> nn.Linear:
    """nn.Linear with PyTorch's default init drawn from `generator` (the global RNG left untouched)."""
    if generator is None:
        return nn.Linear(features, classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator)))
        return nn.Linear(features, classes)
