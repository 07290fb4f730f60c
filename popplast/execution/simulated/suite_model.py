"""A benchmark suite's task (core/suite_table.py) as the simulated cluster's model: the configuration's
recorded run, with the recorded seed its individual's seed draws (as the lookup objective draws it,
objectives/suite.py, so that every executor gives an individual the same values), each step charged the
seconds it was recorded to take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from popplast.core.suite_table import SuiteTable
from popplast.errors import SpecError
from popplast.execution.simulated.models import Outcome
from popplast.spec.space import SearchSpace


@dataclass(frozen=True)
class SuiteModel:
    table: SuiteTable

    def check(self, space: SearchSpace, where: str) -> None:
        """The search's space is the task's grid: each gene categorical over the table's choices."""
        grid = dict(self.table.genes)
        for gene in space.genes:
            if gene.name not in grid:
                raise SpecError(where, f"space.{gene.name}", f"not a gene of {self.table.suite}/{self.table.task}.")
            off = [c for c in gene.choices if c not in grid[gene.name]] if gene.type == "categorical" else [None]
            if off:
                raise SpecError(
                    where,
                    f"space.{gene.name}",
                    f"expected a categorical gene over (some of) the task's values {list(grid[gene.name])}.",
                )
        missing = [name for name in grid if name not in space.names]
        if missing:
            raise SpecError(where, "space", f"the task's genes {missing} are not in the space.")

    def outcome(
        self, space: SearchSpace, config: Mapping[str, Any], start: int, steps: int, rng: Any, seed: int | None = None
    ) -> Outcome:
        draw = self.table.draw(config, seed if seed is not None else int(rng.integers(2**63)))
        values, seconds = self.table.run(config, draw, start, steps)
        fitness = self.table.metrics.index(self.table.metric)
        # step by step, so that a run stopped early records the metrics and seconds of the step it reached
        series = {name: tuple(map(float, values[m])) for m, name in enumerate(self.table.metrics) if m != fitness}
        series["recorded_seconds"] = tuple(map(float, np.cumsum(seconds)))
        curve = tuple(float(v) for v in values[fitness])
        return Outcome(curve, float(seconds.sum()), step_seconds=tuple(map(float, seconds)), series=series)
