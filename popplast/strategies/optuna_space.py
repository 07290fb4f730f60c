"""The search-space file in Optuna's terms, both ways, without a second description.

A gene is already written in Optuna's vocabulary (ARCHITECTURE.md), so each type has one distribution:
float → FloatDistribution (log as the file says), int → IntDistribution, categorical →
CategoricalDistribution. A value Optuna chooses becomes a genome through `Gene.encode` (the centre of the
value's bin), and that genome decodes to the very value Optuna chose: the configuration a trial trains is
the one the GA would build from the same values.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from popplast.spec.space import Gene, SearchSpace

# the value types Optuna can store in a categorical choice
OPTUNA_CHOICE_TYPES = (type(None), bool, int, float, str)


class SpaceNotConvertible(ValueError):
    """A gene that Optuna cannot represent (e.g. a categorical choice that is a list or a mapping)."""


def to_optuna(space: SearchSpace) -> dict[str, BaseDistribution]:
    return {gene.name: gene_distribution(gene) for gene in space.genes}


def gene_distribution(gene: Gene) -> BaseDistribution:
    if gene.type == "categorical":
        bad = [c for c in gene.choices if not isinstance(c, OPTUNA_CHOICE_TYPES)]
        if bad:
            raise SpaceNotConvertible(
                f"gene '{gene.name}': Optuna's categorical choices must be null, booleans, "
                f"numbers or strings; {bad[0]!r} is a {type(bad[0]).__name__}."
            )
        return CategoricalDistribution(gene.choices)
    assert gene.low is not None and gene.high is not None  # a numeric gene has its bounds (spec/space.py)
    if gene.type == "int":
        return IntDistribution(int(gene.low), int(gene.high), log=gene.log)
    return FloatDistribution(float(gene.low), float(gene.high), log=gene.log)


def from_optuna(distributions: Mapping[str, BaseDistribution]) -> SearchSpace:
    """The space an Optuna search space stands for (genes in the mapping's order)."""
    genes = []
    for name, d in distributions.items():
        if isinstance(d, CategoricalDistribution):
            genes.append(Gene(name, "categorical", choices=tuple(d.choices)))
        elif isinstance(d, IntDistribution):
            if d.step != 1:
                raise SpaceNotConvertible(f"'{name}': popplast's int genes have step 1, got step {d.step}.")
            genes.append(Gene(name, "int", low=d.low, high=d.high, log=d.log))
        elif isinstance(d, FloatDistribution):
            if d.step is not None:
                raise SpaceNotConvertible(f"'{name}': popplast's float genes are continuous, got step {d.step}.")
            genes.append(Gene(name, "float", low=d.low, high=d.high, log=d.log))
        else:
            raise SpaceNotConvertible(f"'{name}': no popplast gene type for {type(d).__name__}.")
    return SearchSpace(tuple(genes))


def params_to_genome(space: SearchSpace, params: Mapping[str, Any]) -> tuple[float, ...]:
    """The genome of the values a trial chose (clipped to [0, 1] for values Tune's PBT pushed past a bound)."""
    return tuple(float(g) for g in np.clip(space.encode(params), 0.0, 1.0))
