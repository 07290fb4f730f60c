"""`popplast record-table SEARCH_RUN_ID`: a finished search's individuals as a table the simulated cluster
replays (execution/simulated/models.py): each run's configuration (its params), its fitness metric's curve (the
values it reported step by step, else its final value alone), the seconds it kept its worker busy and its
other final metrics (the finite ones). Failed and simulated runs are left out (a table is a record of real
training)."""

from __future__ import annotations

import math
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from popplast.errors import COMMAND_LINE, SpecError
from popplast.execution.simulated.models import Table, TableRow
from popplast.spec.fields import parse_yaml
from popplast.tracking.search_run import individual_runs

SKIPPED_METRICS = ("fitness", "train_seconds", "steps", "epochs", "backward_passes")  # the simulation counts its own


def record_table(tracking_uri: str, search_run_id: str) -> Table:
    client = MlflowClient(tracking_uri)
    try:
        search = client.get_run(search_run_id)
    except MlflowException:
        raise SpecError(COMMAND_LINE, "SEARCH_RUN_ID", f"no run {search_run_id!r} in {tracking_uri}.") from None
    if search.data.tags.get("popplast.role") != "search":
        raise SpecError(COMMAND_LINE, "SEARCH_RUN_ID", f"the run {search_run_id} is not a popplast search run.")
    params = search.data.params
    metric = params.get("fitness.metric", "val_mcc")
    mode = params.get("fitness.mode", "maximize")
    rows = []
    for run in sorted(individual_runs(client, search.info.experiment_id, search_run_id), key=_order):
        tags, metrics = run.data.tags, run.data.metrics
        if tags.get("popplast.status") not in ("ok", "stopped") or "popplast.simulated" in tags:
            continue
        if metric not in metrics:
            continue
        # the values reported step by step; the final value logged at the last step after them is the same
        # value (or an objective's own final figure), so the first at each step is kept
        history = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, metric))
        by_step: dict[int, float] = {}
        for step, _, value in history:
            if step > 0:
                by_step.setdefault(step, value)
        curve = tuple(by_step[s] for s in sorted(by_step)) or (metrics[metric],)
        config = {k: param_value(v) for k, v in run.data.params.items() if not k.startswith("gene.")}
        # a final metric other than the fitness may be NaN or infinite (a diverged model's loss): a table holds
        # finite numbers only (models.Table refuses the rest), so it is left out
        others = {k: v for k, v in metrics.items() if k != metric and k not in SKIPPED_METRICS and math.isfinite(v)}
        status = "ok" if tags.get("popplast.status") == "ok" else "stopped"
        seed = int(tags["popplast.seed"]) if tags.get("popplast.seed", "").isdigit() else None
        rows.append(TableRow(config, curve, _seconds(tags, metrics), others, status, seed))
    if not [r for r in rows if r.status == "ok"]:
        raise SpecError(
            COMMAND_LINE, "SEARCH_RUN_ID", f"the search {search_run_id} has no finished run with a {metric} to record."
        )
    return Table(metric, mode, rows, source=f"{tracking_uri} search run {search_run_id}")


def _seconds(tags: dict[str, str], metrics: dict[str, float]) -> float:
    """What the run kept its worker busy: its span (the objective's whole call: data, training, validation),
    else its training seconds."""
    if "popplast.started" in tags and "popplast.ended" in tags:
        return float(tags["popplast.ended"]) - float(tags["popplast.started"])
    return float(metrics.get("train_seconds", 0.0))


def _order(run: Any) -> tuple[int, str]:
    tags = run.data.tags
    return int(tags.get("popplast.generation", 0)), tags.get("popplast.individual_id", "")


def param_value(text: str) -> Any:
    """A param back to the value it was logged from (numbers, booleans, strings)."""
    try:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        pass
    try:
        return parse_yaml(text)  # popplast's one YAML reader: an alias bomb in a param stays its text
    except yaml.YAMLError:
        return text
