"""What each worker ran when, from the individuals' runs alone: the search's worker utilisation and its
timeline (workers.png, one lane per worker process, a bar per evaluation; anchor: DeepHyper's profile).

Utilisation = Σ busy time / (workers × wall time), ALGORITHMS.md §9: busy time is each evaluation's span on
its worker's clock (`popplast.started` to `popplast.ended`, what the objective's call took), wall time from
the first start to the last end, workers the pool's size (`workers`, a search-run parameter). A generational
search's gaps are its barriers; an asynchronous one's are dispatch and the driver's work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient

from popplast.tracking.search_run import individual_runs

COLOURS = {"ok": "#3b75af", "stopped": "#9ecae1", "failed": "#c0392b"}


@dataclass(frozen=True)
class Span:
    worker: str
    start: float
    end: float
    status: str
    individual_id: str


def spans(client: MlflowClient, search_run_id: str) -> list[Span]:
    run = client.get_run(search_run_id)
    out = []
    for r in individual_runs(client, run.info.experiment_id, search_run_id):
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
    if not found or workers < 1:
        return None
    wall = max(s.end for s in found) - min(s.start for s in found)
    busy = sum(s.end - s.start for s in found)
    return busy / (workers * wall) if wall > 0 else None


def draw_workers(tracking_uri: str, search_run_id: str, out_dir: str, log: bool = True) -> tuple[str | None, Any]:
    """workers.png in `out_dir`, and the utilisation as the search run's `worker_utilisation` (with `log`,
    both attached to the run); returns (the PNG's path or None without timed runs, the utilisation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client = MlflowClient(tracking_uri)
    found = spans(client, search_run_id)
    if not found:
        return None, None
    params = client.get_run(search_run_id).data.params
    workers = int(float(params.get("workers", 0) or 0)) or len({s.worker for s in found})
    share = utilisation(found, workers)
    origin = min(s.start for s in found)
    lanes = list(dict.fromkeys(s.worker for s in found))  # in order of their first evaluation
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.35 * len(lanes)))
    for s in found:
        ax.barh(lanes.index(s.worker), s.end - s.start, left=s.start - origin, color=COLOURS.get(s.status, "#999"))
    ax.set_yticks(range(len(lanes)), lanes, fontsize=7)
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
