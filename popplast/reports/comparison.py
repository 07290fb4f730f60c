"""A comparison in MLflow: one comparison run, its search runs nested under it (one per method and seed),
their individuals' runs under those. Everything a report needs is read back from here, never from memory.

Times are the evaluations' own: each individual's run carries when its evaluation started and ended on its
worker's clock (`popplast.started`, `popplast.ended`; virtual seconds on a simulated cluster). MLflow's run
times say when the result reached MLflow, which after an outage, a backlog or a bulk write (many runs in one
transaction, one end time) is not when the evaluation ended. Runs without those tags (stores written before
popplast recorded them) fall back to MLflow's end times.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Param

from popplast.errors import PopplastError
from popplast.spec.search import method_label
from popplast.spec.strategy import variant_label
from popplast.tracking.search_run import (
    check_server,
    fitness_name,
    individual_runs,
    open_experiment,
    param_text,
    several_fitness,
)

SETTINGS = ("space_file", "methods", "seeds", "budget_evals", "budget_epochs", "workers")


class ComparisonError(PopplastError, RuntimeError):
    """The comparison run is missing, or is not the comparison the command describes."""


@dataclass
class Cell:
    """One (method, seed) search as MLflow holds it: evaluations in the order they finished."""

    method: str
    seed: int
    search_run_id: str
    best_fitness: float
    test: float  # the best individual's held-out metric (Comparison.test_metric); NaN without one
    wall_seconds: float  # the driver's (search run metric); a simulated search's: virtual, from its evaluations
    fitness: list[float | None] = field(default_factory=list)  # None: a failed evaluation
    seconds: list[float] = field(default_factory=list)  # when each ended, since the search's first one started
    costs: list[float] = field(default_factory=list)  # epochs each evaluation trained (a stopped one: fewer)
    epochs: float = 0.0
    backward_passes: float = 0.0  # gradient work: position-wise optimizers do (K+1)/2 per step through K blocks
    image_sizes: set[int] = field(default_factory=set)  # what its evaluations trained on
    counted: set[str] = field(default_factory=set)  # which of backward_passes, image_size its evaluations recorded
    # fused children: (generation, barrier against the better parent, against the parents' weighted mean)
    barriers: list[tuple[int, float, float]] = field(default_factory=list)
    # several objectives: each evaluation's told vector (objectives maximised, then the violation; None:
    # failed), in `fitness`'s order; `fitness` then holds the search's hypervolume after each evaluation
    vectors: list[list[float] | None] = field(default_factory=list)


@dataclass
class Comparison:
    run_id: str
    settings: dict[str, str]
    methods: list[str]
    seeds: list[int]
    cells: dict[tuple[str, int], Cell]
    fitness_name: str = "validation MCC"  # what the fitness is: popplast's CNN trainer's, or the file's metric
    test_metric: str | None = "test_mcc"  # the held-out metric (the file's fitness.test); None: not named
    test_name: str | None = "test MCC"
    mcc: bool = True  # the fitness is an MCC, in [−1, 1] (popplast's CNN trainer)
    simulated: bool = False  # seconds are virtual (--executor simulated)
    # several objectives: the file's fitness, and the reference point every search's hypervolume is measured
    # against (the metrics' units) with where it came from
    several: Any = None
    reference: dict[str, float] = field(default_factory=dict)
    reference_from: str = ""


class ComparisonTracker:
    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri = tracking_uri
        check_server(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        self.experiment_id = open_experiment(self.client, experiment)
        self.run_id = ""

    def start(self, name: str, settings: Mapping[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={"popplast.role": "comparison"})
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, param_text(v)) for k, v in settings.items()])
        return self.run_id

    def reopen(self, run_id: str, settings: Mapping[str, Any]) -> None:
        """Continue `run_id`; refuse it when the command describes another comparison."""
        run = _comparison_run(self.client, run_id)
        recorded = run.data.params
        for key in SETTINGS:
            if key in settings and recorded.get(key) != param_text(settings[key]):
                raise ComparisonError(
                    f"the comparison run {run_id} was started with {key} = {recorded.get(key)}, "
                    f"not {param_text(settings[key])}; resume it with the same settings."
                )
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")

    def finished_cells(self) -> set[tuple[str, int]]:
        return {(_label(r), int(r.data.params["seed"])) for r in _search_runs(self.client, self.run_id)}

    def log_report(self, folder: str) -> None:
        self.client.log_artifacts(self.run_id, folder, "report")

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def read_comparison(client: MlflowClient, run_id: str) -> Comparison:
    run = _comparison_run(client, run_id)
    params = dict(run.data.params)
    methods, seeds = json.loads(params.get("methods", "[]")), json.loads(params.get("seed_values", "[]"))
    latest = {}  # a cell run twice (an interrupted comparison): the later search counts
    for search in sorted(_search_runs(client, run_id), key=lambda r: r.info.start_time):
        latest[(_label(search), int(search.data.params["seed"]))] = search
    # every search of a comparison runs the same file: the first one names the metrics
    recorded = next(iter(latest.values())).data.params if latest else {}
    if "objective" in recorded:  # a user's objective: the file's fitness section names its metrics
        test = recorded.get("fitness.test")
        names: dict[str, Any] = dict(fitness_name=fitness_name(recorded), test_metric=test, test_name=test, mcc=False)
    else:
        names = {}  # popplast's CNN trainer: validation MCC, test MCC (the defaults)
    several = several_fitness(recorded)
    cells = {
        key: _cell(client, search, names.get("test_metric", "test_mcc"), several) for key, search in latest.items()
    }
    simulated = params.get("executor") == "simulated"
    comparison = Comparison(run_id, params, methods, seeds, cells, simulated=simulated, **names)
    if several is not None:
        comparison.several = several
        hypervolumes(comparison, several)
    return comparison


def hypervolumes(c: Comparison, fitness: Any) -> None:
    """Every search scored by its hypervolume against one reference point: the file's, else each objective's
    worst over every feasible evaluation of every search, moved out by a tenth of its range. Each cell's
    `fitness` becomes its hypervolume after each evaluation (a failed one: None), `best_fitness` the last."""
    from popplast.core import pareto
    from popplast.execution.front import below, signs

    sign = signs(fitness)
    rows = [v for cell in c.cells.values() for v in cell.vectors if v is not None and v[-1] == 0]
    if fitness.reference is not None:
        reference, c.reference_from = np.asarray(fitness.reference) * sign, "the search file"
    elif rows:
        reference = below(np.array(rows)[:, :-1])
        c.reference_from = (
            "every feasible evaluation of every search: each objective's worst, moved out by a tenth of its range"
        )
    else:
        reference, c.reference_from = np.zeros(len(sign)), "nothing feasible: no hypervolume"
    c.reference = {m: float(v * s) for (m, _), v, s in zip(fitness.objectives, reference, sign)}
    c.fitness_name, c.mcc, c.test_metric, c.test_name = "hypervolume", False, None, None
    for cell in c.cells.values():
        points: list[list[float]] = []
        curve: list[float | None] = []
        for vector in cell.vectors:
            if vector is not None and vector[-1] == 0:
                points.append(vector[:-1])
            curve.append(None if vector is None else pareto.hypervolume(np.array(points), reference))
        cell.fitness = curve
        cell.best_fitness = pareto.hypervolume(np.array(points), reference) if points else 0.0
        cell.test = float("nan")


def _label(search: Any) -> str:
    """The search's method as the comparison names it: with its stopper (ga+asha, tpe-hyperband) and its
    fusion settings (gensoup[fusion.align=weight_matching])."""
    params = search.data.params
    label = method_label(params["method"], params.get("stopper.rule", "none"), params.get("schedule", "generational"))
    return variant_label(label, params)  # with the fusion settings it ran with, where not the defaults


def _comparison_run(client: MlflowClient, run_id: str) -> Any:
    try:
        run = client.get_run(run_id)
    except Exception as e:  # MLflow raises its own types for a missing run
        raise ComparisonError(f"no MLflow run {run_id!r} in {client.tracking_uri} ({type(e).__name__})") from None
    if run.data.tags.get("popplast.role") != "comparison":
        raise ComparisonError(f"the run {run_id} is not a popplast comparison run (printed by popplast compare).")
    return run


def _search_runs(client: MlflowClient, run_id: str) -> list[Any]:
    """The finished search runs nested under a comparison run."""
    experiment = client.get_run(run_id).info.experiment_id
    found = client.search_runs(
        [experiment],
        f"tags.mlflow.parentRunId = '{run_id}' and tags.`popplast.role` = 'search' and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    return list(found)


def _cell(client: MlflowClient, search: Any, test_metric: str | None, several: Any = None) -> Cell:
    runs = individual_runs(client, search.info.experiment_id, search.info.run_id)
    ended, span = _ends(runs, search.info.start_time)
    order = sorted(range(len(runs)), key=lambda i: (ended[i], runs[i].data.tags["popplast.individual_id"]))
    metrics = search.data.metrics
    simulated = search.data.params.get("executor") == "simulated"
    cell = Cell(
        _label(search),
        int(search.data.params["seed"]),
        search.info.run_id,
        metrics["best_fitness"],
        metrics.get(f"best_{test_metric}", float("nan")) if test_metric else float("nan"),
        # the driver's clock is real time; a simulated cluster's is virtual, like its evaluations' spans
        span if simulated and span is not None else metrics["wall_seconds"],
    )
    for i in order:
        r = runs[i]
        ok = r.data.tags.get("popplast.status") in ("ok", "stopped")
        cell.fitness.append(r.data.metrics["fitness"] if ok else None)
        if several is not None:
            cell.vectors.append(list(several.vector(r.data.metrics)) if ok else None)
        cell.seconds.append(ended[i])
        # a stopped individual counts the epochs (steps) it reached; a failed one what it reported
        cell.costs.append(r.data.metrics.get("epochs", r.data.metrics.get("steps", 0.0)))
        cell.counted |= {k for k in ("backward_passes", "image_size") if k in r.data.metrics}
        if "fusion_barrier" in r.data.metrics:
            m = r.data.metrics
            generation = int(r.data.tags.get("popplast.generation", "0"))
            cell.barriers.append((generation, m["fusion_barrier"], m.get("fusion_barrier_mean", float("nan"))))
        if ok:
            cell.epochs += cell.costs[-1]
            cell.backward_passes += r.data.metrics.get("backward_passes", 0.0)
            if "image_size" in r.data.metrics:
                cell.image_sizes.add(int(r.data.metrics["image_size"]))
    return cell


def _ends(runs: list[Any], search_start: int) -> tuple[list[float], float | None]:
    """When each run's evaluation ended, in seconds since the search's first evaluation started, and the
    seconds from that start to the last end (None without span tags).

    A search whose runs carry no span tags (an old store): MLflow's end times, since the search run started.
    A run without them in a search whose others have them (an individual whose worker died in every attempt:
    no evaluation of it ended) counts as ending with the latest one MLflow holds as written before it.
    """
    spans = {}
    for i, r in enumerate(runs):
        tags = r.data.tags
        if "popplast.started" in tags and "popplast.ended" in tags:
            spans[i] = (float(tags["popplast.started"]), float(tags["popplast.ended"]))
    if not spans:
        return [((r.info.end_time or search_start) - search_start) / 1000.0 for r in runs], None
    origin = min(start for start, _ in spans.values())
    ended, latest = [0.0] * len(runs), 0.0
    for i in sorted(range(len(runs)), key=lambda i: (runs[i].info.end_time or 0, runs[i].info.start_time or 0)):
        if i in spans:
            latest = max(latest, spans[i][1] - origin)
        ended[i] = spans[i][1] - origin if i in spans else latest
    return ended, max(end for _, end in spans.values()) - origin
