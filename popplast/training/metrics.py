"""Classification metrics: accuracy, macro F1 and multiclass MCC, as scikit-learn computes them.

MCC is Gorodkin's R_K statistic (scikit-learn's matthews_corrcoef, ALGORITHMS.md §1). Macro F1 averages over
the classes present in the truth or the predictions (scikit-learn's default labels); a class absent from both
is not counted, and an undefined F1 is 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, matthews_corrcoef


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, prefix: str) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return {f"{prefix}_accuracy": 0.0, f"{prefix}_f1": 0.0, f"{prefix}_mcc": 0.0}
    return {
        f"{prefix}_accuracy": float(np.mean(y_true == y_pred)),
        f"{prefix}_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        f"{prefix}_mcc": float(matthews_corrcoef(y_true, y_pred)),
    }
