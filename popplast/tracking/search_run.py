"""What every popplast tracker shares: the experiment, the search run, and how values become MLflow params."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from mlflow import MlflowClient
from mlflow.entities import Param


class SearchRunTracker:
    """Opens (or creates) the experiment; creates, and on failure closes, the search run.

    Args:
        tracking_uri: any MLflow tracking URI; the default embedded store is ``sqlite:///mlflow.db``.
        experiment: experiment name (created if missing).
        method: the search method, tagged on every run (``popplast.method``).
        parent_run_id: a run to nest the search run under (a comparison's run), or None.
    """

    def __init__(self, tracking_uri: str, experiment: str, method: str, parent_run_id: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = open_experiment(self.client, experiment)
        self.method = method
        self.parent_run_id = parent_run_id
        self.search_run_id = ""

    def _create_search_run(self, source: str, seed: int, params: Mapping[str, Any]) -> str:
        name = f"{os.path.splitext(os.path.basename(source))[0]}-{self.method}-seed{seed}"
        tags = {"popplast.role": "search", "popplast.method": self.method, "popplast.space_file": source}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.search_run_id = run.info.run_id
        self.client.log_batch(self.search_run_id, params=[Param(k, param_text(v)) for k, v in params.items()])
        if os.path.isfile(source):
            self.client.log_artifact(self.search_run_id, source)
        return self.search_run_id

    def fail_search(self) -> None:
        if self.search_run_id:
            self.client.set_terminated(self.search_run_id, status="FAILED")


def open_experiment(client: MlflowClient, name: str) -> str:
    """The id of the experiment called `name`, created if missing."""
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found else client.create_experiment(name)


def param_text(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)
