"""MLflow layout of `popplast evolve-rules`: a search run, one child run per generation.

A generation's run carries the ES metrics (best, mean, σ, fitness spread, failures) and its lineage: the
previous generation's run id and the norm of the mean vector's update from it. The final rule vector is
an artifact of the search run.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from popplast.core.rules_spec import RulesSpec
from popplast.tracking.mlflow_tracker import _text, open_experiment


class RulesTracker:
    def __init__(self, tracking_uri: str, experiment: str, method: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = open_experiment(self.client, experiment)
        self.method = method
        self.search_run_id = ""
        self._previous = ""

    def start_search(self, spec: RulesSpec, settings: Mapping[str, Any]) -> str:
        name = f"{os.path.splitext(os.path.basename(spec.source))[0]}-{self.method}-seed{spec.strategy.seed}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            "popplast.role": "search", "popplast.method": self.method, "popplast.space_file": spec.source})
        self.search_run_id = run.info.run_id
        params = {f"{part}.{k}": v for part in ("task", "network", "strategy", "generalisation")
                  for k, v in dataclasses.asdict(getattr(spec, part)).items()}
        params.update(settings)
        self.client.log_batch(self.search_run_id, params=[Param(k, _text(v)) for k, v in params.items()])
        if os.path.isfile(spec.source):
            self.client.log_artifact(self.search_run_id, spec.source)
        return self.search_run_id

    def generation_finished(self, generation: int, metrics: Mapping[str, float]) -> None:
        tags = {"mlflow.parentRunId": self.search_run_id, "popplast.generation": str(generation),
                "popplast.parent_run_ids": self._previous, "popplast.method": self.method,
                "popplast.operator": "gradient-step" if self.method == "gradient" else "es-update",
                "popplast.status": "ok"}
        run_id = self.client.create_run(self.experiment_id, run_name=f"generation-{generation:04d}", tags=tags).info.run_id
        now = int(time.time() * 1000)
        values = [Metric(k, float(v), now, 0) for k, v in metrics.items() if k != "generation" and np.isfinite(v)]
        self.client.log_batch(run_id, metrics=values)
        self.client.set_terminated(run_id)
        self.client.log_batch(self.search_run_id, metrics=[
            Metric(f"generation_{k}", float(v), now, generation) for k, v in metrics.items()
            if k in ("best", "mean", "sigma", "loss") and np.isfinite(v)])
        self._previous = run_id

    def end_search(self, metrics: Mapping[str, float], curve: list[float], rules: np.ndarray, sizes: tuple,
                   best: np.ndarray | None = None, best_fitness: float | None = None) -> None:
        """`rules`: the answer (an ES's mean, the gradient baseline's vector); `best`: the best vector evaluated."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        batch += [Metric("generalisation_train_accuracy", v, now, step) for step, v in enumerate(curve, start=1)]
        self.client.log_batch(self.search_run_id, metrics=batch)
        a, b, _ = sizes
        self.client.log_dict(self.search_run_id, {"rules": rules.tolist(), "input_rule": rules[:a].tolist(),
                                                  "hidden_rule": rules[a:a + b].tolist(),
                                                  "output_rule": rules[a + b:].tolist(),
                                                  "best_evaluated": None if best is None else best.tolist(),
                                                  "best_evaluated_fitness": best_fitness}, "rules.json")
        self.client.set_terminated(self.search_run_id)

    def fail_search(self) -> None:
        if self.search_run_id:
            self.client.set_terminated(self.search_run_id, status="FAILED")
