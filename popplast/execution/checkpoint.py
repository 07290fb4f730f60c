"""Per-generation checkpoints of a GA or Gen-Soup search, so that a search whose driver died resumes exactly.

After each generation the loop saves everything the rest of the search depends on: the strategy's state
(population, fitness, best, counts), the random generator's state, the history, every result's summary,
and for Gen-Soup the trained weights the next generations can still inherit (its last generation and the
best individual). The store (the MLflow tracker: artifacts of the search run) keeps one state file per
generation, `state-gNNNN.json`, and the weights as `weights/ID.npz`; a state file is written after the
weights it names, so the newest readable state file always has its weights.

Resuming restores all of it: the next generation is asked from the same state with the same generator
state, so it has the same genomes, seeds and lineage, and the same results follow.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from popplast.core.result import EvalResult

FORMAT = 1


class CheckpointStore(Protocol):
    def save_checkpoint(self, directory: str, keep_weights: set[str]) -> None: ...

    def load_checkpoint(self, directory: str) -> str | None: ...


@dataclass
class Checkpoint:
    """A search after its generation `generation` (−1: nothing finished yet)."""

    generation: int
    state: Any  # the strategy's state (StrategyState)
    rng: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    results: dict[str, EvalResult] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)  # individual id → state dict (or a reference)
    seconds: float = 0.0  # wall time of the search when this was written, every driver's together

    def restore_rng(self) -> np.random.Generator:
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng
        return rng


class WeightsLost(RuntimeError):
    """Trained weights that can no longer be fetched (the node holding them was lost)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"the trained weights of {', '.join(ids)} were lost with their node")
        self.ids = ids


class Checkpointer:
    """Writes a search's checkpoints to `store`.

    `fetch` turns a weights reference into a state dict; `put` makes a new reference to weights it fetched,
    owned by this (the driver's) node: the saved weights then no longer depend on the worker node that
    trained them, so losing that node later loses nothing. `origin`: the `time.perf_counter()` at which the
    search would have started had it run in this process alone (a resumed search's start minus the seconds
    its checkpoint had recorded), so that every checkpoint records the search's whole wall time.
    """

    def __init__(self, store: CheckpointStore, fetch: Any = None, put: Any = None, origin: float | None = None) -> None:
        self.store = store
        self.fetch = fetch or (lambda w: w)
        self.put = put
        self.origin = time.perf_counter() if origin is None else origin
        self._saved: set[str] = set()  # weights already in the store

    def save(self, checkpoint: Checkpoint) -> dict[str, Any]:
        """Write the checkpoint; returns the new references to the weights it saved (none without `put`).
        Raises WeightsLost, writing nothing, when some weights cannot be fetched."""
        moved: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            new = [k for k in checkpoint.weights if k not in self._saved]
            if new:
                os.makedirs(os.path.join(tmp, "weights"))
            lost = []
            for key in new:
                try:
                    state = self.fetch(checkpoint.weights[key])
                except Exception:  # Ray's ObjectLostError, OwnerDiedError, ...: the node that held them is gone
                    lost.append(key)
                    continue
                _write_weights(os.path.join(tmp, "weights", f"{key}.npz"), state)
                if self.put is not None:
                    moved[key] = self.put(state)
            if lost:
                raise WeightsLost(lost)
            checkpoint.seconds = time.perf_counter() - self.origin
            with open(os.path.join(tmp, state_file(checkpoint.generation)), "w") as f:
                json.dump(_to_json(checkpoint), f)
            self.store.save_checkpoint(tmp, set(checkpoint.weights))
        self._saved = set(checkpoint.weights)
        return moved


def load(
    store: CheckpointStore, state_from_dict: Callable[[Mapping[str, Any]], Any], put: Any = None
) -> Checkpoint | None:
    """The newest checkpoint in `store`, its state read by the strategy's `state_from_dict` and its weights
    passed through `put` (into the object store), or None."""
    put = put or (lambda w: w)
    with tempfile.TemporaryDirectory() as tmp:
        path = store.load_checkpoint(tmp)
        if path is None:
            return None
        with open(path) as f:
            data = json.load(f)
        folder = os.path.join(os.path.dirname(path), "weights")
        weights = {key: put(_read_weights(os.path.join(folder, f"{key}.npz"))) for key in data["weights"]}
    return Checkpoint(
        generation=int(data["generation"]),
        state=state_from_dict(data["state"]),
        rng=data["rng"],
        history=[dict(h) for h in data["history"]],
        results={
            k: EvalResult(k, r["fitness"], dict(r["metrics"]), error=r["error"]) for k, r in data["results"].items()
        },
        weights=weights,
        seconds=float(data.get("seconds", 0.0)),
    )


def _write_weights(path: str, state: dict[str, Any]) -> None:
    """Weights in the form workers exchange them (numpy arrays) as an .npz; an entry numpy cannot hold (a
    bfloat16 tensor) is pickled inside it."""
    arrays = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            holder = np.empty((), dtype=object)
            holder[()] = value
            arrays[key] = holder
    np.savez(path, **arrays)


def _read_weights(path: str) -> dict[str, Any]:
    with np.load(path, allow_pickle=True) as data:  # popplast's own checkpoint, written by _write_weights
        return {key: data[key][()] if data[key].dtype == object else data[key] for key in data.files}


def state_file(generation: int) -> str:
    return f"state-g{generation:04d}.json"


def _to_json(c: Checkpoint) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "generation": c.generation,
        "state": c.state.to_dict(),
        "rng": c.rng,
        "history": c.history,
        "weights": sorted(c.weights),
        "seconds": c.seconds,
        "results": {k: {"fitness": r.fitness, "metrics": r.metrics, "error": r.error} for k, r in c.results.items()},
    }
