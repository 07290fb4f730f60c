"""The MLflow layout of a search (ARCHITECTURE.md, "MLflow layout"): the only module that writes to MLflow
(through MLflow's API, or through bulk_runs.py for many individuals' runs at once into a database).

One search run; one child run per evaluated individual, tagged with its lineage, so that any tool that
reads MLflow (the UI, `popplast lineage`, a notebook) can rebuild the family tree without popplast's state.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from typing import Any, Mapping, Sequence

from mlflow.entities import Metric, Param, RunStatus, RunTag

from popplast.core.individual import Individual
from popplast.core.result import EvalResult, SearchResult
from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.search import SearchSpec
from popplast.spec.strategy import variant_params
from popplast.strategies.catalogue import method as entry
from popplast.tracking.bulk_runs import DATABASE, RunRecord, open_bulk, server_database
from popplast.tracking.checkpoint_store import CheckpointStore
from popplast.tracking.failures import describe, unreachable
from popplast.tracking.run_notes import NOTE, NOTE_TAGS, individual_note, search_note
from popplast.tracking.run_writers import RunWriter, open_writer
from popplast.tracking.search_run import SearchRunTracker, child_runs, individual_runs, param_text

log = logging.getLogger(__name__)

MAX_TAG = 4000  # well under MLflow's tag value limit
SPEC_ARTIFACT = "spec.json"


class MLflowTracker(CheckpointStore, SearchRunTracker):
    """Writes a GA or Gen-Soup search to MLflow as it runs: the search run and one run per individual."""

    def __init__(self, tracking_uri: str, experiment: str, method: str, parent_run_id: str | None = None) -> None:
        super().__init__(tracking_uri, experiment, method, parent_run_id)
        self.gene_names: tuple[str, ...] = ()
        self.run_ids: dict[str, str] = {}  # individual id → MLflow run id
        # what individuals' run descriptions are made of (run_notes.py): their tags, fitness and children;
        # parents that got children since their description was last written
        self._tags: dict[str, dict[str, str]] = {}
        self._fitness: dict[str, float | None] = {}
        self._children: dict[str, set[str]] = {}
        self._stale_notes: set[str] = set()
        self.outbox: Any = None  # the journal's sender while a search is journalled (search/tracking.py)
        self.drawn: tuple[str | None, float | None] = (None, None)  # the lineage page and utilisation, once drawn
        database = os.environ.get(DATABASE, "").strip()
        bulk = None
        if database and tracking_uri.startswith(("http://", "https://")):
            try:
                bulk = server_database(database, self.experiment_id, experiment)
            except ValueError as e:
                raise SpecError(COMMAND_LINE, f"{DATABASE} (environment variable)", f"{e}.") from None
        elif not tracking_uri.startswith(("http://", "https://")):
            bulk = open_bulk(self.client)
        self.writer: RunWriter = open_writer(self.client, bulk)  # how individuals' runs are written, once

    def start_search(self, spec: SearchSpec, settings: Mapping[str, Any]) -> str:
        s = spec.strategy
        self.gene_names = spec.space.names
        ga = {"elitism": s.elitism, "crossover": list(s.crossover), "mutation": list(s.mutation)}
        params = {
            "method": s.method,
            "population": s.population,
            "generations": s.generations,
            "seed": s.seed,
            **(ga if entry(s.method).genetic else {}),
            **({"schedule": s.schedule, "replacement": s.replacement} if s.schedule == "async" else {}),
            **{f"strategy.{k}": getattr(s, k) for k in ("sigma", "learning_rate") if getattr(s, k) is not None},
            **{f"strategy.{k}": v for k, v in s.settings.items()},  # a user's strategy's own settings
            **variant_params(s),  # fusion.align, ..., final.soup: for the methods that take them
            "genes": list(spec.space.names),
            **(
                {
                    "objective": spec.objective,
                    "fitness.metric": spec.fitness.metric,
                    "fitness.mode": spec.fitness.mode,
                    # the held-out metric a comparison's report puts beside the fitness (reports/comparison.py)
                    **({"fitness.test": spec.fitness.test} if spec.fitness.test else {}),
                    **(several_params(spec) if spec.fitness.several else {}),
                }
                if spec.objective
                else {"dataset": spec.dataset.name, "split_seed": spec.dataset.split_seed}
            ),
            **{f"fidelity.{k}": v for k, v in vars(spec.fidelity).items()},
            **{f"fixed.{k}": v for k, v in spec.fixed.items()},
            **({f"stopper.{k}": v for k, v in spec.stopper.to_dict().items()} if spec.stopper.active else {}),
            **settings,
        }
        run_id = self._create_search_run(spec.source, s.seed, params)
        self.hold_lease(fresh=True)
        return run_id

    def reopen_search(self, search_run_id: str, spec: SearchSpec) -> bool:
        """Log into an existing search run again (a resumed search); False if the store does not hold it."""
        try:
            run = self.client.get_run(search_run_id)
        except Exception:  # MLflow raises its own types for a missing run
            return False
        if run.info.experiment_id != self.experiment_id:
            return False
        self.search_run_id = search_run_id
        self.gene_names = spec.space.names
        self.hold_lease()  # the one taken before anything started (api.run), else now
        self.client.update_run(search_run_id, status="RUNNING")
        self._known(search_run_id)
        return True

    def _known(self, search_run_id: str) -> None:
        """The individuals a search run holds already: run ids and what their descriptions are made of."""
        for child in individual_runs(self.client, self.experiment_id, search_run_id):
            tags = dict(child.data.tags)
            fitness = child.data.metrics.get("fitness")
            self._remember(tags["popplast.individual_id"], child.info.run_id, tags, fitness, stale=False)

    def _remember(
        self, individual_id: str, run_id: str, tags: dict[str, str], fitness: float | None, stale: bool = True
    ) -> None:
        """`stale`: its parents' descriptions do not list it yet."""
        self.run_ids[individual_id] = run_id
        self._tags[individual_id] = {k: tags[k] for k in NOTE_TAGS if k in tags}  # not all: 2 KB an individual
        self._fitness[individual_id] = fitness
        for parent in _parents(tags):
            self._children.setdefault(parent, set()).add(individual_id)
            if stale:
                self._stale_notes.add(parent)

    def log_spec(self, spec: SearchSpec, budget: int) -> None:
        """The effective spec (file plus flags), as `popplast run --resume` reads it back."""
        self.client.log_dict(
            self.search_run_id, {"spec": spec.to_dict(), "source": spec.source, "budget_evals": budget}, SPEC_ARTIFACT
        )

    def attach(self, search_run_id: str, gene_names: tuple[str, ...]) -> None:
        """Log into a search run as it is (`popplast sync`): its individuals' run ids, no status change."""
        self.search_run_id = search_run_id
        self.gene_names = tuple(gene_names)
        self._known(search_run_id)

    def has_logged(self, individual_id: str) -> bool:
        """Whether MLflow holds the individual's run whole (ended); runs of it cut short, and the retried
        attempts logged before them, are deleted so that logging it again gives it once."""
        runs = self.writer.runs_of(self.experiment_id, self.search_run_id, individual_id)
        whole = [r for r in runs if r.tags.get("popplast.status") != "retried" and r.whole]
        if whole:
            self._remember(individual_id, whole[0].run_id, whole[0].tags, whole[0].fitness)
            return True
        for run in runs:
            self.writer.delete(run.run_id)
        self.run_ids.pop(individual_id, None)  # a batch that failed may have named a run it never wrote
        return False

    def discard_after(self, generation: int, keep: set[str] | None = None) -> int:
        """Delete the runs of generations after `generation` (an interrupted generation, asked and evaluated
        again on resume), or with `keep`, of every individual not in it (an asynchronous search's: those it
        resumes to evaluate again or ask anew); returns how many."""

        def gone(tags: Mapping[str, str]) -> bool:
            if keep is None:
                return int(tags.get("popplast.generation", -1)) > generation
            return "popplast.individual_id" in tags and tags["popplast.individual_id"] not in keep

        runs = [r for r in child_runs(self.client, self.experiment_id, self.search_run_id) if gone(r.data.tags)]
        for run in runs:
            self.client.delete_run(run.info.run_id)
            gone = run.data.tags.get("popplast.individual_id", "")
            self.run_ids.pop(gone, None)
            for parent in _parents(run.data.tags):  # their descriptions must not link the deleted run
                self._children.get(parent, set()).discard(gone)
                self._stale_notes.add(parent)
        return len(runs)

    def individual_finished(self, individual: Individual, config: Mapping[str, Any], result: EvalResult) -> None:
        self.individuals_finished([(individual, config, result)])

    def individuals_finished(self, finished: Sequence[tuple[Individual, Mapping[str, Any], EvalResult]]) -> None:
        """Log finished individuals, in order, through the tracker's writer (tracking/run_writers.py): in one
        transaction where it writes into a database, else run by run."""
        chunk: list[RunRecord] = []
        # run ids of individuals written in this call, for their children in it; they become the tracker's
        # (and so parents' run ids of later children) only once written: a write that failed wrote none of
        # them, and a child naming one would name a run that does not exist
        pending: dict[str, tuple[RunRecord, float | None]] = {}
        run_ids = collections.ChainMap({k: v[0].run_id for k, v in pending.items()}, self.run_ids)

        def flush() -> None:
            if chunk:
                self.writer.write(self.experiment_id, chunk)
                chunk.clear()
            for individual_id, (record, fitness) in pending.items():
                self._remember(individual_id, record.run_id, record.tags, fitness)
            pending.clear()
            run_ids.maps[0].clear()

        for individual, config, result in finished:
            records, fitness = self._records(individual, config, result, run_ids)
            if not self.writer.in_one_go(records):
                flush()  # what came before it goes first; it alone, and its run's id is known before the next
            chunk += records
            pending[individual.id] = (records[-1], fitness)
            run_ids.maps[0][individual.id] = records[-1].run_id
            if not self.writer.in_one_go(records):
                flush()
        flush()

    def _records(
        self, individual: Individual, config: Mapping[str, Any], result: EvalResult, run_ids: Mapping[str, str]
    ) -> tuple[list[RunRecord], float | None]:
        """An individual's runs (its retried attempts', then its own) and its fitness; `run_ids`: the runs of
        the individuals written so far, by individual id."""
        records = [self._retried(individual, attempt, error) for attempt, error in enumerate(result.retries, start=1)]
        tags = {
            "mlflow.parentRunId": self.search_run_id,
            "popplast.individual_id": individual.id,
            "popplast.generation": str(individual.generation),
            "popplast.parent_ids": ",".join(individual.parent_ids),
            "popplast.parent_run_ids": ",".join(run_ids.get(p, "") for p in individual.parent_ids),
            "popplast.operator": individual.operator,
            "popplast.fusion_weights": ",".join(f"{w:.6g}" for w in individual.fusion_weights),
            "popplast.method": self.method,
            "popplast.status": _status(result),
            "popplast.seed": str(individual.seed),
            "popplast.worker": result.worker,
        }
        tags.update({f"popplast.{k}": v for k, v in result.tags.items()})
        if result.retries:
            tags["popplast.attempts"] = str(len(result.retries) + 1)
        if result.stopped_at is not None:
            tags["popplast.stopped_at_step"] = str(result.stopped_at)
        if result.error:
            tags["popplast.error"] = result.error[:MAX_TAG]
        fitness = float(result.fitness) if result.ok and result.fitness is not None else None
        tags[NOTE] = individual_note(self.experiment_id, tags, fitness, run_ids)
        now = int(time.time() * 1000)
        params = {**config, **{f"gene.{k}": repr(g) for k, g in zip(self.gene_names, individual.genome)}}
        metrics, last = [], {}
        for key, series in result.history.items():  # values by epoch, or (step, value) from trial.report
            for i, point in enumerate(series, start=1):
                step, value = point if isinstance(point, (tuple, list)) else (i, point)
                metrics.append(Metric(key, float(value), now, int(step)))
                last[key] = max(last.get(key, 0), int(step))
        # a final metric that was also reported step by step goes at the run's last step, a moment later:
        # MLflow's latest value of a metric is its highest step's, and it must be the value the objective
        # returned (a series of only step 0, what a fused child scored before training, ends after training)
        end = max(last.values(), default=0)
        metrics += [Metric(k, float(v), now + (k in last), end if k in last else 0) for k, v in result.metrics.items()]
        if result.ok:
            metrics.append(Metric("fitness", float(result.fitness), now, 0))
        status = RunStatus.to_string(RunStatus.FINISHED if result.ok else RunStatus.FAILED)
        own = RunRecord(individual.id, tags, status, [Param(k, param_text(v)) for k, v in params.items()], metrics, now)
        return records + [own], fitness

    def _retried(self, individual: Individual, attempt: int, error: str) -> RunRecord:
        """An attempt whose worker died: its own run (status retried), so the UI shows every retry; lineage
        readers skip these runs."""
        tags = {
            "mlflow.parentRunId": self.search_run_id,
            "popplast.individual_id": individual.id,
            "popplast.generation": str(individual.generation),
            "popplast.method": self.method,
            "popplast.operator": individual.operator,
            "popplast.status": "retried",
            "popplast.attempt": str(attempt),
            "popplast.error": error[:MAX_TAG],
        }
        return RunRecord(f"{individual.id}-attempt{attempt}", tags, "FAILED")

    def generation_finished(self, generation: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(f"generation_{k}", float(v), now, generation) for k, v in metrics.items() if k != "generation"]
        self.client.log_batch(self.search_run_id, metrics=batch)
        self.write_notes()

    def write_notes(self) -> None:
        """The descriptions of individuals that got children since they were written (once per generation:
        one call per parent, not per child)."""
        updates = [
            (
                self.run_ids[parent],
                NOTE,
                individual_note(
                    self.experiment_id,
                    self._tags[parent],
                    self._fitness[parent],
                    self.run_ids,
                    sorted(self._children[parent]),
                ),
            )
            for parent in sorted(self._stale_notes)
            if parent in self.run_ids and parent in self._tags
        ]
        try:
            self.writer.set_tags(updates)
        except Exception as e:
            if unreachable(e):  # the same notes again once MLflow answers
                raise
            for update in updates:  # a description is never worth a generation's event: those refused are dropped
                try:
                    self.writer.set_tags([update])
                except Exception as one:
                    if unreachable(one):
                        raise
                    log.warning(
                        "MLflow refused the description of run %s (%s); it stays as it was", update[0], describe(one)
                    )
        self._stale_notes.clear()

    def end_event(self, result: SearchResult, final_population: Mapping[str, Any]) -> dict[str, Any]:
        """The end of a finished search as a journal event (tracking/outbox.py ships it with `ship_end`)."""
        metrics = {
            "best_fitness": result.best_fitness,
            "evaluations": result.evaluations,
            "failed_evaluations": result.failed,
            "wall_seconds": result.wall_seconds,
            **{f"best_{k}": v for k, v in result.best_metrics.items()},
            **{f"retrain_{k}": v for k, v in result.retrain_metrics.items()},
            **{f"model_{k}": v for k, v in result.model_metrics.items()},
        }
        if result.peak_weight_bytes:
            metrics["peak_weight_bytes"] = result.peak_weight_bytes
        metrics.update(result.fusion)
        if result.front:
            metrics.update(hypervolume=result.front["hypervolume"], front_size=len(result.front["members"]))
        if result.soup:
            metrics.update(
                soup_ingredients=len(result.soup["ingredients"]),
                soup_candidates=len(result.soup["candidates"]),
                soup_val_mcc=result.soup["val_mcc"],
                soup_best_val_mcc=result.soup["best_val_mcc"],
                soup_is_answer=float(result.soup["answer"]),
            )
        best = {
            "individual": result.best.to_dict(),
            "config": result.best_config,
            "fitness": result.best_fitness,
            "metrics": result.best_metrics,
        }
        return {
            "kind": "end",
            "status": "FINISHED",
            "metrics": {k: float(v) for k, v in metrics.items()},
            "best": best,
            "final_population": dict(final_population),
            **({"soup": dict(result.soup)} if result.soup else {}),
            **({"front": dict(result.front)} if result.front else {}),
            **({"model": _model_said(result)} if result.model_uri else {}),
        }

    def ship_end(self, event: Mapping[str, Any]) -> None:
        """End the search run as the event says: a finished search's results, descriptions and drawings first,
        the status last (a FINISHED run holds all of it); a failed or killed one's reason."""
        if event["status"] != "FINISHED":
            if event.get("reason"):
                self.client.set_tag(self.search_run_id, "popplast.end_reason", event["reason"])
            self.client.set_terminated(self.search_run_id, status=event["status"])
            return
        now = int(time.time() * 1000)
        best = event["best"]
        best_id = best["individual"]["id"]
        best_run_id = self.run_ids[best_id]
        self.write_notes()
        tags = {
            "popplast.best_run_id": best_run_id,
            "popplast.best_individual_id": best_id,
            NOTE: search_note(self.experiment_id, best_id, best_run_id, self.search_run_id, best["fitness"], True),
        }
        self.client.log_batch(
            self.search_run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in event["metrics"].items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        self.client.log_dict(self.search_run_id, event["final_population"], "final_population.json")
        self.client.log_dict(self.search_run_id, best, "best_individual.json")
        if event.get("model"):
            self.client.set_tag(self.search_run_id, "popplast.model", event["model"])
        if event.get("soup"):
            self.client.log_dict(self.search_run_id, event["soup"], "soup.json")
        runs = individual_runs(self.client, self.experiment_id, self.search_run_id)  # once for every drawing
        if event.get("front"):
            self._log_front(event["front"], runs)
        self.drawn = self._draw(runs)
        self.client.set_terminated(self.search_run_id, status="FINISHED")

    def _log_front(self, front: Mapping[str, Any], runs: list[Any]) -> None:
        """pareto_front.json and pareto_front.png (reports/front.py); a drawing that fails is logged and left
        out, as the lineage's are."""
        import tempfile

        from popplast.reports.front import draw_front, front_document

        self.client.log_dict(self.search_run_id, front_document(front, runs), "pareto_front.json")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                drawn = draw_front(front, runs, os.path.join(tmp, "pareto_front.png"))
                if drawn:
                    self.client.log_artifact(self.search_run_id, drawn)
        except Exception as e:
            if unreachable(e):
                raise
            log.warning("pareto_front.png of %s was left out (%s: %s)", self.search_run_id, type(e).__name__, e)

    def _draw(self, runs: list[Any]) -> tuple[str | None, float | None]:
        """lineage.html, lineage.png and workers.png as artifacts of the search run: where the page is, and
        the workers' utilisation. An outage reading or writing MLflow is raised (the event waits it out); any
        other failure to draw is logged and leaves the drawings out, never the search run unended."""
        import tempfile

        from popplast.reports.lineage import draw_lineage
        from popplast.reports.utilisation import draw_workers

        try:
            with tempfile.TemporaryDirectory() as tmp:
                draw_lineage(self.tracking_uri, self.search_run_id, tmp, runs=runs)
                _, utilisation = draw_workers(self.tracking_uri, self.search_run_id, tmp, runs=runs)
        except Exception as e:
            if unreachable(e):
                raise
            log.warning("the lineage drawings of %s were left out (%s: %s)", self.search_run_id, type(e).__name__, e)
            return None, None
        uri = self.client.get_run(self.search_run_id).info.artifact_uri.rstrip("/") + "/lineage.html"
        return (uri[len("file://") :] if uri.startswith("file://") else uri), utilisation

    def end_search(self, result: SearchResult, final_population: Mapping[str, Any]) -> None:
        """End the search run at once (searches that log to MLflow directly: the Tune methods)."""
        self.ship_end(self.end_event(result, final_population))
        self.release_lease()

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


def several_params(spec: SearchSpec) -> dict[str, str]:
    """A multi-objective search's objectives, constraints and reference point, as its run's params."""
    f = spec.fitness
    params = {"fitness.objectives": ",".join(f"{m}:{mode}" for m, mode in f.objectives)}
    if f.constraints:
        params["constraints"] = "; ".join(str(c) for c in f.constraints)
    if f.reference is not None:
        params["fitness.reference"] = ",".join(repr(v) for v in f.reference)
    return params


def _parents(tags: Mapping[str, str]) -> list[str]:
    return [p for p in tags.get("popplast.parent_ids", "").split(",") if p]


def _status(result: EvalResult) -> str:
    """ok, failed, or stopped (early, by the search's stopper: its metrics are those of the step it reached)."""
    if not result.ok:
        return "failed"
    return "ok" if result.stopped_at is None else "stopped"


def _model_said(result: SearchResult) -> str:
    """What the logged model is: the best configuration retrained, the greedy soup of some individuals, or the
    best individual as trained."""
    if result.retrain_metrics:
        return f"the best configuration ({result.best.id}'s) retrained at the final fidelity"
    if result.soup and result.soup["answer"]:
        return "greedy soup of " + ",".join(result.soup["ingredients"])
    return f"best individual {result.best.id} as trained"
