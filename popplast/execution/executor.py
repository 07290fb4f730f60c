"""Executors run evaluations and yield results as they finish; the local one runs them in this process."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.spec.search import Fidelity


class Evaluator(Protocol):
    def evaluate(
        self,
        individual: Individual,
        config: Mapping[str, Any],
        parents_weights: Any = None,
        budget: Fidelity | None = None,
        return_weights: bool = False,
        stops: Any = None,
    ) -> EvalResult: ...


@dataclass(frozen=True)
class Evaluation:
    """One unit of work: train `individual` with `config` at `budget` (None: the evaluator's fidelity)."""

    individual: Individual
    config: Mapping[str, Any]
    budget: Fidelity | None = None
    return_weights: bool = False
    parents_weights: tuple[tuple[Any, float], ...] = ()  # (state dict or object-store reference, factor)
    stops: Any = None  # the search's stopper, as its channel (execution/stopping.py), or None

    def run(self, evaluator: Evaluator) -> EvalResult:
        if self.stops is None:  # an evaluator of its own (a benchmark's) need not know of stoppers
            return evaluator.evaluate(
                self.individual, self.config, self.parents_weights, self.budget, self.return_weights
            )
        return evaluator.evaluate(
            self.individual, self.config, self.parents_weights, self.budget, self.return_weights, stops=self.stops
        )

    def resolve(self, get: Callable[[Any], Any]) -> "Evaluation":
        """The same evaluation with its parents' weights fetched by `get` (on the worker that runs it)."""
        if not self.parents_weights:
            return self
        return dataclasses.replace(self, parents_weights=tuple((get(w), f) for w, f in self.parents_weights))

    def failed(self, error: str) -> EvalResult:
        """The result to record when the worker running this evaluation died."""
        return EvalResult.failed(self.individual.id, error)


@dataclass(frozen=True)
class EvaluationSlice:
    """Several evaluations run by one call of a vectorised evaluator's `evaluate_many` (the plastic-rule
    objective scores a population slice as one batched tensor program); yields their results as a list."""

    evaluations: tuple[Evaluation, ...]

    def run(self, evaluator: Any) -> list[EvalResult]:
        return list(evaluator.evaluate_many([(e.individual, e.config) for e in self.evaluations]))

    def failed(self, error: str) -> list[EvalResult]:
        return [e.failed(error) for e in self.evaluations]


def slices(evaluations: list[Evaluation], n: int) -> list[EvaluationSlice]:
    """`evaluations` in at most `n` contiguous slices of near-equal size (one per worker)."""
    size, extra = divmod(len(evaluations), max(1, n))
    out, start = [], 0
    for i in range(max(1, n)):
        stop = start + size + (i < extra)
        if stop > start:
            out.append(EvaluationSlice(tuple(evaluations[start:stop])))
        start = stop
    return out


class Work(Protocol):
    """Anything an executor runs: `run` on a worker's evaluator, `failed` when the worker died doing it."""

    def run(self, evaluator: Any) -> Any: ...

    def failed(self, error: str) -> Any: ...


class Executor(Protocol):
    workers: int

    def map(
        self, evaluations: Iterable[Work | None], ordered: bool = False, window: int | None = None
    ) -> Iterator[Any]:
        """Results as they finish (`ordered`: in the order taken), each item taken when a worker is free (None:
        nothing to take until the next result)."""
        ...

    def put(self, value: Any) -> Any: ...

    def fetch(self, value: Any) -> Any: ...

    def stop_channel(self, judge: Any) -> Any:
        """What the workers' trials reach `judge` (a StopJudge) through."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Runs evaluations one after another in this process: the same results as the Ray pool for a seed."""

    workers = 1

    def __init__(self, make_evaluator: Callable[[], Evaluator], window: int = 1) -> None:
        self._evaluator = make_evaluator()
        self.window = window  # how many an asynchronous search's replay keeps asked ahead (`--workers`)

    def map(
        self, evaluations: Iterable[Work | None], ordered: bool = False, window: int | None = None
    ) -> Iterator[Any]:
        """One at a time, in order. `window`: take that many ahead before running the first (what the Ray
        pool's ordered mode does with that many workers), so an asynchronous search asks as it would there;
        a None item: nothing more until the next result."""
        ahead: list[Work] = []
        for evaluation in evaluations:
            if evaluation is None:  # nothing to add until a result is in: run the next one
                if not ahead:
                    raise RuntimeError("the search asks for nothing while nothing is running")
                yield ahead.pop(0).run(self._evaluator)
                continue
            ahead.append(evaluation)
            if len(ahead) >= (window or 1):
                yield ahead.pop(0).run(self._evaluator)
        for evaluation in ahead:
            yield evaluation.run(self._evaluator)

    @staticmethod
    def put(value: Any) -> Any:
        return value

    @staticmethod
    def fetch(value: Any) -> Any:
        return value

    @staticmethod
    def stop_channel(judge: Any) -> Any:
        from popplast.execution.stopping import LocalChannel

        return LocalChannel(judge)

    def close(self) -> None:
        pass
