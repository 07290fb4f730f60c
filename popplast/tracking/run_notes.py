"""Run descriptions that let a person walk a search's family tree inside the MLflow UI alone.

MLflow shows the tag `mlflow.note.content` as a run's description, rendered as Markdown. An individual's
description says how it was made (operator, parents with their fusion weights), its fitness, and links to
its parents' and children's runs; the search run's links its best individual and the lineage page. Links
are the UI's own routes relative to the page (`#/experiments/E/runs/R`), so they work on whatever host
serves the UI. Everything is derived from the runs' tags, so a resumed search or `popplast sync` writes the
same descriptions.
"""

from __future__ import annotations

from typing import Mapping, Sequence

NOTE = "mlflow.note.content"
# the tags an individual's description is made of: all a tracker keeps of each individual to write its
# description again when it gets children
NOTE_TAGS = (
    "popplast.individual_id",
    "popplast.generation",
    "popplast.operator",
    "popplast.parent_ids",
    "popplast.fusion_weights",
    "popplast.status",
)


def run_link(experiment_id: str, run_id: str, text: str) -> str:
    return f"[{text}](#/experiments/{experiment_id}/runs/{run_id})" if run_id else text


def individual_note(
    experiment_id: str,
    tags: Mapping[str, str],
    fitness: float | None,
    run_ids: Mapping[str, str],
    children: Sequence[str] = (),
) -> str:
    """The description of an individual's run from its tags; `run_ids` maps individual ids to run ids."""
    parents = [p for p in tags.get("popplast.parent_ids", "").split(",") if p]
    fusion = [w for w in tags.get("popplast.fusion_weights", "").split(",") if w]
    made = tags.get("popplast.operator", "")
    if parents:
        named = [
            run_link(experiment_id, run_ids.get(p, ""), p) + (f" (weight {fusion[i]})" if i < len(fusion) else "")
            for i, p in enumerate(parents)
        ]
        made += " of " + ", ".join(named)
    status = tags.get("popplast.status", "")
    score = f"fitness {fitness:.6g}" if fitness is not None else status
    lines = [
        f"**{tags.get('popplast.individual_id', '')}**, generation {tags.get('popplast.generation', '')}: "
        f"{made}; {score}.",
        "",
        "Children: "
        + (", ".join(run_link(experiment_id, run_ids.get(c, ""), c) for c in sorted(children)) or "none yet")
        + ".",
    ]
    return "\n".join(lines)


def search_note(
    experiment_id: str, best_id: str, best_run_id: str, search_run_id: str, fitness: float, lineage: bool
) -> str:
    text = f"Best individual: {run_link(experiment_id, best_run_id, best_id)}, fitness {fitness:.6g}."
    if lineage:
        text += (
            f"\n\nFamily tree: `lineage.html` among this run's "
            f"[artifacts](#/experiments/{experiment_id}/runs/{search_run_id}/artifacts/lineage.html)."
        )
    return text
