"""What an evaluation returns and what a search returns: plain data, no framework types."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping

from popplast.core.individual import Individual


@dataclass
class EvalResult:
    """The outcome of evaluating one individual.

    Attributes:
        individual_id: which individual.
        fitness: validation MCC (maximised); None when the evaluation failed.
        metrics: scalar metrics (val/test accuracy, F1, MCC, train_seconds, ...).
        history: per-step series: values by epoch (``{"train_loss": [...]}``), or (step, value) pairs from
            an objective's ``trial.report``.
        error: why the evaluation failed (one line, then the traceback's last frames), else None.
        weights: trained weights when they were asked for (a state dict or an object-store reference).
        worker: where it ran (host:pid), for the record.
        tags: strings to record beside the metrics (e.g. the hashes of the initial and trained weights).
        retries: why each earlier attempt failed (its worker died), when the executor ran it more than once.
        stopped_at: the step at which the search's stopper stopped it early, else None.
    """

    individual_id: str
    fitness: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[Any]] = field(default_factory=dict)
    error: str | None = None
    weights: Any = None
    worker: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    retries: list[str] = field(default_factory=list)
    stopped_at: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.fitness is not None and math.isfinite(self.fitness)

    @classmethod
    def failed(cls, individual_id: str, error: str, worker: str = "") -> "EvalResult":
        return cls(individual_id, None, error=error, worker=worker)

    def summary(self) -> "EvalResult":
        """What the driver keeps of a result once the strategy and the observers have had it, the same as a
        checkpoint holds (fitness, metrics, error, stopped_at): its history and tags went to the tracker, and
        keeping them too made the driver hold twice as much per evaluation (docs/benchmarks.md)."""
        return EvalResult(self.individual_id, self.fitness, self.metrics, error=self.error, stopped_at=self.stopped_at)


@dataclass
class SearchResult:
    """What `popplast run` prints and `popplast.run` returns."""

    method: str
    best: Individual
    best_config: dict[str, Any]
    best_fitness: float
    best_metrics: dict[str, float]
    best_run_id: str
    search_run_id: str
    experiment_id: str
    tracking_uri: str
    evaluations: int
    failed: int
    wall_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    model_uri: str | None = None
    retrain_metrics: dict[str, float] = field(default_factory=dict)
    lineage_html: str | None = None
    model_metrics: dict[str, float] = field(default_factory=dict)  # the logged model, measured again
    answer_metrics: dict[str, float] = field(default_factory=dict)  # a user objective's `answer` hook's
    peak_weight_bytes: float = 0.0  # Gen-Soup: most bytes of trained weights held in the object store at once
    fitness_label: str = "validation MCC"  # what the fitness is: an objective's metric, negated when minimised
    worker_utilisation: float | None = None  # the workers' busy time over workers × wall time (reports/utilisation.py)
    fusion: dict[str, float] = field(default_factory=dict)  # over fused children (execution/fusion_cost.py)
    soup: dict[str, Any] = field(default_factory=dict)  # `final: {soup: greedy}`: what the soup tried and kept
    # several objectives (execution/front.py): objectives [(metric, mode)], constraints, reference (by metric),
    # hypervolume, members [{id, objectives}] best first in the first objective, evaluations feasible
    front: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The text `popplast run` prints at the end."""
        lines = [
            f"Best individual {self.best.id} (generation {self.best.generation}, operator {self.best.operator})",
            f"  fitness ({self.fitness_label}): {self.best_fitness:.4f}",
        ]
        test = {k[5:]: v for k, v in self.best_metrics.items() if k.startswith("test_")}
        if test:
            lines.append("  test: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
        elif self.best_metrics:  # an objective's own metrics
            lines.append(
                "  metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in self.best_metrics.items() if k != "train_seconds")
            )
        lines += front_lines(self.front)
        lines.append("  hyperparameters:")
        lines += [f"    {k}: {_fmt(v)}" for k, v in self.best_config.items()]
        if self.retrain_metrics:
            lines.append(
                "  retrained at the final fidelity: "
                + ", ".join(f"{k} {v:.4f}" for k, v in self.retrain_metrics.items() if k.startswith("test_"))
            )
        if self.model_uri:
            lines.append(f"  model: {self.model_uri}  (mlflow.pytorch.load_model)")
        if self.model_metrics:
            lines.append(
                "  the logged model, measured again: "
                + ", ".join(f"{k} {v:.4f}" for k, v in self.model_metrics.items())
            )
        if self.answer_metrics:
            lines.append(
                "  the objective's answer: " + ", ".join(f"{k} {v:.4g}" for k, v in self.answer_metrics.items())
            )
        if self.fusion:
            f = self.fusion
            lines.append(
                f"  fusions: {f['fusions']:.0f}; barrier before training, median: {f['fusion_barrier_median']:+.4f} "
                f"against the better parent ({f['fusion_gains']:.0f} gained on it), "
                f"{f['fusion_barrier_mean_median']:+.4f} against the parents' weighted mean"
            )
        if self.soup:
            s = self.soup
            verdict = "the logged model" if s["answer"] else "not better than the best alone, which is logged"
            lines.append(
                f"  greedy soup: {len(s['ingredients'])} of {len(s['candidates'])} candidates "
                f"({', '.join(s['ingredients'])}), validation MCC {s['val_mcc']:.4f} against the best's "
                f"{s['best_val_mcc']:.4f}: {verdict}"
            )
        if self.peak_weight_bytes:
            lines.append(f"  trained weights held at once, at most: {self.peak_weight_bytes / 2**20:.1f} MiB")
        busy = f"; workers busy {self.worker_utilisation:.0%} of the time" if self.worker_utilisation else ""
        lines += [
            f"{self.evaluations} evaluations ({self.failed} failed) in {self.wall_seconds:.1f} s{busy}",
            f"MLflow: search run {self.search_run_id}, best individual's run {self.best_run_id}",
            *([f"Family tree: {self.lineage_html}"] if self.lineage_html else []),
            f"Open it: {ui_command(self.tracking_uri)}",
            f"  then {ui_url(self.tracking_uri)}/#/experiments/{self.experiment_id}/runs/{self.best_run_id}",
        ]
        return "\n".join(lines)


def front_lines(front: Mapping[str, Any], shown: int = 12) -> list[str]:
    """The summary's Pareto front: its members' objectives, best first in the first objective."""
    if not front:
        return []
    members = front["members"]
    if not members:
        return [
            f"  Pareto front: empty, no evaluation met the constraints ({'; '.join(front['constraints'])}); the best "
            "above is the one that misses them least"
        ]
    reference = ", ".join(f"{m} {v:.4g}" for m, v in front["reference"].items())
    lines = [
        f"  Pareto front: {len(members)} of {front['feasible']} feasible evaluations; hypervolume "
        f"{front['hypervolume']:.6g} against the reference point ({reference})"
    ]
    for member in members[:shown]:
        lines.append(f"    {member['id']}: " + ", ".join(f"{m} {v:.4g}" for m, v in member["objectives"].items()))
    if len(members) > shown:
        lines.append(f"    ... and {len(members) - shown} more (pareto_front.json)")
    return lines


def ui_command(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return f"the MLflow server at {tracking_uri}"
    return f"{mlflow_command()} ui --backend-store-uri {tracking_uri}"


def mlflow_command() -> str:
    """The `mlflow` beside this Python (`.venv/bin/mlflow` when popplast runs from the checkout's venv, which
    is not on the PATH), else plain `mlflow`."""
    beside = os.path.join(os.path.dirname(sys.executable), "mlflow")
    if not os.path.isfile(beside):
        return "mlflow"
    relative = os.path.relpath(beside)
    return relative if not relative.startswith("..") else beside


def ui_url(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return "http://127.0.0.1:5000"


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@dataclass
class RulesResult:
    """What `popplast evolve-rules` prints and `popplast.evolve_rules` returns."""

    method: str
    rules: list[float]
    train_accuracy: float
    test_accuracy: float
    generalisation_accuracy: float
    generalisation_batch_accuracy: float
    generalisation_curve: list[float]
    best_fitness: float
    generations: int
    search_run_id: str
    experiment_id: str
    tracking_uri: str
    wall_seconds: float
    chance: float

    def summary(self) -> str:
        return "\n".join(
            [
                f"Rules evolved with {self.method} over {self.generations} generations in {self.wall_seconds:.1f} s "
                f"({len(self.rules)} genes; chance accuracy {self.chance:.3f})",
                f"  train accuracy {self.train_accuracy:.4f}, test accuracy {self.test_accuracy:.4f}",
                f"  generalisation (fresh data, rules frozen): test accuracy {self.generalisation_accuracy:.4f} after "
                f"{len(self.generalisation_curve)} passes (train accuracy by pass: "
                f"first {self.generalisation_curve[0]:.4f}, last {self.generalisation_curve[-1]:.4f})",
                f"  generalisation under the selection protocol (fresh data, one batch from reset weights): "
                f"test accuracy {self.generalisation_batch_accuracy:.4f}",
                f"MLflow: search run {self.search_run_id}; the rule vector is its artifact rules.json",
                f"Open it: {ui_command(self.tracking_uri)}",
                f"  then {ui_url(self.tracking_uri)}/#/experiments/{self.experiment_id}/runs/{self.search_run_id}",
            ]
        )
