"""Worker utilisation, ALGORITHMS.md §9: one definition for the tracked `worker_utilisation`
(reports/utilisation.py, from the runs' start and end tags) and the simulated cluster's own figure
(execution/simulated/executor.py, from the same spans as its results carry them). Plain Python: the simulator may not
import tracking (MLflow)."""

from __future__ import annotations

import math
from typing import Iterable


class BusyTime:
    """The spans of a search's evaluations on their workers, added as they come (nothing held per span).

    Utilisation = Σ busy time / (workers × wall time): busy time is each evaluation's span on its worker, from
    its start to its end (the objective's whole call: data, training, validation); wall time runs from the
    first start to the last end, so neither the time before the first evaluation started nor the driver's
    work after the last one ended counts. Only evaluations whose worker told their start and end count: an
    attempt whose worker died (run again elsewhere, or failed after its last attempt) is not counted, as a
    dead worker reports no span (on Ray its run has none; the simulated cluster leaves it out alike)."""

    def __init__(self) -> None:
        self.busy = 0.0
        self.first_start = math.inf
        self.last_end = -math.inf

    def add(self, start: float, end: float) -> None:
        self.busy += end - start
        self.first_start = min(self.first_start, start)
        self.last_end = max(self.last_end, end)

    def utilisation(self, workers: int) -> float | None:
        """None without a span, workers or wall time."""
        wall = self.last_end - self.first_start
        if workers < 1 or not wall > 0:  # no span: -inf − inf, not > 0
            return None
        return self.busy / (workers * wall)


def utilisation(spans: Iterable[tuple[float, float]], workers: int) -> float | None:
    """BusyTime.utilisation of the (start, end) `spans`."""
    total = BusyTime()
    for start, end in spans:
        total.add(start, end)
    return total.utilisation(workers)
