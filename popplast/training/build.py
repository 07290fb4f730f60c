"""What one configuration trains and on which data: the one builder that evaluation, retraining and the
Gen-Soup answer share, so a model rebuilt to load trained weights has the shape those weights were made in."""

from __future__ import annotations

import os

import torch
from torch import nn

from popplast.spec.search import DatasetSpec, Fidelity
from popplast.training.config import TrainConfig
from popplast.training.data import SplitData, load_split
from popplast.training.heads import build_for
from popplast.training.models import input_channels
from popplast.training.transfer import classes_of, source_model


def split_for(dataset: DatasetSpec, cfg: TrainConfig, budget: Fidelity, native_channels: int) -> SplitData:
    """The split `cfg` trains on: the data set at the budget's image size, restricted to `cfg.classes`."""
    data = load_split(
        dataset, budget.image_size, input_channels(cfg.architecture, native_channels), budget.max_train_samples
    )
    return classes_of(data, cfg.classes) if cfg.classes is not None else data


def model_for(
    cfg: TrainConfig, native_channels: int, dataset_classes: int, generator: torch.Generator | None = None
) -> nn.Module:
    """The model `cfg` asks for (architecture, source backbone, head), with one output per class it trains on.

    `dataset_classes`: the classes of the whole data set; `cfg.classes`, when set, are the ones that count.
    """
    classes = len(cfg.classes) if cfg.classes is not None else dataset_classes
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return build_for(cfg, input_channels(cfg.architecture, native_channels), classes, generator)


def make_source(dataset: DatasetSpec, cfg: TrainConfig, image_size: int, native_channels: int) -> None:
    """Train the source backbone on `cfg.source_classes` (transfer.source_model, seed 0, at `image_size`) and
    save its state dict as `cfg.source_checkpoint`."""
    path = cfg.source_checkpoint
    if path is None or cfg.source_classes is None:
        raise ValueError("making a source backbone needs source_checkpoint and source_classes")
    channels = input_channels(cfg.architecture, native_channels)
    data = load_split(dataset, image_size, channels, None)
    model = source_model(cfg.architecture, data.train, cfg.source_classes, channels)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.part-{os.getpid()}"  # a search started beside this one never reads half a file
    torch.save(model.state_dict(), partial)
    os.replace(partial, path)
