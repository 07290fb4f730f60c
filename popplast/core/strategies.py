"""The strategies a search can use, by method name."""

from __future__ import annotations

from popplast.core.ga import GenCNN
from popplast.core.gensoup import GenSoup
from popplast.core.pbt import PBT
from popplast.core.registry import Registry
from popplast.core.spec import SearchSpec

STRATEGIES: Registry = Registry("strategy")
STRATEGIES.register("ga")(GenCNN)
STRATEGIES.register("gensoup")(GenSoup)
STRATEGIES.register("pbt")(PBT)


def build_strategy(spec: SearchSpec) -> GenCNN:
    s = spec.strategy
    settings = dict(
        n_genes=len(spec.space), population=s.population, crossover=s.crossover, mutation=s.mutation, elitism=s.elitism
    )
    if s.method == "gensoup":
        names = spec.space.names
        # a fixed architecture is no gene: every pair of parents can be fused
        arch_index = names.index("architecture") if "architecture" in names else None
        choices = len(spec.space["architecture"].choices) if "architecture" in names else 1
        settings.update(
            population_step=s.population_step,
            min_population=min(s.min_population, s.population),
            arch_index=arch_index,
            arch_choices=choices,
        )
    if s.method == "pbt":
        settings.update(genes=spec.space.genes, elitism=False)  # PBT keeps every member's slot
    return STRATEGIES[s.method](**settings)
