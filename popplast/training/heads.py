"""The model of an evaluation when it transfers or uses a plastic head (paper 003, NDHTL as a search option).

`source_checkpoint` (a state dict saved with `torch.save(model.state_dict(), path)` from a model of the same
architecture) gives the backbone; its last Linear layer is dropped and a new head put in its place: a plain
linear one (`head: linear`, standard transfer learning) or the plastic NDHTL head (`head: ndhtl`, trained in
episodes of `ndhtl_episode` images, its traces reset per episode). Without a checkpoint, `head: ndhtl` puts
the plastic head on a freshly initialised network.
"""

from __future__ import annotations

import torch
from torch import nn

from popplast.plasticity.ndhtl import PlasticHead, seeded_linear
from popplast.training.config import TrainConfig
from popplast.training.models import build_model
from popplast.training.transfer import PlasticModel, split_head


def build_for(cfg: TrainConfig, channels: int, num_classes: int, generator: torch.Generator) -> nn.Module:
    """The model `cfg` asks for: the architecture as is, or with a source backbone and/or a new head."""
    if cfg.source_checkpoint is None and cfg.head == "linear":
        return build_model(cfg.architecture, channels, num_classes, cfg.pretrained)
    if cfg.source_checkpoint is None:
        model = build_model(cfg.architecture, channels, num_classes, cfg.pretrained)
    else:
        state = torch.load(cfg.source_checkpoint, map_location="cpu", weights_only=True)
        last = [v for v in state.values() if v.dim() == 2][-1]  # the final Linear's weight: (source classes, d)
        model = build_model(cfg.architecture, channels, last.shape[0])
        model.load_state_dict(state)
    backbone, features = split_head(model)
    if cfg.head == "ndhtl":
        return PlasticModel(
            backbone, PlasticHead(features, num_classes, cfg.ndhtl_clip, cfg.ndhtl_eta, generator), cfg.ndhtl_episode
        )
    return nn.Sequential(backbone, seeded_linear(features, num_classes, generator))
