"""A multi-objective search's front as artifacts of its search run: pareto_front.json (each member's objectives,
configuration and run) and pareto_front.png (every evaluated individual in the first two objectives, the
front drawn as its attainment line, the reference point stated in the title).

Both are made from the search's end event (execution/front.py measured the front) and its individuals' MLflow
runs, which hold each individual's configuration as params and its returned metrics."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from popplast.reports.record_table import param_value
from popplast.spec.fitness import Constraint

GENE_PREFIX = "gene."  # the runs' encoded genes: not part of the configuration


def front_document(front: Mapping[str, Any], runs: Sequence[Any]) -> dict[str, Any]:
    """pareto_front.json: the event's front with each member's run id and configuration."""
    by_id = {r.data.tags["popplast.individual_id"]: r for r in runs}
    members = []
    for member in front["members"]:
        run = by_id.get(member["id"])
        params = run.data.params.items() if run else ()
        config = {k: param_value(v) for k, v in params if not k.startswith(GENE_PREFIX)}
        members.append({**member, "run_id": run.info.run_id if run else None, "config": config})
    return {**front, "members": members}


def draw_front(front: Mapping[str, Any], runs: Sequence[Any], path: str) -> str | None:
    """pareto_front.png at `path` from the first two objectives (one objective: the first against the
    evaluation's order); None when no run holds them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m, _ in front["objectives"]]
    x_name, y_name = (names[0], names[1]) if len(names) > 1 else ("evaluation", names[0])
    on_front = {m["id"] for m in front["members"]}
    points = []
    for order, run in enumerate(runs):
        metrics = run.data.metrics
        if not all(n in metrics for n in names):
            continue
        x = metrics[x_name] if x_name in metrics else float(order)
        points.append(
            (x, metrics[y_name], run.data.tags["popplast.individual_id"] in on_front, _feasible(front, metrics))
        )
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    for feasible, colour, marker, label in ((True, "#9aa7b4", "o", "feasible"), (False, "#d62728", "x", "infeasible")):
        chosen = [(x, y) for x, y, member, ok in points if ok == feasible and not member]
        if chosen:
            ax.scatter(*zip(*chosen), s=14, c=colour, marker=marker, label=label, alpha=0.7)
    members = sorted((x, y) for x, y, member, _ in points if member)
    if members:
        ax.scatter(
            *zip(*members), s=36, c="#1f77b4", edgecolors="black", linewidths=0.6, zorder=3, label="Pareto front"
        )
        if len(names) == 2:
            ax.plot(*zip(*members), c="#1f77b4", lw=1, zorder=2)
    reference = ", ".join(f"{m} {v:.4g}" for m, v in front["reference"].items())
    ax.set_title(
        f"{len(front['members'])} on the front; hypervolume {front['hypervolume']:.4g}\n"
        f"reference point ({reference}), from {front['reference_from']}",
        fontsize=9,
    )
    ax.set_xlabel(f"{x_name} ({_mode(front, x_name)})")
    ax.set_ylabel(f"{y_name} ({_mode(front, y_name)})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _feasible(front: Mapping[str, Any], metrics: Mapping[str, float]) -> bool:
    for constraint in map(Constraint.parse, front["constraints"]):
        value = metrics.get(constraint.metric) if constraint else None
        if constraint is None or value is None or constraint.violation(value) > 0:
            return False
    return True


def _mode(front: Mapping[str, Any], name: str) -> str:
    modes = dict(front["objectives"])
    return {"maximize": "maximised", "minimize": "minimised"}.get(modes.get(name, ""), "order")
