"""An in-memory run writer (tracking/run_writers.py's protocol) that a test scripts to fail: the fault tests run
the real tracker and journal sender over it, and the writers' contract suite holds it to the same contract as
MLflow's API and the bulk writer."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

from popplast.tracking.bulk_runs import RunRecord
from popplast.tracking.run_writers import FoundRun

FAULTS = ("ok", "outage", "partial", "die_after_commit", "die_before_writing")


class Died(BaseException):
    """The driver's process ends here (SIGKILL): nothing after this line runs."""


class MemoryWriter:
    """Runs in a dict. Each `write` takes the next fault of its script: `outage` (nothing written, an OSError as
    a refused connection raises), `partial` (the records before the middle written, the middle one cut short:
    created, never ended, then the connection breaks), `die_after_commit` and `die_before_writing` (the process
    ends after, or before, writing them all); records of a `refused` individual are refused every time, as
    MLflow refuses a name it does not take (the runs before written, its own cut short)."""

    name = "memory"

    def __init__(self, faults: Iterable[str] = (), refused: Iterable[str] = ()) -> None:
        self.faults = iter(faults)
        self.refused = set(refused)
        self.runs: dict[str, dict] = {}  # run id → experiment, tags, metrics, status, whole, deleted

    def in_one_go(self, records: Sequence[RunRecord]) -> bool:
        return True  # like a database writer: the run ids records carry are the runs'

    def write(self, experiment_id: str, records: Sequence[RunRecord]) -> None:
        fault = next(self.faults, "ok")
        if fault == "die_before_writing":
            raise Died()
        if fault == "outage":
            raise OSError("Connection refused")
        for k, record in enumerate(records):
            if record.tags.get("popplast.individual_id") in self.refused:
                self._create(experiment_id, record, whole=False)
                raise MlflowException(f"Invalid metric name for {record.name}", INVALID_PARAMETER_VALUE)
            if fault == "partial" and k == len(records) // 2:
                self._create(experiment_id, record, whole=False)
                raise OSError("the connection broke in the middle of a write")
            self._create(experiment_id, record, whole=True)
        if fault == "die_after_commit":
            raise Died()

    def _create(self, experiment_id: str, record: RunRecord, whole: bool) -> None:
        metrics = {m.key: m.value for m in sorted(record.metrics, key=lambda m: (m.step, m.timestamp))}
        self.runs[record.run_id] = {
            "experiment": experiment_id,
            "tags": dict(record.tags),
            "metrics": metrics if whole else {},  # cut short: created, its batch never logged
            "status": record.status if whole else "RUNNING",
            "deleted": False,
        }

    def set_tags(self, updates: Sequence[tuple[str, str, str]]) -> None:
        for run_id, _, _ in updates:
            if run_id not in self.runs:
                raise MlflowException(f"Run with id={run_id} not found", RESOURCE_DOES_NOT_EXIST)
            if self.runs[run_id]["deleted"]:
                raise MlflowException(f"The run {run_id} must be in the 'active' state.", INVALID_PARAMETER_VALUE)
        for run_id, key, value in updates:
            self.runs[run_id]["tags"][key] = value

    def runs_of(self, experiment_id: str, search_run_id: str, individual_id: str) -> list[FoundRun]:
        return [
            FoundRun(
                run_id,
                run["status"] in ("FINISHED", "FAILED"),
                dict(run["tags"]),
                _finite(run["metrics"].get("fitness")),
            )
            for run_id, run in self.runs.items()
            if not run["deleted"]
            and run["experiment"] == experiment_id
            and run["tags"].get("mlflow.parentRunId") == search_run_id
            and run["tags"].get("popplast.individual_id") == individual_id
        ]

    def delete(self, run_id: str) -> None:
        self.runs[run_id]["deleted"] = True

    def whole_runs(self) -> list[dict]:
        return [r for r in self.runs.values() if not r["deleted"] and r["status"] in ("FINISHED", "FAILED")]


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
