"""A benchmark suite's task as an objective: the configuration's recorded run, looked up in its suite table
(`fixed: {suite_table: TASK.npz}`, written by `popplast suites import`), reported step by step so that a
stopper can stop it, on any executor. No training happens: the values and seconds are the recorded ones, and
the simulated cluster (`--executor simulated`) charges those seconds in virtual time; another executor
returns at once.

Which recorded seed an evaluation gets is drawn from its individual's seed (core/suite_table.py `draw`), and
a child that inherits (Gen-Soup, PBT) goes on from the step its better parent's run reached, as the simulated
cluster's models do.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import numpy as np

from popplast.core.suite_table import SUITE_TABLE, SuiteTable
from popplast.execution.simulated.models import inherited_steps


@functools.lru_cache(maxsize=8)
def table(path: str) -> SuiteTable:
    """Each worker reads a task's table once."""
    return SuiteTable.load(path)


def evaluate(config: Mapping[str, Any], trial: Any) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    task = table(str(config[SUITE_TABLE]))
    start = inherited_steps(trial.parents)
    values, seconds = task.run(config, task.draw(config, trial.seed), start, trial.fidelity.epochs)
    trained = 0
    for k in range(values.shape[1]):
        trained = k + 1
        trial.report(trained, **{name: float(values[m, k]) for m, name in enumerate(task.metrics)})
        if trial.should_stop():
            break
    metrics = {name: float(values[m, trained - 1]) for m, name in enumerate(task.metrics)}
    metrics["recorded_seconds"] = float(seconds[:trained].sum())  # what the recorded runs took to train
    return metrics, {"steps": np.array([start + trained], dtype=np.int64)}
