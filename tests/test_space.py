"""Gene decoding (ALGORITHMS.md §1) and encode/decode round trips."""

import math

import numpy as np
import pytest

from popplast.spec.space import Gene, SearchSpace


@pytest.mark.parametrize("g, expected", [(0.0, "a"), (0.3333, "a"), (0.3334, "b"), (0.9999, "c"), (1.0, "c")])
def test_categorical_uniform_bins(g, expected):
    assert Gene("x", "categorical", choices=("a", "b", "c")).decode(g) == expected


def test_float_linear_and_log():
    assert Gene("x", "float", 2.0, 6.0).decode(0.25) == pytest.approx(3.0)
    log = Gene("x", "float", 1e-4, 1.0, log=True)
    assert log.decode(0.0) == pytest.approx(1e-4)
    assert log.decode(0.5) == pytest.approx(1e-2)
    assert log.decode(1.0) == pytest.approx(1.0)


def test_int_uniform_bins_cover_every_value_equally():
    gene = Gene("n", "int", 1, 4)
    values = [gene.decode(g) for g in np.linspace(0, 1, 4001)]
    assert sorted(set(values)) == [1, 2, 3, 4]
    counts = np.bincount(values)[1:]
    assert counts.max() - counts.min() <= 2
    assert gene.decode(0.24) == 1 and gene.decode(0.26) == 2 and gene.decode(1.0) == 4


def test_int_log_bins():
    gene = Gene("n", "int", 1, 99, log=True)
    assert gene.decode(0.0) == 1 and gene.decode(1.0) == 99
    assert gene.decode(0.5) == math.floor(math.exp(0.5 * math.log(100)))


def test_decode_clips_out_of_range_genes():
    gene = Gene("x", "float", 0.0, 1.0)
    assert gene.decode(-0.5) == 0.0 and gene.decode(1.5) == 1.0


def test_encode_decode_round_trip():
    space = SearchSpace(
        (
            Gene("arch", "categorical", choices=("lenet5", "small_vgg", "resnet18")),
            Gene("lr", "float", 1e-5, 1.0, log=True),
            Gene("wd", "float", 0.0, 0.1),
            Gene("n", "int", 2, 9),
            Gene("m", "int", 1, 1000, log=True),
        )
    )
    for config in (
        {"arch": "resnet18", "lr": 3e-3, "wd": 0.05, "n": 9, "m": 1},
        {"arch": "lenet5", "lr": 1e-5, "wd": 0.0, "n": 2, "m": 1000},
        {"arch": "small_vgg", "lr": 0.5, "wd": 0.1, "n": 5, "m": 37},
    ):
        genome = space.encode(config)
        assert ((0 <= genome) & (genome <= 1)).all()
        decoded = space.decode(genome)
        assert decoded["arch"] == config["arch"] and decoded["n"] == config["n"] and decoded["m"] == config["m"]
        assert decoded["lr"] == pytest.approx(config["lr"]) and decoded["wd"] == pytest.approx(config["wd"])


def test_decode_refuses_wrong_length():
    with pytest.raises(ValueError, match="2 genes"):
        SearchSpace((Gene("x", "float", 0, 1),)).decode([0.1, 0.2])
