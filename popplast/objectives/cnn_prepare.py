"""What `popplast run` checks and prepares in the driver before any worker starts, for popplast's CNN trainer:
the names against its tables, the data set, pretrained weights, and a source backbone the file says how to make."""

from __future__ import annotations

import os
from typing import Callable

from popplast.errors import SpecError
from popplast.spec.search import SearchSpec


def preflight(spec: SearchSpec, say: Callable[[str], None]) -> tuple[int, int]:
    """Check names, data and pretrained weights in the driver, before any worker starts; make a missing
    source backbone the file says how to train.

    Returns (native channels, number of classes) of the data.
    """
    from popplast.training.build import make_source
    from popplast.training.config import check_spec, pretrained_architectures, resolve
    from popplast.training.data import DataUnavailable, load_split, native_channels
    from popplast.training.models import PretrainedUnavailable, ensure_pretrained

    check_spec(spec)
    try:
        channels = native_channels(spec.dataset)
        split = load_split(spec.dataset, spec.fidelity.image_size, channels, spec.fidelity.max_train_samples)
    except DataUnavailable as e:
        raise SpecError(spec.source, "dataset", str(e)) from None
    try:
        ensure_pretrained(pretrained_architectures(spec))
    except PretrainedUnavailable as e:
        key = "space.pretrained" if "pretrained" in spec.space.names else "fixed.pretrained"
        raise SpecError(spec.source, key, str(e)) from None
    if "source_classes" in spec.fixed and "architecture" in spec.fixed:
        cfg = resolve({}, spec.fixed)
        if cfg.source_checkpoint is not None and not os.path.isfile(cfg.source_checkpoint):
            say(
                f"[popplast] training the source backbone ({cfg.architecture} on classes "
                f"{list(cfg.source_classes or ())}) into {cfg.source_checkpoint}",
            )
            make_source(spec.dataset, cfg, spec.fidelity.image_size, channels)
    elif "source_classes" in spec.fixed:
        raise SpecError(
            spec.source,
            "fixed.source_classes",
            "a source backbone is made for one architecture; fix the architecture (fixed.architecture).",
        )
    return channels, split.num_classes
