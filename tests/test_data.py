"""The shared 60/20/20 split: stratified, fixed by the split seed; digits and image folders."""

import numpy as np
import pytest
from PIL import Image

from popplast.spec.search import DatasetSpec
from popplast.training.data import DataUnavailable, load_split, split_indices


def test_split_is_stratified_60_20_20_and_fixed_by_seed():
    labels = np.repeat(np.arange(5), 40)
    train, val, test = split_indices(labels, seed=0)
    assert (len(train), len(val), len(test)) == (120, 40, 40)
    assert set(train) | set(val) | set(test) == set(range(200))
    for part, size in ((train, 24), (val, 8), (test, 8)):
        assert np.bincount(labels[part]).tolist() == [size] * 5
    again = split_indices(labels, seed=0)
    other = split_indices(labels, seed=1)
    assert all((a == b).all() for a, b in zip((train, val, test), again))
    assert not (train == other[0]).all()


def test_digits_sizes_channels_and_cap():
    data = load_split(DatasetSpec("digits"), 12, 3, None)
    assert (len(data.train), len(data.val), len(data.test)) == (1077, 360, 360)
    x, _ = data.train[0]
    assert x.shape == (3, 12, 12) and data.num_classes == 10
    capped = load_split(DatasetSpec("digits"), 12, 1, 100)
    assert len(capped.train) == 100 and len(capped.val) == 360
    assert np.bincount(capped.train.tensors[1].numpy()).min() >= 9


def write_folder(root, classes=("cat", "dog"), per_class=10):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8) // (k + 1)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_image_folder(tmp_path):
    root = write_folder(tmp_path / "images")
    data = load_split(DatasetSpec("imagefolder", path=str(root)), 16, 3, None)
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
    x, y = data.val[0]
    assert x.shape == (3, 16, 16) and data.num_classes == 2


def test_image_folder_with_one_class_is_refused(tmp_path):
    root = write_folder(tmp_path / "images", classes=("only",))
    with pytest.raises(DataUnavailable, match="at least 2"):
        load_split(DatasetSpec("imagefolder", path=str(root)), 16, 3, None)


def test_missing_torchvision_data_set_explains_itself(tmp_path):
    with pytest.raises(DataUnavailable, match="CIFAR10 could not be loaded.*download: true"):
        load_split(DatasetSpec("cifar10", root=str(tmp_path)), 32, 3, None)
