"""LCDB 1.0 (Mohr, Viering et al. 2022; the `lcdb` package, MIT): learning curves of 20 scikit-learn
classifiers (at their default settings) over training-set sizes on OpenML data sets, 5 outer splits each.

A task is one data set: the configuration is the learner, a fidelity step is the next training-set size
(anchor), a step's value its validation accuracy averaged over the inner splits, and its cost the recorded
training time at that size (each anchor trains afresh, as LCDB's learners did). The package's CSV is read
here, without importing the package (its module imports openml).

The tasks: the data sets on which every learner has a curve at every anchor for every outer split (57 of
248), so that no configuration's curve is cut short by a learner that ran out of time.
"""

from __future__ import annotations

import importlib.metadata
import os

import numpy as np

from popplast.core.suite_table import SuiteTable

PACKAGE, MODULE, LICENCE = "lcdb", "lcdb", "MIT (lcdb); each data set under its OpenML licence"
TASK_IDS = (
    11, 21, 23, 54, 55, 61, 185, 346, 380, 393, 396, 446, 679, 720, 722, 728, 735, 741, 761, 823, 847, 897, 901, 914,
    930, 934, 959, 966, 980, 991, 1042, 1053, 1067, 1084, 1085, 1086, 1087, 1128, 1134, 1448, 1450, 1479, 1485, 1499,
    1566, 4134, 40975, 40981, 41027, 41142, 41144, 41156, 41157, 41158, 41164, 41972, 42809,
)  # fmt: skip
TASKS = tuple(f"openml-{i}" for i in TASK_IDS)
METRICS = ("val_accuracy", "test_accuracy", "train_accuracy")
COLUMNS = {"score_valid": "val_accuracy", "score_test": "test_accuracy", "score_train": "train_accuracy"}


def short_name(learner: str) -> str:
    """sklearn.ensemble.RandomForestClassifier -> RandomForestClassifier; SVC_rbf stays."""
    return learner.rsplit(".", 1)[-1]


def read(package_dir: str) -> object:
    """The accuracy database (a pandas frame), read once for all the tasks one import converts."""
    import pandas as pd

    return pd.read_csv(os.path.join(package_dir, "database-accuracy.csv"))


def convert(task: str, database: object) -> SuiteTable:
    """The suite table of `task` (openml-ID) from the accuracy database `read` returned."""
    import pandas as pd

    frame: pd.DataFrame = database  # type: ignore[assignment]
    openml_id = int(task.split("-", 1)[1])
    rows = frame[frame.openmlid == openml_id]
    learners = sorted(rows.learner.unique(), key=short_name)
    anchors = sorted(rows.size_train.unique())
    splits = sorted(rows.outer_seed.unique())
    mean = rows.groupby(["learner", "outer_seed", "size_train"])[[*COLUMNS, "traintime"]].mean()
    full = pd.MultiIndex.from_product([learners, splits, anchors], names=mean.index.names)
    if len(mean) != len(full):
        raise ValueError(f"lcdb: data set {openml_id} lacks {len(full) - len(mean)} learner, split and anchor cells")
    mean = mean.reindex(full)
    shape = (len(learners), len(splits), len(anchors))
    values = np.stack([mean[column].to_numpy(dtype=float).reshape(shape) for column in COLUMNS])
    seconds = mean["traintime"].to_numpy(dtype=float).reshape(shape).clip(min=0.0)
    version = importlib.metadata.version(PACKAGE)
    return SuiteTable(
        "lcdb",
        task,
        "val_accuracy",
        "maximize",
        (("learner", tuple(short_name(name) for name in learners)),),
        METRICS,
        values,
        seconds,
        "training-set size",
        tuple(float(a) for a in anchors),
        f"{PACKAGE} {version}: LCDB 1.0 learning curves on OpenML data set {openml_id}",
        LICENCE,
    )
