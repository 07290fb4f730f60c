"""The five losses of Gen-CNN's search space (thesis §3.3.1; ALGORITHMS.md §1).

z: logits (batch, K); y: integer labels; every loss is a batch mean. Deviation from the thesis code:
the logit penalty uses each sample's own logits (the original used the first sample's for all).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from popplast.core.registry import Registry

LOSSES: Registry = Registry("loss")

LABEL_SMOOTHING = 0.1  # α
LOGIT_PENALTY = 4e-4  # β
LOGIT_NORM_TAU = 0.04  # τ


@LOSSES.register("cross_entropy")
def cross_entropy(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(z, y)


@LOSSES.register("label_smoothing")
def label_smoothing(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # target = (1 − α)·one_hot + α/K
    return F.cross_entropy(z, y, label_smoothing=LABEL_SMOOTHING)


@LOSSES.register("logit_penalty")
def logit_penalty(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # CE + β‖z‖², per sample
    return F.cross_entropy(z, y) + LOGIT_PENALTY * z.pow(2).sum(dim=1).mean()


@LOSSES.register("logit_norm")
def logit_norm(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # CE on z / (τ‖z‖) (Wei et al. 2022); the epsilon keeps an all-zero logit vector finite
    norm = z.norm(dim=1, keepdim=True) + 1e-7
    return F.cross_entropy(z / (LOGIT_NORM_TAU * norm), y)


@LOSSES.register("sigmoid_ce")
def sigmoid_ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # −y·z + Σ_k log(1 + e^{z_k}), summed over classes
    onehot = F.one_hot(y, z.shape[1]).to(z.dtype)
    return (F.softplus(z).sum(dim=1) - (onehot * z).sum(dim=1)).mean()
