"""The loop for strategies without generations (`strategy.schedule: async`, ALGORITHMS.md §9): an
individual is asked when a worker is free for it and told the moment its result is back, so no worker
waits for the slowest individual of a generation.

The executor takes each evaluation from `_asked()` only when a worker is free, so every child is bred from
the population as the results so far left it. Every `population` results the search is checkpointed: the
strategy's state (with the individuals in flight), the generator, the results. A resumed driver evaluates
the in-flight individuals again with the same ids, seeds and configurations, then goes on asking.

What a seed fixes: the first `population` genomes and every individual's seed given its birth; which
parents a later child gets depends on the order results arrive. `replay=True` tells results in the order
they were asked, with at most `window` in flight (the executor's ordered mode): then the same seed gives
the same lineage on any executor with the same window.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from popplast.core.budget import epochs_spent
from popplast.core.individual import Individual
from popplast.core.spec import SearchSpec
from popplast.core.steady_state import weights_kept
from popplast.execution.checkpoint import Checkpoint, Checkpointer, WeightsLost
from popplast.execution.executor import Evaluation, Executor
from popplast.execution.stopping import StopJudge

log = logging.getLogger(__name__)


def run_async_search(
    spec: SearchSpec,
    strategy: Any,
    executor: Executor,
    rng: np.random.Generator,
    observers: Sequence[Any],
    checkpoints: Checkpointer | None,
    resume: Checkpoint | None,
    outcome: Any,
    *,
    configure: Callable[[Individual], dict[str, Any]],
    stopper: StopJudge | None = None,
    epoch_budget: int | None = None,
    replay: bool = False,
    window: int | None = None,
) -> Any:
    from popplast.execution.search import evaluation_for, generation_fidelity, notify, trained_config

    budget = spec.strategy.population * spec.strategy.generations
    state = resume.state if resume is not None else strategy.init()
    # an inheriting strategy's trained states by individual id (references on Ray): while a member lives, or
    # an in-flight child or the answer needs it (core/steady_state.py's weights_kept)
    weights: dict[str, Any] = dict(resume.weights) if resume is not None else {}
    held = {k: outcome.results[k].metrics.get("weights_bytes", 0.0) for k in weights if k in outcome.results}
    stops = executor.stop_channel(stopper) if stopper is not None else None
    if stopper is not None and resume is not None:
        stopper.replay(resume.stopper_log)
    asked: dict[str, tuple[Individual, dict[str, Any]]] = {}
    shown = [state.generation]
    # birth order (the popplast.birth tag): a resumed search's in-flight individuals were the last asked
    births = {ind.id: state.births - len(state.in_flight) + k for k, ind in enumerate(state.in_flight)}
    spent = [epochs_spent(outcome.results.values())]  # kept up as results come, not summed at every ask

    def evaluation(individual: Individual) -> Evaluation:
        base = configure(individual)
        budget_of = generation_fidelity(spec, individual.generation) if strategy.inherits else None
        config = trained_config(spec, base, budget_of)
        asked[individual.id] = (individual, config)  # what its run records it trained at
        if individual.generation > shown[0]:  # the progress display's rows: cohorts of `population` births
            shown[0] = individual.generation
            notify(observers, "generation_started", individual.generation, [individual])
        return evaluation_for(individual, base, budget_of, weights, strategy.inherits, stops)

    def _asked() -> Iterator[Evaluation | None]:
        nonlocal state
        for individual in state.in_flight:  # a resumed search's: evaluated again, as they were asked
            yield evaluation(individual)
        while state.births < budget:
            if epoch_budget is not None and spent[0] >= epoch_budget:
                return
            individuals, state = strategy.ask(state, rng)
            if not individuals:  # none can be asked before another result is in
                yield None
                continue
            births[individuals[0].id] = state.births - 1
            yield evaluation(individuals[0])

    for result in executor.map(_asked(), ordered=replay, window=window):
        if stopper is not None:
            stopper.settle(result)
        if result.ok and result.weights is not None:
            weights[result.individual_id] = result.weights
            held[result.individual_id] = result.metrics.get("weights_bytes", 0.0)
            outcome.peak_weight_bytes = max(outcome.peak_weight_bytes, sum(held.values()))
        result.weights = None
        outcome.results[result.individual_id] = result.summary()
        spent[0] += epochs_spent([result])
        individual, config = asked.pop(result.individual_id)
        if hasattr(strategy, "island_tag"):  # the island it was born on (core/islands.py)
            result.tags["island"] = strategy.island_tag(state, result.individual_id)
        result.tags["birth"] = str(births.pop(result.individual_id))
        state, metrics = strategy.tell(state, {result.individual_id: result.fitness if result.ok else None})
        if strategy.inherits:
            kept = weights_kept(state)
            for key in [k for k in weights if k not in kept]:
                del weights[key]  # the last reference: Ray frees the object
                held.pop(key, None)
        notify(observers, "individual_finished", individual, config, result)
        if metrics:
            outcome.history.append(metrics)
            notify(observers, "generation_finished", int(metrics["generation"]), metrics)
            if checkpoints is not None:
                _checkpoint(checkpoints, int(metrics["generation"]), state, rng, outcome, weights, stopper)
    outcome.state = state
    if strategy.inherits and state.best is not None:
        outcome.best_weights = weights.get(state.best.id)
        outcome.best_budget = generation_fidelity(spec, state.best.generation)
    return outcome


def _checkpoint(
    checkpoints: Checkpointer,
    number: int,
    state: Any,
    rng: np.random.Generator,
    outcome: Any,
    weights: dict[str, Any],
    stopper: StopJudge | None,
) -> None:
    """The search as it stands, with the weights it still needs; weights a lost node took with it make this
    checkpoint wait for the next one (the individuals are evaluated again only on a resume)."""
    events = stopper.log if stopper is not None else []
    point = Checkpoint(
        number,
        state,
        dict(rng.bit_generator.state),
        outcome.history,
        outcome.results,
        dict(weights),
        stopper_log=events,
    )
    try:
        weights.update(checkpoints.save(point))
    except WeightsLost as e:
        log.warning("%s; no checkpoint until the next population's worth of results", e)
