"""Search spaces: one real gene in [0, 1] per hyperparameter (Gen-CNN, García Aguirre 2024, §3.3.2).

Decoding (ALGORITHMS.md §1):
- categorical with n choices: uniform bins, index = min(floor(g·n), n−1);
- float: low + g·(high − low), or log-uniform with `log: true` (the thesis code is linear only; log is
  the project's default for learning rate and weight decay, see ALGORITHMS.md);
- int: uniform bins over low..high, value = low + min(floor(g·(high − low + 1)), high − low); with
  `log: true` the bins are uniform in log(value) over [low, high + 1).
`encode` returns the centre of a value's bin, so decode(encode(x)) == x for every valid categorical or int
value, and up to rounding for floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from popplast.core.names import check_name
from popplast.errors import SpecError
from popplast.spec.fields import Section, check_json, describe

GENE_TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Gene:
    """One hyperparameter of the space, in Optuna's vocabulary."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def bounds(self) -> tuple[float, float]:
        if self.low is None or self.high is None:  # from_section gives every numeric gene both
            raise ValueError(f"the {self.type} gene {self.name!r} has no low and high")
        return float(self.low), float(self.high)

    def decode(self, g: float) -> Any:
        g = min(max(float(g), 0.0), 1.0)
        if self.type == "categorical":
            n = len(self.choices)
            return self.choices[min(math.floor(g * n), n - 1)]
        low, high = self.bounds()
        if self.type == "float":
            if self.log:
                return math.exp(math.log(low) + g * (math.log(high) - math.log(low)))
            return low + g * (high - low)
        span = int(high) - int(low)
        if self.log:
            value = math.floor(math.exp(math.log(low) + g * (math.log(high + 1) - math.log(low))))
            return int(min(max(value, int(low)), int(high)))
        return int(low) + min(math.floor(g * (span + 1)), span)

    def encode(self, value: Any) -> float:
        if self.type == "categorical":
            n = len(self.choices)
            return (self.choices.index(value) + 0.5) / n
        low, high = self.bounds()
        if self.type == "float":
            if high == low:
                return 0.5
            if self.log:
                return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
            return (float(value) - low) / (high - low)
        if self.log:
            centre = (math.log(value) + math.log(value + 1)) / 2
            return (centre - math.log(low)) / (math.log(high + 1) - math.log(low))
        return (int(value) - low + 0.5) / (high - low + 1)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of genes; the order is the genome's order."""

    genes: tuple[Gene, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.genes)

    def __len__(self) -> int:
        return len(self.genes)

    def __getitem__(self, name: str) -> Gene:
        for gene in self.genes:
            if gene.name == name:
                return gene
        raise KeyError(name)

    def decode(self, genome: Sequence[float]) -> dict[str, Any]:
        if len(genome) != len(self.genes):
            raise ValueError(f"genome has {len(genome)} genes, the space has {len(self.genes)}")
        return {gene.name: gene.decode(g) for gene, g in zip(self.genes, genome)}

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        return np.array([gene.encode(config[gene.name]) for gene in self.genes], dtype=float)

    @classmethod
    def from_section(cls, section: Section) -> "SearchSpace":
        if not section.data:
            raise SpecError(section.source, section.path, "expected at least one gene.")
        for name in section.data:  # each individual's run logs a gene as the params NAME and gene.NAME
            problem = check_name(name, "gene.")  # a number is no name: `1:` reads as the integer 1
            if problem:
                raise section.error(str(name), f"{problem}.")
        genes = tuple(_gene(section.section(str(name)), str(name)) for name in section.data)
        section.finish()
        return cls(genes)


def _gene(s: Section, name: str) -> Gene:
    kind = s.take("type", "str")
    if kind not in GENE_TYPES:
        raise s.error("type", f"expected one of {', '.join(GENE_TYPES)}, got {describe(kind)}.")
    if kind == "categorical":
        choices = s.take("choices", "list")
        if not choices:
            raise s.error("choices", "expected a non-empty list of choices, got an empty list.")
        check_json(choices, s.source, s.key("choices"))  # as the fixed values: the spec is kept as JSON
        if len(set(map(repr, choices))) != len(choices):
            raise s.error("choices", f"expected distinct choices, got {choices!r}.")
        s.finish()
        return Gene(name, kind, choices=tuple(choices))
    number = "int" if kind == "int" else "number"
    low, high = s.take("low", number), s.take("high", number)
    log = s.take("log", "bool", False)
    if low > high:
        raise s.error("low", f"expected low <= high, got low = {low} and high = {high}.")
    if log and low <= 0:
        raise s.error("low", f"expected low > 0 with log: true, got {low}.")
    s.finish()
    return Gene(name, kind, low=low, high=high, log=log)
