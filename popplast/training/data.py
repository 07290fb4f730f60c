"""Data sets and the one split every individual shares.

Every data set is split 60/20/20 (train/validation/test), stratified by class, with `dataset.split_seed`,
as in the thesis (§3.4.1); torchvision data sets are their train and test parts pooled first, so that all
sources are split the same way. A loaded split is cached per process: a Ray worker loads it once.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset

from popplast.spec.search import DatasetSpec

BUILTIN_DATASETS = ("digits", "imagefolder")


class DataUnavailable(RuntimeError):
    """The data set named in the spec cannot be loaded; the message says why and what to do."""


@dataclass
class SplitData:
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    channels: int


def torchvision_dataset_names() -> dict[str, str]:
    """Lower-case name → class name of the torchvision data sets popplast can pool (those with `train=`)."""
    import torchvision.datasets as tvd

    names = {}
    for name in tvd.__all__:
        cls = getattr(tvd, name, None)
        if inspect.isclass(cls) and "train" in inspect.signature(cls.__init__).parameters:
            names[name.lower()] = name
    return names


def native_channels(spec: DatasetSpec) -> int:
    """Channels of the data as stored: 1 for digits and grayscale torchvision sets, else 3."""
    if spec.name == "digits":
        return 1
    if spec.name == "imagefolder":
        return 3
    raw = _torchvision_parts(spec, transform=None)[0]
    image = raw[0][0]
    return 1 if getattr(image, "mode", "RGB") in ("L", "1", "I", "F") else 3


@functools.lru_cache(maxsize=4)
def load_split(spec: DatasetSpec, image_size: int, channels: int, max_train_samples: int | None) -> SplitData:
    if spec.name == "digits":
        full, labels = _digits(image_size, channels)
    else:
        full, labels = _image_dataset(spec, image_size, channels)
    num_classes = int(labels.max()) + 1
    train_idx, val_idx, test_idx = split_indices(labels, spec.split_seed)
    if max_train_samples is not None and max_train_samples < len(train_idx):
        train_idx = _subsample(train_idx, labels, max_train_samples, spec.split_seed)
    if isinstance(full, TensorDataset):
        x, y = full.tensors
        parts = [TensorDataset(x[i], y[i]) for i in (train_idx, val_idx, test_idx)]
    else:
        parts = [Subset(full, i.tolist()) for i in (train_idx, val_idx, test_idx)]
    return SplitData(*parts, num_classes=num_classes, channels=channels)


def split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 60/20/20 split of range(len(labels)) fixed by `seed`."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=0.2, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=0.25, stratify=labels[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


def _subsample(index: np.ndarray, labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    stratify = labels[index] if size >= len(np.unique(labels[index])) else None
    kept, _ = train_test_split(index, train_size=size, stratify=stratify, random_state=seed)
    return np.sort(kept)


def _digits(image_size: int, channels: int) -> tuple[TensorDataset, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.5
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    labels = digits.target.astype(np.int64)
    return TensorDataset(x, torch.from_numpy(labels)), labels


def _transform(image_size: int, channels: int):
    from torchvision import transforms

    colour = transforms.Grayscale(1) if channels == 1 else transforms.Lambda(lambda im: im.convert("RGB"))
    return transforms.Compose(
        [
            colour,
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * channels, [0.5] * channels),
        ]
    )


def _image_dataset(spec: DatasetSpec, image_size: int, channels: int) -> tuple[Dataset, np.ndarray]:
    transform = _transform(image_size, channels)
    if spec.name == "imagefolder":
        from torchvision.datasets import ImageFolder

        try:
            folder = ImageFolder(spec.path, transform=transform)
        except (FileNotFoundError, OSError) as e:
            raise DataUnavailable(f"cannot read the image folder {spec.path}: {e}") from None
        if len(folder.classes) < 2:
            raise DataUnavailable(
                f"the image folder {spec.path} has {len(folder.classes)} class folder(s); expected at least 2."
            )
        return folder, np.asarray(folder.targets, dtype=np.int64)
    parts = _torchvision_parts(spec, transform)
    labels = np.concatenate([np.asarray(p.targets, dtype=np.int64) for p in parts])
    return ConcatDataset(parts), labels


def _torchvision_parts(spec: DatasetSpec, transform) -> list[Dataset]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, torchvision_dataset_names()[spec.name.lower()])
    try:
        return [cls(spec.root, train=train, download=spec.download, transform=transform) for train in (True, False)]
    except Exception as e:  # torchvision raises RuntimeError when missing, URLError when offline
        hint = (
            ""
            if spec.download
            else " Set dataset.download: true on a machine with internet access, or copy the data there."
        )
        raise DataUnavailable(
            f"the torchvision data set {cls.__name__} could not be loaded from {spec.root} "
            f"({type(e).__name__}: {e}).{hint}"
        ) from None


def batches(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches; in-memory tensors are sliced directly, which is much faster than a DataLoader."""
    if isinstance(dataset, TensorDataset):
        x, y = dataset.tensors
        order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
        return
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0)
