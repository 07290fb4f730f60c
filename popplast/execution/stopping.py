"""The search's stopper in the driver, and how a worker's trial reaches it.

Every value a trial reports of the watched metric goes to the driver's `StopJudge`, which runs the rule
(strategies/stoppers.py) and answers; the trial waits for that answer in `should_stop()`, so an individual stops
at the very step the rule judged, whichever executor runs it. Locally the trial calls the judge directly
(`LocalChannel`); on Ray the reports and answers pass through a small actor (execution/ray_stopping.py).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping, Sequence

from popplast.core.result import EvalResult
from popplast.strategies.stoppers import Stopper

log = logging.getLogger(__name__)


class StopJudge:
    """The rule with what it needs around it: which metric it watches and in which direction, who it has
    stopped (and at which step), and the log of its events, from which a resumed search rebuilds it.

    A stopped individual's fitness is its last reported value of the watched metric when that metric is the
    fitness (popplast's CNN trainer: its validation MCC at the epoch it stopped), ranked like any other.
    """

    def __init__(
        self,
        stopper: Stopper,
        metric: str | tuple[str, ...],
        maximize: bool,
        fitness_metric: str | None,
        vector: Callable[[Mapping[str, float]], Sequence[float]] | None = None,
    ) -> None:
        self.stopper = stopper
        self.metric = metric  # several objectives: every metric the vector is made of, reported together
        self.sign = 1.0 if maximize else -1.0
        self.fitness_metric = fitness_metric
        self.vector = vector  # several objectives: reported values by name → the told vector (MO-ASHA's)
        self.stopped: dict[str, int] = {}
        self.log: list[list[Any]] = []  # ["report", id, step, score] and ["finished", id], in order

    def score(self, value: Any) -> Any:
        """A reported value as the rule ranks it: signed, or with several objectives the vector."""
        if self.vector is not None:
            return list(self.vector(dict(zip(self.metric, value))))
        return self.sign * value

    def judge(self, individual_id: str, step: int, value: Any) -> bool:
        if individual_id in self.stopped:  # evaluated again (its weights were lost): to the same step
            return step >= self.stopped[individual_id]
        score = self.score(value)
        self.log.append(["report", individual_id, step, score])
        if self.stopper.judge(individual_id, step, score):
            self.stopped[individual_id] = step
            return True
        return False

    def settle(self, result: EvalResult) -> None:
        """Mark a result that came back stopped, and give it its fitness; tell the rule of one that finished.

        What the evaluation did decides, not what the rule said: a trial whose verdict came too late to wait
        for (execution/ray_stopping.py's VERDICT_WAIT) trained on, and is recorded as finished with what it
        trained; one told at a later report than the rule's stops there (the result's own `stopped_at`)."""
        judged = self.stopped.get(result.individual_id)
        if judged is not None and result.stopped_at is None:
            if not result.ok:  # stopped, then failed: a failed result, nothing more to say
                return
            log.warning(
                "%s: the stopper stopped it at step %s, but the verdict came too late and it trained on: "
                "recorded as finished",
                result.individual_id,
                judged,
            )
            # the rule heard none of its reports after the stop (judge() answers for a stopped id itself):
            # it hears them now, so that its state is that of the training that happened (the median rule's
            # reference curve, ASHA's later rungs); logged, so that a resumed search's rule hears them too
            for step, value in self.reports(result):
                if step > judged:
                    score = self.score(value)
                    self.log.append(["report", result.individual_id, step, score])
                    self.stopper.judge(result.individual_id, step, score)
            del self.stopped[result.individual_id]
        if judged is None or result.stopped_at is None:
            if result.ok:
                self.stopper.finished(result.individual_id)
                self.log.append(["finished", result.individual_id])
            return
        step = max(judged, result.stopped_at)
        result.stopped_at = step
        series = [v for s, v in self.reports(result) if s <= step]
        if result.ok and series and self.metric == self.fitness_metric:
            result.fitness = self.sign * series[-1]  # the fitness's own sign: the judge watches it as ranked

    def reports(self, result: EvalResult) -> list[tuple[int, Any]]:
        """The watched values a result's history holds, by step: with several metrics, the steps that
        reported all of them, as the lists a trial sends."""
        if isinstance(self.metric, str):
            return [(int(s), v) for s, v in result.history.get(self.metric, [])]
        series = [dict(result.history.get(m, [])) for m in self.metric]
        steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
        return [(int(step), [s[step] for s in series]) for step in steps]

    def replay(self, log: Iterable[list[Any]]) -> None:
        """The rule as the log left it (a resumed search's, from its checkpoint)."""
        for event in log:
            if event[0] == "report":
                _, individual_id, step, score = event
                score = [float(x) for x in score] if isinstance(score, list) else float(score)
                if self.stopper.judge(individual_id, int(step), score):
                    self.stopped[individual_id] = int(step)
            else:
                self.stopped.pop(event[1], None)  # stopped too late: it finished
                self.stopper.finished(event[1])
            self.log.append(list(event))


class LocalChannel:
    """The judge itself, for trials run in the driver's process (the local executor)."""

    def __init__(self, judge: StopJudge) -> None:
        self.judge = judge
        self.metric = judge.metric
        self._verdicts: dict[str, bool] = {}

    def report(self, individual_id: str, step: int, value: Any) -> None:
        self._verdicts[individual_id] = self.judge.judge(individual_id, step, value)

    def should_stop(self, individual_id: str) -> bool:
        return self._verdicts.get(individual_id, False)


def stop_judge(spec: Any, strategy: Any = None) -> StopJudge | None:
    """The search's stopper (its spec's `stopper:`), watching the fitness metric unless it names another:
    popplast's CNN trainer then reports its validation MCC every epoch. None without one. A strategy with a
    stopper of its own for the rule (an Optuna sampler: Optuna's pruner over its trials) judges with it."""
    from popplast.spec.stopper import CNN_METRIC, build_stopper

    own = getattr(strategy, "stopper", None)
    rule = own() if own is not None else None  # None too for a sampler with several objectives: MO-ASHA
    rule = rule if rule is not None else build_stopper(spec.stopper, spec.fidelity.epochs)
    if rule is None:
        return None
    fitness_metric = CNN_METRIC if spec.objective is None else spec.fitness.metric
    if spec.fitness.several:  # MO-ASHA: the objectives and the constraints' metrics, reported together
        f = spec.fitness
        watched = tuple(dict.fromkeys([m for m, _ in f.objectives] + [c.metric for c in f.constraints]))
        return StopJudge(rule, watched, True, None, vector=f.vector)
    metric = spec.stopper.metric or fitness_metric
    mode = spec.stopper.mode or ("maximize" if spec.objective is None else spec.fitness.mode)
    return StopJudge(rule, metric, mode == "maximize", fitness_metric)
