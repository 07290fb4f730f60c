"""The MLflow layout of `popplast replay`: a replay run nested under the search run it replays (tag
`popplast.role = replay`, so lineage readers, which take runs with an individual id, never count it), and
one child run per retrained step of the pedigree."""

from __future__ import annotations

import time
from typing import Any, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.tracking.run_notes import NOTE, run_link
from popplast.tracking.search_run import param_text


class ReplayTracker:
    def __init__(self, tracking_uri: str, experiment_id: str, search_run_id: str, focus: str, focus_run_id: str):
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = experiment_id
        note = f"The pedigree of {run_link(experiment_id, focus_run_id, focus)} retrained from scratch."
        tags = {
            "mlflow.parentRunId": search_run_id,
            "popplast.role": "replay",
            "popplast.replay_of": focus,
            NOTE: note,
        }
        self.run_id = self.client.create_run(experiment_id, run_name=f"replay-{focus}", tags=tags).info.run_id

    def step_finished(self, step: int, individual: Individual, config: Mapping[str, Any], result: EvalResult) -> str:
        tags = {
            "mlflow.parentRunId": self.run_id,
            "popplast.replayed": individual.id,
            "popplast.replay_step": str(step),
            "popplast.status": "ok" if result.ok else "failed",
            **({"popplast.error": result.error[:4000]} if result.error else {}),
        }
        run_id = self.client.create_run(self.experiment_id, run_name=f"{individual.id}-replayed", tags=tags).info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in result.metrics.items()]
        if result.ok:
            metrics.append(Metric("fitness", float(result.fitness), now, 0))
        params = [Param(k, param_text(v)) for k, v in config.items()]
        self.client.log_batch(run_id, metrics=metrics, params=params)
        self.client.set_terminated(run_id, "FINISHED" if result.ok else "FAILED")
        return run_id

    def end(self, metrics: Mapping[str, float], ok: bool) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")
