"""What each worker ran when, from the individuals' runs alone: the search's worker utilisation and its
timeline (workers.png, one lane per worker process, a bar per evaluation; anchor: DeepHyper's profile).

Utilisation = Σ busy time / (workers × wall time), ALGORITHMS.md §9, as core/utilisation.py defines it (the
simulated cluster's figure too): busy time is each evaluation's span on its worker's clock (`popplast.started`
to `popplast.ended`, what the objective's call took), wall time from the first start to the last end,
workers the pool's size (`workers`, a search-run parameter); attempts whose worker died have no span and do
not count. A generational search's gaps are its barriers; an asynchronous one's are dispatch and the
driver's work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from popplast.core.utilisation import utilisation as span_utilisation
from popplast.tracking.search_run import individual_runs

LABELLED_LANES = 40  # workers up to which each lane is named
COLOURS = {"ok": "#3b75af", "stopped": "#9ecae1", "failed": "#c0392b"}


@dataclass(frozen=True)
class Span:
    worker: str
    start: float
    end: float
    status: str
    individual_id: str


def spans(client: MlflowClient, search_run_id: str, runs: list[Any] | None = None) -> list[Span]:
    """`runs`: the search's individual runs where the caller has read them already."""
    if runs is None:
        runs = individual_runs(client, client.get_run(search_run_id).info.experiment_id, search_run_id)
    out = []
    for r in runs:
        tags = r.data.tags
        if "popplast.started" in tags and "popplast.ended" in tags:
            out.append(
                Span(
                    tags.get("popplast.worker", "?"),
                    float(tags["popplast.started"]),
                    float(tags["popplast.ended"]),
                    tags.get("popplast.status", "ok"),
                    tags["popplast.individual_id"],
                )
            )
    return sorted(out, key=lambda s: (s.start, s.individual_id))


def utilisation(found: list[Span], workers: int) -> float | None:
    """core/utilisation.py's definition, the simulated cluster's too (lost attempts' runs have no span)."""
    return span_utilisation(((s.start, s.end) for s in found), workers)


def draw_workers(
    tracking_uri: str, search_run_id: str, out_dir: str, log: bool = True, runs: list[Any] | None = None
) -> tuple[str | None, Any]:
    """workers.png in `out_dir`, and the utilisation as the search run's `worker_utilisation` (with `log`,
    both attached to the run); returns (the PNG's path or None without timed runs, the utilisation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client = MlflowClient(tracking_uri)
    found = spans(client, search_run_id, runs)
    if not found:
        return None, None
    params = client.get_run(search_run_id).data.params
    workers = int(float(params.get("workers", 0) or 0)) or len({s.worker for s in found})
    share = utilisation(found, workers)
    origin = min(s.start for s in found)
    lanes = list(dict.fromkeys(s.worker for s in found))  # in order of their first evaluation
    # a lane 0.35 in high up to LABELLED_LANES, then the figure stays 16 in: 1,024 lanes made a 36,000 px PNG
    fig, ax = plt.subplots(figsize=(10, min(1.6 + 0.35 * len(lanes), 16)))
    lane = {worker: i for i, worker in enumerate(lanes)}
    ax.barh(  # one call: a call per bar took 2 s at 5,000 evaluations
        [lane[s.worker] for s in found],
        [s.end - s.start for s in found],
        left=[s.start - origin for s in found],
        color=[COLOURS.get(s.status, "#999") for s in found],
        height=0.8 if len(lanes) <= LABELLED_LANES else 1.0,  # unlabelled lanes ~1 px high: gaps would be noise
    )
    if len(lanes) <= LABELLED_LANES:
        ax.set_yticks(range(len(lanes)), lanes, fontsize=7)
    else:
        ax.set_ylabel(f"{len(lanes)} workers, in order of their first evaluation")
        ax.set_ylim(-0.5, len(lanes) - 0.5)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first evaluation started")
    share_text = "n/a" if share is None else f"{share:.2f}"
    ax.set_title(f"what each worker ran when: utilisation {share_text} of {workers} workers", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out_dir, "workers.png")
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    if log:
        client.log_artifact(search_run_id, path)
        if share is not None:
            client.log_metric(search_run_id, "worker_utilisation", share)
    return path, share
