"""The stopper's channel on Ray: workers' reports reach the driver's judge through one small actor, and
its answers come back the same way.

A trial's `report` is a one-way call to the actor; `should_stop` asks the actor for the answer to that
report and waits for it. The driver waits on the actor's `take` beside its evaluations, so a report wakes it
at once: the round trip is a few milliseconds (benchmarks/stop_latency.py measures it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from popplast.execution.stopping import StopJudge

VERDICT_WAIT = 30.0  # seconds a trial waits for an answer before it trains on (a driver that is gone)


@ray.remote(num_cpus=0)
class StopHub:
    def __init__(self) -> None:
        self.reports: list[tuple[str, int, Any]] = []
        self.verdicts: dict[str, tuple[int, bool]] = {}
        self.arrived = asyncio.Event()
        self.decided = asyncio.Event()

    async def report(self, individual_id: str, step: int, value: Any) -> None:
        self.reports.append((individual_id, step, value))
        self.arrived.set()

    async def take(self, timeout: float) -> list[tuple[str, int, Any]]:
        """The reports since the last take, as soon as there is one (or none after `timeout`)."""
        if not self.reports:
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        out, self.reports = self.reports, []
        self.arrived.clear()
        return out

    async def decide(self, verdicts: list[tuple[str, int, bool]]) -> None:
        for individual_id, step, stop in verdicts:
            self.verdicts[individual_id] = (step, stop)
        self.decided.set()
        self.decided = asyncio.Event()

    async def verdict(self, individual_id: str, step: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = self.verdicts.get(individual_id)
            if got is not None and got[0] >= step:
                return got[1]
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.decided.wait(), left)
            except asyncio.TimeoutError:
                return False


class RayChannel:
    """What a worker's trial holds (pickled with the evaluation): the hub's handle and the watched metric (a
    tuple of them with several objectives, whose values it reports as one list)."""

    def __init__(self, hub: Any, metric: str | tuple[str, ...]) -> None:
        self.hub, self.metric = hub, metric
        self._pending: dict[str, int] = {}
        self._last: dict[str, bool] = {}

    def report(self, individual_id: str, step: int, value: Any) -> None:
        self.hub.report.remote(individual_id, step, value)
        self._pending[individual_id] = step

    def should_stop(self, individual_id: str) -> bool:
        step = self._pending.pop(individual_id, None)
        if step is not None:
            try:
                ref = self.hub.verdict.remote(individual_id, step, VERDICT_WAIT)
                self._last[individual_id] = bool(ray.get(ref, timeout=VERDICT_WAIT + 5))
            except (GetTimeoutError, RayError):  # no driver to answer: train on, as without a stopper
                self._last[individual_id] = False
        return self._last.get(individual_id, False)


class RayStopService:
    """The driver's side: the hub, the judge, and the pending `take` the executor waits on."""

    def __init__(self, judge: StopJudge) -> None:
        self.judge = judge
        self.hub = StopHub.options(max_concurrency=1000).remote()  # type: ignore[attr-defined]
        self.channel = RayChannel(self.hub, judge.metric)
        ray.get(self.hub.take.remote(0.0))  # started before the first report, which would wait for it
        self.pending = self.hub.take.remote(1.0)

    def answer(self) -> None:
        """Judge the reports the pending take brought, send the answers, and take again."""
        reports = ray.get(self.pending)
        if reports:
            self.hub.decide.remote([(i, s, self.judge.judge(i, s, v)) for i, s, v in reports])
        self.pending = self.hub.take.remote(1.0)

    def close(self) -> None:
        try:
            ray.kill(self.hub)
        except Exception:  # already gone with its node
            pass
