"""A pool of long-lived Ray actors, each holding one evaluator (its data loaded once)."""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Iterator

import ray
from ray.exceptions import RayActorError, RayError

from popplast.execution.executor import Evaluator, Work


@ray.remote
class EvaluatorActor:
    def __init__(self, make_evaluator: Callable[[], Evaluator]) -> None:
        self.evaluator = make_evaluator()

    def evaluate(self, work: Work) -> Any:
        return self._resolved(work).run(self.evaluator)

    @ray.method(num_returns=2)
    def evaluate_keeping_weights(self, work: Work) -> tuple[Any, Any]:
        """The result, and apart from it the trained weights: the driver keeps the second object's reference
        for the children without ever fetching the weights (they stay in the object store)."""
        result = self._resolved(work).run(self.evaluator)
        weights, result.weights = result.weights, None
        return result, weights

    def _resolved(self, work: Work) -> Work:
        resolve = getattr(work, "resolve", None)
        get = lambda w: ray.get(w) if isinstance(w, ray.ObjectRef) else w  # noqa: E731
        return resolve(get) if resolve else work


class RayExecutor:
    """Runs work items (GA evaluations, ES population slices) on `workers` actors, each with
    `cpus_per_worker` CPUs and `gpus_per_worker` GPUs (fractions allowed).

    Results come back as they finish, not in submission order. An actor that dies takes its individual
    with it (recorded as failed) and is replaced, so the search goes on.
    """

    def __init__(self, make_evaluator: Callable[[], Evaluator], workers: int, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0) -> None:
        self.workers = workers
        self._make_evaluator = make_evaluator
        self._options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
        self._actors = [self._start() for _ in range(workers)]

    def _start(self):
        return EvaluatorActor.options(**self._options).remote(self._make_evaluator)

    def map(self, evaluations: Iterable[Work]) -> Iterator[Any]:
        waiting = collections.deque(evaluations)
        idle = list(self._actors)
        running: dict = {}  # object ref → (actor, evaluation, reference to its trained weights or None)
        while waiting or running:
            while idle and waiting:
                actor, evaluation = idle.pop(0), waiting.popleft()
                if getattr(evaluation, "return_weights", False):
                    ref, weights = actor.evaluate_keeping_weights.remote(evaluation)
                else:
                    ref, weights = actor.evaluate.remote(evaluation), None
                running[ref] = (actor, evaluation, weights)
            ready: list = []
            while not ready:  # a bounded wait, so that Ctrl-C reaches Python between waits
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            [ref] = ready
            actor, evaluation, weights = running.pop(ref)
            try:
                result = ray.get(ref)
                if weights is not None and result.ok:
                    result.weights = weights  # a reference: the weights themselves never reach the driver
            except RayActorError as e:
                result = evaluation.failed(f"the worker died: {e}")
                actor = self._replace(actor)
            except RayError as e:
                result = evaluation.failed(f"{type(e).__name__}: {e}")
            idle.append(actor)
            yield result

    def _replace(self, dead):
        fresh = self._start()
        self._actors = [fresh if a is dead else a for a in self._actors]
        return fresh

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
