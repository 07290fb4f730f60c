"""Many individuals' runs written into an MLflow database in one transaction.

MLflow's API writes a run in three calls (create it, log a batch, terminate it), and its SQL store spends
about 30 statements and four commits on them: 15–24 ms per run into SQLite on the development machine,
mostly MLflow's and SQLAlchemy's Python, which capped a search's tracking at about 50 individuals a
second. MLflow has no call that creates many runs, so for a database tracking URI (`sqlite:///`,
`postgresql://`, `mysql://`, ...) popplast writes a batch of finished individuals itself, through MLflow's
own table definitions (`mlflow.store.tracking.dbmodels.models`) and the store's engine, as the rows MLflow's
API would have written: the run, its tags (with `mlflow.runName`), params, metric history and latest
metrics, its status and times. tests/test_bulk_runs.py reads both back through MlflowClient and checks that
they are the same.

A tracking server's runs can be written the same way where the driver can reach the server's database (the
head node's `mlflow.db` beside the server, a PostgreSQL the server runs on): with POPPLAST_TRACKING_DB set to
its URI, individuals' runs and descriptions go into it in bulk, everything else (the search run, artifacts,
checkpoints, reads) through the server, which reads the same database. `server_database` checks that it is
the server's (it holds the server's experiment under the same id and name).

A batch is one transaction in a session MLflow's store makes (its pragmas and busy timeout apply, and a
failure is MLflow's own exception): MLflow holds all of it or none, so a batch cut short is shipped again
whole. It is on only for the MLflow releases the test suite ran it against (TESTED_MLFLOW); with another,
every run goes through the API, with a line saying why. A
run this module would not write as MLflow's API does (a value over MLflow's limits, which the API
truncates, or a name it refuses with its own message) goes through the API instead. `open_bulk` returns
None, and every run goes through the API, for a tracking server, for a database whose tables lack a column
written here (another MLflow version's schema), or with POPPLAST_BULK_TRACKING=0.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import sqlalchemy
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.uri import append_to_uri_path

log = logging.getLogger(__name__)

RUN_NAME = "mlflow.runName"
MAX_FLOAT = 1.7976931348623157e308  # what MLflow's SQL store writes for an infinite metric


@dataclass
class RunRecord:
    """One MLflow run as popplast writes it: created, logged and terminated at once."""

    name: str
    tags: dict[str, str]
    status: str  # FINISHED or FAILED
    params: list[Param] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    start: int = field(default_factory=lambda: int(time.time() * 1000))  # ms, the time its metrics carry
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class BulkRuns:
    """Writes RunRecords and tag updates into the SQL store behind an MlflowClient, a batch per transaction."""

    def __init__(self, store: Any, tables: dict[str, Any]) -> None:
        self._store = store
        self._tables = tables
        self._validate, self._limits = _validators()
        self._checked: set[tuple[str, str]] = set()  # (kind, name) MLflow's checks passed

    def writable(self, record: RunRecord) -> bool:
        """Whether MLflow's API would write the record as it is (else it goes through the API, which truncates
        or refuses it with its own message)."""
        if len(record.name) > 250 or any(len(p.value) > self._limits[0] for p in record.params):
            return False
        if any(len(v) > self._limits[1] for v in record.tags.values()):
            return False
        # MLflow's checks of the names (values are numbers and strings within the limits by now), once a name:
        # a search's runs share them, and checking every run's would cost a third of the writing
        metrics = [m for m in record.metrics if ("metric", m.key) not in self._checked]
        params = [p for p in record.params if ("param", p.key) not in self._checked]
        tags = [RunTag(k, v) for k, v in record.tags.items() if ("tag", k) not in self._checked]
        if metrics or params or tags:
            try:
                self._validate(metrics, params, tags)
            except Exception:  # MLflow's MlflowException
                return False
            self._checked.update(
                [("metric", m.key) for m in metrics]
                + [("param", p.key) for p in params]
                + [("tag", t.key) for t in tags]
            )
        return True

    def _transaction(self) -> Any:
        """One transaction in a session of MLflow's own making: the store's set-up applies (SQLite's
        `foreign_keys = ON` and 20 s busy timeout), and a failure is MLflow's exception as its API raises it
        (a locked or unreachable database TEMPORARILY_UNAVAILABLE, a refused row BAD_REQUEST)."""
        return self._store.ManagedSessionMaker(read_only=False)

    def write(self, experiment_id: str, records: Sequence[RunRecord]) -> None:
        """Create, log and terminate every record's run in one transaction."""
        runs, tags, params, metrics, latest = [], [], [], [], []
        now = int(time.time() * 1000)
        with self._transaction() as session:
            conn = session.connection()
            experiments = self._tables["experiments"]
            stage, location = conn.execute(
                sqlalchemy.select(experiments.c.lifecycle_stage, experiments.c.artifact_location).where(
                    experiments.c.experiment_id == int(experiment_id)
                )
            ).one()
            if stage != "active":  # as MLflow's create_run refuses it (a ValueError would read as its INTERNAL_ERROR)
                from mlflow.exceptions import MlflowException
                from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

                raise MlflowException(
                    f"Could not create run under non-active experiment with id {experiment_id}.",
                    error_code=INVALID_PARAMETER_VALUE,
                )
            for r in records:
                runs.append(
                    {
                        "run_uuid": r.run_id,
                        "name": r.name,
                        "source_type": "UNKNOWN",
                        "source_name": "",
                        "entry_point_name": "",
                        "user_id": r.tags.get("mlflow.user", "unknown"),
                        "status": r.status,
                        "start_time": r.start,
                        "end_time": max(now, r.start),
                        "deleted_time": None,
                        "source_version": "",
                        "lifecycle_stage": "active",
                        "artifact_uri": append_to_uri_path(location, r.run_id, "artifacts"),
                        "experiment_id": int(experiment_id),
                    }
                )
                tags += [{"key": k, "value": v, "run_uuid": r.run_id} for k, v in {RUN_NAME: r.name, **r.tags}.items()]
                params += [{"key": p.key, "value": p.value, "run_uuid": r.run_id} for p in r.params]
                rows = _metric_rows(r.run_id, r.metrics)
                metrics += rows
                latest += _latest(rows)
            conn.execute(self._tables["runs"].insert(), runs)
            for name, rows in (("tags", tags), ("params", params), ("metrics", metrics), ("latest_metrics", latest)):
                if rows:
                    conn.execute(self._tables[name].insert(), rows)

    def set_tags(self, updates: Sequence[tuple[str, str, str]]) -> None:
        """Set (run id, key, value) tags of existing runs in one transaction, as MlflowClient.set_tag does:
        refused (MLflow's exception, nothing written) when a run does not exist or is not active."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

        table, runs = self._tables["tags"], self._tables["runs"]
        rows = [{"run_uuid": r, "key": k, "value": v} for r, k, v in updates]
        if not rows:
            return
        runs_by_key: dict[str, list[str]] = {}
        for row in rows:
            runs_by_key.setdefault(row["key"], []).append(row["run_uuid"])
        wanted = sorted({row["run_uuid"] for row in rows})
        with self._transaction() as session:
            conn = session.connection()
            stages: dict[str, str] = {}
            for i in range(0, len(wanted), 500):
                found = conn.execute(
                    sqlalchemy.select(runs.c.run_uuid, runs.c.lifecycle_stage).where(
                        runs.c.run_uuid.in_(wanted[i : i + 500])
                    )
                )
                stages.update({str(run): str(stage) for run, stage in found})
            for run_id in wanted:
                if run_id not in stages:
                    raise MlflowException(f"Run with id={run_id} not found", error_code=RESOURCE_DOES_NOT_EXIST)
                if stages[run_id] != "active":
                    raise MlflowException(
                        f"The run {run_id} must be in the 'active' state. Current state is {stages[run_id]}.",
                        error_code=INVALID_PARAMETER_VALUE,
                    )
            for key, run_ids in runs_by_key.items():
                for i in range(0, len(run_ids), 500):  # well under any database's limit on bound parameters
                    conn.execute(table.delete().where(table.c.key == key, table.c.run_uuid.in_(run_ids[i : i + 500])))
            conn.execute(table.insert(), rows)

    def tag_writable(self, key: str, value: str) -> bool:
        return self.writable(RunRecord("", {key: value}, ""))


def _metric_rows(run_id: str, metrics: Sequence[Metric]) -> list[dict[str, Any]]:
    """MLflow's rows for a run's metrics: NaN stored as 0 with is_nan, infinities as the largest float, and a
    metric logged twice with the same step, time and value kept once (as MLflow's log_batch does)."""
    rows, seen = [], set()
    for m in metrics:
        value = float(m.value)
        is_nan = math.isnan(value)
        stored = 0.0 if is_nan else (math.copysign(MAX_FLOAT, value) if math.isinf(value) else value)
        identity = (m.key, int(m.timestamp), int(m.step), stored, is_nan)
        if identity in seen:
            continue
        seen.add(identity)
        rows.append(
            {
                "key": m.key,
                "value": stored,
                "timestamp": int(m.timestamp),
                "step": int(m.step),
                "is_nan": is_nan,
                "run_uuid": run_id,
            }
        )
    return rows


def _latest(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each metric's latest value as MLflow keeps it: the highest (step, timestamp, value)."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        old = best.get(row["key"])
        if old is None or (row["step"], row["timestamp"], row["value"]) > (old["step"], old["timestamp"], old["value"]):
            best[row["key"]] = row
    return list(best.values())


def _validators() -> tuple[Any, tuple[int, int]]:
    """MLflow's own checks of a batch, and its longest param and tag values (longer ones its API truncates)."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH, _validate_batch_log_data

    return _validate_batch_log_data, (MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH)


COLUMNS = {
    "experiments": {"experiment_id", "name", "lifecycle_stage", "artifact_location"},
    "runs": {
        "run_uuid",
        "name",
        "source_type",
        "source_name",
        "entry_point_name",
        "user_id",
        "status",
        "start_time",
        "end_time",
        "deleted_time",
        "source_version",
        "lifecycle_stage",
        "artifact_uri",
        "experiment_id",
    },
    "tags": {"key", "value", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
}


DATABASE = "POPPLAST_TRACKING_DB"  # a tracking server's own database, to write individuals' runs into


def open_bulk(client: Any) -> BulkRuns | None:
    """The bulk writer for the client's store, or None where runs go through MLflow's API (see the module's
    docstring). A tracking server's client gets one only through server_database."""
    if not _enabled():
        return None
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
        if not isinstance(store, SqlAlchemyStore):
            return None
        return _writer(store)
    except Exception as e:  # any other MLflow layout: the API is always right
        log.info("bulk tracking unavailable (%s: %s); runs go through MLflow's API", type(e).__name__, e)
        return None


def server_database(database_uri: str, experiment_id: str, experiment: str) -> BulkRuns | None:
    """The bulk writer for a tracking server's own database (`POPPLAST_TRACKING_DB`): individuals' runs go
    into it, everything else through the server, which reads the same database. Raises ValueError, with a
    message naming what is wrong, unless it is a database MLflow's tables can be written to that holds the
    server's experiment under the same id and name."""
    if not _enabled():
        return None
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if database_uri.startswith("sqlite:///") and not os.path.isfile(database_uri[len("sqlite:///") :].split("?")[0]):
        raise ValueError(f"{database_uri} does not exist; it must be the database the tracking server runs on")
    try:
        store = SqlAlchemyStore(database_uri, None)
        writer = _writer(store)
    except Exception as e:  # MLflow's and SQLAlchemy's many errors for a URI they cannot open
        raise ValueError(f"cannot open {database_uri} as an MLflow database ({type(e).__name__}: {e})") from None
    if writer is None:
        raise ValueError(f"{database_uri}'s tables are not those of this MLflow version ({_mlflow_version()})")
    experiments = writer._tables["experiments"]
    with store.engine.connect() as conn:
        name = conn.execute(
            sqlalchemy.select(experiments.c.name).where(experiments.c.experiment_id == int(experiment_id))
        ).scalar()
    if name != experiment:
        raise ValueError(
            f"{database_uri} is not the tracking server's database: it holds no experiment {experiment!r} with "
            f"the server's id {experiment_id}"
        )
    return writer


TESTED_MLFLOW = ("3.17.",)  # the MLflow releases tests/test_bulk_runs.py ran the bulk writer against


def _enabled() -> bool:
    if os.environ.get("POPPLAST_BULK_TRACKING", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    version = _mlflow_version()
    if not version.startswith(TESTED_MLFLOW):
        _say_once(
            f"bulk tracking is tested with MLflow {', '.join(v + 'x' for v in TESTED_MLFLOW)}, not {version}: "
            "individuals' runs go through MLflow's API (about 50 a second)"
        )
        return False
    return True


_SAID: set[str] = set()


def _say_once(line: str) -> None:
    if line not in _SAID:
        _SAID.add(line)
        log.warning(line)


def _mlflow_version() -> str:
    import mlflow

    return str(mlflow.__version__)


def _writer(store: Any) -> BulkRuns | None:
    """A BulkRuns for an SQL store whose tables have every column written here and need no other."""
    from mlflow.store.tracking.dbmodels import models

    tables = {
        name: model.__table__
        for name, model in (
            ("experiments", models.SqlExperiment),
            ("runs", models.SqlRun),
            ("tags", models.SqlTag),
            ("params", models.SqlParam),
            ("metrics", models.SqlMetric),
            ("latest_metrics", models.SqlLatestMetric),
        )
    }
    inspector = sqlalchemy.inspect(store.engine)
    for name, needed in COLUMNS.items():
        columns = inspector.get_columns(name)
        present = {c["name"] for c in columns}
        if tables[name].name != name or not needed <= present or not needed <= set(tables[name].c.keys()):
            log.info("MLflow's %s table is not the one popplast writes in bulk; runs go through the API", name)
            return None
        required = {c["name"] for c in columns if not c["nullable"] and c["default"] is None}
        if name != "experiments" and not required <= needed:
            log.info("MLflow's %s table needs columns popplast does not write; runs go through the API", name)
            return None
    return BulkRuns(store, tables)
