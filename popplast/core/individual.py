"""Individuals carry their own lineage (as in Nevergrad): the logger records it, never reconstructs it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The operator that made an individual. "sample": drawn by a sampler without parents (Optuna, Tune);
# "exploit": a PBT trial continuing from another trial's checkpoint with perturbed hyperparameters.
OPERATORS = (
    "init",
    "warm",  # a warm start's configuration (`warm_start:`), in the first generation
    "crossover",
    "mutation",
    "crossover+mutation",
    "copy",
    "elite",
    "inherit",
    "fusion",
    "es-sample",
    "sample",
    "exploit",
)


@dataclass(frozen=True)
class Individual:
    """One member of a population.

    Attributes:
        id: unique within a search, e.g. ``g003-i017`` (generation 3, slot 17).
        genome: genes in [0, 1], in the search space's order (evolve-rules: the rule vector's coefficients).
        generation: the generation it belongs to.
        parent_ids: ids of the individuals its genes came from (empty for ``init``).
        operator: one of OPERATORS.
        fusion_weights: the weights its parents' trained weights were averaged with (Gen-Soup), else ().
        seed: the seed of its evaluation (weight init, batch order), drawn from the strategy's generator.
    """

    id: str
    genome: tuple[float, ...]
    generation: int
    parent_ids: tuple[str, ...] = ()
    operator: str = "init"
    fusion_weights: tuple[float, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"unknown operator {self.operator!r}; expected one of {OPERATORS}")

    def parent_factors(self) -> tuple[float, ...]:
        """The factor each parent's trained state counts with in the child's start: its fusion weights, or
        1 for every parent when the strategy gave none (PBT's single parent)."""
        return self.fusion_weights or (1.0,) * len(self.parent_ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Individual":
        return cls(
            id=data["id"],
            genome=tuple(float(g) for g in data["genome"]),
            generation=int(data["generation"]),
            parent_ids=tuple(data.get("parent_ids", ())),
            operator=data.get("operator", "init"),
            fusion_weights=tuple(float(w) for w in data.get("fusion_weights", ())),
            seed=int(data.get("seed", 0)),
        )


def individual_id(generation: int, slot: int) -> str:
    return f"g{generation:03d}-i{slot:03d}"


def derived_seed(seed: int, *keys: int) -> int:
    """A seed for one evaluation, a pure function of the search's seed and the evaluation's coordinates."""
    import numpy as np

    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] % (2**31 - 1))
