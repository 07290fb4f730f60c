"""A pool of long-lived Ray actors, each holding one evaluator (its data loaded once).

Faults: an actor that dies mid-evaluation (its process killed, its node lost) is replaced, and its work is
run again on another actor, up to `max_attempts` runs in all; then the work is recorded as failed with
every attempt's error. A replacement joins the pool only once it has started, so work never waits on an
actor the cluster can no longer place: the pool goes on with the actors it has.

Hangs: with `eval_timeout`, an evaluation still running that many seconds after it was sent (a data-loader
deadlock, an NCCL hang) has its actor killed and replaced, and is recorded failed ("timed out after N s"),
not run again: a hang is more often the objective's than the worker's, and another attempt would likely
hang as long.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, cast

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from popplast.execution.executor import Evaluator, Work
from popplast.execution.ray_session import ClusterError

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_START_TIMEOUT = 300.0  # seconds a pool may wait with no actor able to run (an autoscaler adding nodes)


@ray.remote
class EvaluatorActor:
    def __init__(self, make_evaluator: Callable[[], Evaluator]) -> None:
        self.evaluator = make_evaluator()
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]

    def placement(self) -> dict[str, Any]:
        """Where this actor runs; answered once its evaluator is built, so it also says 'started'."""
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "gpu_ids": self.gpu_ids,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        }

    def evaluate(self, work: Work) -> Any:
        return self._tagged(self._resolved(work).run(self.evaluator))

    @ray.method(num_returns=2)
    def evaluate_keeping_weights(self, work: Work) -> tuple[Any, Any]:
        """The result, and apart from it the trained weights: the driver keeps the second object's reference
        for the children without ever fetching the weights (they stay in the object store)."""
        result = self._tagged(self._resolved(work).run(self.evaluator))
        weights, result.weights = result.weights, None
        return result, weights

    def _resolved(self, work: Work) -> Work:
        resolve = getattr(work, "resolve", None)
        get = lambda w: ray.get(w) if isinstance(w, ray.ObjectRef) else w  # noqa: E731
        return resolve(get) if resolve else work

    def _tagged(self, result: Any) -> Any:
        tags = getattr(result, "tags", None)
        if self.gpu_ids and isinstance(tags, dict):
            tags["gpu_ids"] = ",".join(self.gpu_ids)  # which GPU(s) Ray gave this worker, for the record
        return result


@dataclass
class _Task:
    work: Work
    errors: list[str] = field(default_factory=list)  # why earlier attempts' workers died
    seq: int = 0  # the order it was taken in


class RayExecutor:
    """Runs work items (GA evaluations, ES population slices) on `workers` actors, each with
    `cpus_per_worker` CPUs and `gpus_per_worker` GPUs (fractions allowed: 0.25 puts four workers on a GPU;
    Ray gives each a GPU id and never places more than one GPU's worth on it).

    Results come back as they finish, not in submission order. A result that needed more than one attempt
    carries the earlier attempts' errors in `retries` (when its type has that field).
    """

    def __init__(
        self,
        make_evaluator: Callable[[], Evaluator],
        workers: int,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        eval_timeout: float | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.workers = workers
        self.eval_timeout = eval_timeout
        self.timed_out = 0  # evaluations stopped for running past eval_timeout
        self.max_attempts = max_attempts
        self.start_timeout = start_timeout
        self.placements: dict[Any, dict[str, Any]] = {}  # started actor → where it runs
        self.replaced = 0
        self._make_evaluator = make_evaluator
        self._options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
        self._starting: dict[Any, Any] = {}  # placement() reference → actor not yet started
        self._start_failures: list[str] = []
        self._stops: Any = None  # the stopper's service (execution/ray_stopping.py), once a search asks
        for _ in range(workers):
            self._start()

    def _start(self) -> None:
        actor = cast(Any, EvaluatorActor).options(**self._options).remote(self._make_evaluator)
        self._starting[actor.placement.remote()] = actor

    def wait_started(self, timeout: float | None = None) -> dict[Any, dict[str, Any]]:
        """Block until every actor asked for has started (or `timeout`); returns the placements."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        while self._starting and time.monotonic() < deadline:
            self._collect_started(list(self._starting), 1.0)
        return dict(self.placements)

    def map(self, items: Iterable[Work | None], ordered: bool = False, window: int | None = None) -> Iterator[Any]:
        """Run `items`, taken from the iterable only when a worker is free for them (so an asynchronous search
        asks each one as late as it can; a None item: nothing to take until the next result); results as they
        finish. `ordered`: results in the order the items
        were taken, and an item taken only once fewer than `window` (default: the workers) are out, so that
        when it is taken depends on the results alone (the asynchronous search's replay mode)."""
        source = iter(items)
        window = window or self.workers
        waiting: collections.deque = collections.deque()
        idle = list(self.placements)
        running: dict = {}  # object ref → (actor, task, reference to its trained weights or None, when sent)
        done: dict[int, Any] = {}  # ordered: results waiting for the ones taken before them
        taken = yielded = 0
        exhausted = paused = False
        stalled_since = time.monotonic()
        while waiting or running or done or not exhausted:
            idle += self._collect_started(list(self._starting), 0)
            while idle:
                if waiting:
                    task = waiting.popleft()
                elif exhausted or paused or (ordered and taken - yielded >= window):
                    break
                else:
                    try:
                        work = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    if work is None:  # nothing to run until a result is in (an asynchronous PBT's members)
                        paused = True
                        break
                    task = _Task(work, seq=taken)
                    taken += 1
                actor = idle.pop(0)
                if getattr(task.work, "return_weights", False):
                    ref, weights = actor.evaluate_keeping_weights.remote(task.work)
                else:
                    ref, weights = actor.evaluate.remote(task.work), None
                running[ref] = (actor, task, weights, time.monotonic())
            if ordered and yielded in done:  # one at a time, taking the next item in between, as a replay does
                yield done.pop(yielded)
                yielded, paused = yielded + 1, False
                continue
            if not running and not waiting and not done:
                if exhausted:
                    break
                if paused:
                    raise RuntimeError("the search asks for nothing while nothing is running")
            if not running:
                self._check_stalled(stalled_since)
            else:
                stalled_since = time.monotonic()
            # a bounded wait, so that Ctrl-C reaches Python between waits; a trial's report wakes it too
            stops = [self._stops.pending] if self._stops is not None and running else []
            ready, _ = ray.wait(list(running) + list(self._starting) + stops, num_returns=1, timeout=1.0)
            for ref in ready:
                if stops and ref == stops[0]:
                    self._stops.answer()
                    continue
                if ref in self._starting:
                    idle += self._collect_started([ref], 0)
                    continue
                actor, task, weights, _ = running.pop(ref)
                result, alive = self._outcome(ref, task, weights)
                if alive:
                    idle.append(actor)
                else:
                    self._discard(actor)
                if result is None:  # the worker died; run it again elsewhere, before anything new
                    waiting.appendleft(task)
                    continue
                if ordered:
                    done[task.seq] = result
                else:
                    yield result
                    paused = False
            for task, result in self._stop_hung(running):
                if ordered:
                    done[task.seq] = result
                else:
                    yield result
                    paused = False

    def _stop_hung(self, running: dict) -> list[tuple[_Task, Any]]:
        """Evaluations past eval_timeout: their actors killed (replacements asked for), their results failed."""
        if self.eval_timeout is None:
            return []
        now, out = time.monotonic(), []
        for ref, (actor, task, _, sent) in list(running.items()):
            if now - sent <= self.eval_timeout:
                continue
            del running[ref]
            self._discard(actor)
            self.timed_out += 1
            error = (
                f"TimeoutError: the evaluation timed out after {self.eval_timeout:g} s (--eval-timeout); "
                "its worker was stopped and replaced"
            )
            out.append((task, self._with_retries(task.work.failed(error), task.errors)))
        return out

    def _outcome(self, ref: Any, task: _Task, weights: Any) -> tuple[Any, bool]:
        """(the result or None to retry, whether the actor is still usable)."""
        try:
            result = ray.get(ref)
        except RayActorError as e:
            task.errors.append(f"the worker died: {_first_line(e)}")
            if len(task.errors) < self.max_attempts:
                return None, False
            result = task.work.failed(f"the worker died in all {self.max_attempts} attempts; the last error: {e}")
            return self._with_retries(result, task.errors[:-1]), False
        except RayError as e:
            return self._with_retries(task.work.failed(f"{type(e).__name__}: {e}"), task.errors), True
        # a reference: the weights themselves never reach the driver; an objective that returned no state
        # (no weights_bytes) leaves nothing behind it
        if weights is not None and getattr(result, "ok", False) and "weights_bytes" in result.metrics:
            result.weights = weights
        return self._with_retries(result, task.errors), True

    @staticmethod
    def _with_retries(result: Any, errors: list[str]) -> Any:
        if errors and hasattr(result, "retries"):
            result.retries = list(errors)
        return result

    def _collect_started(self, refs: list, timeout: float) -> list:
        """Actors among `refs` that have started, now placed in the pool; failed starts are replaced."""
        started: list[Any] = []
        if not refs:
            return started
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for ref in done:
            actor = self._starting.pop(ref)
            try:
                self.placements[actor] = ray.get(ref, timeout=10)
                started.append(actor)
            except (RayError, GetTimeoutError) as e:
                self._start_failures.append(_first_line(e))
                if len(self._start_failures) >= self.max_attempts * self.workers:
                    raise ClusterError(
                        f"{len(self._start_failures)} Ray worker actors failed to start; the last error: {e}"
                    ) from None
                self._start()
        return started

    def _discard(self, actor: Any) -> None:
        """Forget a dead actor and ask for a replacement; it joins once the cluster has placed it."""
        self.placements.pop(actor, None)
        with contextlib.suppress(Exception):  # already gone
            ray.kill(actor)
        self.replaced += 1
        self._start()

    def _check_stalled(self, since: float) -> None:
        if self.placements:
            return
        if time.monotonic() - since > self.start_timeout:
            need = ", ".join(f"{v:g} {k[4:].upper()}" for k, v in self._options.items() if v)
            raise ClusterError(
                f"no Ray worker actor could run for {self.start_timeout:.0f} s: the cluster has no "
                f"room for a worker of {need} (nodes lost?). The search's MLflow run holds what "
                "finished; resume it with --resume once the cluster is back."
            )

    def put(self, value: Any) -> Any:
        """Into the object store (weights read back from a checkpoint): workers fetch it by reference."""
        return ray.put(value)

    @staticmethod
    def fetch(value: Any) -> Any:
        return ray.get(value) if isinstance(value, ray.ObjectRef) else value

    def stop_channel(self, judge: Any) -> Any:
        """The channel trials reach `judge` through: one hub actor per pool, answering for this judge."""
        from popplast.execution.ray_stopping import RayStopService

        if self._stops is None:
            self._stops = RayStopService(judge)
        self._stops.judge = judge
        return self._stops.channel

    def close(self) -> None:
        if self._stops is not None:
            self._stops.close()
            self._stops = None
        for actor in list(self.placements) + list(self._starting.values()):
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor)
        self.placements, self._starting = {}, {}


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
