"""The journal's sender against fault schedules drawn at random (hypothesis), over an in-memory run writer that
a schedule scripts to fail (issue 31): outages that last a few calls, a batch that fails after writing part of
itself, a driver that dies after MLflow committed a batch but before the acknowledgement, a driver that dies
before shipping anything, and payloads MLflow refuses every time.

The writer stands in for the store on purpose: what is under test is the sender's protocol (order, retries,
the check of what MLflow may already hold, refusals kept, restarts from the journal), which the real stores'
tests (test_journal.py, test_bulk_runs.py, test_outage.py) exercise under the faults those stores can be made to
show. After every schedule: each individual that MLflow would take has exactly one whole run; every parent run
id a run names exists; refused events are kept in the journal as refused; the journal is gone only when
everything arrived.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.tracking import outbox as outbox_module
from popplast.tracking.journal import Journal
from popplast.tracking.outbox import Outbox

FAULTS = ("ok", "outage", "partial", "die_after_commit", "die_before_shipping")


class Died(BaseException):
    """The driver's process ends here (SIGKILL): nothing after this line of the sender runs."""


class MemoryWriter:
    """The tracker's side of shipping, in memory: runs with their parent run ids and whether they were ended,
    run ids known only once a call succeeded (as MLflowTracker's), and a script of faults, one per call."""

    tracking_uri = "memory://store"
    search_run_id = "search"
    displaced = False

    def __init__(self, faults: list[str], refused: set[str]) -> None:
        self.faults = iter(faults)
        self.refused = refused  # individuals whose payload MLflow refuses, every time
        self.runs: dict[str, dict] = {}  # run id → {"individual", "whole", "parents"}
        self.run_ids: dict[str, str] = {}
        self.generations: list[int] = []
        self.lock = threading.Lock()

    def _fault(self) -> str:
        return next(self.faults, "ok")

    def _write(self, individual: Individual) -> str:
        run_id = uuid.uuid4().hex
        parents = [self.run_ids.get(p, "") for p in individual.parent_ids]
        self.runs[run_id] = {"individual": individual.id, "whole": True, "parents": parents}
        return run_id

    def individuals_finished(self, finished) -> None:
        with self.lock:
            fault = self._fault()
            if fault == "die_before_shipping":
                raise Died()
            if fault == "outage":
                raise OSError("Connection refused")
            written = {}
            for k, (individual, _config, _result) in enumerate(finished):
                if individual.id in self.refused:
                    self.run_ids.update(written)
                    raise MlflowException(f"metric name refused for {individual.id}", INVALID_PARAMETER_VALUE)
                if fault == "partial" and k == len(finished) // 2:
                    run_id = uuid.uuid4().hex  # created, never ended: cut short by the failure
                    self.runs[run_id] = {"individual": individual.id, "whole": False, "parents": []}
                    self.run_ids.update(written)
                    raise OSError("the connection broke mid-batch")
                written[individual.id] = self._write(individual)
            self.run_ids.update(written)
            if fault == "die_after_commit":
                raise Died()

    def individual_finished(self, individual, config, result) -> None:
        self.individuals_finished([(individual, config, result)])

    def generation_finished(self, generation: int, metrics) -> None:
        with self.lock:
            fault = self._fault()
            if fault == "outage":
                raise OSError("Connection refused")
            self.generations.append(generation)
            if fault in ("die_after_commit", "die_before_shipping"):
                raise Died()

    def has_logged(self, individual_id: str) -> bool:
        with self.lock:
            runs = [k for k, r in self.runs.items() if r["individual"] == individual_id]
            whole = [k for k in runs if self.runs[k]["whole"]]
            if whole:
                self.run_ids[individual_id] = whole[0]
                return True
            for k in runs:
                del self.runs[k]
            self.run_ids.pop(individual_id, None)
            return False


def events(count: int):
    """Generations of four individuals, each child's parents the generation before's first two."""
    out = []
    for i in range(count):
        generation, slot = divmod(i, 4)
        parents = (f"g{generation - 1:03d}-i000", f"g{generation - 1:03d}-i001") if generation else ()
        individual = Individual(f"g{generation:03d}-i{slot:03d}", (0.5,), generation, parents, "crossover", seed=i)
        out.append(("individual", individual))
        if slot == 3:
            out.append(("generation", generation))
    return out


def ship_through(tmp_path, writer: MemoryWriter, stream) -> Journal:
    """Journal every event, let the sender ship; a sender that died is followed by a new driver's outbox on
    the same journal (a restart), until everything is dealt with."""
    header = {"tracking_uri": writer.tracking_uri, "experiment": "e", "search_run_id": writer.search_run_id}
    journal = Journal.create(str(tmp_path), {**header, "method": "ga", "gene_names": ["x"]})
    outbox = Outbox(writer, journal)
    for kind, value in stream:
        if kind == "individual":
            outbox.individual_finished(value, {"x": 0.5}, EvalResult(value.id, float(value.seed)))
        else:
            outbox.generation_finished(value, {"best": 1.0})
    for _restart in range(200):
        outbox.drain(timeout=30)
        if outbox._thread.is_alive():
            break
        outbox.journal.close()  # the process ended: its lock and files go with it
        outbox = Outbox(writer, Journal(journal.directory))
    else:
        raise AssertionError("the sender died more often than the schedule says")
    outbox.finish()
    return journal


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """Retries after milliseconds, not seconds; a sender that dies (Died) says nothing on stderr."""
    hook = threading.excepthook
    monkeypatch.setattr(threading, "excepthook", lambda args: None if args.exc_type is Died else hook(args))
    monkeypatch.setattr(outbox_module, "FIRST_BACKOFF", 0.001)
    monkeypatch.setattr(outbox_module, "MAX_BACKOFF", 0.01)
    monkeypatch.setattr(outbox_module, "LINGER", 0.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(1, 24),
    faults=st.lists(st.sampled_from(FAULTS), max_size=30),
    refused=st.sets(st.integers(0, 23), max_size=3),
)
def test_every_individual_arrives_once_whatever_fails_and_when(tmp_path_factory, count, faults, refused):
    tmp_path = tmp_path_factory.mktemp("journal")
    stream = events(count)
    ids = [value.id for kind, value in stream if kind == "individual"]
    bad = {ids[i] for i in refused if i < len(ids)}
    writer = MemoryWriter(faults, bad)
    journal = ship_through(tmp_path, writer, stream)

    whole = [r for r in writer.runs.values() if r["whole"]]
    counts = {i: sum(r["individual"] == i for r in whole) for i in ids}
    assert {i: c for i, c in counts.items() if i not in bad} == {i: 1 for i in ids if i not in bad}
    assert all(counts[i] == 0 for i in bad) and all(r["whole"] for r in writer.runs.values())
    for run in whole:  # no phantom parents: a named parent run exists
        assert all(p in writer.runs for p in run["parents"] if p), run
    assert set(writer.generations) == {g for kind, g in stream if kind == "generation"}
    if bad:
        kept = Journal(journal.directory)
        refused_ids = {kept.event_at(k)["individual"]["id"] for k in kept.refused()}
        assert refused_ids == bad and kept.unshipped() == len(bad)
    else:
        assert not (tmp_path / writer.search_run_id).exists()
