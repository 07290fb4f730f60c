"""The pedigree of one individual (the best by default): its line of descent, oldest first.

Going back from the individual, each step follows the parent it took most from: the one with the largest
fusion weight (Gen-Soup, PBT: the parent whose trained weights dominate the child's start), else the first
parent (the GA: the genes' first donor). For an inheriting search that line is the schedule the final
model was trained with: the configuration, epochs and image size of each step; it begins at an individual
that took no weights (every fusion weight 0: its parents had failed and it trained from scratch). Each step lists every
parent with its fusion weight, so merges stay visible, and the hyperparameters that changed from the step
before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # lineage.py draws pedigrees: at run time only it imports the other
    from popplast.reports.lineage import Lineage


def pedigree(lineage: Lineage, focus: str | None = None) -> list[dict[str, Any]]:
    """The steps from the oldest ancestor on the line to `focus` (default: the best individual)."""
    key = focus or lineage.best_id
    if key is None or key not in lineage.nodes:
        raise KeyError(f"{key!r} is not an individual of the search run {lineage.search_run_id}")
    line = []
    while key is not None and key in lineage.nodes and key not in line:
        line.append(key)
        node = lineage.nodes[key]
        known = [p for p in node.parents if p in lineage.nodes]
        if not known:
            break
        if node.fusion and len(node.fusion) == len(node.parents):
            weights = dict(zip(node.parents, node.fusion))
            if not any(weights[p] > 0 for p in known):
                break  # it took no trained weights (its parents failed): the model's schedule starts here
            key = max(known, key=lambda p: (weights[p], -node.parents.index(p)))
        else:
            key = known[0]
    steps: list[dict[str, Any]] = []
    previous: dict[str, str] = {}
    for key in reversed(line):
        node = lineage.nodes[key]
        params = {k: v for k, v in sorted(node.params.items()) if not k.startswith("gene.")}
        weights = node.fusion if len(node.fusion) == len(node.parents) else [None] * len(node.parents)
        steps.append(
            {
                "individual": key,
                "run_id": node.run_id,
                "generation": node.generation,
                "operator": node.operator,
                "parents": [{"individual": p, "fusion_weight": w} for p, w in zip(node.parents, weights)],
                "fitness": node.fitness,
                "params": params,
                "changed": {k: [previous.get(k), v] for k, v in params.items() if steps and previous.get(k) != v},
            }
        )
        previous = params
    return steps
