"""Artificial astrocytes (García Aguirre 2024, thesis ch. 4, Algorithm 3; ALGORITHMS.md §2).

Every Conv2d gets one counter per output channel. On each training forward pass, with gradients off,
x = conv(input) (before BN and activation) and
    counter "tanh_max" (Algorithm 3, the default):       A += spatial-max(tanh(Σ_batch x))
    counter "nonzero_fraction" (the thesis' text):       A += fraction of positive outputs of the channel
After NG passes: W_j ← Str·W_j where A_j > AS, W_j ← Weak·W_j where A_j < −AS (bias untouched); then A and
the pass count are reset.

Deviations: the published code never changed a weight (it rebound a loop variable); here the weights
change in place. They change after the optimizer's step, not inside the forward pass ("between
optimization steps", as the thesis says): a conv layer keeps its weight for the backward pass, and changing
it in between would make autograd refuse the backward. "Non-zero" in the text variant is read as positive
(non-zero after a ReLU), since a conv output before its activation is almost never exactly zero; with it
A is never below −AS, so only Str acts. With BatchNorm after the conv, a positive rescaling of a filter is
cancelled in the forward pass (BN normalises it away); its effect is then only on the optimisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

COUNTERS = ("tanh_max", "nonzero_fraction")


@dataclass
class _Layer:
    conv: nn.Conv2d
    counter: torch.Tensor
    passes: int = 0
    pending: torch.Tensor | None = None  # per-channel factors, applied after the next optimizer step


class Astrocytes:
    """Attach astrocytes to every Conv2d of `model`; `attach(optimizer)` applies their modulation after
    each optimizer step. Use `remove()` to detach them."""

    def __init__(
        self,
        model: nn.Module,
        strong: float = 1.0,
        weak: float = 1.0,
        ng: int = 4,
        sensitivity: float = 2.0,
        counter: str = "tanh_max",
    ) -> None:
        if counter not in COUNTERS:
            raise ValueError(f"unknown astrocyte counter {counter!r}; expected one of {COUNTERS}")
        if ng < 1:
            raise ValueError(f"NG must be at least 1, got {ng}")
        self.strong, self.weak, self.ng, self.sensitivity, self.counter = strong, weak, ng, sensitivity, counter
        self.layers: list[_Layer] = []
        self._handles = []
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                layer = _Layer(module, torch.zeros(module.out_channels, device=module.weight.device))
                self.layers.append(layer)
                self._handles.append(module.register_forward_hook(self._hook(layer)))
        self.modulations = 0  # channel scalings applied so far, for the record

    def _hook(self, layer: _Layer):
        def record(module: nn.Conv2d, inputs, output: torch.Tensor) -> None:
            if not module.training:
                return
            with torch.no_grad():
                if self.counter == "tanh_max":
                    layer.counter += torch.tanh(output.sum(dim=0)).amax(dim=(-2, -1))
                else:
                    layer.counter += (output > 0).float().mean(dim=(0, 2, 3))
                layer.passes += 1
                if layer.passes >= self.ng:
                    ones = torch.ones_like(layer.counter)
                    factor = torch.where(layer.counter > self.sensitivity, self.strong * ones, ones)
                    factor = torch.where(layer.counter < -self.sensitivity, self.weak * ones, factor)
                    layer.pending = factor if layer.pending is None else layer.pending * factor
                    layer.counter.zero_()
                    layer.passes = 0

        return record

    def apply_pending(self) -> None:
        """Scale the filters whose counters crossed ±AS; called after the optimizer's step."""
        with torch.no_grad():
            for layer in self.layers:
                if layer.pending is None:
                    continue
                changed = layer.pending != 1.0
                if changed.any():  # a factor of 1 leaves the weights bit-identical: skip the multiplication
                    layer.conv.weight[changed] *= layer.pending[changed].view(-1, 1, 1, 1).to(layer.conv.weight.dtype)
                    self.modulations += int(changed.sum())
                layer.pending = None

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        self._handles.append(optimizer.register_step_post_hook(lambda *args: self.apply_pending()))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
