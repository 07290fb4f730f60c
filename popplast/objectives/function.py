"""A user's objective as popplast's evaluator: the same `evaluate` the CNN trainer offers the executors."""

from __future__ import annotations

import math
import os
import reprlib
import socket
import time
import traceback
from typing import Any, Callable, Mapping

from popplast.core.individual import Individual
from popplast.core.names import name_problem
from popplast.core.result import EvalResult
from popplast.objectives.trial import Trial
from popplast.spec.fitness import FitnessSpec
from popplast.spec.search import Fidelity
from popplast.spec.strategy import PLAIN_FUSION, FusionSpec

TAG_PREFIX = "popplast."  # of the tags trial.set_tag sets (tracking/mlflow_tracker.py)


class FunctionEvaluator:
    """Calls `objective(config, trial)` for each individual; never raises: an exception, a NaN or a missing
    fitness metric comes back as a failed result with the error, and the search goes on.

    Args:
        objective: the user's function (see popplast.objectives).
        fitness: which returned metric is the fitness, and whether it is maximised (fitness = −metric when
            it is minimised: popplast's strategies maximise).
        fidelity: what `trial.fidelity` says.
        threads: torch intra-op threads in this process.
        device: "auto" (CUDA when this process sees a GPU: Ray gave its worker one), "cpu" or "cuda".
        fusion: how children fuse their parents (`trial.fusion`), and `search_seed` the search's seed (what a
            shared initialisation is drawn from).
    """

    def __init__(
        self,
        objective: Callable[..., Any],
        fitness: FitnessSpec,
        fidelity: Fidelity,
        threads: int | None = None,
        device: str = "auto",
        fusion: FusionSpec = PLAIN_FUSION,
        search_seed: int = 0,
    ) -> None:
        self.objective = objective
        self.fitness = fitness
        self.fidelity = fidelity
        self.fusion = fusion
        self.search_seed = search_seed
        self.device = _device() if device == "auto" else device
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.where = f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(
        self,
        individual: Individual,
        config: Mapping[str, Any],
        parents_weights: Any = None,
        budget: Fidelity | None = None,
        return_weights: bool = False,
        stops: Any = None,
    ) -> EvalResult:
        import torch

        trial = Trial(
            individual,
            self.device,
            budget or self.fidelity,
            parents_weights or (),
            stops,
            self.fusion,
            self.search_seed,
        )
        began = time.time()  # wall clock, comparable across workers: what the workers' timeline is drawn from
        start = time.perf_counter()
        shared = None
        try:
            devices = [torch.cuda.current_device()] if self.device == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # torch's generator seeded per trial, then restored
                torch.manual_seed(individual.seed)
                returned = self.objective(dict(config), trial)
            value, state = returned if isinstance(returned, tuple) and len(returned) == 2 else (returned, None)
            metrics = self._metrics(value)
            _check_names(metrics, trial)
            if state is not None and not isinstance(state, Mapping):
                raise TypeError(f"an objective's state is a mapping of tensors or arrays, got {type(state).__name__}")
            if state is not None and return_weights:  # only a strategy that inherits keeps states
                shared = _shareable(state)
                metrics["weights_bytes"] = float(sum(w.nbytes for w in shared.values()))
        except Exception as e:
            result = EvalResult.failed(individual.id, describe_error(e), worker=self.where)
            # what MLflow would refuse stays out, else the failed individual's run would be refused too
            history = {k: v for k, v in trial.history.items() if name_problem(k) is None}
            tags = {k: v for k, v in trial.tags.items() if name_problem(k, TAG_PREFIX) is None}
            result.history, result.tags = history, {**tags, **_hashes(trial, None), **_span(began)}
            return result
        metrics.setdefault("train_seconds", time.perf_counter() - start)
        steps = [int(s) for series in trial.history.values() for s, _ in series if s > 0]  # 0: before training
        if steps:  # the training work an epoch budget counts (execution/search.py)
            metrics.setdefault("steps", float(max(steps)))
        raw = metrics[self.fitness.metric]
        fitness = raw if self.fitness.mode == "maximize" else -raw
        fused = trial.fused_metrics.get(self.fitness.metric)
        if fused is not None:  # as a fitness, to set beside its parents' (execution/fusion_cost.py)
            metrics["fused_fitness"] = fused if self.fitness.mode == "maximize" else -fused
        return EvalResult(
            individual.id,
            fitness,
            metrics,
            dict(trial.history),
            weights=shared,
            worker=self.where,
            tags={**trial.tags, **_hashes(trial, shared), **_span(began)},
            stopped_at=trial.stopped_where_told(),  # what the trial did, which the stopper's judge records
        )

    def _metrics(self, value: Any) -> dict[str, float]:
        if isinstance(value, Mapping):
            metrics = {str(k): _number(k, v, among=True) for k, v in value.items()}
        else:
            metrics = {self.fitness.metric: _number(self.fitness.metric, value)}
        needed = [m for m, _ in self.fitness.objectives] + [c.metric for c in self.fitness.constraints]
        for name in dict.fromkeys(needed):
            if name not in metrics:
                what = (
                    "an objective of the search file's fitness"
                    if name != self.fitness.metric
                    else "the search file's fitness.metric"
                )
                if name not in (m for m, _ in self.fitness.objectives):
                    what = "a metric the search file's constraints bound"
                raise KeyError(
                    f"the objective returned no {name!r} metric, {what} (it returned {', '.join(metrics) or 'nothing'})"
                )
            if not math.isfinite(metrics[name]):
                raise FloatingPointError(f"the objective's {name} is {metrics[name]}")
        return metrics


def _check_names(metrics: Mapping[str, float], trial: Trial) -> None:
    """Names MLflow refuses fail the individual now, with the name: shipped, the whole run would be refused
    (the search run logs a metric NAME as best_NAME too; a tag NAME is popplast.NAME)."""
    named = [("returned a metric", metrics, "best_"), ("reported a metric", trial.history, "")]
    for what, names, prefix in [*named, ("set a tag", trial.tags, TAG_PREFIX)]:
        for name in names:
            reason = name_problem(name, prefix)
            if reason is not None:
                raise ValueError(f"the objective {what} named {name!r:.80}, which MLflow refuses: {reason}")


def _number(name: Any, value: Any, among: bool = False) -> float:
    """`among`: the value is one of a mapping the objective returned as its metrics."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"the objective returned {str(name)[:80]} = {_excerpt(value)}, not a number; {_instead(value, among)}"
        ) from None


def _excerpt(value: Any) -> str:
    """The value's type and the start of its text: a state's arrays in full were pages of error message."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 2, 60, 60
    text = short.repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


def _instead(value: Any, among: bool) -> str:
    """What the objective should return instead: a mapping or an array where a number belongs is most
    likely its state, returned among the metrics or in their place."""
    state = "return metrics, state (the mapping of numbers first, then the mapping of tensors or arrays)"
    if isinstance(value, Mapping):
        return state
    if hasattr(value, "shape"):
        return "a metric is one number (float(x), or x.item() for a one-element tensor)" + (
            f"; if this mapping is the state, {state}" if among else ""
        )
    return "a metric is one number"


def _shareable(state: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    from popplast.training.weights import to_shareable

    tensors = {str(k): v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)) for k, v in state.items()}
    return to_shareable(tensors)


def _hashes(trial: Trial, shared: Mapping[str, Any] | None) -> dict[str, str]:
    """The hashes of the state the trial inherited and of the one it returned: a child's inherited hash equals
    its parent's returned one when the inheritance is what the strategy says it is."""
    from popplast.training.weights import from_shareable, state_dict_hash

    tags = {}
    if trial.inherited_hash is not None:
        tags["inherited_state_hash"] = trial.inherited_hash
    if shared is not None:
        tags["returned_state_hash"] = state_dict_hash(from_shareable(shared))
    return tags


def _span(began: float) -> dict[str, str]:
    """When the evaluation ran, in seconds since the epoch (the worker's clock)."""
    return {"started": f"{began:.3f}", "ended": f"{time.time():.3f}"}


def describe_error(e: BaseException) -> str:
    """The exception in one line, then where it happened (the last three frames)."""
    frames = traceback.format_tb(e.__traceback__)[-3:]
    return f"{type(e).__name__}: {e}\n" + "".join(frames)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
