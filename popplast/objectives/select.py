"""Which objective evaluates a search's individuals: the user's (passed, or named by the file) or popplast's
CNN trainer, behind the evaluator the executors call. Shared by `popplast.run` and `popplast.replay`."""

from __future__ import annotations

from typing import Any, Callable

from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.search import SearchSpec


def make_evaluator(spec: SearchSpec, threads: int, objective: Callable[..., Any] | None = None):
    fusion, seed = spec.strategy.fusion, spec.strategy.seed
    if objective is not None:
        from popplast.objectives.function import FunctionEvaluator

        return FunctionEvaluator(objective, spec.fitness, spec.fidelity, threads, fusion=fusion, search_seed=seed)
    from popplast.objectives.cnn import cnn_evaluator

    return cnn_evaluator(spec.dataset, spec.fidelity, spec.fixed, threads, fusion=fusion, search_seed=seed)


def objective_for(spec: SearchSpec, given: Callable[..., Any] | None) -> tuple[SearchSpec, Callable[..., Any] | None]:
    """The user's objective, as passed or as the file names it (None: popplast's CNN trainer), and the spec
    that records its name. A module that cannot be imported is a SpecError before anything starts."""
    import dataclasses

    from popplast.objectives.load import ObjectiveError, load_objective, ships_by_value

    if given is not None:
        if not callable(given):
            raise SpecError(COMMAND_LINE, "objective", f"expected a function fit(config, trial), got {given!r}.")
        spec = dataclasses.replace(spec, objective=f"{given.__module__}:{given.__qualname__}")
        fn = given
    elif spec.objective is not None:
        try:
            fn = load_objective(spec.objective, spec.folder)
        except ObjectiveError as e:
            raise SpecError(spec.source, "objective", f"{e}.") from None
    else:
        return spec, None
    ships_by_value(fn)
    return spec, fn
