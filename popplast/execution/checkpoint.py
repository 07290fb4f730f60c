"""Per-generation checkpoints of a search, so that a search whose driver died resumes exactly.

After each generation the loop saves everything the rest of the search depends on: the strategy's state
(population, fitness, best, counts), the random generator's state, the history, every result's summary,
and for a strategy that inherits (Gen-Soup, PBT) the trained weights the next generations can still
inherit (its last generation and the best individual). The store (the MLflow tracker: artifacts of the
search run) keeps one state file per generation, `state-gNNNN.json`, and the weights as `weights/ID.npz`; a
state file is written after the weights it names, so the newest readable state file always has its weights,
and the weights of the state before it are kept as well.

The files are data only: weights are plain arrays (numpy reads them with allow_pickle=False, so a tampered
file cannot run code), ids are checked against the id pattern before they become paths, and the state file
records each weights file's digest: a state whose files do not verify (cut short, changed) is passed over
for the one before. Weights already in the store are never written again, by this driver or a resumed one.

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
from popplast.execution.checkpoint_files import CheckpointError, check_id, read_weights, state_file, write_weights

FORMAT = 2  # 2: weights are plain arrays (bfloat16 as bits) and the state file records each file's digest


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
    weight_hashes: dict[str, str] = field(default_factory=dict)  # the weights files' digests (a loaded one's)
    stopper_log: list[list[Any]] = field(default_factory=list)  # the stopper's events (execution/stopping.py)

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
        # the weights the last state saved names: already in the store, and kept as its fallback
        self._saved: set[str] = set()
        self._hashes: dict[str, str] = {}  # their files' digests, by individual id

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
                except SystemError:  # a signal's Interrupted, wrapped by Ray's compiled ray.get: not a loss
                    raise
                except Exception:  # Ray's ObjectLostError, OwnerDiedError, ...: the node that held them is gone
                    lost.append(key)
                    continue
                path = os.path.join(tmp, "weights", f"{check_id(key, 'the checkpoint')}.npz")
                self._hashes[key] = write_weights(path, state)
                if self.put is not None:
                    moved[key] = self.put(state)
            if lost:
                raise WeightsLost(lost)
            checkpoint.seconds = time.perf_counter() - self.origin
            hashes = {k: self._hashes[k] for k in checkpoint.weights if k in self._hashes}
            with open(os.path.join(tmp, state_file(checkpoint.generation)), "w") as f:
                json.dump({**_to_json(checkpoint), "weight_hashes": hashes}, f)
            # the state before this one keeps its weights too: if this one's do not verify on resume, that
            # one is whole
            self.store.save_checkpoint(tmp, set(checkpoint.weights) | self._saved)
        self._saved = set(checkpoint.weights)
        self._hashes = hashes
        return moved

    def resumed_from(self, checkpoint: Checkpoint) -> None:
        """The weights `checkpoint` names are in the store already, whole: they are never written again (a
        rewrite in place, killed half way, would break the only state that names them)."""
        self._saved = set(checkpoint.weights)
        self._hashes = dict(checkpoint.weight_hashes)


_REQUIRED = object()  # a key a state file must hold


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
        where = os.path.basename(path)
        try:
            weights = {
                key: put(read_weights(os.path.join(folder, f"{check_id(key, where)}.npz"))) for key in data["weights"]
            }
        except ValueError as e:  # numpy refuses a pickled object without reading it
            raise CheckpointError(f"{where}: a weights file is not plain arrays ({e})") from None

    def read(key: str, how: Callable[[Any], Any], default: Any = _REQUIRED) -> Any:
        """The state file's `key` as `how` reads it; a CheckpointError naming the file and the key if it is
        missing or not what popplast writes there (any error: the reader is the strategy's, or numpy's)."""
        if key not in data and default is not _REQUIRED:
            return default
        try:
            return how(data[key])
        except Exception as e:
            raise CheckpointError(
                f"{where}: its {key!r} is missing or malformed ({type(e).__name__}: {e!s:.80})"
            ) from None

    return Checkpoint(
        generation=read("generation", int),
        state=read("state", state_from_dict),
        rng=read("rng", _rng_state),
        history=read("history", lambda h: [dict(x) for x in h]),
        results=read("results", _results),
        weights=weights,
        seconds=read("seconds", float, 0.0),
        weight_hashes=read("weight_hashes", dict, {}),
        stopper_log=read("stopper_log", lambda log: [list(e) for e in log], []),
    )


def _rng_state(value: Any) -> dict[str, Any]:
    """A generator state numpy takes (set on a generator now, not at the resume's first draw)."""
    np.random.default_rng().bit_generator.state = value
    return dict(value)


def _results(value: Any) -> dict[str, EvalResult]:
    return {
        k: EvalResult(k, r["fitness"], dict(r["metrics"]), error=r["error"], stopped_at=r.get("stopped_at"))
        for k, r in value.items()
    }


def _result_json(r: EvalResult) -> dict[str, Any]:
    out = {"fitness": r.fitness, "metrics": r.metrics, "error": r.error}
    return {**out, "stopped_at": r.stopped_at} if r.stopped_at is not None else out


def _to_json(c: Checkpoint) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "generation": c.generation,
        "state": c.state.to_dict(),
        "rng": c.rng,
        "history": c.history,
        "weights": sorted(c.weights),
        "seconds": c.seconds,
        "results": {k: _result_json(r) for k, r in c.results.items()},
        **({"stopper_log": c.stopper_log} if c.stopper_log else {}),
    }
