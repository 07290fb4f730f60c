"""THE search loop, one for every strategy (ALGORITHMS.md §9; DeepHyper's `_search` gathers ALL or ONE the
same way): ask, hand the evaluations to the executor, tell each result as it arrives, tell the observers,
checkpoint whenever a generation closes.

The executor takes each evaluation from the loop's source only when a worker is free for it, so a child is
asked as late as it can be. A generational strategy is asked a whole generation, and its generation is a
barrier: the source yields nothing new (None) until every result of it is in. An asynchronous strategy
(`schedule = "async"`) is asked one individual whenever a worker is free and told the moment its result is
back; its "generations" are cohorts of `population` results, each closed by the tell that completes it.

For a strategy that inherits (Gen-Soup, PBT), trained states move as object-store references on Ray (state
dicts on the local executor): a worker's trained state stays where Ray put it, the driver holds only the
reference, and a child's evaluation carries its parents' references. A reference no living individual may
still need is dropped (after each generation's ask, or after each asynchronous tell), which lets Ray free
the object; a checkpoint holds the states later individuals may inherit.

What a seed fixes for an asynchronous search: the first `population` genomes and every individual's seed
given its birth; which parents a later child gets depends on the order results arrive. `replay=True` tells
results in the order they were asked, with at most `window` in flight (the executor's ordered mode): then
the same seed gives the same lineage on any executor with the same window. A resumed asynchronous search
evaluates its in-flight individuals again, with the same ids, seeds and configurations, then goes on asking.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.core.strategy import Strategy, is_async
from popplast.execution.checkpoint import Checkpoint, Checkpointer, WeightsLost
from popplast.execution.executor import Evaluation, Executor, Work, slices
from popplast.execution.front import front_metrics, reference_of
from popplast.execution.fusion_cost import fusion_barriers
from popplast.execution.stopping import StopJudge
from popplast.execution.work import configuration, evaluation_for, generation_fidelity, trained_config
from popplast.spec.search import SearchSpec
from popplast.strategies.budget import epochs_spent
from popplast.strategies.gensoup import weights_needed
from popplast.strategies.steady_state import weights_kept

log = logging.getLogger(__name__)


class Observer(Protocol):
    """What trackers and progress displays hear; every method is optional."""

    def generation_started(self, generation: int, individuals: Sequence[Individual]) -> None: ...

    def individual_finished(self, individual: Individual, config: dict[str, Any], result: EvalResult) -> None: ...

    def generation_finished(self, generation: int, metrics: dict[str, float]) -> None: ...


@dataclass
class SearchOutcome:
    state: Any  # the strategy's state (StrategyState)
    history: list[dict[str, float]] = field(default_factory=list)
    results: dict[str, EvalResult] = field(default_factory=dict)
    best_weights: Any = None  # inheriting strategies: the best individual's trained state (a reference on Ray)
    best_budget: Any = None  # inheriting strategies: the fidelity the best individual was trained and measured at
    # inheriting strategies: the final population's members and the best, with their trained states (a soup's
    # candidates)
    final_weights: list[tuple[Individual, Any]] = field(default_factory=list)
    peak_weight_bytes: float = 0.0  # inheriting strategies: most bytes of trained states held at once
    earlier_seconds: float = 0.0  # a resumed search: wall time up to the checkpoint it resumed from


def notify(observers: Sequence[Any], event: str, *args: Any) -> None:
    for observer in observers:
        method = getattr(observer, event, None)
        if method is not None:
            method(*args)


def run_search(
    spec: SearchSpec,
    strategy: Strategy,
    executor: Executor,
    rng: np.random.Generator,
    observers: Sequence[Any] = (),
    checkpoints: Checkpointer | None = None,
    resume: Checkpoint | None = None,
    *,
    configure: Callable[[Individual], dict[str, Any]] | None = None,
    sliced: bool = False,
    keep_results: bool = True,
    stopper: StopJudge | None = None,
    epoch_budget: int | None = None,
    warm_states: Mapping[str, Any] | None = None,
) -> SearchOutcome:
    """Run the strategy to its budget (`spec.strategy.generations` generations, or that many populations'
    worth of births); a failed evaluation is recorded and the search goes on.

    With `checkpoints`, the search is saved whenever a generation closes; with `resume` (and `rng` restored
    from it), it goes on from the checkpoint as if it had never stopped. `configure` gives an individual's
    configuration (default: the spec's fixed values and decoded genes); a strategy with a `context(state)`
    adds what the whole generation shares to each. `sliced`: a vectorised evaluator (`evaluate_many`, the
    plastic-rule objective) gets each generation in `executor.workers` slices. The outcome keeps each
    result's summary (`EvalResult.summary`: no history or tags, which the observers had); `keep_results=False`
    keeps no results in it (evolve-rules tracks generations, not individuals, and its populations reach
    thousands). `stopper`: the early-stopping rule the evaluations' trials report to
    (execution/stopping.py); a stopped result is marked and ranked by its last reported value.
    `epoch_budget`: nothing more is asked once the results bring the epochs trained to it. `warm_states`: a
    warm start's trained states, by the id of the first generation's individual that starts from each.
    """
    loop = _Loop(spec, strategy, executor, rng, observers, checkpoints, resume, stopper, epoch_budget, warm_states)
    return loop.run(configure or functools.partial(configuration, spec), sliced, keep_results)


class _Loop:
    """One search's moving parts; `run` is the loop, `_source` what it asks, `_close` a generation's end."""

    def __init__(
        self,
        spec: SearchSpec,
        strategy: Strategy,
        executor: Executor,
        rng: np.random.Generator,
        observers: Sequence[Any],
        checkpoints: Checkpointer | None,
        resume: Checkpoint | None,
        stopper: StopJudge | None,
        epoch_budget: int | None,
        warm_states: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec, self.strategy, self.executor, self.rng = spec, strategy, executor, rng
        self.warm = {k: executor.put(v) for k, v in (warm_states or {}).items()}
        self.observers, self.checkpoints = observers, checkpoints
        self.stopper, self.epoch_budget = stopper, epoch_budget
        self.asynchronous = is_async(strategy)
        if resume is None:
            self.state, self.outcome = strategy.init(), SearchOutcome(None)
        else:
            self.state = resume.state
            self.outcome = SearchOutcome(
                resume.state, list(resume.history), dict(resume.results), earlier_seconds=resume.seconds
            )
        results = self.outcome.results
        # individual id → its trained state (a reference on Ray), and the bytes it takes
        self.weights: dict[str, Any] = dict(resume.weights) if resume else {}
        self.held = {k: results[k].metrics.get("weights_bytes", 0.0) for k in self.weights if k in results}
        self.stops = executor.stop_channel(stopper) if stopper is not None else None
        if stopper is not None and resume is not None:
            stopper.replay(resume.stopper_log)
        self.generation = resume.generation + 1 if resume is not None else 0  # the next generation asked
        self.asked: dict[str, tuple[Individual, dict[str, Any]]] = {}  # in flight: what its run records
        self.work: dict[str, Evaluation] = {}  # the current generation's, to make lost states again
        self.lost: list[str] = []  # whose states the last checkpoint could not save (a node took them)
        self.remaking: set[str] = set()  # of those, the ones being evaluated again
        self.spent = epochs_spent(results.values())  # kept up as results come, not summed at every ask
        self.shown = self.state.generation  # the cohort the observers last heard start
        # an asynchronous search's birth order (the popplast.birth tag): a resumed search's in-flight
        # individuals were the last asked
        flying = getattr(self.state, "in_flight", ()) if self.asynchronous else ()
        self.births = {ind.id: self.state.births - len(flying) + k for k, ind in enumerate(flying)}

    @property
    def fitness(self) -> Any:
        return getattr(self.spec, "fitness", None)  # evolve-rules' spec has none

    @property
    def several(self) -> bool:
        """Ranked by Pareto fronts: the search file lists several objectives, or constraints."""
        return self.fitness is not None and self.fitness.several

    def run(self, configure: Callable[[Individual], dict[str, Any]], sliced: bool, keep_results: bool) -> SearchOutcome:
        self.configure, self.sliced, self.keep_results = configure, sliced, keep_results
        ordered = self.asynchronous and bool(getattr(self.spec.strategy, "replay", False))
        window = getattr(self.executor, "window", self.executor.workers) if self.asynchronous else None
        for done in self.executor.map(self._source(), ordered=ordered, window=window):
            results = done if isinstance(done, list) else [done]
            if results[0].individual_id in self.remaking:
                self._remake(results[0])
                continue
            for result in results:
                self._receive(result)
            # a slice is told at once: one tell per individual would copy the state's results P times
            told = {r.individual_id: self._told(r) for r in results}
            self.state, metrics = self.strategy.tell(self.state, told)
            if self.asynchronous and self.strategy.inherits:
                self._keep_weights(weights_kept(self.state))
            for result in results:
                individual, config = self.asked.pop(result.individual_id)
                notify(self.observers, "individual_finished", individual, config, result)
            if metrics if self.asynchronous else not self.asked:  # a cohort's summary; a generation's last result
                self._close(metrics)
        outcome, state = self.outcome, self.state
        outcome.state = state
        if self.strategy.inherits and state.best is not None:
            outcome.best_weights = self.weights.get(state.best.id)
            outcome.best_budget = generation_fidelity(self.spec, state.best.generation)
            alive = (*getattr(state, "pool", ()), *getattr(state, "population", ()), *getattr(state, "members", ()))
            members = {i.id: i for i in (*alive, state.best)}
            outcome.final_weights = [(i, self.weights[k]) for k, i in members.items() if k in self.weights]
        return outcome

    def _source(self) -> Iterator[Work | None]:
        """The evaluations, each made when the executor has a worker for it; None: nothing until a result."""
        for individual in getattr(self.state, "in_flight", ()) if self.asynchronous else ():
            yield self._asked_alone(individual)  # a resumed search's, evaluated again as they were asked
        while True:
            yield from self._remade()
            if not self._more():
                return
            individuals, self.state = self.strategy.ask(self.state, self.rng)
            if not individuals:  # none can be asked before another result is in
                if not self.asynchronous:
                    raise RuntimeError(f"{self.strategy.name} asked no individuals for generation {self.generation}")
                yield None
                continue
            if self.asynchronous:
                self.births[individuals[0].id] = self.state.births - 1
                yield self._asked_alone(individuals[0])
                continue
            work = self._asked_generation(individuals)
            yield from slices(work, self.executor.workers) if self.sliced else work
            while self.asked:  # the barrier: the next generation is bred from this one's results
                yield None

    def _remade(self) -> Iterator[Work | None]:
        """States lost with a worker node before the checkpoint saved them, made again and then saved: their
        individuals are evaluated again (same seed, config and parents, so the same states) and are not told
        or logged twice."""
        attempts = 0
        while self.lost:
            attempts += 1
            if attempts == 3:
                number = self.state.generation
                raise RuntimeError(f"generation {number}: trained weights were lost three times in a row")
            self.remaking, lost, self.lost = set(self.lost), self.lost, []
            yield from (self.work[k] for k in lost)
            while self.remaking:
                yield None
            self._checkpoint(self.state.generation)

    def _more(self) -> bool:
        if self.epoch_budget is not None and self.spent >= self.epoch_budget:
            return False
        s = self.spec.strategy
        if self.asynchronous:
            return bool(self.state.births < s.population * s.generations)
        return self.generation < s.generations

    def _told(self, result: EvalResult) -> Any:
        """What the strategy is told: the fitness, or with several objectives the vector (core/pareto.py)."""
        if not result.ok:
            return None
        return self.fitness.vector(result.metrics) if self.several else result.fitness

    def _survivors(self) -> set[str]:
        """Whose states a generational search keeps beside the next generation's parents: the best's, and
        NSGA-II's survivors' (strategies/ga.py survive), which later generations may still be bred from."""
        best = self.state.best
        return {i.id for i in getattr(self.state, "pool", ())} | ({best.id} if best else set())

    def _asked_generation(self, individuals: Sequence[Individual]) -> list[Evaluation]:
        self._keep_weights(weights_needed(individuals, self._survivors()))
        budget = generation_fidelity(self.spec, self.generation) if self.strategy.inherits else None
        self.generation += 1
        notify(self.observers, "generation_started", self.state.generation, individuals)
        context = getattr(self.strategy, "context", None)
        shared = context(self.state) if context else {}
        self.work = {}
        for individual in individuals:
            self.work[individual.id] = self._asked({**self.configure(individual), **shared}, individual, budget)
        return list(self.work.values())

    def _asked_alone(self, individual: Individual) -> Evaluation:
        budget = generation_fidelity(self.spec, individual.generation) if self.strategy.inherits else None
        if individual.generation > self.shown:  # the progress display's rows: cohorts of `population` births
            self.shown = individual.generation
            notify(self.observers, "generation_started", individual.generation, [individual])
        return self._asked(self.configure(individual), individual, budget)

    def _asked(self, config: dict[str, Any], individual: Individual, budget: Any) -> Evaluation:
        """`individual` in flight with what its run records it trained with, and its evaluation."""
        self.asked[individual.id] = (individual, trained_config(self.spec, config, budget))
        warm = self.warm.get(individual.id) if individual.operator == "warm" else None
        return evaluation_for(individual, config, budget, self.weights, self.strategy.inherits, self.stops, warm)

    def _receive(self, result: EvalResult) -> None:
        if self.stopper is not None:
            self.stopper.settle(result)
        if "fused_fitness" in result.metrics:
            individual = self.asked[result.individual_id][0]
            parents = [self.outcome.results.get(p) for p in individual.parent_ids]
            known = {
                r.individual_id: float(r.fitness) for r in parents if r is not None and r.ok and r.fitness is not None
            }
            result.metrics.update(fusion_barriers(individual, result.metrics["fused_fitness"], known))
        if result.ok and result.weights is not None:
            self.weights[result.individual_id] = result.weights
            self.held[result.individual_id] = result.metrics.get("weights_bytes", 0.0)
            self.outcome.peak_weight_bytes = max(self.outcome.peak_weight_bytes, sum(self.held.values()))
        result.weights = None  # kept above by reference, or not at all: the driver's memory stays flat
        if self.keep_results:
            self.outcome.results[result.individual_id] = result.summary()
        self.spent += epochs_spent([result])
        if self.asynchronous:
            if hasattr(self.strategy, "island_tag"):  # the island it was born on (strategies/islands.py)
                result.tags["island"] = self.strategy.island_tag(self.state, result.individual_id)
            result.tags["birth"] = str(self.births.pop(result.individual_id))

    def _remake(self, result: EvalResult) -> None:
        self.remaking.discard(result.individual_id)
        if result.ok:
            self.weights[result.individual_id] = result.weights

    def _keep_weights(self, kept: set[str]) -> None:
        for key in [k for k in self.weights if k not in kept]:
            del self.weights[key]  # the last reference: Ray frees the object
            self.held.pop(key, None)

    def _close(self, metrics: dict[str, float]) -> None:
        """A generation (or an asynchronous cohort) is complete: record it, tell the observers, checkpoint."""
        number = int(metrics["generation"]) if self.asynchronous else self.state.generation
        if self.several and self.keep_results:
            metrics = {**metrics, **self._front_metrics()}
        self.outcome.history.append(metrics)
        notify(self.observers, "generation_finished", number, metrics)
        if self.checkpoints is not None:
            self._checkpoint(number)

    def _front_metrics(self) -> dict[str, float]:
        """The hypervolume of every result so far and its reference point (execution/front.py); none while
        no result has succeeded."""
        fitness, results = self.fitness, self.outcome.results.values()
        try:
            reference = reference_of(fitness, self.outcome.history, results)
        except ValueError:
            return {}
        return front_metrics(fitness, results, reference)

    def _checkpoint(self, number: int) -> None:
        """Save the search with the states later individuals may inherit, which then live on the driver's node.

        A generational search saves its generation's and the best individual's states; those a lost worker
        node took with it are made again before the next generation is asked (`_remade`). An asynchronous
        search saves every state it holds; when some were lost, it has no checkpoint until the next cohort
        (its individuals are evaluated again only on a resume).
        """
        assert self.checkpoints is not None
        survivors = None if self.asynchronous else set(self.work) | self._survivors()
        kept = {k: w for k, w in self.weights.items() if survivors is None or k in survivors}
        point = Checkpoint(
            number,
            self.state,
            dict(self.rng.bit_generator.state),
            self.outcome.history,
            self.outcome.results,
            kept,
            stopper_log=self.stopper.log if self.stopper is not None else [],
        )
        try:
            self.weights.update(self.checkpoints.save(point))
        except WeightsLost as e:
            if self.asynchronous:
                log.warning("%s; no checkpoint until the next population's worth of results", e)
            else:
                log.warning("%s; evaluating them again for their weights", e)
                self.lost = list(e.ids)
