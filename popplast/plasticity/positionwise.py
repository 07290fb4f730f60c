"""The position-wise optimizer (paper 001; ALGORITHMS.md §5): nested block-coordinate descent by depth.

A model is a chain of K blocks, input to output. One step on a batch: a forward pass caches each block's
input; then for k = 1..K the top k blocks run forward from their cached input, the loss is backpropagated
through those k blocks only, and the wrapped optimizer steps on their parameters. Block l (1 = the input
block) is updated l times per batch and the output block K times; a batch costs K(K+1)/2 block-backwards
instead of K, so compare it by gradient evaluations and time, not by epochs alone.

Blocks (`blocks_of`):
- an `nn.Sequential` (nested ones flattened): every module with parameters starts a block, parameter-free
  modules (activations, pooling, flatten, dropout) belong to the block before them (those in front of the
  first parametrised module to the first block);
- torchvision ResNets: the stem (conv1, bn1, relu, maxpool), layer1..layer4, then avgpool + flatten + fc;
- torchvision models with `features` / `avgpool` / `classifier` (VGG, AlexNet): the blocks of `features`,
  then avgpool + flatten joined to the blocks of `classifier`;
- anything else: pass the blocks yourself, e.g. `PositionWise([stem, body, head], optimizer)`, where the
  model's forward is exactly `head(body(stem(x)))`.

Deviations from the paper: mini-batches as well as full batches, blocks instead of single layers, any torch
optimizer instead of plain gradient steps (with plain SGD and one layer per block it is the paper's method).
A parameter without a gradient in a step is skipped by torch's optimizers, so momentum and Adam moments
advance only for the blocks a step updates.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


class PositionWise:
    """Steps `optimizer` (over all the blocks' parameters) position-wise on the chain `blocks`.

    Attributes:
        block_backwards: block-backwards done so far (K(K+1)/2 per step), the unit of gradient work.
        updates: per block, how many optimizer steps changed it (block l: l per step).
    """

    def __init__(self, blocks: Sequence[nn.Module], optimizer: torch.optim.Optimizer) -> None:
        if not blocks:
            raise ValueError("position-wise training needs at least one block")
        self.blocks = list(blocks)
        self.optimizer = optimizer
        self.block_backwards = 0
        self.updates = [0] * len(self.blocks)

    def step(
        self, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """One position-wise step on the batch (x, y); returns the loss of the last (whole-model) pass."""
        inputs = [x]
        with torch.no_grad():
            for block in self.blocks[:-1]:
                inputs.append(block(inputs[-1]))
        depth = len(self.blocks)
        loss = torch.tensor(float("nan"))
        for k in range(1, depth + 1):
            first = depth - k
            self.optimizer.zero_grad(set_to_none=True)
            out = inputs[first]
            for block in self.blocks[first:]:
                out = block(out)
            loss = loss_fn(out, y)
            loss.backward()
            self.optimizer.step()
            self.block_backwards += k
            for i in range(first, depth):
                self.updates[i] += 1
        return loss.detach()


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The chain of blocks of a model whose forward is a chain (see the module docstring)."""
    if isinstance(model, nn.Sequential):
        return _sequential_blocks(_flatten(model))
    names = {name for name, _ in model.named_children()}
    if {"conv1", "bn1", "relu", "maxpool", "layer1", "layer4", "avgpool", "fc"} <= names:  # torchvision ResNet
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        layers = [getattr(model, f"layer{i}") for i in range(1, 5)]
        return [stem, *layers, nn.Sequential(model.avgpool, nn.Flatten(), model.fc)]
    if (
        {"features", "avgpool", "classifier"} <= names
        and isinstance(model.features, nn.Sequential)
        and isinstance(model.classifier, nn.Sequential)
    ):  # torchvision VGG, AlexNet
        head = _sequential_blocks([model.avgpool, nn.Flatten(), *_flatten(model.classifier)])
        return _sequential_blocks(_flatten(model.features)) + head
    raise ValueError(
        f"position-wise training cannot split a {type(model).__name__} into a chain of blocks: its "
        "forward is not a plain chain. Pass the blocks yourself, PositionWise([block, ...], optimizer)."
    )


def _flatten(seq: nn.Sequential) -> list[nn.Module]:
    out: list[nn.Module] = []
    for module in seq:
        out += _flatten(module) if isinstance(module, nn.Sequential) else [module]
    return out


def _sequential_blocks(modules: list[nn.Module]) -> list[nn.Module]:
    groups: list[list[nn.Module]] = []
    for module in modules:
        if any(True for _ in module.parameters()) or not groups:
            groups.append([module])
        else:
            groups[-1].append(module)
    if len(groups) > 1 and not any(True for m in groups[0] for _ in m.parameters()):
        groups[1] = groups[0] + groups[1]  # parameter-free modules in front join the first real block
        groups.pop(0)
    return [g[0] if len(g) == 1 else nn.Sequential(*g) for g in groups]
