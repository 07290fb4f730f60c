"""The family tree of a search, read from MLflow alone, drawn as a self-contained HTML page and a PNG.

Nothing here needs popplast's in-memory state: the individuals' runs carry their lineage as tags
(ARCHITECTURE.md, "MLflow layout"), so the tree can be drawn from any tracking server, at any later time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from mlflow import MlflowClient

from popplast.errors import PopplastError
from popplast.reports.lineage_page import BEST_COLOUR, EDGE_STYLE, fitness_colour, render_html  # noqa: F401 (re-exported)
from popplast.tracking.search_run import fitness_name, individual_runs, several_fitness


@dataclass
class Node:
    individual_id: str
    run_id: str
    generation: int
    parents: list[str]
    operator: str
    fitness: float | None
    params: dict[str, str] = field(default_factory=dict)
    fusion: list[float] = field(default_factory=list)  # the weights its parents' states were fused with
    status: str = "ok"  # ok, stopped (early) or failed; "retried" when it took more than one attempt
    seed: int = 0  # of its evaluation
    island: str = ""  # the island it was born on (an island search), else ""
    # a fused child: its fitness right after fusion, its barriers (execution/fusion_cost.py), its alignment
    fused: dict[str, Any] = field(default_factory=dict)
    objectives: dict[str, float] = field(default_factory=dict)  # several objectives: its values, by metric
    front: bool = False  # on the search's Pareto front (feasible, non-dominated)
    x: float = 0.0
    y: float = 0.0


@dataclass
class Lineage:
    search_run_id: str
    experiment_id: str
    title: str
    nodes: dict[str, Node]
    best_id: str | None
    asynchronous: bool = False  # rows are cohorts of `population` births, not generations
    fitness_name: str = "validation MCC"  # what the fitness is (search_run.fitness_name)
    objectives: list[tuple[str, str]] = field(default_factory=list)  # several objectives: (metric, mode)

    def ancestry(self) -> set[str]:
        """The best individual and every individual it descends from."""
        seen, todo = set(), [self.best_id] if self.best_id else []
        while todo:
            current = todo.pop()
            if current in seen or current not in self.nodes:
                continue
            seen.add(current)
            todo += self.nodes[current].parents
        return seen


def _fused(metrics: Mapping[str, float], tags: Mapping[str, str]) -> dict[str, Any]:
    if "fused_fitness" not in metrics:
        return {}
    keys = ("fused_fitness", "fusion_barrier", "fusion_barrier_mean")
    return {
        **{k: metrics[k] for k in keys if k in metrics},
        "alignment": tags.get("popplast.fusion_alignment", "none"),
    }


class LineageError(PopplastError, RuntimeError):
    pass


def lineage_of(tracking_uri: str, search_run_id: str) -> Lineage:
    return read_lineage(MlflowClient(tracking_uri), search_run_id)


def read_lineage(client: MlflowClient, search_run_id: str, runs: list[Any] | None = None) -> Lineage:
    """`runs`: the search's individual runs where the caller has read them already (5,000 take seconds)."""
    try:
        search = client.get_run(search_run_id)
    except Exception as e:  # MLflow raises its own exception types for a missing run
        raise LineageError(f"no MLflow run {search_run_id!r} in {client.tracking_uri} ({type(e).__name__})") from None
    experiment = search.info.experiment_id
    nodes = {}
    found = individual_runs(client, experiment, search_run_id) if runs is None else runs
    for run in found:
        tags = run.data.tags
        fitness = run.data.metrics.get("fitness") if tags.get("popplast.status") in ("ok", "stopped") else None
        nodes[tags["popplast.individual_id"]] = Node(
            tags["popplast.individual_id"],
            run.info.run_id,
            int(tags["popplast.generation"]),
            [p for p in tags.get("popplast.parent_ids", "").split(",") if p],
            tags.get("popplast.operator", ""),
            fitness,
            dict(run.data.params),
            [float(w) for w in tags.get("popplast.fusion_weights", "").split(",") if w],
            "retried" if tags.get("popplast.attempts") else tags.get("popplast.status", "ok"),
            int(tags.get("popplast.seed", "0") or 0),
            island=tags.get("popplast.island", ""),
            fused=_fused(run.data.metrics, tags),
        )
    if not nodes:
        raise LineageError(f"the run {search_run_id} has no individual runs: is it a popplast search run?")
    best = search.data.tags.get("popplast.best_individual_id")
    if best not in nodes:
        scored = [n for n in nodes.values() if n.fitness is not None]
        best = max(scored, key=lambda n: n.fitness).individual_id if scored else None
    title = search.info.run_name or search_run_id
    _layout(nodes)
    asynchronous = search.data.params.get("schedule") == "async"
    lineage = Lineage(search_run_id, experiment, title, nodes, best, asynchronous, fitness_name(search.data.params))
    several = several_fitness(search.data.params)
    if several is not None:
        _mark_front(lineage, several, {r.data.tags["popplast.individual_id"]: r.data.metrics for r in found})
    return lineage


def _mark_front(lineage: Lineage, fitness: Any, metrics: Mapping[str, Mapping[str, float]]) -> None:
    """Several objectives: each node's objective values, and which nodes are on the front."""
    from popplast.core import pareto

    lineage.objectives = list(fitness.objectives)
    scored = [n for n in lineage.nodes.values() if n.fitness is not None]
    for node in scored:
        node.objectives = {m: metrics[node.individual_id][m] for m, _ in fitness.objectives}
    vectors = [list(fitness.vector(metrics[n.individual_id])) for n in scored]
    for i in pareto.first_front(vectors):
        scored[i].front = True


def _layout(nodes: dict[str, Node]) -> None:
    """One row per generation, individuals in id order; x and y in [0, 1]."""
    generations = sorted({n.generation for n in nodes.values()})
    widest = max(sum(n.generation == g for n in nodes.values()) for g in generations)
    for row, g in enumerate(generations):
        members = sorted((n for n in nodes.values() if n.generation == g), key=lambda n: n.individual_id)
        for slot, node in enumerate(members):
            node.x = (slot + 0.5) / widest
            node.y = row / max(len(generations) - 1, 1)


GRAPH_LIMIT = 150  # individuals up to which lineage.png draws the whole graph; above, a summary


def render_png(lineage: Lineage, path: str, steps: list[dict] | None = None) -> None:
    """The whole graph for a small search; for a larger one (a reader cannot take in 1,250 nodes), the
    generations' fitness distributions with the best's pedigree through them, and how much of each
    generation the best descends from (the full graph stays in lineage.html)."""
    if len(lineage.nodes) > GRAPH_LIMIT:
        render_summary_png(lineage, path, steps or [])
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = lineage.nodes
    best = lineage.ancestry()
    scored = [n.fitness for n in nodes.values() if n.fitness is not None]
    low, high = (min(scored), max(scored)) if scored else (0.0, 1.0)
    generations = len({n.generation for n in nodes.values()})
    fig, ax = plt.subplots(figsize=(10, max(3, 0.8 * generations + 1)))
    for key, node in nodes.items():
        dash, colour, width = EDGE_STYLE.get(node.operator, ("", "#999999", 1.0))
        for parent in node.parents:
            if parent in nodes:
                on_path = key in best and parent in best
                ax.plot(
                    [nodes[parent].x, node.x],
                    [nodes[parent].y, node.y],
                    zorder=1,
                    color=BEST_COLOUR if on_path else colour,
                    lw=width + (1.5 if on_path else 0),
                    linestyle=(0, tuple(float(v) for v in dash.split())) if dash else "-",
                )
    for key, node in nodes.items():
        ax.scatter(
            node.x,
            node.y,
            s=160 if key == lineage.best_id else 70,
            zorder=2,
            marker="s" if node.status == "stopped" else "o",  # stopped early: a square
            c=fitness_colour(node.fitness, low, high),
            edgecolors=BEST_COLOUR if key in best else "#333",
            linewidths=2.5 if key in best else 0.6,
        )
    used = [op for op in EDGE_STYLE if any(n.operator == op and n.parents for n in nodes.values())]
    handles = [
        plt.Line2D(
            [],
            [],
            color=EDGE_STYLE[op][1],
            lw=EDGE_STYLE[op][2],
            linestyle=(0, tuple(float(v) for v in EDGE_STYLE[op][0].split())) if EDGE_STYLE[op][0] else "-",
        )
        for op in used
    ]
    handles.append(plt.Line2D([], [], color=BEST_COLOUR, lw=3))
    labels = used + ["best's ancestry"]
    if any(n.status == "stopped" for n in nodes.values()):
        handles.append(plt.Line2D([], [], marker="s", color="#333", lw=0, markerfacecolor="none"))
        labels.append("stopped early")
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=len(handles),
        frameon=False,
        fontsize=8,
    )
    rows = sorted({n.generation for n in nodes.values()})
    ax.set_yticks([r / max(len(rows) - 1, 1) for r in range(len(rows))], [f"g{g}" for g in rows])
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_title(f"Lineage of {lineage.title} (best {lineage.best_id}, ancestry in red)")
    sm = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(low, high))
    fig.colorbar(sm, ax=ax, label=f"fitness ({lineage.fitness_name})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_summary_png(lineage: Lineage, path: str, steps: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = lineage.nodes
    rows = sorted({n.generation for n in nodes.values()})
    scores = [[n.fitness for n in nodes.values() if n.generation == g and n.fitness is not None] for g in rows]
    ancestry = lineage.ancestry()
    share = [
        sum(k in ancestry for k, n in nodes.items() if n.generation == g)
        / sum(n.generation == g for n in nodes.values())
        for g in rows
    ]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), height_ratios=(3, 1), sharex=True)
    kept = [(g, s) for g, s in zip(rows, scores) if s]
    top.boxplot([s for _, s in kept], positions=[g for g, _ in kept], widths=0.6, showfliers=False)
    if steps:
        done = [s for s in steps if s["fitness"] is not None]
        top.plot([s["generation"] for s in done], [s["fitness"] for s in done], "o-", color=BEST_COLOUR, lw=2)
        top.plot([], [], "o-", color=BEST_COLOUR, label=f"pedigree of {steps[-1]['individual']} (line of descent)")
        top.legend(loc="lower right", frameon=False, fontsize=8)
    top.set_ylabel(f"fitness ({lineage.fitness_name})")
    top.set_title(
        f"{lineage.title}: {len(nodes)} individuals, fitness by generation (box: quartiles, whiskers 1.5 IQR)"
    )
    bottom.bar(rows, share, color=BEST_COLOUR, alpha=0.6)
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("share that are\nthe best's ancestors", fontsize=8)
    bottom.set_xlabel("generation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_lineage(
    tracking_uri: str,
    search_run_id: str,
    out_dir: str = ".",
    ui_url: str | None = None,
    log: bool = True,
    focus: str | None = None,
    runs: list[Any] | None = None,
) -> tuple[str, str]:
    """Write lineage.html, lineage.png and pedigree.json (of `focus`, default the best individual) to
    `out_dir` and (with `log`) attach them to the search run; returns the HTML's and the PNG's paths."""
    import json

    from popplast.core.result import ui_url as default_ui
    from popplast.reports.pedigree import pedigree

    client = MlflowClient(tracking_uri)
    lineage = read_lineage(client, search_run_id, runs)
    if focus is not None and focus not in lineage.nodes:
        raise LineageError(f"--focus {focus!r}: no such individual in the search run {search_run_id}")
    steps = pedigree(lineage, focus) if (focus or lineage.best_id) else []
    os.makedirs(out_dir, exist_ok=True)
    html_path, png_path = os.path.join(out_dir, "lineage.html"), os.path.join(out_dir, "lineage.png")
    pedigree_path = os.path.join(out_dir, "pedigree.json")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(lineage, ui_url or default_ui(tracking_uri), steps))
    with open(pedigree_path, "w", encoding="utf-8") as f:
        json.dump(
            {"search_run_id": search_run_id, "individual": steps[-1]["individual"] if steps else None, "steps": steps},
            f,
            indent=1,
        )
    render_png(lineage, png_path, steps)
    if log:
        for path in (html_path, png_path, pedigree_path):
            client.log_artifact(search_run_id, path)
    return html_path, png_path
