"""Optimizers of Gen-CNN's space with their base learning rates (thesis §3.3.1; ALGORITHMS.md §1).

Learning rate = lr_scale × base. Weight decay is passed to every optimizer that takes it (the thesis
code never passed it to Adam); Rprop and LBFGS take none, so for them it is added to the loss as the
L2 penalty (wd/2)·‖θ‖², which is what weight decay means for plain gradient steps. The positionwise_*
entries step their optimizer block by block, input block least, output block most (paper 001).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

from popplast.core.registry import Registry


@dataclass(frozen=True)
class OptimizerEntry:
    cls: type
    base_lr: float
    kwargs: dict[str, Any] = field(default_factory=dict)
    takes_weight_decay: bool = True
    needs_closure: bool = False
    position_wise: bool = False  # paper 001: stepped block by block (plasticity/positionwise.py)

    def build(self, params: Iterable[torch.nn.Parameter], lr_scale: float, weight_decay: float):
        extra = {"weight_decay": weight_decay} if self.takes_weight_decay else {}
        return self.cls(params, lr=lr_scale * self.base_lr, **self.kwargs, **extra)


OPTIMIZERS: Registry = Registry("optimizer")
for _name, _entry in {
    "adam": OptimizerEntry(torch.optim.Adam, 1e-3),
    "adamw": OptimizerEntry(torch.optim.AdamW, 1e-3),
    "adamax": OptimizerEntry(torch.optim.Adamax, 2e-3),
    "adagrad": OptimizerEntry(torch.optim.Adagrad, 1e-2),
    "asgd": OptimizerEntry(torch.optim.ASGD, 1e-2),
    "nadam": OptimizerEntry(torch.optim.NAdam, 2e-3),
    "radam": OptimizerEntry(torch.optim.RAdam, 1e-3),
    "rmsprop": OptimizerEntry(torch.optim.RMSprop, 1e-2),
    "rprop": OptimizerEntry(torch.optim.Rprop, 1e-2, takes_weight_decay=False),
    "sgd": OptimizerEntry(torch.optim.SGD, 1e-2, {"momentum": 0.9}),
    "sgd_nesterov": OptimizerEntry(torch.optim.SGD, 1e-2, {"momentum": 0.9, "nesterov": True}),  # paper 000
    "lbfgs": OptimizerEntry(torch.optim.LBFGS, 1.0, takes_weight_decay=False, needs_closure=True),
    "positionwise_sgd": OptimizerEntry(torch.optim.SGD, 1e-2, {"momentum": 0.9}, position_wise=True),
    "positionwise_adam": OptimizerEntry(torch.optim.Adam, 1e-3, position_wise=True),
}.items():
    OPTIMIZERS.register(_name)(_entry)
