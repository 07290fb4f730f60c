"""Population-based training (Jaderberg et al. 2017; ALGORITHMS.md §8) as a popplast strategy.

A population of `population` members trains in segments, one generation each (`fidelity.epochs` epochs),
every member continuing from its own trained state. After each segment, members are ranked by fitness; each
one in the bottom `quantile` exploits a member of the top `quantile` drawn uniformly (it takes that member's
trained state and, explored, its genes: each float gene is resampled uniformly with `resample_probability`,
else multiplied by 0.8 or 1.2 and clipped to its bounds); every other member inherits its own state and genes.
A failed member ranks last and has no state: it always exploits, and the top members it may copy are those
that succeeded; with none, it keeps its genes and starts afresh ("copy", weight 0: no state taken). Members
keep their slot: member i of generation g is `gGGG-iIII`.

The quantile is ⌊n·quantile⌋ members (at least one); Ray Tune's PBT takes ⌈n·quantile⌉ (at most n/2), so
the two differ when n·quantile is not whole (10 members at 0.25: 2 here, 3 in Ray).

Unlike Ray Tune's PBT (`tune-pbt`), every draw comes from the search's generator: the same seed gives the same
lineage, and a checkpointed search resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from popplast.spec.space import Gene
from popplast.strategies.ga import GAState, GenCNN
from popplast.strategies.operators import best_first, selection_score


@dataclass(frozen=True)
class PBT(GenCNN):
    """Settings: `genes` (the space's, for explore), `quantile`, `resample_probability`, `factors`."""

    genes: Sequence[Gene] = ()
    quantile: float = 0.25
    resample_probability: float = 0.25
    factors: tuple[float, float] = (0.8, 1.2)
    elitism: bool = False
    name = "pbt"
    inherits = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.genes) != self.n_genes:
            raise ValueError(f"PBT needs the {self.n_genes} genes of the space to explore, got {len(self.genes)}")
        if not 0 < self.quantile <= 0.5:
            raise ValueError(f"PBT's quantile must be in (0, 0.5], got {self.quantile}")

    def _offspring(self, state: GAState, rng: np.random.Generator) -> tuple[np.ndarray, list]:
        parents = state.population
        score = selection_score(state.fitness_array())
        n = len(parents)
        k = max(1, int(n * self.quantile))
        order = best_first([state.fitness[ind.id] for ind in parents], score)  # ties keep slot order
        top = [int(j) for j in order[:k] if np.isfinite(score[j])]  # a failed member has no state to give
        bottom = set(order[n - k :])
        genome = np.array([ind.genome for ind in parents])
        children, made = [], []
        for i in range(n):
            failed = not np.isfinite(score[i])
            if (i in bottom or failed) and top:
                j = top[int(rng.integers(len(top)))]
                children.append(self.explore(genome[j], rng))
                made.append(((parents[j].id,), "exploit", (1.0,)))
            elif failed:  # nobody succeeded: its genes again, from scratch
                children.append(genome[i].copy())
                made.append(((parents[i].id,), "copy", (0.0,)))
            else:
                children.append(genome[i].copy())
                made.append(((parents[i].id,), "inherit", (1.0,)))
        return np.array(children), made

    def explore(self, genome: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Float genes perturbed (two draws per gene, whatever happens, so the generator advances alike);
        categorical and integer genes as they are."""
        child = genome.copy()
        for index, gene in enumerate(self.genes):
            resample, pick = rng.random(2)
            if gene.type != "float":
                continue
            if resample < self.resample_probability:
                child[index] = pick
                continue
            factor = self.factors[0] if pick < 0.5 else self.factors[1]
            low, high = gene.bounds()
            value = min(max(gene.decode(genome[index]) * factor, low), high)
            child[index] = gene.encode(value)
        return child
