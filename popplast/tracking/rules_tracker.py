"""MLflow layout of `popplast evolve-rules`: a search run, one child run per generation.

A generation's run carries the ES metrics (best, mean, σ, fitness spread, failures) and its lineage: the
previous generation's run id and the norm of the mean vector's update from it. The final rule vector is
an artifact of the search run.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping

import numpy as np
from mlflow.entities import Metric

from popplast.spec.rules import RulesSpec
from popplast.tracking.search_run import SearchRunTracker


class RulesTracker(SearchRunTracker):
    def __init__(self, tracking_uri: str, experiment: str, method: str) -> None:
        super().__init__(tracking_uri, experiment, method)
        self._previous = ""

    def start_search(self, spec: RulesSpec, settings: Mapping[str, Any]) -> str:
        params = {
            f"{part}.{k}": v
            for part in ("task", "network", "strategy", "generalisation")
            for k, v in dataclasses.asdict(getattr(spec, part)).items()
        }
        params.update(settings)
        return self._create_search_run(spec.source, spec.strategy.seed, params)

    def generation_finished(self, generation: int, metrics: Mapping[str, float]) -> None:
        tags = {
            "mlflow.parentRunId": self.search_run_id,
            "popplast.generation": str(generation),
            "popplast.parent_run_ids": self._previous,
            "popplast.method": self.method,
            "popplast.operator": "gradient-step" if self.method == "gradient" else "es-update",
            "popplast.status": "ok",
        }
        run_id = self.client.create_run(
            self.experiment_id, run_name=f"generation-{generation:04d}", tags=tags
        ).info.run_id
        now = int(time.time() * 1000)
        values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if k != "generation" and np.isfinite(v)]
        self.client.log_batch(run_id, metrics=values)
        self.client.set_terminated(run_id)
        self.client.log_batch(
            self.search_run_id,
            metrics=[
                Metric(f"generation_{k}", float(v), now, generation)
                for k, v in metrics.items()
                if k in ("best", "mean", "sigma", "loss") and np.isfinite(v)
            ],
        )
        self._previous = run_id

    def end_search(
        self,
        metrics: Mapping[str, float],
        curve: list[float],
        rules: np.ndarray,
        sizes: tuple,
        best: np.ndarray | None = None,
        best_fitness: float | None = None,
    ) -> None:
        """`rules`: the answer (an ES's mean, the gradient baseline's vector); `best`: the best vector evaluated."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        batch += [Metric("generalisation_train_accuracy", v, now, step) for step, v in enumerate(curve, start=1)]
        self.client.log_batch(self.search_run_id, metrics=batch)
        a, b, _ = sizes
        self.client.log_dict(
            self.search_run_id,
            {
                "rules": rules.tolist(),
                "input_rule": rules[:a].tolist(),
                "hidden_rule": rules[a : a + b].tolist(),
                "output_rule": rules[a + b :].tolist(),
                "best_evaluated": None if best is None else best.tolist(),
                "best_evaluated_fitness": best_fitness,
            },
            "rules.json",
        )
        self.client.set_terminated(self.search_run_id)
