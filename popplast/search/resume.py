"""`popplast run --resume SEARCH_RUN_ID`: the spec a search was started with, read back from its MLflow run."""

from __future__ import annotations

import os
from typing import Any

from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.search import SearchSpec
from popplast.strategies.catalogue import CATALOGUE

# what a resumed search may change: how long it goes on
EXTENDABLE = ("strategy.generations",)


def resumed_spec(
    run_id: str,
    space: str | os.PathLike | SearchSpec | None,
    tracking_uri: str,
    experiment: str | None,
    budget_evals: int | None,
    flags: dict[str, Any],
    strategy: Any = None,
) -> tuple[Any, SearchSpec, int]:
    """(the search run's record, the spec to go on with, the budget); SpecError when what the caller gives
    (a file, flags, an experiment) disagrees with the search being resumed."""
    from popplast.reports.search_record import read_search
    from popplast.strategies.budget import default_budget, with_budget

    record = read_search(tracking_uri, run_id)
    if record.method in CATALOGUE and not CATALOGUE[record.method].in_loop:
        raise SpecError(
            COMMAND_LINE,
            "--resume",
            f"the search run {run_id} ran {record.method} on Ray Tune, which "
            "popplast cannot resume; GA, Gen-Soup, PBT and Optuna searches resume.",
        )
    if experiment and experiment != record.experiment:
        raise SpecError(
            COMMAND_LINE,
            "--experiment",
            f"the search run {run_id} is in the experiment {record.experiment!r}, not {experiment!r}.",
        )
    stored = SearchSpec.from_dict(record.spec, record.source)
    if space is None:
        base = stored
    else:
        base = space if isinstance(space, SearchSpec) else SearchSpec.from_yaml(space)
    if strategy is not None:  # given again: it must be the one the search started with
        from popplast.strategies.user_strategy import strategy_flags

        flags = strategy_flags(len(base.space), strategy, flags)
    spec = base.with_overrides(**flags)
    longer = budget_evals is not None or flags.get("generations") is not None
    budget = budget_evals if budget_evals is not None else (default_budget(spec) if longer else record.budget_evals)
    spec = with_budget(spec, budget_evals)
    difference = _first_difference(stored.to_dict(), spec.to_dict())
    if difference:
        key, was, now = difference
        where = f"{space}" if space is not None and not isinstance(space, SearchSpec) else "the flags"
        raise SpecError(
            COMMAND_LINE,
            "--resume",
            f"the search run {run_id} was started with {key} = {was!r}, but "
            f"{where} say{'s' if where != 'the flags' else ''} {now!r}; a "
            "resumed search keeps its settings (only --generations or "
            "--budget-evals may grow). Leave SPACE.yaml out to resume it "
            "as it was.",
        )
    if record.finished and not budget > record.budget_evals:
        raise SpecError(
            COMMAND_LINE,
            "--resume",
            f"the search run {run_id} finished its {record.budget_evals} "
            "evaluations; nothing to resume (pass --generations or "
            "--budget-evals to extend it).",
        )
    if budget < record.budget_evals:
        raise SpecError(
            COMMAND_LINE,
            "--budget-evals",
            f"the search run {run_id} already has a budget of {record.budget_evals} evaluations; got {budget}.",
        )
    return record, spec, budget


def _first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    if path in EXTENDABLE:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if a == b else (path, a, b)
