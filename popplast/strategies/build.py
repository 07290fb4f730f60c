"""The strategies a search can use, by method name: each entry builds one from the spec and the budget; a user's
strategy class (strategies/user_strategy.py) is built from its settings."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from popplast.core.registry import Registry
from popplast.spec.search import SearchSpec
from popplast.strategies import catalogue
from popplast.strategies.catalogue import ES, SAMPLER, methods
from popplast.strategies.es import ES_STRATEGIES
from popplast.strategies.es_search import ESSearch
from popplast.strategies.ga import GenCNN
from popplast.strategies.gensoup import GenSoup
from popplast.strategies.method import USER
from popplast.strategies.pbt import PBT

STRATEGIES: Registry[Callable[[SearchSpec, int], Any]] = Registry("strategy")


def _ga_settings(spec: SearchSpec) -> dict[str, Any]:
    s = spec.strategy
    return dict(
        n_genes=len(spec.space), population=s.population, crossover=s.crossover, mutation=s.mutation, elitism=s.elitism
    )


@STRATEGIES.register("ga")
def _ga(spec: SearchSpec, budget: int) -> Any:
    s = spec.strategy
    if s.schedule == "async":
        from popplast.strategies.steady_state import SteadyStateGA

        settings = {k: v for k, v in _ga_settings(spec).items() if k != "elitism"}  # aging keeps no elite
        return _islands(
            spec, SteadyStateGA(**{**settings, "population": s.population // s.islands}, replacement=s.replacement)
        )
    return GenCNN(**_ga_settings(spec))


@STRATEGIES.register("gensoup")
def _gensoup(spec: SearchSpec, budget: int) -> Any:
    s, names = spec.strategy, spec.space.names
    if s.schedule == "async":
        from popplast.strategies.steady_state import SteadyStateSoup

        settings = {k: v for k, v in _ga_settings(spec).items() if k != "elitism"}
        return _islands(
            spec,
            SteadyStateSoup(
                **{**settings, "population": s.population // s.islands},
                replacement=s.replacement,
                arch_index=names.index("architecture") if "architecture" in names else None,
                arch_choices=len(spec.space["architecture"].choices) if "architecture" in names else 1,
                fuse=s.fusion.weights == "average",
            ),
        )
    # a fixed architecture is no gene: every pair of parents can be fused
    return GenSoup(
        **_ga_settings(spec),
        population_step=s.population_step,
        min_population=min(s.min_population, s.population),
        arch_index=names.index("architecture") if "architecture" in names else None,
        arch_choices=len(spec.space["architecture"].choices) if "architecture" in names else 1,
        fuse=s.fusion.weights == "average",
    )


def _islands(spec: SearchSpec, island: Any) -> Any:
    """The steady-state strategy itself, or K islands of it (strategies/islands.py)."""
    s = spec.strategy
    if s.islands == 1:
        return island
    from popplast.strategies.islands import Islands

    return Islands(island, s.islands, s.migration_interval, s.migration_topology, s.migrants)


@STRATEGIES.register("pbt")
def _pbt(spec: SearchSpec, budget: int) -> Any:
    pbt = PBT(**{**_ga_settings(spec), "elitism": False}, genes=spec.space.genes)  # every member keeps its slot
    if spec.strategy.schedule == "async":
        from popplast.strategies.async_pbt import AsyncPBT

        return AsyncPBT(pbt, segments=spec.strategy.generations)
    return pbt


def _optuna(method: str) -> Callable[[SearchSpec, int], Any]:
    def build(spec: SearchSpec, budget: int) -> Any:
        from popplast.strategies.optuna_sampler import OptunaSampler  # Optuna only when a sampler runs

        s = spec.strategy
        # with a stopper, Optuna's own pruner for its rule judges the trials (strategies/optuna_pruning.py)
        several = len(spec.fitness.objectives) if spec.fitness.several else 0
        return OptunaSampler(
            method, spec.space, s.population, budget, s.seed, spec.stopper, spec.fidelity.epochs, objectives=several
        )

    return build


for _method in methods(family=SAMPLER):
    STRATEGIES.register(_method)(_optuna(_method))


def _es(method: str) -> Callable[[SearchSpec, int], ESSearch]:
    def build(spec: SearchSpec, budget: int) -> ESSearch:
        s = spec.strategy
        settings: dict[str, Any] = {"population": s.population}
        if s.sigma is not None:
            settings["sigma"] = s.sigma
        if s.learning_rate is not None:
            settings["learning_rate"] = s.learning_rate
        return ESSearch(ES_STRATEGIES[method](len(spec.space), **settings))

    return build


for _method in methods(family=ES):
    STRATEGIES.register(_method)(_es(_method))


def with_warm_start(strategy: Any, genomes: tuple[tuple[float, ...], ...]) -> Any:
    """`strategy` starting from `genomes`: its first generation's, first births' or first trials' (the
    catalogue's `warm` methods take them; the spec refuses the others)."""
    if not genomes:
        return strategy
    if dataclasses.is_dataclass(strategy) and not isinstance(strategy, type):
        return dataclasses.replace(strategy, warm=tuple(genomes))
    strategy.warm = tuple(genomes)  # the Optuna adapter: a plain object
    return strategy


def build_strategy(spec: SearchSpec, budget: int | None = None) -> Any:
    """The spec's strategy (a Strategy, popplast.core.strategy); `budget` in evaluations, by default the
    file's population × generations."""
    s = spec.strategy
    entry = catalogue.method(s.method, spec.folder)
    if entry.family == USER:
        from popplast.strategies.user_strategy import build

        return build(entry, len(spec.space), s.population, s.settings)
    return STRATEGIES[s.method](spec, s.population * s.generations if budget is None else budget)
