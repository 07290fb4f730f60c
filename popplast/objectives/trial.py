"""What an objective is told about the individual it trains, and what it can tell back mid-training."""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import Any, Mapping, Sequence

from popplast.core.individual import Individual
from popplast.spec.search import Fidelity
from popplast.spec.strategy import PLAIN_FUSION, FusionSpec


class Trial:
    """The trial context an objective is called with.

    Attributes:
        individual: the individual (its `id`, `generation`, `parent_ids`, `operator`, `fusion_weights`).
        seed: the seed to initialise and shuffle from (derived from the search's seed and the individual).
        device: "cuda" when Ray gave this worker a GPU (torch sees only that one), else "cpu".
        fidelity: how hard to train, as the search file says (`epochs`, `image_size`, `batch_size`, ...).
        parents: the parents' states (as shareable arrays) with the factors the strategy fuses them by, the
            better parent first; for an objective that fuses them itself (popplast's CNN trainer loads them
            straight into its model). Most objectives call `inherited_state()` instead.
        fusion: how the search fuses parents (`strategy.fusion`: align, init, weights).
        fused_metrics: what `fused()` recorded: the child's metrics after fusion, before training.
        inherited_from: how many parents' states `inherited_state()` returned fused (1: the better parent's
            alone; 0 before it is called or without parents).
    """

    def __init__(
        self,
        individual: Individual,
        device: str,
        fidelity: Fidelity,
        parents: Sequence[tuple[Mapping[str, Any], float]] = (),
        stops: Any = None,
        fusion: FusionSpec = PLAIN_FUSION,
        search_seed: int = 0,
    ) -> None:
        self.individual = individual
        self.fusion = fusion
        self._search_seed = search_seed
        self.fused_metrics: dict[str, float] = {}
        self.inherited_from = 0
        self.seed = individual.seed
        self.device = device
        self.fidelity = fidelity
        self.parents = tuple(parents)
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.tags: dict[str, str] = {}
        self.inherited_hash: str | None = None
        self._stops = stops  # the search's stopper, as its channel to this worker (execution/stopping.py)
        self._stopped = False
        self._watched_step: int | None = None  # the last step it reported the watched metric at
        self.stopped_at: int | None = None  # the step whose verdict told it to stop
        self._partial_warned = False  # warned that a report left out some of the watched metrics

    @property
    def id(self) -> str:
        return self.individual.id

    def inherited_state(self, model: Any = None, example: Any = None) -> dict[str, Any] | None:
        """None for an individual that starts afresh; else its parents' states as torch tensors: the better
        parent's alone, or the fitness-weighted average of every parent's when the strategy fuses them and
        their states are compatible (the same keys and shapes; else the better parent's).

        With `model` (the child's torch module, built) and `strategy.fusion.align: weight_matching`, the other
        parents' hidden units are first permuted to match the better parent's, by the permutation groups
        traced from `model` (`example`: an input for the trace; else one is guessed from its first layer).
        Without a model, or for a model that cannot be traced, the parents are averaged as they are; the
        run's `fusion_alignment` tag says which happened."""
        if not self.parents:
            return None
        from popplast.training.fusion import FusionError, align_parents, fuse_state_dicts
        from popplast.training.weights import from_shareable, state_dict_hash

        states, weights = zip(*self.parents)
        if len(states) > 1 and self.fusion.align == "weight_matching":
            if model is None:
                self.tags["fusion_alignment"] = "none: inherited_state() was given no model to align to"
            else:
                states, self.tags["fusion_alignment"] = align_parents(model, states, example, self.seed)
        try:
            state = fuse_state_dicts(states, weights)  # one parent: its own tensors, uncopied
            self.inherited_from = len(states)
        except FusionError as e:
            state = from_shareable(states[0])  # the strategy lists the better parent first
            self.inherited_from = 1
            self.tags["inherited"] = f"the better parent's state alone: {e}"
        self.inherited_hash = state_dict_hash(state)
        return state

    def fused(self, **metrics: float) -> None:
        """The child's metrics right after its parents were fused, before any training (its validation
        metrics, under the names it returns them by): step 0 of their series and `fused_NAME` tags, and
        the search compares them with its parents' fitness (the fusion's barrier). The stopper is not told."""
        for name, value in metrics.items():
            value = float(value)
            self.fused_metrics[name] = value
            self.history.setdefault(name, []).insert(0, (0, value))
            self.tags[f"fused_{name}"] = f"{value:.6g}"

    def init_seed(self, key: str = "") -> int:
        """The seed to initialise a model from scratch with: the individual's own seed, or with
        `strategy.fusion.init: shared` one drawn from the search's seed and `key` (the architecture's name),
        the same for every individual, so that they all start from the same weights."""
        if self.fusion.init != "shared":
            return self.seed
        digest = hashlib.sha256(f"popplast-init:{self._search_seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") >> 1

    def report(self, step: int, **metrics: float) -> None:
        """Intermediate metrics at `step` (an epoch, say): logged per step in MLflow under their names."""
        for name, value in metrics.items():
            value = float(value)
            if not math.isfinite(value):
                raise FloatingPointError(f"the objective reported {name} = {value} at step {step}")
            self.history.setdefault(name, []).append((int(step), value))
        watched = self._stops.metric if self._stops is not None else None
        if isinstance(watched, str) and watched in metrics:
            self._watched_step = int(step)
            self._stops.report(self.id, int(step), float(metrics[watched]))
        elif isinstance(watched, tuple) and all(m in metrics for m in watched):  # several objectives: together
            self._watched_step = int(step)
            self._stops.report(self.id, int(step), [float(metrics[m]) for m in watched])
        elif isinstance(watched, tuple) and any(m in metrics for m in watched) and not self._partial_warned:
            self._partial_warned = True  # once per trial: the stopper never judges a report that lacks some
            missing = ", ".join(m for m in watched if m not in metrics)
            warnings.warn(
                f"{self.id}: the stopper judges {', '.join(watched)} reported together in one trial.report call; "
                f"step {step} lacks {missing}, so it was not judged",
                stacklevel=2,
            )

    def set_tag(self, name: str, value: str) -> None:
        """A tag on the individual's MLflow run (`popplast.NAME`)."""
        self.tags[str(name)] = str(value)

    @property
    def watched(self) -> str | tuple[str, ...] | None:
        """The metric the search's stopper judges by (report it every step), or None without a stopper; with
        several objectives every objective's and constraint's metric, to report together in one call."""
        return self._stops.metric if self._stops is not None else None

    def should_stop(self) -> bool:
        """Whether the search's stopper asks this trial to stop now: call it after each `report`; it waits
        for the stopper's verdict on that report (a few milliseconds on Ray), so the trial stops at the step
        the stopper judged. Never true without a stopper. Stop by returning, as after the last step."""
        if self._stops is not None and not self._stopped:
            self._stopped = self._stops.should_stop(self.id)
            if self._stopped:
                self.stopped_at = self._watched_step
        return self._stopped

    def stopped_where_told(self) -> int | None:
        """The step it stopped at: where the stopper told it to, if it reported nothing of the watched metric
        after that (None: it trained on, having never been told or having not listened)."""
        if self.stopped_at is None or self._watched_step != self.stopped_at:
            return None
        return self.stopped_at
