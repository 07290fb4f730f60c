"""What a warm start takes from a previous search run (spec/warm_start.py): its best individuals'
configurations, read back from their MLflow runs, and the trained states its last checkpoint still holds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from popplast.errors import SpecError
from popplast.spec.space import SearchSpace
from popplast.tracking.checkpoint_store import CheckpointStore
from popplast.tracking.search_run import check_server


@dataclass(frozen=True)
class SourceIndividual:
    id: str
    config: dict[str, Any]
    fitness: float


def best_individuals(tracking_uri: str, run_id: str, space: SearchSpace, k: int, where: str) -> list[SourceIndividual]:
    """The `k` best individuals of the search run `run_id` that finished, one per configuration, best first;
    SpecError (at `where`) when the run is missing or its individuals lack a gene of `space`."""
    check_server(tracking_uri)
    client = MlflowClient(tracking_uri)
    try:
        search = client.get_run(run_id)
    except Exception as e:  # MLflow raises its own types for a missing run
        raise SpecError(
            where,
            "warm_start.run",
            f"no search run {run_id!r} in the MLflow store {tracking_uri} ({type(e).__name__}).",
        ) from None
    runs = client.search_runs([search.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=50000)
    finished = []
    for run in runs:
        tags, fitness = run.data.tags, run.data.metrics.get("fitness")
        if "popplast.individual_id" not in tags or tags.get("popplast.status") not in ("ok", "stopped"):
            continue
        if fitness is None or not math.isfinite(fitness):
            continue
        config = {}
        for gene in space.genes:
            text = run.data.params.get(gene.name)
            if text is None:
                raise SpecError(
                    where, "warm_start.run", f"the search run {run_id} has no gene {gene.name!r} (another space?)."
                )
            config[gene.name] = typed(gene, text, run_id, where)
        finished.append(SourceIndividual(tags["popplast.individual_id"], config, float(fitness)))
    if not finished:
        raise SpecError(where, "warm_start.run", f"the search run {run_id} has no individual that finished.")
    finished.sort(key=lambda s: (-s.fitness, s.id))
    chosen: list[SourceIndividual] = []
    for individual in finished:
        if all(individual.config != c.config for c in chosen):
            chosen.append(individual)
    return chosen[:k]


def typed(gene: Any, text: str, run_id: str, where: str) -> Any:
    """A gene's value as MLflow keeps it (text), read back as the space types it."""
    if gene.type == "categorical":
        for choice in gene.choices:
            if str(choice) == text:
                return choice
        raise SpecError(
            where, "warm_start.run", f"the search run {run_id}'s {gene.name} = {text!r} is not one of its choices."
        )
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # refused below, by name
    low, high = gene.bounds()
    if not low <= value <= high:
        raise SpecError(
            where,
            "warm_start.run",
            f"the search run {run_id}'s {gene.name} = {text!r} is not a number from {low:g} to {high:g}.",
        )
    return int(value) if gene.type == "int" else value


class _Source(CheckpointStore):
    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.client, self.search_run_id, self.tracking_uri = MlflowClient(tracking_uri), run_id, tracking_uri


def checkpointed_states(tracking_uri: str, run_id: str, ids: list[str]) -> dict[str, Any]:
    """The trained states of `ids` that the run's newest checkpoint holds (Gen-Soup and PBT keep their last
    generation's and the best's); the others are missing from the answer."""
    from popplast.execution.checkpoint import load

    checkpoint = load(_Source(tracking_uri, run_id), lambda state: state)
    if checkpoint is None:
        return {}
    return {i: checkpoint.weights[i] for i in ids if i in checkpoint.weights}
