"""A simulated cluster: the executor protocol in virtual time, for the real strategies, loop, stoppers and
tracking with any number of workers on one core.

Each evaluation's outcome and seconds come from the simulation's model (execution/simulated/models.py). The clock
jumps to the next event: a worker finishing, a worker dying, a trial's report at the end of one of its steps
(only while a stopper watches: the report goes to the stopper's judge at that virtual moment, and a stop
ends the evaluation there). A worker takes the next evaluation when it is free, after `dispatch_seconds`;
`ordered` and `window` mean what they mean for the Ray pool (execution/ray_pool.py).

Faults, drawn per evaluation and attempt from the simulation's seed and the individual's seed (so the same
ones fail whatever the order): `failures`, the objective raises part-way (a failed result, as a real
exception gives); `worker_losses`, the worker dies part-way and the evaluation runs again on another
worker, up to `max_attempts` runs in all, with the earlier attempts' errors in `retries`, as on Ray. A lost
worker comes back after `restart_seconds`; its attempt has no span (as a dead Ray worker tells none), so the
utilisation, the executor's and the tracked one alike (core/utilisation.py), does not count it.

Everything is a function of the seed unless `driver_time` adds the driver's real time between results to
the clock (then a slow driver shows as idle workers, and runs differ by the machine's speed).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from popplast.core.result import EvalResult
from popplast.core.utilisation import BusyTime
from popplast.execution.executor import Work
from popplast.execution.simulated.models import inherited_steps
from popplast.execution.simulated.settings import Simulation
from popplast.spec.space import SearchSpace

DEFAULT_MAX_ATTEMPTS = 3  # as the Ray pool's
_END = object()


@dataclass
class _Run:
    work: Any
    seq: int  # the order it was taken in
    errors: list[str] = field(default_factory=list)
    worker: int = -1
    start: float = 0.0
    values: tuple[float, ...] = ()
    step_ends: tuple[float, ...] = ()  # seconds from its start to the end of each step
    first_step: int = 0  # the steps an inherited state had already trained (the model's curve goes on from it)
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, tuple[float, ...]] = field(default_factory=dict)  # the model's other metrics step by step
    end: str = "ok"  # how this attempt ends: ok, failed (the objective raised) or lost (the worker died)
    end_step: int = 0  # the steps it trains before it ends
    end_time: float = 0.0
    reported: int = 0
    span: tuple[float, float] | None = None  # its result's start and end; None: its worker died (no span)


class SimulatedExecutor:
    def __init__(
        self,
        simulation: Simulation,
        space: SearchSpace,
        workers: int,
        metric: str,
        maximize: bool,
        steps: int,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        driver_clock: Callable[[], float] = time.perf_counter,
        eval_timeout: float | None = None,
    ) -> None:
        self.simulation, self.space, self.workers = simulation, space, workers
        self.metric, self.sign, self.steps = metric, 1.0 if maximize else -1.0, steps
        self.max_attempts = max_attempts
        self.window = workers
        self.clock = 0.0  # virtual seconds since the search began
        self.spans = BusyTime()  # of the results told, as the tracker reads them back from their tags
        self.lost = 0  # workers that died
        self.driver_seconds = 0.0  # the driver's real time between results (what `driver_time` charges)
        self.driver_clock = driver_clock  # a seam: tests charge a driver delay they choose
        self.eval_timeout = eval_timeout  # virtual seconds after which an evaluation is stopped, as on Ray

    # --- the executor protocol -------------------------------------------------------------------------
    def map(self, items: Iterable[Work | None], ordered: bool = False, window: int | None = None) -> Iterator[Any]:
        source = iter(items)
        window = window or self.workers
        free = list(range(self.workers))  # a heap of worker numbers: the lowest free one takes work
        events: list[tuple[float, int, str, Any]] = []  # (time, order, kind, payload)
        waiting: list[_Run] = []  # attempts to run again (their worker died), before anything new
        done: dict[int, Any] = {}  # ordered: results waiting for the ones taken before them
        counter = iter(range(2**62))  # ties in time: the event pushed first goes first
        taken = yielded = 0
        exhausted = paused = False

        def push(at: float, kind: str, payload: Any) -> None:
            heapq.heappush(events, (at, next(counter), kind, payload))

        while True:
            while free:
                if waiting:
                    run = waiting.pop(0)
                elif exhausted or paused or (ordered and taken - yielded >= window):
                    break
                else:
                    began = self.driver_clock()
                    work = next(source, _END)
                    self._charge(self.driver_clock() - began)  # the strategy's ask, and the loop's own work
                    if work is _END:
                        exhausted = True
                        break
                    if work is None:  # nothing to take until the next result (an asynchronous PBT's members)
                        paused = True
                        break
                    run, taken = _Run(work, taken), taken + 1
                self._start(run, heapq.heappop(free), push)
            if ordered and yielded in done:  # one at a time, taking the next item in between, as a replay does
                yield from self._yield(*done.pop(yielded))
                yielded, paused = yielded + 1, False
                continue
            if not events:
                if exhausted and not done and not waiting:
                    return
                raise RuntimeError("the search asks for nothing while nothing is running")
            at, _, kind, payload = heapq.heappop(events)
            self.clock = max(self.clock, at)
            if kind == "back":  # a lost worker's replacement has started
                heapq.heappush(free, payload)
                continue
            run = payload
            if kind == "step":
                if self._report(run):
                    result = self._finish(run, run.reported, at)
                    result.stopped_at = result.history[self.metric][-1][0]  # told to stop at that report
                elif run.reported < run.end_step:
                    push(run.start + run.step_ends[run.reported], "step", run)
                    continue
                elif run.end != "ok":
                    push(run.end_time, "end", run)
                    continue
                else:
                    result = self._finish(run, run.reported, at)
            else:
                result = self._end(run, at)
            if result is None:  # the worker died: the evaluation runs again on another, its replacement later
                waiting.insert(0, run)
                push(self.clock + self.simulation.restart_seconds, "back", run.worker)
                continue
            if run.end == "timeout":  # its worker was killed: a replacement takes over later
                push(self.clock + self.simulation.restart_seconds, "back", run.worker)
            else:
                heapq.heappush(free, run.worker)
            if ordered:
                done[run.seq] = (result, run.span)
            else:
                yield from self._yield(result, run.span)
                paused = False

    def put(self, value: Any) -> Any:
        return value

    def fetch(self, value: Any) -> Any:
        return value

    def stop_channel(self, judge: Any) -> Any:
        from popplast.execution.stopping import LocalChannel

        return LocalChannel(judge)  # trials report in virtual time, in the driver's process

    def close(self) -> None:
        pass

    @property
    def busy(self) -> float:
        """Virtual seconds the workers spent on the evaluations told (lost attempts aside)."""
        return self.spans.busy

    @property
    def utilisation(self) -> float | None:
        """The tracked `worker_utilisation`'s definition (core/utilisation.py) over the results told so far:
        from the first start (not 0: dispatch) to the last end (not the clock: the driver's time after it)."""
        return self.spans.utilisation(self.workers)

    # --- one evaluation ---------------------------------------------------------------------------------
    def _yield(self, result: Any, span: tuple[float, float] | None) -> Iterator[Any]:
        if span is not None:
            self.spans.add(*span)
        yielded = self.driver_clock()
        yield result
        self._charge(self.driver_clock() - yielded)  # what the driver did with it before asking again

    def _charge(self, seconds: float) -> None:
        self.driver_seconds += seconds
        if self.simulation.driver_time:
            self.clock += seconds

    def _start(self, run: _Run, worker: int, push: Callable[[float, str, Any], None]) -> None:
        """Draw the attempt's outcome and faults, and schedule its first event."""
        work = run.work
        rng = np.random.default_rng([self.simulation.seed, work.individual.seed, len(run.errors)])
        budget = work.budget.epochs if work.budget is not None else self.steps
        parents = work.parents_weights
        run.first_step = inherited_steps(parents)
        outcome = self.simulation.model.outcome(
            self.space, work.config, run.first_step, budget, rng, work.individual.seed
        )
        run.worker, run.start, run.reported = worker, self.clock + self.simulation.dispatch_seconds, 0
        run.values, run.metrics, run.series = outcome.curve, outcome.metrics, outcome.series
        run.step_ends = outcome.step_ends(budget)
        fault, where = rng.random(), rng.random()
        run.end, run.end_step, run.end_time = "ok", budget, run.start + outcome.seconds
        if fault < self.simulation.failures + self.simulation.worker_losses:  # part-way through, at `where`
            run.end = "failed" if fault < self.simulation.failures else "lost"
            run.end_step, run.end_time = int(where * budget), run.start + where * outcome.seconds
        if self.eval_timeout is not None and run.end_time - run.start > self.eval_timeout:  # stopped, as on Ray
            share = self.eval_timeout / (run.end_time - run.start)
            run.end, run.end_step = "timeout", int(share * run.end_step)
            run.end_time = run.start + self.eval_timeout
        if work.stops is not None and run.end_step > 0:
            push(run.start + run.step_ends[0], "step", run)
        else:
            push(run.end_time, "end", run)

    def _report(self, run: _Run) -> bool:
        run.reported += 1
        channel = run.work.stops
        # its own steps from 1, as the CNN trainer's epochs and a user's trial.report count: a stopper's rungs
        # are the evaluation's budget, whatever its inherited state had trained
        channel.report(run.work.individual.id, run.reported, run.values[run.reported - 1])
        return bool(channel.should_stop(run.work.individual.id))

    def _end(self, run: _Run, at: float) -> Any:
        """The attempt's end as drawn, at `at` on its worker: finished, its objective raised, or its worker
        died (None: run again)."""
        if run.end == "ok":
            return self._finish(run, run.end_step, at)
        if run.end == "failed":
            result = run.work.failed(f"RuntimeError: injected failure (simulated) at step {run.end_step + 1}")
            result.worker, result.tags, run.span = f"sim-{run.worker}", self._span(run, at), (run.start, at)
            return self._with_retries(result, run.errors)
        if run.end == "timeout":  # as the Ray pool says it; a killed worker tells no span, so none is kept
            result = run.work.failed(
                f"TimeoutError: the evaluation timed out after {self.eval_timeout:g} s (--eval-timeout); "
                "its worker was stopped and replaced"
            )
            result.worker, result.tags = f"sim-{run.worker}", {"simulated": "1"}
            self.lost += 1
            return self._with_retries(result, run.errors)
        self.lost += 1
        run.errors.append(f"the worker died: simulated worker loss on sim-{run.worker}")
        if len(run.errors) < self.max_attempts:
            return None
        last = run.errors[-1]
        result = run.work.failed(f"the worker died in all {self.max_attempts} attempts; the last error: {last}")
        # no start or end, as on Ray: a dead worker tells none, so no utilisation counts the attempt
        result.worker, result.tags = f"sim-{run.worker}", {"simulated": "1"}
        return self._with_retries(result, run.errors[:-1])

    def _finish(self, run: _Run, steps: int, at: float) -> EvalResult:
        """The attempt's result, `steps` trained, ended at `at` on its worker: with `driver_time` the clock
        may be past it (the driver was busy), and that wait is the worker's idle time, not its work."""
        run.span = (run.start, at)
        individual = run.work.individual
        series = [(k + 1, float(v)) for k, v in enumerate(run.values[:steps])]  # the steps reported (_report)
        value = series[-1][1] if series else float("nan")
        metrics = {
            **run.metrics,
            **{name: series[steps - 1] for name, series in run.series.items() if steps > 0},
            self.metric: value,
            "train_seconds": at - run.start,
            "steps": float(steps),
        }
        result = EvalResult(
            individual.id,
            self.sign * value,
            metrics,
            {self.metric: series},
            worker=f"sim-{run.worker}",
            tags=self._span(run, at),
        )
        if run.work.return_weights:  # a stand-in state (an array, so checkpoints keep it): the steps trained
            result.weights = {"steps": np.array([run.first_step + steps], dtype=np.int64)}
            result.metrics["weights_bytes"] = 8.0
        return self._with_retries(result, run.errors)

    def _span(self, run: _Run, at: float) -> dict[str, str]:
        # virtual seconds since the search began; `simulated` marks the run as one nothing trained in
        return {"started": f"{run.start:.3f}", "ended": f"{at:.3f}", "simulated": "1"}

    @staticmethod
    def _with_retries(result: Any, errors: list[str]) -> Any:
        if errors:
            result.retries = list(errors)
        return result
