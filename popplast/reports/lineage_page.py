"""lineage.html: the family tree as one self-contained page that stays readable at thousands of individuals.

The tree is drawn here as SVG (one row per generation, each row ordered by the barycentre of its members'
parents, so that edges cross less), and a small inline script (no network) makes it a tool: the drawing
fits the window and pans (drag) and zooms (wheel); every edge is faint until a node is focused, which
draws its ancestry up to the roots and its descendants strongly and dims the rest; a click focuses a node
and shows its hyperparameters, fitness, operator, parents' fusion weights and a link to its MLflow run; a
search box finds an id; checkboxes filter by operator and status. The best individual is focused when the
page opens. Without the script each node is still a link to its run.

Every text that comes from MLflow (ids, operators, parameters: anyone who can write the tracking server's
tags can set them) reaches the page escaped: attributes and text through html.escape, the script's data as
JSON with `<`, `>` and `&` escaped, and the script writes it with textContent only.
"""

from __future__ import annotations

import html
import json
from typing import Any

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
COLUMN, ROW, PAD = 28.0, 90.0, 40.0  # SVG units per slot, at most per generation, around the drawing


FRONT_COLOUR = "#1f77b4"  # the ring of a Pareto front member


def fitness_colour(fitness: float | None, low: float, high: float) -> str:
    """Viridis by fitness (min–max over the search); grey for a failed individual."""
    if fitness is None:
        return "#cccccc"
    import matplotlib

    t = 0.5 if high == low else (fitness - low) / (high - low)
    return matplotlib.colors.to_hex(matplotlib.colormaps["viridis"](t))


def colour_scales(lineage: Any, low: float, high: float) -> dict[str, tuple[float, float, str, dict[str, str]]]:
    """What nodes can be coloured by: the fitness, and with several objectives each objective (yellow: its
    best end). By name: (low, high, legend label, colour of each node)."""
    nodes = lineage.nodes
    scales = {"fitness": (low, high, "fitness", {k: fitness_colour(n.fitness, low, high) for k, n in nodes.items()})}
    for metric, mode in lineage.objectives:
        values = [n.objectives[metric] for n in nodes.values() if n.objectives]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        sign = 1.0 if mode == "maximize" else -1.0  # the colour runs from the worst (dark) to the best (yellow)
        colours = {
            k: fitness_colour(
                sign * n.objectives[metric] if n.objectives else None,
                min(sign * lo, sign * hi),
                max(sign * lo, sign * hi),
            )
            for k, n in nodes.items()
        }
        label = f"{metric} ({'maximised' if mode == 'maximize' else 'minimised'})"
        scales[metric] = (lo, hi, label, colours)
    return scales


def colour_choice(scales: dict[str, Any]) -> str:
    """The page's 'colour by' choice, with several objectives (one scale: nothing to choose)."""
    if len(scales) < 2:
        return ""
    options = "".join(f'<option value="{html.escape(k)}">{html.escape(v[2])}</option>' for k, v in scales.items())
    return f' <label>colour by <select id="colour-by">{options}</select></label> <span id="scale"></span>'


def order_rows(lineage: Any) -> dict[str, tuple[int, int]]:
    """(row, slot) of every node: rows by generation; the first row by id, every later one by the mean slot
    of each node's parents in the rows above (nodes without drawn parents keep their id order after)."""
    rows = sorted({n.generation for n in lineage.nodes.values()})
    place: dict[str, tuple[int, int]] = {}
    for row, g in enumerate(rows):
        members = sorted((n for n in lineage.nodes.values() if n.generation == g), key=lambda n: n.individual_id)

        def barycentre(node: Any) -> float:
            slots = [place[p][1] for p in node.parents if p in place]
            return sum(slots) / len(slots) if slots else float("inf")

        members.sort(key=barycentre)  # stable: ties and orphans keep id order
        for slot, node in enumerate(members):
            place[node.individual_id] = (row, slot)
    return place


def pedigree_table(steps: list[dict], experiment_id: str, ui_url: str) -> str:
    """The pedigree (reports/pedigree.py) as an HTML table: one row per step, oldest first."""
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


def render_html(lineage: Any, ui_url: str, steps: list[dict] | None = None) -> str:
    """The page; `steps`: the pedigree to tabulate (reports/pedigree.py)."""
    nodes = lineage.nodes
    scored = [n.fitness for n in nodes.values() if n.fitness is not None]
    low, high = (min(scored), max(scored)) if scored else (0.0, 1.0)
    place = order_rows(lineage)
    widest = max(slot for _, slot in place.values()) + 1
    rows = sorted({n.generation for n in nodes.values()})
    width = 2 * PAD + COLUMN * max(widest, 8)
    # rows as far apart as a window's shape allows (about 16:10), within [30, ROW]
    row = min(ROW, max(30.0, 0.6 * width / max(len(rows) - 1, 1)))
    height = 2 * PAD + row * max(len(rows) - 1, 1)
    pos = {k: (PAD + (s + 0.5) * COLUMN, PAD + r * row) for k, (r, s) in place.items()}
    edges, circles = [], []
    for key, node in sorted(nodes.items()):
        dash, stroke, line_width = EDGE_STYLE.get(node.operator, ("", "#999999", 1.0))
        for parent in node.parents:
            if parent not in pos:
                continue
            (x1, y1), (x2, y2) = pos[parent], pos[key]
            migrated = node.island != nodes[parent].island  # a migrant's child: an edge between islands
            kind = html.escape(node.operator.replace("+", "-")) + (" migration" if migrated else "")
            edges.append(
                f'<line class="edge op-{kind}" '
                f'data-from="{html.escape(parent)}" data-to="{html.escape(key)}" '
                f'x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" '
                f'stroke-width="{line_width:.1f}" stroke-dasharray="{"1 3" if migrated else dash}"/>'
            )
    for key, node in sorted(nodes.items()):
        x, y = pos[key]
        url = f"{ui_url.rstrip('/')}/#/experiments/{lineage.experiment_id}/runs/{node.run_id}"
        fitness = "failed" if node.fitness is None else f"{node.fitness:.4f}"
        tip = f"{key} ({node.operator}), fitness {fitness}"
        # only the best is ringed: its ancestry, which grows going back, is shown by focusing it
        ring = (
            f' stroke="{BEST_COLOUR}" stroke-width="3"'
            if key == lineage.best_id
            else ' stroke="#333" stroke-width="0.8"'
        )
        if node.status == "stopped":  # stopped early: a dashed outline
            ring += ' stroke-dasharray="3 2"'
            tip += ", stopped early"
        if node.front:
            tip += ", on the Pareto front (" + ", ".join(f"{m} {v:.4g}" for m, v in node.objectives.items()) + ")"
        front = (
            f'<circle class="front-mark" cx="{x:.1f}" cy="{y:.1f}" r="{15 if key == lineage.best_id else 12}" '
            f'fill="none" stroke="{FRONT_COLOUR}" stroke-width="2.5"/>'
            if node.front
            else ""
        )
        circles.append(
            f'<a class="node{" front" if node.front else ""}" href="{html.escape(url)}" '
            f'data-individual="{html.escape(key)}" data-run="{html.escape(node.run_id)}">{front}'
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="{11 if key == lineage.best_id else 8}" '
            f'fill="{fitness_colour(node.fitness, low, high)}"{ring}><title>{html.escape(tip)}</title></circle></a>'
        )
    labels = [f'<text x="4" y="{PAD + r * row + 4:.1f}">g{g}</text>' for r, g in enumerate(rows)]
    scales = colour_scales(lineage, low, high)
    data = {
        "best": lineage.best_id,
        "scales": {name: {"low": lo, "high": hi, "label": label} for name, (lo, hi, label, _) in scales.items()},
        "ui": ui_url.rstrip("/"),
        "experiment": lineage.experiment_id,
        "nodes": [
            {
                "id": key,
                "run": node.run_id,
                "generation": node.generation,
                "operator": node.operator,
                "status": node.status,
                "island": node.island,
                "fitness": node.fitness,
                "parents": node.parents,
                "fusion": node.fusion,
                "fused": node.fused or None,
                "objectives": node.objectives or None,
                "front": node.front,
                "colours": {name: colours[key] for name, (_, _, _, colours) in scales.items()},
                "params": {k: v for k, v in sorted(node.params.items()) if not k.startswith("gene.")},
                "x": pos[key][0],
                "y": pos[key][1],
            }
            for key, node in sorted(nodes.items())
        ],
    }
    script_data = json.dumps(data).replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    operators = sorted({n.operator for n in nodes.values()})
    statuses = sorted({n.status for n in nodes.values()})
    filters = "".join(
        f'<label><input type="checkbox" checked data-filter="{kind}" value="{html.escape(v)}"> {html.escape(v)}</label>'
        for kind, values in (("operator", operators), ("status", statuses))
        for v in values
    )
    legend = "".join(
        f'<span><svg width="34" height="10"><line x1="0" y1="5" x2="34" y2="5" stroke="{c}" '
        f'stroke-width="{w}" stroke-dasharray="{d}"/></svg> {op}</span>'
        for op, (d, c, w) in EDGE_STYLE.items()
        if op in operators
    )
    if any(n.island for n in nodes.values()):
        legend += (
            '<span><svg width="34" height="10"><line x1="0" y1="5" x2="34" y2="5" stroke="#666" '
            'stroke-width="1.5" stroke-dasharray="1 3"/></svg> between islands (a migrant\'s child)</span>'
        )
    best_node = nodes.get(lineage.best_id) if lineage.best_id else None
    summary = (
        f"best: {lineage.best_id}, fitness {best_node.fitness:.4f}, generation {best_node.generation}"
        if best_node and best_node.fitness is not None
        else "no successful individual"
    )
    pedigree = ""
    if steps:
        pedigree = (
            f"<h2>Pedigree of {html.escape(steps[-1]['individual'])}</h2><p>Its line of descent, oldest first: "
            "each step goes back to the parent it took most from (the largest fusion weight, else the first "
            "parent); pedigree.json holds the same with every hyperparameter.</p>"
            + pedigree_table(steps, lineage.experiment_id, ui_url)
        )
    return PAGE.format(
        title=html.escape(lineage.title),
        count=len(nodes),
        generations=len(rows),
        rows_are="cohorts of births (an asynchronous search: no generations; a row holds the next population's "
        "worth of births, in the order they were asked)"
        if lineage.asynchronous
        else "generations",
        low=low,
        high=high,
        summary=html.escape(summary),
        legend=legend
        + (
            f'<span><svg width="26" height="26"><circle cx="13" cy="13" r="10" fill="none" stroke="{FRONT_COLOUR}" '
            f'stroke-width="2.5"/></svg> on the Pareto front ({sum(n.front for n in nodes.values())})</span>'
            if lineage.objectives
            else ""
        ),
        filters=filters + colour_choice(scales),
        width=width,
        height=height,
        labels="".join(labels),
        edges="".join(edges),
        circles="".join(circles),
        pedigree=pedigree,
        data=script_data,
        script=SCRIPT,
    )


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lineage of {title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 12px; color: #222; }}
.legend span {{ margin-right: 14px; white-space: nowrap; }}
#tools label {{ margin-right: 10px; white-space: nowrap; }}
#view {{ display: flex; gap: 12px; }}
#tree {{ flex: 1; height: 72vh; border: 1px solid #ddd; cursor: grab; }}
#details {{ width: 300px; height: 72vh; overflow: auto; font-size: 13px; }}
#details table {{ border-collapse: collapse; }}
#details td {{ border-bottom: 1px solid #eee; padding: 1px 4px; vertical-align: top; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #555; }}
line.edge {{ opacity: 0.15; }}
.focused line.edge {{ opacity: 0.05; }}
.focused line.edge.on {{ opacity: 1; }}
.focused a.node {{ opacity: 0.25; }}
.focused a.node.on {{ opacity: 1; }}
a.node.current circle.dot {{ stroke: #000; stroke-width: 4; }}
.hidden {{ display: none; }}
table.pedigree {{ border-collapse: collapse; margin-top: 8px; }}
table.pedigree td, table.pedigree th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
</style></head><body>
<h1>Lineage of {title}</h1>
<p>{count} individuals over {generations} {rows_are} (rows, top to bottom, each ordered by its parents'
positions); colour: fitness from {low:.3f} (dark) to {high:.3f} (yellow), grey: failed; dashed outline:
stopped early; red ring: the best.
{summary}. Click a node to focus its ancestry and descendants; drag to pan, wheel to zoom.</p>
<p class="legend">{legend}</p>
<p id="tools"><input id="find" placeholder="find an id, e.g. g003-i007" size="28"> <span id="found"></span>
{filters}</p>
<div id="view">
<svg id="tree" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}"
 preserveAspectRatio="xMidYMid meet">
{labels}
<g id="edges">{edges}</g>
<g id="nodes">{circles}</g>
</svg>
<div id="details"></div>
</div>
{pedigree}
<script type="application/json" id="lineage-data">{data}</script>
<script>{script}</script>
</body></html>
"""

SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById("lineage-data").textContent);
  const svg = document.getElementById("tree");
  const byId = new Map(data.nodes.map((n) => [n.id, n]));
  const children = new Map(data.nodes.map((n) => [n.id, []]));
  data.nodes.forEach((n) => n.parents.forEach((p) => children.has(p) && children.get(p).push(n.id)));
  const nodeEls = new Map();
  svg.querySelectorAll("a.node").forEach((a) => nodeEls.set(a.getAttribute("data-individual"), a));
  const edgeEls = Array.from(svg.querySelectorAll("line.edge"));
  const full = svg.viewBox.baseVal;
  let box = { x: full.x, y: full.y, w: full.width, h: full.height };
  function setBox() { svg.setAttribute("viewBox", box.x + " " + box.y + " " + box.w + " " + box.h); }

  function reach(start, next) {
    const seen = new Set([start]);
    const todo = [start];
    while (todo.length) {
      const id = todo.pop();
      (next(id) || []).forEach((m) => { if (byId.has(m) && !seen.has(m)) { seen.add(m); todo.push(m); } });
    }
    return seen;
  }

  function row(table, key, value) {
    const tr = table.insertRow();
    tr.insertCell().textContent = key;
    tr.insertCell().textContent = value;
  }

  function show(n) {
    const panel = document.getElementById("details");
    panel.replaceChildren();
    const h = document.createElement("h3");
    h.textContent = n.id;
    const link = document.createElement("a");
    link.id = "run-link";
    link.href = data.ui + "/#/experiments/" + data.experiment + "/runs/" + n.run;
    link.textContent = "its MLflow run";
    const table = document.createElement("table");
    row(table, "generation", String(n.generation));
    row(table, "operator", n.operator);
    row(table, "status", n.status);
    if (n.island) row(table, "island", n.island);
    row(table, "fitness", n.fitness === null ? "failed" : n.fitness.toFixed(4));
    if (n.objectives) {
      Object.keys(n.objectives).forEach((k) => row(table, k, n.objectives[k].toPrecision(5)));
      row(table, "Pareto front", n.front ? "on it" : "not on it");
    }
    row(table, "parents", n.parents.map((p, i) =>
      p + (i < n.fusion.length ? " (" + n.fusion[i].toPrecision(3) + ")" : "")).join(", ") || "none");
    if (n.fused) {  // what its parents' fusion gave before training, against them (positive: lost)
      row(table, "after fusion, before training", n.fused.fused_fitness.toFixed(4));
      if ("fusion_barrier" in n.fused) {
        const signed = (v) => (v >= 0 ? "+" : "") + v.toFixed(4);
        row(table, "barrier vs better parent", signed(n.fused.fusion_barrier));
        row(table, "barrier vs weighted mean", signed(n.fused.fusion_barrier_mean));
      }
      row(table, "alignment", n.fused.alignment);
    }
    row(table, "children", String(children.get(n.id).length));
    Object.keys(n.params).forEach((k) => row(table, k, n.params[k]));
    panel.append(h, link, table);
  }

  function focus(id) {
    const n = byId.get(id);
    if (!n) return false;
    const up = reach(id, (m) => byId.get(m).parents);
    const down = reach(id, (m) => children.get(m));
    const on = new Set([...up, ...down]);
    svg.classList.add("focused");
    nodeEls.forEach((el, key) => {
      el.classList.toggle("on", on.has(key));
      el.classList.toggle("current", key === id);
    });
    edgeEls.forEach((el) => {
      const a = el.getAttribute("data-from"), b = el.getAttribute("data-to");
      el.classList.toggle("on", (up.has(a) && up.has(b)) || (down.has(a) && down.has(b)));
    });
    show(n);
    svg.setAttribute("data-focus", id);
    return true;
  }

  let moved = false;  // a drag that ends on a node is a pan, not a click
  nodeEls.forEach((el, key) => el.addEventListener("click", (e) => {
    e.preventDefault();
    if (!moved) focus(key);
  }));

  document.getElementById("find").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    const id = e.target.value.trim();
    const found = focus(id);
    document.getElementById("found").textContent = found ? "" : "no individual " + id;
    if (found) {
      const n = byId.get(id);
      box = { x: n.x - box.w / 2, y: n.y - box.h / 2, w: box.w, h: box.h };
      setBox();
    }
  });

  document.querySelectorAll("input[data-filter]").forEach((box) => box.addEventListener("change", () => {
    const off = { operator: new Set(), status: new Set() };
    document.querySelectorAll("input[data-filter]").forEach((c) => {
      if (!c.checked) off[c.getAttribute("data-filter")].add(c.value);
    });
    const hidden = new Set(data.nodes.filter((n) => off.operator.has(n.operator) || off.status.has(n.status))
      .map((n) => n.id));
    nodeEls.forEach((el, key) => el.classList.toggle("hidden", hidden.has(key)));
    edgeEls.forEach((el) => el.classList.toggle("hidden",
      hidden.has(el.getAttribute("data-from")) || hidden.has(el.getAttribute("data-to"))));
  }));

  svg.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = svg.getBoundingClientRect();
    const fx = (e.clientX - r.left) / r.width, fy = (e.clientY - r.top) / r.height;
    const k = e.deltaY > 0 ? 1.2 : 1 / 1.2;
    const w = box.w * k, h = box.h * k;
    box = { x: box.x + (box.w - w) * fx, y: box.y + (box.h - h) * fy, w: w, h: h };
    setBox();
  }, { passive: false });
  let drag = null;
  svg.addEventListener("mousedown", (e) => { drag = { x: e.clientX, y: e.clientY, box: { ...box } }; moved = false; });
  window.addEventListener("mouseup", () => { drag = null; });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    if (Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) > 4) moved = true;
    const r = svg.getBoundingClientRect();
    const scale = Math.max(box.w / r.width, box.h / r.height);
    box = { ...drag.box, x: drag.box.x - (e.clientX - drag.x) * scale, y: drag.box.y - (e.clientY - drag.y) * scale };
    setBox();
  });

  const colourBy = document.getElementById("colour-by");
  if (colourBy) colourBy.addEventListener("change", () => {
    const name = colourBy.value, scale = data.scales[name];
    nodeEls.forEach((el, key) => el.querySelector("circle.dot").setAttribute("fill", byId.get(key).colours[name]));
    document.getElementById("scale").textContent = name === "fitness" ? "" :
      scale.label + ": " + scale.low.toPrecision(4) + " to " + scale.high.toPrecision(4) + ", yellow the best";
  });

  if (data.best) focus(data.best);
  document.body.setAttribute("data-ready", "1");
})();
"""
