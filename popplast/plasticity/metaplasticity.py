"""Metaplastic weight updates for convolutions (paper 000; ALGORITHMS.md §4).

Each input pattern of a conv layer, one sample at one position, gets a weight from the layer's
pre-activation x there (the vector over output channels): the weighting function of Andina's AMMLP is
f*(x) = A / ((2π)^{N/2} exp(B Σ x²)) and the weight gradient is multiplied by 1/f*(x) per pattern (eq. 17),
so rare, strongly activated patterns teach more. The deltas passed to earlier layers are not scaled.

Computed in log space and normalised per batch: log w = B·mean_z(x_z²) − log A, then w = exp(log w) divided
by its mean over the batch's patterns, so the mean weight is 1. Without the normalisation exp overflows for
conv-sized N, and with it the constants (2π)^{N/2} and A (= 1) drop out.

Deviations from the paper: the mean over channels instead of the sum (the sum only rescales B); the bias
gradient is weighted like the kernel's (a bias is a weight whose input is 1); B = 0 runs the plain
convolution, so it is plain training exactly, bit for bit; padding modes other than zeros are not supported.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def pattern_weights(output: torch.Tensor, b: float) -> torch.Tensor:
    """w (n, 1, h, w) for a conv output (n, c, h, w): exp(B·mean_c(x²)), normalised to mean 1 over the batch."""
    score = b * output.detach().float().pow(2).mean(dim=1, keepdim=True)
    w = torch.exp(score - score.max())
    return (w / w.mean()).to(output.dtype)


class _MetaplasticConv(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        b: float,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
    ) -> torch.Tensor:
        out = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, pattern_weights(out, b))
        ctx.conv = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # the deltas for earlier layers: unscaled
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, stride, padding, dilation, groups)
        scaled = grad * w
        if ctx.needs_input_grad[1]:
            grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, scaled, stride, padding, dilation, groups)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = scaled.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None


def metaplastic_conv2d(conv: nn.Conv2d, x: torch.Tensor, b: float) -> torch.Tensor:
    """`conv(x)`, with the weight gradient of each pattern scaled as above (plain `conv(x)` for B = 0)."""
    if b == 0 or not torch.is_grad_enabled():
        return conv._conv_forward(x, conv.weight, conv.bias)
    if conv.padding_mode != "zeros":
        raise ValueError(f"metaplasticity supports zero padding only; this Conv2d pads with {conv.padding_mode!r}")
    padding = conv.padding
    if isinstance(padding, str):  # 'same' / 'valid': the explicit amounts conv2d_input and conv2d_weight need
        total = [conv.dilation[i] * (conv.kernel_size[i] - 1) if padding == "same" else 0 for i in range(2)]
        if any(t % 2 for t in total):
            raise ValueError("metaplasticity does not support padding='same' with an even kernel (uneven padding)")
        padding = tuple(t // 2 for t in total)
    return _MetaplasticConv.apply(x, conv.weight, conv.bias, float(b), conv.stride, padding, conv.dilation, conv.groups)


class Metaplasticity:
    """Metaplastic updates on every Conv2d of any model, while attached.

    with Metaplasticity(model, b=0.5):
        train(model, ...)
    """

    def __init__(self, model: nn.Module, b: float) -> None:
        if not b >= 0:
            raise ValueError(f"metaplasticity needs B >= 0, got {b}")
        self.model, self.b = model, float(b)
        self.convs = [m for m in model.modules() if type(m) is nn.Conv2d]

    def __enter__(self) -> "Metaplasticity":
        if self.b == 0:  # plain training: nothing to change
            return self
        for conv in self.convs:  # an instance attribute shadows Conv2d.forward until __exit__
            conv.forward = lambda x, conv=conv: metaplastic_conv2d(conv, x, self.b)
        return self

    def __exit__(self, *exc: Any) -> None:
        for conv in self.convs:
            conv.__dict__.pop("forward", None)
