"""MCC, macro F1 and accuracy against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from popplast.training.metrics import accuracy, confusion_matrix, macro_f1, mcc


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("classes", [2, 3, 10])
def test_against_scikit_learn(seed, classes):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, classes, 200))
    c = confusion_matrix(y, p, classes)
    assert mcc(c) == pytest.approx(matthews_corrcoef(y, p), abs=1e-12)
    assert macro_f1(c) == pytest.approx(f1_score(y, p, average="macro", labels=range(classes), zero_division=0))
    assert accuracy(c) == pytest.approx(accuracy_score(y, p))


def test_degenerate_predictions():
    y = np.array([0, 1, 2, 1])
    constant = np.zeros(4, dtype=int)
    assert mcc(confusion_matrix(y, constant, 3)) == 0.0 == matthews_corrcoef(y, constant)
    assert mcc(confusion_matrix(y, y, 3)) == pytest.approx(1.0)
