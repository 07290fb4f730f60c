"""The hyperparameters a CNN evaluation understands, and the check of a spec against them.

A spec names each hyperparameter either as a gene of `space` or as a constant in `fixed`; the rest
take the defaults below. Names and values are checked before any training starts.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from popplast.errors import SpecError
from popplast.plasticity.astrocytes import COUNTERS
from popplast.spec.search import SearchSpec
from popplast.training.data import BUILTIN_DATASETS, torchvision_dataset_names
from popplast.training.losses import LOSSES
from popplast.training.models import architecture_names
from popplast.training.optimizers import OPTIMIZERS


@dataclass(frozen=True)
class TrainConfig:
    architecture: str
    loss: str = "cross_entropy"
    optimizer: str = "adam"
    lr_scale: float = 1.0
    weight_decay: float = 0.0
    pretrained: bool = False
    batch_size: int | None = None  # None: the fidelity's batch size
    astro_str: float | None = None  # artificial astrocytes (thesis ch. 4): on when Str or Weak is set
    astro_weak: float | None = None
    astro_ng: int = 4
    astro_as: float = 2.0
    astro_counter: str = "tanh_max"
    bn_reestimate_batches: int = 0  # Gen-Soup: re-estimate BatchNorm statistics on this many batches after a fusion
    metaplastic_b: float = 0.0  # paper 000: B of the metaplastic conv updates; 0 is plain training
    head: str = "linear"  # paper 003: linear, or ndhtl (the plastic head, trained in episodes)
    ndhtl_eta: float = 0.01
    ndhtl_episode: int = 10  # K, images per episode (the batch size of an ndhtl head)
    ndhtl_clip: float = 0.5
    source_checkpoint: str | None = None  # transfer: the state dict of a model trained on a source task
    # when source_checkpoint is missing: train the architecture on these classes first and save it there
    source_classes: tuple[int, ...] | None = None
    classes: tuple[int, ...] | None = None  # train and measure on these classes of the data set only

    @property
    def astrocytes(self) -> bool:
        return self.astro_str is not None or self.astro_weak is not None

    @property
    def learning_rate(self) -> float:
        return self.lr_scale * OPTIMIZERS[self.optimizer].base_lr


def _names(known: Callable[[], list[str]], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        names = known()
        if value in names:
            return None
        shown = ", ".join(names if len(names) <= 20 else names[:20] + ["..."])
        return f"unknown {what} {value!r}; expected one of: {shown}."

    return check


def _number(low: float, strict: bool, integer: bool = False) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        kind = numbers.Integral if integer else numbers.Real
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"expected {'an integer' if integer else 'a number'}, got {value!r}."
        if value < low or (strict and value == low):
            return f"expected a value {'>' if strict else '>='} {low}, got {value!r}."
        return None

    return check


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}."


def _file(value: Any) -> str | None:
    if isinstance(value, str) and os.path.isfile(value):
        return None
    return (
        f"expected the path of a state dict saved with torch.save(model.state_dict(), path), but {value!r} is "
        "not a file here (a relative path is taken from the search file's folder); every worker node must "
        "see it too. To have popplast train it, name the source task's classes in fixed.source_classes."
    )


def _classes(value: Any) -> str | None:
    if (
        isinstance(value, (list, tuple))
        and len(value) >= 2
        and len(set(value)) == len(value)
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value)
    ):
        return None
    return f"expected a list of at least two distinct class indices (integers >= 0), got {value!r}."


# name → (gene types it may have (none: fixed only), value check)
HYPERPARAMETERS: dict[str, tuple[tuple[str, ...], Callable[[Any], str | None]]] = {
    "architecture": (("categorical",), _names(architecture_names, "architecture")),
    "loss": (("categorical",), _names(LOSSES.names, "loss")),
    "optimizer": (("categorical",), _names(OPTIMIZERS.names, "optimizer")),
    "lr_scale": (("float", "categorical"), _number(0.0, strict=True)),
    "weight_decay": (("float", "categorical"), _number(0.0, strict=False)),
    "pretrained": (("categorical",), _bool),
    "batch_size": (("int", "categorical"), _number(1, strict=False, integer=True)),
    "astro_str": (("float", "categorical"), _number(0.0, strict=False)),
    "astro_weak": (("float", "categorical"), _number(0.0, strict=False)),
    "astro_ng": (("int", "categorical"), _number(1, strict=False, integer=True)),
    "astro_as": (("float", "categorical"), _number(0.0, strict=False)),
    "astro_counter": (("categorical",), _names(lambda: list(COUNTERS), "astrocyte counter")),
    "bn_reestimate_batches": (("int", "categorical"), _number(0, strict=False, integer=True)),
    "metaplastic_b": (("float", "categorical"), _number(0.0, strict=False)),
    "head": (("categorical",), _names(lambda: ["linear", "ndhtl"], "head")),
    "ndhtl_eta": (("float", "categorical"), _number(0.0, strict=True)),
    "ndhtl_episode": (("int", "categorical"), _number(1, strict=False, integer=True)),
    "ndhtl_clip": (("float", "categorical"), _number(0.0, strict=True)),
    "source_checkpoint": ((), _file),
    "source_classes": ((), _classes),
    "classes": ((), _classes),
}


def check_spec(spec: SearchSpec) -> None:
    """Raise SpecError for an unknown data set, hyperparameter, or value; names file and key path."""
    src = spec.source
    name = spec.dataset.name
    if name not in BUILTIN_DATASETS and name.lower() not in torchvision_dataset_names():
        raise SpecError(
            src,
            "dataset.name",
            f"unknown data set {name!r}; expected digits, imagefolder, or a "
            f"torchvision data set such as {', '.join(sorted(torchvision_dataset_names())[:8])}.",
        )
    known = ", ".join(HYPERPARAMETERS)
    for gene in spec.space.genes:
        if gene.name not in HYPERPARAMETERS:
            raise SpecError(src, f"space.{gene.name}", f"unknown hyperparameter; expected one of: {known}.")
        types, check = HYPERPARAMETERS[gene.name]
        if not types:
            raise SpecError(src, f"space.{gene.name}", f"'{gene.name}' cannot be a gene; set it under fixed.")
        if gene.type not in types:
            raise SpecError(src, f"space.{gene.name}.type", f"expected {' or '.join(types)}, got {gene.type!r}.")
        values = list(gene.choices) if gene.type == "categorical" else [gene.low, gene.high]
        keys = ["choices"] * len(values) if gene.type == "categorical" else ["low", "high"]
        for key, value in zip(keys, values):
            if gene.type == "int":
                value = int(value)
            problem = check(value)
            if problem:
                raise SpecError(src, f"space.{gene.name}.{key}", problem)
    for key, value in spec.fixed.items():
        if key not in HYPERPARAMETERS:
            raise SpecError(src, f"fixed.{key}", f"unknown hyperparameter; expected one of: {known}.")
        if key == "source_checkpoint" and "source_classes" in spec.fixed and isinstance(value, str):
            continue  # made before the search starts when it is missing (training.build.make_source)
        problem = HYPERPARAMETERS[key][1](value)
        if problem:
            raise SpecError(src, f"fixed.{key}", problem)
    if "source_classes" in spec.fixed and "source_checkpoint" not in spec.fixed:
        raise SpecError(
            src,
            "fixed.source_classes",
            "source_classes says what a source backbone is trained on; "
            "name the file to keep it in as fixed.source_checkpoint.",
        )
    if "architecture" not in spec.space.names and "architecture" not in spec.fixed:
        raise SpecError(src, "space", "no architecture: add an 'architecture' gene to space or to fixed.")


def resolve(decoded: Mapping[str, Any], fixed: Mapping[str, Any]) -> TrainConfig:
    values = {**fixed, **decoded}
    for key in ("classes", "source_classes"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    return TrainConfig(**values)


def pretrained_architectures(spec: SearchSpec) -> list[str]:
    """Architectures a search may build with pretrained weights (to fetch them before it starts)."""
    pretrained = [spec.fixed.get("pretrained", False)]
    if "pretrained" in spec.space.names:
        pretrained = list(spec.space["pretrained"].choices)
    if not any(pretrained):
        return []
    if "architecture" in spec.space.names:
        return list(spec.space["architecture"].choices)
    return [spec.fixed["architecture"]]
