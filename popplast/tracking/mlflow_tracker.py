"""The MLflow layout of a search (ARCHITECTURE.md, "MLflow layout"): the only module that writes to MLflow.

One search run; one child run per evaluated individual, tagged with its lineage, so that any tool that
reads MLflow (the UI, `popplast lineage`, a notebook) can rebuild the family tree without popplast's state.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from mlflow.entities import Metric, Param, RunStatus, RunTag

from popplast.core.individual import Individual
from popplast.core.result import EvalResult, SearchResult
from popplast.core.spec import GA_METHODS, SearchSpec
from popplast.tracking.search_run import SearchRunTracker, param_text

MAX_TAG = 4000  # well under MLflow's tag value limit


class MLflowTracker(SearchRunTracker):
    """Writes a GA or Gen-Soup search to MLflow as it runs: the search run and one run per individual."""

    def __init__(self, tracking_uri: str, experiment: str, method: str, parent_run_id: str | None = None) -> None:
        super().__init__(tracking_uri, experiment, method, parent_run_id)
        self.gene_names: tuple[str, ...] = ()
        self.run_ids: dict[str, str] = {}  # individual id → MLflow run id

    def start_search(self, spec: SearchSpec, settings: Mapping[str, Any]) -> str:
        s = spec.strategy
        self.gene_names = spec.space.names
        ga = {"elitism": s.elitism, "crossover": list(s.crossover), "mutation": list(s.mutation)}
        params = {
            "method": s.method, "population": s.population, "generations": s.generations, "seed": s.seed,
            **(ga if s.method in GA_METHODS else {}),
            "genes": list(spec.space.names), "dataset": spec.dataset.name, "split_seed": spec.dataset.split_seed,
            **{f"fidelity.{k}": v for k, v in vars(spec.fidelity).items()},
            **{f"fixed.{k}": v for k, v in spec.fixed.items()},
            **settings,
        }
        return self._create_search_run(spec.source, s.seed, params)

    def reopen_search(self, search_run_id: str) -> bool:
        """Log into an existing search run again (a resumed search); False if the store does not hold it."""
        try:
            run = self.client.get_run(search_run_id)
        except Exception:  # MLflow raises its own types for a missing run
            return False
        if run.info.experiment_id != self.experiment_id:
            return False
        self.search_run_id = search_run_id
        self.client.update_run(search_run_id, status="RUNNING")
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{search_run_id}'",
                                           max_results=1000, page_token=token)
            for child in page:
                if "popplast.individual_id" in child.data.tags:
                    self.run_ids[child.data.tags["popplast.individual_id"]] = child.info.run_id
            token = page.token
            if not token:
                return True

    def individual_finished(self, individual: Individual, config: Mapping[str, Any], result: EvalResult) -> None:
        tags = {
            "mlflow.parentRunId": self.search_run_id,
            "popplast.individual_id": individual.id,
            "popplast.generation": str(individual.generation),
            "popplast.parent_ids": ",".join(individual.parent_ids),
            "popplast.parent_run_ids": ",".join(self.run_ids.get(p, "") for p in individual.parent_ids),
            "popplast.operator": individual.operator,
            "popplast.fusion_weights": ",".join(f"{w:.6g}" for w in individual.fusion_weights),
            "popplast.method": self.method,
            "popplast.status": "ok" if result.ok else "failed",
            "popplast.seed": str(individual.seed),
            "popplast.worker": result.worker,
        }
        tags.update({f"popplast.{k}": v for k, v in result.tags.items()})
        if result.error:
            tags["popplast.error"] = result.error[:MAX_TAG]
        run = self.client.create_run(self.experiment_id, run_name=individual.id, tags=tags)
        run_id = run.info.run_id
        self.run_ids[individual.id] = run_id
        now = int(time.time() * 1000)
        params = {**config, **{f"gene.{k}": repr(g) for k, g in zip(self.gene_names, individual.genome)}}
        metrics = [Metric(k, float(v), now, 0) for k, v in result.metrics.items()]
        if result.ok:
            metrics.append(Metric("fitness", float(result.fitness), now, 0))
        for key, series in result.history.items():
            metrics += [Metric(key, float(v), now, step) for step, v in enumerate(series, start=1)]
        self.client.log_batch(run_id, metrics=metrics, params=[Param(k, param_text(v)) for k, v in params.items()])
        status = RunStatus.to_string(RunStatus.FINISHED if result.ok else RunStatus.FAILED)
        self.client.set_terminated(run_id, status=status)

    def generation_finished(self, generation: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(f"generation_{k}", float(v), now, generation) for k, v in metrics.items() if k != "generation"]
        self.client.log_batch(self.search_run_id, metrics=batch)

    def end_search(self, result: SearchResult, final_population: Mapping[str, Any]) -> None:
        now = int(time.time() * 1000)
        metrics = {"best_fitness": result.best_fitness, "evaluations": result.evaluations,
                   "failed_evaluations": result.failed, "wall_seconds": result.wall_seconds,
                   **{f"best_{k}": v for k, v in result.best_metrics.items()},
                   **{f"retrain_{k}": v for k, v in result.retrain_metrics.items()},
                   **{f"model_{k}": v for k, v in result.model_metrics.items()}}
        if result.peak_weight_bytes:
            metrics["peak_weight_bytes"] = result.peak_weight_bytes
        tags = {"popplast.best_run_id": result.best_run_id, "popplast.best_individual_id": result.best.id}
        self.client.log_batch(self.search_run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.log_dict(self.search_run_id, final_population, "final_population.json")
        self.client.log_dict(self.search_run_id, {"individual": result.best.to_dict(), "config": result.best_config,
                                                  "fitness": result.best_fitness, "metrics": result.best_metrics},
                             "best_individual.json")
        self.client.set_terminated(self.search_run_id, status="FINISHED")

    def log_model(self, model: Any, input_example: Any) -> str:
        """Log the retrained best model on the search run; returns a URI for mlflow.pytorch.load_model.

        `input_example` (a numpy batch) gives the model its signature. The model is pickled, not exported
        with torch.export (MLflow 3's default): an exported graph is traced at the example's batch size,
        and a loaded model must take any batch.
        """
        import inspect

        import mlflow
        import mlflow.pytorch

        options = {}
        if "serialization_format" in inspect.signature(mlflow.pytorch.log_model).parameters:
            options["serialization_format"] = "pickle"
        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=self.search_run_id):
            info = mlflow.pytorch.log_model(model, name="model", input_example=input_example, **options)
        return info.model_uri

    def run_url(self, run_id: str, ui: str = "http://127.0.0.1:5000") -> str:
        return f"{ui}/#/experiments/{self.experiment_id}/runs/{run_id}"
