"""The strategies a search can use, by method name."""

from __future__ import annotations

from popplast.core.ga import GenCNN
from popplast.core.registry import Registry
from popplast.core.spec import SearchSpec

STRATEGIES: Registry = Registry("strategy")
STRATEGIES.register("ga")(GenCNN)


def build_strategy(spec: SearchSpec) -> GenCNN:
    s = spec.strategy
    return STRATEGIES[s.method](
        n_genes=len(spec.space),
        population=s.population,
        crossover=s.crossover,
        mutation=s.mutation,
        elitism=s.elitism,
    )
