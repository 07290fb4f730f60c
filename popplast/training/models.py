"""Models by name: small built-ins for CPU runs, and every torchvision classification builder.

Built-ins take the data's own channel count; torchvision models take 3 channels (1-channel data is
repeated), and their last Linear layer is replaced to output the data set's number of classes.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from popplast.core.registry import Registry

BUILTINS: Registry = Registry("architecture")


@BUILTINS.register("lenet5")
def lenet5(in_channels: int, num_classes: int) -> nn.Module:
    """LeNet-5 as in paper 000's experiments: two conv + average-pool stages, a flattening conv, two FC layers.

    The adaptive pool before the flattening conv lets any image size in (the original assumes 32×32).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),  # (6, H/2, W/2)
        nn.Conv2d(6, 16, 5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),  # (16, H/4, W/4)
        nn.AdaptiveAvgPool2d(5),  # (16, 5, 5)
        nn.Conv2d(16, 120, 5),
        nn.Tanh(),
        nn.Flatten(),  # (120,)
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )


@BUILTINS.register("small_vgg")
def small_vgg(in_channels: int, num_classes: int) -> nn.Module:
    """A VGG-style CNN: three blocks of conv-BN-ReLU ×2 + max-pool (16, 32, 64 channels), global pool, FC."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in (16, 32, 64):
        for _ in range(2):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, num_classes))


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def architecture_names() -> list[str]:
    return BUILTINS.names() + list(torchvision_names())


def input_channels(name: str, data_channels: int) -> int:
    """The channel count the model wants: the data's own for built-ins, 3 for torchvision models."""
    return data_channels if name in BUILTINS else 3


class PretrainedUnavailable(RuntimeError):
    pass


def build_model(name: str, in_channels: int, num_classes: int, pretrained: bool = False) -> nn.Module:
    if name in BUILTINS:
        if pretrained:
            raise ValueError(f"built-in architecture {name!r} has no pretrained weights; set pretrained: false")
        return BUILTINS[name](in_channels, num_classes)
    if name not in torchvision_names():
        raise KeyError(f"unknown architecture {name!r}")
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(name, num_classes=num_classes)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except Exception as e:  # urllib raises many types; all mean the same to the user
        raise PretrainedUnavailable(
            f"pretrained weights {weights} for {name!r} are not in the torch cache "
            f"({torch.hub.get_dir()}) and could not be downloaded ({type(e).__name__}: {e}). "
            "Download them on a machine with internet access and copy the cache over, or set pretrained: false."
        ) from None
    _replace_head(model, name, num_classes)
    return model


def _replace_head(model: nn.Module, name: str, num_classes: int) -> None:
    """Swap the last Linear layer for one with num_classes outputs."""
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name
    if last is None:
        raise ValueError(f"cannot adapt {name!r} to {num_classes} classes: it has no Linear classifier")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, nn.Linear(old.in_features, num_classes))


def ensure_pretrained(names: list[str]) -> None:
    """Fetch (or find cached) the weights of every architecture a search will build pretrained, before it starts."""
    for name in names:
        if name in BUILTINS:
            raise PretrainedUnavailable(
                f"the built-in architecture {name!r} has no pretrained weights; "
                "set pretrained: false or choose torchvision architectures."
            )
        build_model(name, 3, 2, pretrained=True)
