"""Data for evolving plasticity rules: make_classification as paper 004 (ALGORITHMS.md §7), or digits.

Features are standardised with the training split's mean and standard deviation (the paper does not say;
with class_sep 10 the raw features saturate the sigmoid of every hidden unit).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from popplast.spec.rules import GeneralisationSpec, TaskSpec


@dataclass(frozen=True)
class RuleData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int

    @property
    def features(self) -> int:
        return self.x_train.shape[1]


def load_task(task: TaskSpec, dtype: torch.dtype = torch.float32) -> RuleData:
    if task.dataset == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = digits.data.astype(float), digits.target
        classes = 10
    else:
        from sklearn.datasets import make_classification

        x, y = make_classification(
            n_samples=task.samples,
            n_features=task.features,
            n_informative=task.features,
            n_redundant=0,
            n_classes=task.classes,
            n_clusters_per_class=2,
            class_sep=task.class_sep,
            random_state=task.seed,
        )
        classes = task.classes
    order = np.random.default_rng(task.seed).permutation(len(y))
    cut = int(round(len(y) * (1 - task.test_fraction)))
    train, test = order[:cut], order[cut:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
    x = (x - mean) / std
    as_x = lambda i: torch.tensor(x[i], dtype=dtype)  # noqa: E731
    as_y = lambda i: torch.tensor(y[i], dtype=torch.long)  # noqa: E731
    return RuleData(as_x(train), as_y(train), as_x(test), as_y(test), classes)


def generalisation_task(task: TaskSpec, spec: GeneralisationSpec, dtype: torch.dtype = torch.float32) -> RuleData:
    """A data set the rules never saw: for make_classification, new clusters from another seed; for digits
    (one fixed set), the same images with the classes relabelled by a random permutation, a new task."""
    fresh = replace(task, seed=task.seed + spec.seed_offset, samples=spec.samples)
    data = load_task(fresh, dtype)
    if task.dataset != "digits":
        return data
    relabel = torch.as_tensor(np.random.default_rng(fresh.seed).permutation(data.classes))
    return replace(data, y_train=relabel[data.y_train], y_test=relabel[data.y_test])
