"""MCC, macro F1 and accuracy equal scikit-learn's, also where a class is absent from truth and predictions."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from popplast.training.metrics import classification_metrics


def check(y, p):
    m = classification_metrics(y, p, "val")
    assert m["val_mcc"] == pytest.approx(matthews_corrcoef(y, p), abs=1e-12)
    assert m["val_f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0), abs=1e-12)
    assert m["val_accuracy"] == pytest.approx(accuracy_score(y, p))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("classes", [2, 3, 10])
def test_against_scikit_learn(seed, classes):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, 200)
    check(y, np.where(rng.random(200) < 0.6, y, rng.integers(0, classes, 200)))


def test_a_class_absent_from_truth_and_predictions_is_not_averaged():
    """Classes 0, 1, 3 of 4: macro F1 over the three present (the hand-written one averaged 0 for class 2)."""
    y, p = np.array([0, 1, 3, 3, 1, 0]), np.array([0, 1, 3, 1, 1, 0])
    check(y, p)
    f1 = {0: 1.0, 1: 2 * 2 / (2 * 2 + 1), 3: 2 * 1 / (2 * 1 + 1)}
    assert classification_metrics(y, p, "val")["val_f1"] == pytest.approx(sum(f1.values()) / 3)


def test_degenerate_predictions():
    y = np.array([0, 1, 2, 1])
    check(y, np.zeros(4, dtype=int))
    assert classification_metrics(y, np.zeros(4, dtype=int), "val")["val_mcc"] == 0.0
    assert classification_metrics(y, y, "val")["val_mcc"] == pytest.approx(1.0)
