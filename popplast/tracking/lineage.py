"""The family tree of a search, read from MLflow alone, drawn as a self-contained HTML page and a PNG.

Nothing here needs popplast's in-memory state: the individuals' runs carry their lineage as tags
(ARCHITECTURE.md, "MLflow layout"), so the tree can be drawn from any tracking server, at any later time.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field

from mlflow import MlflowClient

from popplast.tracking.search_run import individual_runs

# How an edge into a child looks, by the operator that made the child: (SVG dash pattern, colour, width).
EDGE_STYLE = {
    "crossover": ("", "#4c72b0", 1.2),
    "crossover+mutation": ("6 3", "#4c72b0", 1.2),
    "mutation": ("2 3", "#8172b2", 1.2),
    "copy": ("1 4", "#999999", 1.0),
    "elite": ("", "#dd8452", 2.4),
    "inherit": ("", "#55a868", 1.4),
    "fusion": ("8 2 2 2", "#55a868", 2.0),
    "exploit": ("5 2", "#937860", 1.8),  # PBT: a trial continuing from another trial's checkpoint
}
BEST_COLOUR = "#c44e52"


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
    x: float = 0.0
    y: float = 0.0


@dataclass
class Lineage:
    search_run_id: str
    experiment_id: str
    title: str
    nodes: dict[str, Node]
    best_id: str | None

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


class LineageError(RuntimeError):
    pass


def read_lineage(client: MlflowClient, search_run_id: str) -> Lineage:
    try:
        search = client.get_run(search_run_id)
    except Exception as e:  # MLflow raises its own exception types for a missing run
        raise LineageError(f"no MLflow run {search_run_id!r} in {client.tracking_uri} ({type(e).__name__})") from None
    experiment = search.info.experiment_id
    nodes = {}
    for run in individual_runs(client, experiment, search_run_id):
        tags = run.data.tags
        fitness = run.data.metrics.get("fitness") if tags.get("popplast.status") == "ok" else None
        nodes[tags["popplast.individual_id"]] = Node(
            tags["popplast.individual_id"],
            run.info.run_id,
            int(tags["popplast.generation"]),
            [p for p in tags.get("popplast.parent_ids", "").split(",") if p],
            tags.get("popplast.operator", ""),
            fitness,
            dict(run.data.params),
            [float(w) for w in tags.get("popplast.fusion_weights", "").split(",") if w],
        )
    if not nodes:
        raise LineageError(f"the run {search_run_id} has no individual runs: is it a popplast search run?")
    best = search.data.tags.get("popplast.best_individual_id")
    if best not in nodes:
        scored = [n for n in nodes.values() if n.fitness is not None]
        best = max(scored, key=lambda n: n.fitness).individual_id if scored else None
    title = search.info.run_name or search_run_id
    _layout(nodes)
    return Lineage(search_run_id, experiment, title, nodes, best)


def _layout(nodes: dict[str, Node]) -> None:
    """One row per generation, individuals in id order; x and y in [0, 1]."""
    generations = sorted({n.generation for n in nodes.values()})
    widest = max(sum(n.generation == g for n in nodes.values()) for g in generations)
    for row, g in enumerate(generations):
        members = sorted((n for n in nodes.values() if n.generation == g), key=lambda n: n.individual_id)
        for slot, node in enumerate(members):
            node.x = (slot + 0.5) / widest
            node.y = row / max(len(generations) - 1, 1)


def _colour(fitness: float | None, low: float, high: float) -> str:
    """Viridis by fitness (min–max over the search); grey for a failed individual."""
    if fitness is None:
        return "#cccccc"
    import matplotlib

    t = 0.5 if high == low else (fitness - low) / (high - low)
    return matplotlib.colors.to_hex(matplotlib.colormaps["viridis"](t))


def pedigree_table(steps: list[dict], experiment_id: str, ui_url: str) -> str:
    """The pedigree (tracking/pedigree.py) as an HTML table: one row per step, oldest first."""
    rows = []
    for step in steps:
        url = f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{step['run_id']}"
        parents = ", ".join(
            p["individual"] + ("" if p["fusion_weight"] is None else f" ({p['fusion_weight']:.3g})")
            for p in step["parents"]
        )
        changed = "; ".join(f"{k}: {before} → {after}" for k, (before, after) in step["changed"].items())
        fitness = "failed" if step["fitness"] is None else f"{step['fitness']:.4f}"
        cells = [
            f'<a href="{html.escape(url)}">{html.escape(step["individual"])}</a>',
            html.escape(step["operator"]),
            html.escape(parents or "none"),
            fitness,
            html.escape(changed or ("(first)" if step is steps[0] else "none")),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("individual", "operator", "parents (fusion weight)", "fitness", "changed"))
    return f'<table class="pedigree"><tr>{head}</tr>{"".join(rows)}</table>'


def render_html(lineage: Lineage, ui_url: str, steps: list[dict] | None = None) -> str:
    nodes = lineage.nodes
    scored = [n.fitness for n in nodes.values() if n.fitness is not None]
    low, high = (min(scored), max(scored)) if scored else (0.0, 1.0)
    best = lineage.ancestry()
    generations = len({n.generation for n in nodes.values()})
    widest = max(sum(n.generation == g for n in nodes.values()) for g in {n.generation for n in nodes.values()})
    width = max(640, 70 * widest)
    height, pad = 90 * generations + 40, 40
    pos = {k: (pad + n.x * (width - 2 * pad), pad + n.y * (height - 2 * pad)) for k, n in nodes.items()}
    edges, circles = [], []
    for key, node in sorted(nodes.items()):
        dash, colour, stroke = EDGE_STYLE.get(node.operator, ("", "#999999", 1.0))
        for parent in node.parents:
            if parent not in pos:
                continue
            on_path = key in best and parent in best
            (x1, y1), (x2, y2) = pos[parent], pos[key]
            edges.append(
                f'<line class="edge op-{node.operator.replace("+", "-")}{" best" if on_path else ""}" '
                f'x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                f'stroke="{BEST_COLOUR if on_path else colour}" '
                f'stroke-width="{stroke + (1.5 if on_path else 0):.1f}" stroke-dasharray="{dash}"/>'
            )
    for key, node in sorted(nodes.items()):
        x, y = pos[key]
        url = f"{ui_url.rstrip('/')}/#/experiments/{lineage.experiment_id}/runs/{node.run_id}"
        fitness = "failed" if node.fitness is None else f"{node.fitness:.4f}"
        tip = "\n".join(
            [f"{key} ({node.operator})", f"fitness {fitness}", f"parents: {', '.join(node.parents) or 'none'}"]
            + [f"{k}: {v}" for k, v in sorted(node.params.items()) if not k.startswith("gene.")]
        )
        ring = f' stroke="{BEST_COLOUR}" stroke-width="3"' if key in best else ' stroke="#333" stroke-width="0.8"'
        circles.append(
            f'<a class="node" href="{html.escape(url)}" data-individual="{html.escape(key)}" '
            f'data-run="{html.escape(node.run_id)}">'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{11 if key == lineage.best_id else 8}" '
            f'fill="{_colour(node.fitness, low, high)}"{ring}><title>{html.escape(tip)}</title></circle></a>'
        )
    rows = sorted({n.generation for n in nodes.values()})
    labels = [
        f'<text x="4" y="{pad + r / max(len(rows) - 1, 1) * (height - 2 * pad) + 4:.1f}">g{g}</text>'
        for r, g in enumerate(rows)
    ]
    legend = "".join(
        f'<span><svg width="34" height="10"><line x1="0" y1="5" x2="34" y2="5" stroke="{c}" '
        f'stroke-width="{w}" stroke-dasharray="{d}"/></svg> {op}</span>'
        for op, (d, c, w) in EDGE_STYLE.items()
    )
    best_node = nodes.get(lineage.best_id) if lineage.best_id else None
    summary = (
        f"best: {lineage.best_id}, fitness {best_node.fitness:.4f}, generation {best_node.generation}; "
        f"its ancestry is outlined in red"
        if best_node and best_node.fitness is not None
        else "no successful individual"
    )
    pedigree_section = ""
    if steps:
        pedigree_section = (
            f"<h2>Pedigree of {html.escape(steps[-1]['individual'])}</h2><p>Its line of descent, oldest first: "
            "each step goes back to the parent it took most from (the largest fusion weight, else the first "
            "parent); pedigree.json holds the same with every hyperparameter.</p>"
            + pedigree_table(steps, lineage.experiment_id, ui_url)
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lineage of {html.escape(lineage.title)}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; color: #222; }}
.legend span {{ margin-right: 14px; white-space: nowrap; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #555; }}
a.node circle:hover {{ stroke: #000; stroke-width: 3; }}
table.pedigree {{ border-collapse: collapse; margin-top: 8px; }}
table.pedigree td, table.pedigree th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
</style></head><body>
<h1>Lineage of {html.escape(lineage.title)}</h1>
<p>{len(nodes)} individuals over {generations} generations (rows, top to bottom); colour: fitness from
{low:.3f} (dark) to {high:.3f} (yellow), grey: failed. {html.escape(summary)}. Each node links to its MLflow run;
hover for its hyperparameters.</p>
<p class="legend">{legend}</p>
<svg id="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">
{"".join(labels)}
{"".join(edges)}
{"".join(circles)}
</svg>
{pedigree_section}
</body></html>
"""


def render_png(lineage: Lineage, path: str) -> None:
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
            c=_colour(node.fitness, low, high),
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
    ax.legend(
        handles,
        used + ["best's ancestry"],
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
    fig.colorbar(sm, ax=ax, label="fitness (validation MCC)")
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
) -> tuple[str, str]:
    """Write lineage.html, lineage.png and pedigree.json (of `focus`, default the best individual) to
    `out_dir` and (with `log`) attach them to the search run; returns the HTML's and the PNG's paths."""
    import json

    from popplast.core.result import ui_url as default_ui
    from popplast.tracking.pedigree import pedigree

    client = MlflowClient(tracking_uri)
    lineage = read_lineage(client, search_run_id)
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
    render_png(lineage, png_path)
    if log:
        for path in (html_path, png_path, pedigree_path):
            client.log_artifact(search_run_id, path)
    return html_path, png_path
