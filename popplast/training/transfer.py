"""The transfer protocol of paper 003 (ALGORITHMS.md §6): a backbone trained on a source task, copied, and
fine-tuned on a target task with a plain linear head (STL) or with the plastic NDHTL head, at equal images seen.

STL trains with batch 1 (one optimizer step per image); NDHTL with episodes of K images (one step per
episode, backpropagated through the unrolled episode), as the paper does. A plastic head is measured in
episodes of K test images in a fixed order, its traces reset per episode: it adapts to what it sees, and it
never sees a label while it is measured.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import TensorDataset

from popplast.plasticity.ndhtl import PlasticHead, seeded_linear
from popplast.training.data import SplitData


def classes_of(data: SplitData, classes: Sequence[int]) -> SplitData:
    """The split restricted to `classes` (relabelled 0..len(classes)-1 in that order)."""
    if max(classes) >= data.num_classes:
        raise ValueError(f"classes {list(classes)}: the data set has classes 0..{data.num_classes - 1} only")
    return SplitData(
        class_subset(data.train, classes),
        class_subset(data.val, classes),
        class_subset(data.test, classes),
        num_classes=len(classes),
        channels=data.channels,
    )


def class_subset(dataset: TensorDataset, classes: Sequence[int]) -> TensorDataset:
    """The images of `classes`, relabelled 0..len(classes)-1 in that order."""
    if not isinstance(dataset, TensorDataset):
        raise ValueError(
            "choosing classes works for in-memory data sets (digits), not image folders or torchvision sets"
        )
    x, y = dataset.tensors
    keep = torch.isin(y, torch.tensor(list(classes)))
    relabel = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    relabel[torch.tensor(list(classes))] = torch.arange(len(classes))
    return TensorDataset(x[keep], relabel[y[keep]])


def split_head(model: nn.Sequential) -> tuple[nn.Sequential, int]:
    """(everything but the final Linear, the number of features it took)."""
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise ValueError(f"transfer needs a Sequential model ending in a Linear layer, got {type(model).__name__}")
    return model[:-1], model[-1].in_features


def source_model(
    architecture: str, train: TensorDataset, classes: Sequence[int], channels: int, seed: int = 0
) -> nn.Module:
    """The source task's model: `architecture` trained on `classes` of `train` (relabelled 0..n-1), 10 epochs
    of SGD with momentum 0.9, lr 0.01, batch 32, initialised and shuffled from `seed`."""
    from popplast.training.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(architecture, channels, len(classes))
    train_source(model, class_subset(train, classes), epochs=10, lr=0.01, generator=torch.Generator().manual_seed(seed))
    return model


def train_source(
    model: nn.Module, data: TensorDataset, epochs: int, lr: float, generator: torch.Generator, batch_size: int = 32
) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    x, y = data.tensors
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()


def finetune_linear(
    backbone: nn.Module,
    classes: int,
    features: int,
    data: TensorDataset,
    images: int,
    lr: float,
    generator: torch.Generator,
) -> nn.Module:
    """STL: a copy of the backbone with a new linear head, SGD with batch 1 for `images` images."""
    model = nn.Sequential(copy.deepcopy(backbone), seeded_linear(features, classes, generator))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for x, y in _stream(data, images, 1, generator):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


def finetune_ndhtl(
    backbone: nn.Module,
    classes: int,
    features: int,
    data: TensorDataset,
    images: int,
    lr: float,
    generator: torch.Generator,
    episode: int,
    clip: float = 0.5,
    eta: float = 0.01,
    plastic: bool = True,
) -> "PlasticModel":
    """NDHTL: a copy of the backbone with a plastic head, one SGD step per episode of `episode` images.

    `plastic=False` is the ablation: α fixed at 0, so the head is linear but trained on the same schedule."""
    head = PlasticHead(features, classes, clip, eta, generator=generator)
    if not plastic:
        head.alpha.data.zero_()
        head.alpha.requires_grad_(False)
    model = PlasticModel(copy.deepcopy(backbone), head, episode)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for x, y in _stream(data, images, episode, generator):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model.head(model.backbone(x)), y).backward()
        optimizer.step()
    return model


class PlasticModel(nn.Module):
    """A backbone and a plastic head; `forward` runs a batch as consecutive episodes of `episode` images."""

    def __init__(self, backbone: nn.Module, head: PlasticHead, episode: int) -> None:
        super().__init__()
        self.backbone, self.head, self.episode = backbone, head, episode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return torch.cat([self.head(features[i : i + self.episode]) for i in range(0, len(x), self.episode)])


@torch.no_grad()
def topk_accuracy(model: nn.Module, data: TensorDataset, ks: Sequence[int] = (1, 2)) -> dict[str, float]:
    model.eval()
    x, y = data.tensors
    logits = model(x)
    ranked = logits.topk(max(ks), dim=1).indices
    return {f"top{k}": float((ranked[:, :k] == y[:, None]).any(dim=1).float().mean()) for k in ks}


def _stream(data: TensorDataset, images: int, size: int, generator: torch.Generator):
    """`images` images in shuffled passes over `data`, in chunks of `size` (a chunk never spans two passes)."""
    x, y = data.tensors
    seen = 0
    while seen < images:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - size + 1, size):
            if seen >= images:
                return
            idx = order[start : start + size]
            seen += len(idx)
            yield x[idx], y[idx]
