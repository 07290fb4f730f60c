"""What every popplast tracker shares: the experiment, the search run, and how values become MLflow params."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any, Mapping

from mlflow import MlflowClient
from mlflow.entities import Param
from mlflow.exceptions import MlflowException

from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.fitness import Constraint, FitnessSpec
from popplast.tracking.lease import Lease, acquire


class SearchRunTracker:
    """Opens (or creates) the experiment; creates, and on failure closes, the search run.

    Args:
        tracking_uri: any MLflow tracking URI; the default embedded store is ``sqlite:///mlflow.db``.
        experiment: experiment name (created if missing).
        method: the search method, tagged on every run (``popplast.method``).
        parent_run_id: a run to nest the search run under (a comparison's run), or None.
    """

    def __init__(self, tracking_uri: str, experiment: str, method: str, parent_run_id: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        check_server(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        self.experiment = experiment
        self.experiment_id = open_experiment(self.client, experiment)
        self.method = method
        self.parent_run_id = parent_run_id
        self.search_run_id = ""
        self.lease: Lease | None = None

    def _create_search_run(self, source: str, seed: int, params: Mapping[str, Any]) -> str:
        name = f"{os.path.splitext(os.path.basename(source))[0]}-{self.method}-seed{seed}"
        tags = {"popplast.role": "search", "popplast.method": self.method, "popplast.space_file": source}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.search_run_id = run.info.run_id
        self.client.log_batch(self.search_run_id, params=[Param(k, param_text(v)) for k, v in params.items()])
        if os.path.isfile(source):
            self.client.log_artifact(self.search_run_id, source)
        return self.search_run_id

    def hold_lease(self, fresh: bool = False) -> None:
        """This driver holds the search run (popplast.tracking.lease) until the search ends: the lease it was
        given (taken before anything started), else one taken now; `fresh`: a run it has just created."""
        if self.lease is None or self.lease.run_id != self.search_run_id:
            self.lease = acquire(self.tracking_uri, self.search_run_id, fresh=fresh)

    def release_lease(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    @property
    def displaced(self) -> bool:
        """Another driver took the search run over: this one writes nothing more into it."""
        return self.lease is not None and self.lease.lost is not None

    def fail_search(self, reason: str | None = None) -> None:
        """The search run FAILED, or KILLED with `reason` (interrupted by a signal) in `popplast.end_reason`;
        nothing, if another driver took it over."""
        displaced = self.displaced
        self.release_lease()
        if self.search_run_id and not displaced:
            if reason:
                self.client.set_tag(self.search_run_id, "popplast.end_reason", reason)
            self.client.set_terminated(self.search_run_id, status="KILLED" if reason else "FAILED")


def check_server(tracking_uri: str, timeout: float = 5.0) -> None:
    """A SpecError in seconds for a server that does not answer (MLflow's client retries one for minutes).
    Asked as MLflow's own client asks (its token, basic auth, TLS settings: MLFLOW_TRACKING_*), so a server
    behind an auth proxy or with a certificate MLflow trusts answers here as it answers MLflow."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import requests
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    url = tracking_uri.rstrip("/") + "/health"
    try:
        response = http_request(
            get_default_host_creds(tracking_uri.rstrip("/")), "/health", "GET", max_retries=0, timeout=timeout
        )
    except (requests.RequestException, MlflowException) as e:
        root: BaseException = e
        while root.__cause__ or root.__context__:  # MLflow wraps what requests raised: name that
            root = root.__cause__ or root.__context__  # type: ignore[assignment]
        raise SpecError(
            COMMAND_LINE,
            "--tracking-uri",
            f"no MLflow server answers at {tracking_uri} ({type(root).__name__}); start it "
            "(`mlflow server --backend-store-uri sqlite:///mlflow.db --port PORT`) or check "
            "that this machine and every Ray worker node can reach it (and, for HTTPS, that MLflow trusts its "
            "certificate: MLFLOW_TRACKING_SERVER_CERT_PATH or MLFLOW_TRACKING_INSECURE_TLS).",
        ) from None
    if response.status_code in (401, 403):
        raise SpecError(
            COMMAND_LINE,
            "--tracking-uri",
            f"{url} refused this client's credentials (HTTP {response.status_code}); give MLflow's own: "
            "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.",
        )
    if response.status_code != 200:
        raise SpecError(
            COMMAND_LINE,
            "--tracking-uri",
            f"{url} answered HTTP {response.status_code}: is {tracking_uri} an MLflow server?",
        )


def child_runs(client: MlflowClient, experiment_id: str, search_run_id: str) -> list[Any]:
    """Every run nested under a search run, page by page."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], f"tags.mlflow.parentRunId = '{search_run_id}'", max_results=1000, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def individual_runs(client: MlflowClient, experiment_id: str, search_run_id: str) -> list[Any]:
    """The runs of a search's evaluated individuals (one per individual; attempts whose worker died, status
    retried, are left out)."""
    return [
        r
        for r in child_runs(client, experiment_id, search_run_id)
        if "popplast.individual_id" in r.data.tags and r.data.tags.get("popplast.status") != "retried"
    ]


def open_experiment(client: MlflowClient, name: str) -> str:
    """The id of the experiment called `name`, created if missing (see artifact_location)."""
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri, name))


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment of an SQLite store keeps its artifacts: beside the store, in `STORE-artifacts/`
    (MLflow's default is ./mlruns of whatever the current directory is, so stores in different places would
    share it). None (the server's or store's own default) for every other kind of store."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    store = os.path.abspath(tracking_uri[len(prefix) :].split("?", 1)[0])
    folder = os.path.join(os.path.splitext(store)[0] + "-artifacts", urllib.parse.quote(experiment, safe=""))
    return Path(folder).as_uri()


def param_text(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def fitness_name(params: Mapping[str, str]) -> str:
    """What a search run's fitness is, from its params: popplast's CNN trainer's validation MCC, else the
    file's fitness metric (−METRIC when minimised: popplast maximises its negative)."""
    if "objective" not in params:
        return "validation MCC"
    metric = params.get("fitness.metric", "fitness")
    return metric if params.get("fitness.mode", "maximize") == "maximize" else f"−{metric}"


def several_fitness(params: Mapping[str, str]) -> Any:
    """A multi-objective search's fitness section, from its run's params; None for one objective."""
    if "fitness.objectives" not in params:
        return None
    objectives = [tuple(o.rsplit(":", 1)) for o in params["fitness.objectives"].split(",")]
    texts = filter(None, (c.strip() for c in params.get("constraints", "").split(";")))
    constraints = [c for c in map(Constraint.parse, texts) if c is not None]  # logged from parsed ones
    reference = params.get("fitness.reference")
    return FitnessSpec(
        objectives[0][0],
        objectives[0][1],
        more=tuple((m, d) for m, d in objectives[1:]),
        constraints=tuple(constraints),
        reference=tuple(float(v) for v in reference.split(",")) if reference else None,
    )
