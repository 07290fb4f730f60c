"""The ways individuals' runs are written into MLflow, behind one protocol, chosen once when a tracker opens.

- `ApiWriter`: MLflow's API, run by run (create, log a batch, end): any store, about 50 runs a second.
- `BulkWriter`: many runs in one transaction into the store's database (tracking/bulk_runs.py), for a SQL store
  or a server's database (POPPLAST_TRACKING_DB); a run the bulk writer would not write as the API does goes
  through the API, in order.

Every writer also finds an individual's runs and deletes them (what the journal's sender checks after a
failure: tracking/outbox.py), so that the sender's logic runs over any of them. tests/test_run_writers.py
runs each writer, and the in-memory one the fault tests script to fail, through the same contract.

The contract: `write` ends every record's run, and on failure leaves each record's run whole, cut short (created,
not ended) or absent, never wrong (a database writer leaves all or none); `runs_of` tells whole runs from runs
cut short; `set_tags` refuses a run that does not exist or is not active, as MLflow does, writing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from popplast.tracking.bulk_runs import BulkRuns, RunRecord


@dataclass(frozen=True)
class FoundRun:
    """A run of an individual as the store holds it: whole (ended FINISHED or FAILED) or cut short."""

    run_id: str
    whole: bool
    tags: dict[str, str]
    fitness: float | None


class RunWriter(Protocol):
    name: str

    def in_one_go(self, records: Sequence[RunRecord]) -> bool:
        """Whether `records` join the records before them in one write with the run ids they carry (a
        database writer); else the records before are written first, and these alone, so that a child's
        parent run id is the id its parent's run was given."""
        ...

    def write(self, experiment_id: str, records: Sequence[RunRecord]) -> None:
        """Create, log and end every record's run, in order; a record's `run_id` is its run's after this."""
        ...

    def set_tags(self, updates: Sequence[tuple[str, str, str]]) -> None:
        """Set (run id, key, value) tags of existing, active runs."""
        ...

    def runs_of(self, experiment_id: str, search_run_id: str, individual_id: str) -> list[FoundRun]:
        """An individual's runs of a search (attempts whose worker died, status retried, left out)."""
        ...

    def delete(self, run_id: str) -> None: ...


class ApiWriter:
    """MLflow's API, one run at a time."""

    name = "api"

    def __init__(self, client: Any) -> None:
        self.client = client

    def in_one_go(self, records: Sequence[RunRecord]) -> bool:
        return False  # MLflow gives each run its id when it creates it

    def write(self, experiment_id: str, records: Sequence[RunRecord]) -> None:
        for record in records:
            run = self.client.create_run(experiment_id, record.start, record.tags, record.name)
            record.run_id = str(run.info.run_id)
            if record.metrics or record.params:
                self.client.log_batch(record.run_id, metrics=record.metrics, params=record.params)
            self.client.set_terminated(record.run_id, status=record.status)

    def set_tags(self, updates: Sequence[tuple[str, str, str]]) -> None:
        for run_id, key, value in updates:
            self.client.set_tag(run_id, key, value)

    def runs_of(self, experiment_id: str, search_run_id: str, individual_id: str) -> list[FoundRun]:
        runs = self.client.search_runs(
            [experiment_id],
            f"tags.`popplast.individual_id` = '{individual_id}' and tags.`mlflow.parentRunId` = '{search_run_id}'",
        )
        return [
            FoundRun(
                r.info.run_id,
                r.info.status in ("FINISHED", "FAILED"),
                dict(r.data.tags),
                r.data.metrics.get("fitness"),
            )
            for r in runs
        ]

    def delete(self, run_id: str) -> None:
        self.client.delete_run(run_id)


class BulkWriter(ApiWriter):
    """Runs in transactions of many into the store's database; reads, deletions and what the bulk writer would
    not write as MLflow's API does go through the API."""

    name = "bulk"

    def __init__(self, client: Any, bulk: BulkRuns) -> None:
        super().__init__(client)
        self.bulk = bulk

    def in_one_go(self, records: Sequence[RunRecord]) -> bool:
        return all(self.bulk.writable(r) for r in records)

    def write(self, experiment_id: str, records: Sequence[RunRecord]) -> None:
        batch: list[RunRecord] = []
        for record in records:
            if self.bulk.writable(record):
                batch.append(record)
                continue
            if batch:  # what came before it goes first
                self.bulk.write(experiment_id, batch)
                batch = []
            ApiWriter.write(self, experiment_id, [record])
        if batch:
            self.bulk.write(experiment_id, batch)

    def set_tags(self, updates: Sequence[tuple[str, str, str]]) -> None:
        if all(self.bulk.tag_writable(key, value) for _, key, value in updates):
            self.bulk.set_tags(updates)
        else:
            ApiWriter.set_tags(self, updates)


def open_writer(client: Any, bulk: BulkRuns | None) -> RunWriter:
    """The writer for a tracker: in bulk where `bulk` (bulk_runs.open_bulk or server_database) is one, else the
    API."""
    return BulkWriter(client, bulk) if bulk is not None else ApiWriter(client)
