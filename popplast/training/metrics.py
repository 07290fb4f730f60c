"""Classification metrics from a confusion matrix: accuracy, macro F1 and multiclass MCC.

MCC is Gorodkin's R_K statistic, the definition scikit-learn's matthews_corrcoef uses (ALGORITHMS.md §1).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """C[i, j] = number of samples of true class i predicted as j."""
    c = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(c, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return c


def mcc(c: np.ndarray) -> float:
    """Multiclass Matthews correlation: (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)); 0 when undefined."""
    c = c.astype(np.float64)
    t = c.sum(axis=1)  # true counts per class
    p = c.sum(axis=0)  # predicted counts per class
    correct, s = np.trace(c), c.sum()
    cov_ytyp = correct * s - t @ p
    cov_ypyp = s * s - p @ p
    cov_ytyt = s * s - t @ t
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def macro_f1(c: np.ndarray) -> float:
    """Unweighted mean over classes of 2·TP / (2·TP + FP + FN); a class absent from both sides scores 0."""
    c = c.astype(np.float64)
    tp = np.diag(c)
    denom = c.sum(axis=0) + c.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def accuracy(c: np.ndarray) -> float:
    total = c.sum()
    return float(np.trace(c) / total) if total else 0.0


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, prefix: str) -> dict[str, float]:
    c = confusion_matrix(y_true, y_pred, num_classes)
    return {f"{prefix}_accuracy": accuracy(c), f"{prefix}_f1": macro_f1(c), f"{prefix}_mcc": mcc(c)}
