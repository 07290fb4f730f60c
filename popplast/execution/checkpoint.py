"""Per-generation checkpoints of a GA or Gen-Soup search, so that a search whose driver died resumes exactly.

After each generation the loop saves everything the rest of the search depends on: the strategy's state
(population, fitness, best, counts), the random generator's state, the history, every result's summary,
and for Gen-Soup the trained weights the next generations can still inherit (its last generation and the
best individual). The store (the MLflow tracker: artifacts of the search run) keeps one state file per
generation, `state-gNNNN.json`, and the weights as `weights/ID.pt`; a state file is written after the
weights it names, so the newest readable state file always has its weights.

Resuming restores all of it: the next generation is asked from the same state with the same generator
state, so it has the same genomes, seeds and lineage, and the same results follow.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from popplast.core.ga import GAState
from popplast.core.result import EvalResult

FORMAT = 1


class CheckpointStore(Protocol):
    def save_checkpoint(self, directory: str, keep_weights: set[str]) -> None: ...

    def load_checkpoint(self, directory: str) -> str | None: ...


@dataclass
class Checkpoint:
    """A search after its generation `generation` (−1: nothing finished yet)."""

    generation: int
    state: GAState
    rng: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    results: dict[str, EvalResult] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)  # individual id → state dict (or a reference)

    def restore_rng(self) -> np.random.Generator:
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng
        return rng


class Checkpointer:
    """Writes a search's checkpoints to `store`; `fetch` turns a weights reference into a state dict."""

    def __init__(self, store: CheckpointStore, fetch: Any = None) -> None:
        self.store = store
        self.fetch = fetch or (lambda w: w)
        self._saved: set[str] = set()  # weights already in the store

    def save(self, checkpoint: Checkpoint) -> None:
        import torch

        from popplast.training.weights import from_shareable

        with tempfile.TemporaryDirectory() as tmp:
            new = [k for k in checkpoint.weights if k not in self._saved]
            if new:
                os.makedirs(os.path.join(tmp, "weights"))
            for key in new:
                torch.save(from_shareable(self.fetch(checkpoint.weights[key])), os.path.join(tmp, "weights", f"{key}.pt"))
            with open(os.path.join(tmp, state_file(checkpoint.generation)), "w") as f:
                json.dump(_to_json(checkpoint), f)
            self.store.save_checkpoint(tmp, set(checkpoint.weights))
        self._saved = set(checkpoint.weights)


def load(store: CheckpointStore, put: Any = None) -> Checkpoint | None:
    """The newest checkpoint in `store`, its weights passed through `put` (into the object store), or None."""
    import torch

    from popplast.training.weights import to_shareable

    put = put or (lambda w: w)
    with tempfile.TemporaryDirectory() as tmp:
        path = store.load_checkpoint(tmp)
        if path is None:
            return None
        with open(path) as f:
            data = json.load(f)
        folder = os.path.join(os.path.dirname(path), "weights")
        weights = {key: put(to_shareable(torch.load(os.path.join(folder, f"{key}.pt"), weights_only=True)))
                   for key in data["weights"]}
    return Checkpoint(
        generation=int(data["generation"]), state=GAState.from_dict(data["state"]), rng=data["rng"],
        history=[dict(h) for h in data["history"]],
        results={k: EvalResult(k, r["fitness"], dict(r["metrics"]), error=r["error"]) for k, r in data["results"].items()},
        weights=weights)


def state_file(generation: int) -> str:
    return f"state-g{generation:04d}.json"


def _to_json(c: Checkpoint) -> dict[str, Any]:
    return {
        "format": FORMAT, "generation": c.generation, "state": c.state.to_dict(), "rng": c.rng,
        "history": c.history, "weights": sorted(c.weights),
        "results": {k: {"fitness": r.fitness, "metrics": r.metrics, "error": r.error} for k, r in c.results.items()},
    }
