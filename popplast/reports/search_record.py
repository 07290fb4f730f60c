"""What a search run in MLflow says about the search that made it: enough to resume it (`--resume RUN_ID`)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from popplast.errors import COMMAND_LINE, SpecError
from popplast.tracking.checkpoint_store import no_progress_bars
from popplast.tracking.mlflow_tracker import SPEC_ARTIFACT
from popplast.tracking.search_run import check_server


@dataclass(frozen=True)
class SearchRecord:
    run_id: str
    experiment: str
    method: str
    spec: dict[str, Any]  # SearchSpec.to_dict() of the effective spec
    source: str  # the file it was read from
    budget_evals: int
    params: dict[str, str]
    parent_run_id: str | None
    finished: bool  # the search ran to its end (MLflow status FINISHED)


def read_search(tracking_uri: str, run_id: str) -> SearchRecord:
    """The search run `run_id`, or a SpecError naming --resume and what is missing."""
    check_server(tracking_uri)
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as e:  # MLflow raises its own types for a missing run or an unusable store
        raise SpecError(
            COMMAND_LINE,
            "--resume",
            f"no search run {run_id!r} in the MLflow store {tracking_uri} ({type(e).__name__}); pass the "
            "--tracking-uri it was logged to.",
        ) from None
    tags = run.data.tags
    if tags.get("popplast.role") != "search":
        raise SpecError(
            COMMAND_LINE,
            "--resume",
            f"the MLflow run {run_id} is not a popplast search run (its tag "
            "popplast.role is not 'search'); pass the search run's id that "
            "popplast run printed.",
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with no_progress_bars():
                client.download_artifacts(run_id, SPEC_ARTIFACT, tmp)
        except Exception:  # no such artifact
            raise SpecError(
                COMMAND_LINE,
                "--resume",
                f"the search run {run_id} has no {SPEC_ARTIFACT} artifact (it "
                "was started by a popplast without resume support).",
            ) from None
        with open(os.path.join(tmp, SPEC_ARTIFACT)) as f:
            data = json.load(f)
    return SearchRecord(
        run_id,
        client.get_experiment(run.info.experiment_id).name,
        tags["popplast.method"],
        data["spec"],
        data["source"],
        int(data["budget_evals"]),
        dict(run.data.params),
        tags.get("mlflow.parentRunId"),
        run.info.status == "FINISHED",
    )
