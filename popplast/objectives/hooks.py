"""What the driver asks of a search's objective around the loop, so that it has no branch for any one
objective: the options it cannot take, what to check and prepare in the driver before any worker starts,
the label of its fitness, and the answer after the search (a final model).

popplast's CNN trainer offers all of them (objectives/cnn_hooks.py). A user's objective offers the ones it
has as attributes of its function (README "Your own objective"):

    def fit(config, trial): ...
    fit.prepare = lambda spec: ...          # in the driver, before any worker starts (check or fetch data)
    fit.answer = lambda result, state: {...}  # after the search: the best individual's trained state (or
                                              # None), returning metrics for result.answer_metrics

A simulated search trains nothing: it has no objective to prepare or answer for.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.search import SearchSpec


class Workers(Protocol):
    """What an objective's answer may ask of the workers that ran the search."""

    def train(self, individual: Any, config: dict[str, Any], budget: Any) -> Any:
        """One evaluation at `budget` (a Fidelity), its trained state kept: an EvalResult."""
        ...

    def fetch(self, state: Any) -> Any:
        """A trained state as the objective returned it (on Ray, fetched from the object store)."""
        ...


class ObjectiveHooks(Protocol):
    label: str  # what the fitness is, in the summary and reports

    def check(self, spec: SearchSpec, entry: Any, retrain: bool) -> None:
        """A SpecError for an option this objective cannot run with (`entry`: the method's catalogue entry)."""
        ...

    def prepare(self, spec: SearchSpec, say: Callable[[str], None]) -> None:
        """In the driver, before any worker starts: what a bad file would otherwise fail on in every worker."""
        ...

    def answer(
        self, spec: SearchSpec, outcome: Any, workers: Workers | None, tracker: Any, result: Any, retrain: bool
    ) -> None:
        """After the search, on the workers that ran it: the final model, into `result` and the search run."""
        ...


def metric_label(spec: SearchSpec) -> str:
    metric = spec.fitness.metric
    return metric if spec.fitness.mode == "maximize" else f"−{metric}, {metric} minimised"


class UserHooks:
    """A user's objective `fn`, with the hooks it has (`fn.prepare`, `fn.answer`)."""

    def __init__(self, spec: SearchSpec, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.label = metric_label(spec)

    def check(self, spec: SearchSpec, entry: Any, retrain: bool) -> None:
        if not entry.in_loop:
            raise SpecError(
                COMMAND_LINE,
                "--method",
                f"{entry.name} runs popplast's CNN trainer on Ray Tune; a user objective runs with ga, gensoup, "
                "pbt, an Optuna sampler or an evolution strategy.",
            )
        if retrain:
            raise SpecError(
                COMMAND_LINE,
                "--retrain",
                "retraining rebuilds popplast's CNN; with a user objective, "
                "train the best configuration (result.best_config) yourself.",
            )

    def prepare(self, spec: SearchSpec, say: Callable[[str], None]) -> None:
        prepare = getattr(self.fn, "prepare", None)
        if prepare is not None:
            prepare(spec)

    def answer(
        self, spec: SearchSpec, outcome: Any, workers: Workers | None, tracker: Any, result: Any, retrain: bool
    ) -> None:
        answer = getattr(self.fn, "answer", None)
        if answer is None:
            return
        kept = outcome.best_weights
        state = workers.fetch(kept) if workers is not None and kept is not None else None
        metrics = answer(result, state)
        if metrics:
            result.answer_metrics = {str(k): float(v) for k, v in dict(metrics).items()}


class NoTraining:
    """A simulated search: its results come from a table or a cost model, so nothing is prepared or kept."""

    def __init__(self, spec: SearchSpec) -> None:
        from popplast.objectives.cnn_hooks import CNNHooks

        self.label = CNNHooks.label if spec.objective is None else metric_label(spec)

    def check(self, spec: SearchSpec, entry: Any, retrain: bool) -> None:
        if retrain:
            raise SpecError(
                COMMAND_LINE, "--retrain", "a simulated search trains nothing, so there is nothing to retrain."
            )

    def prepare(self, spec: SearchSpec, say: Callable[[str], None]) -> None:
        pass

    def answer(
        self, spec: SearchSpec, outcome: Any, workers: Workers | None, tracker: Any, result: Any, retrain: bool
    ) -> None:
        pass


def hooks_for(spec: SearchSpec, fn: Callable[..., Any] | None, simulated: bool) -> ObjectiveHooks:
    if simulated:
        return NoTraining(spec)
    if fn is not None:
        return UserHooks(spec, fn)
    from popplast.objectives.cnn_hooks import CNNHooks

    return CNNHooks()
