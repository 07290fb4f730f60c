"""Gen-Soup: a GA whose offspring inherit trained weights (García Aguirre 2024, thesis ch. 5; ALGORITHMS.md §3).

Each generation trains every individual for one epoch (configurable) from the weights it inherited, so the
population learns sequentially while it evolves. Per child (Algorithm 2's pairing: each selected P1 with a
random P2 from the selected population):
- genes: Gen-CNN's crossover and mutation, except that the architecture gene is the better parent's;
- weights: the better parent's ("inherit"), or, when both parents decode to the same architecture, the
  fitness-weighted average θ = (θ1·Ev1 + θ2·Ev2)/(Ev1 + Ev2) ("fusion"; equal weights when Ev1 + Ev2 = 0).
The best of the selected population replaces the last child with its genome and weights ("elite").
Population N_g = max(N0 − r·g, N_min); the image size ramps linearly from `image_size` to `final_image_size`
over the first G − hold generations, then stays there.

Deviations: with N_g < N_{g−1} children are made for the first N_g slots of the selected population; a child
lists a second parent only when that parent gave it genes or weights. A failed parent has no weights to give:
a child fuses only parents that both succeeded, inherits from the better one when only it did, and when
neither did (a tournament between two failed individuals) starts afresh with the genes it was bred: its
operator then names what its genes went through (mutation, crossover, ...) and every parent's fusion weight
is 0, so the record says no weights were taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np

from popplast.core.individual import Individual
from popplast.strategies.ga import GAState, GenCNN, operator_name
from popplast.strategies.operators import (
    best_index,
    selection_and_ev,
    tournament,
    uniform_mutation,
    weighted_crossover,
)


def population_size(generation: int, start: int, step: int, minimum: int) -> int:
    """N_g = max(N0 − r·g, N_min)."""
    return max(start - step * generation, minimum)


def image_size(generation: int, generations: int, start: int, end: int, hold: int) -> int:
    """Linear ramp from `start` over the first G − hold generations, then `end` for exactly the last `hold`.

    With hold > 0 the ramp's equal steps lead up to `end` and the hold generations reach it; with hold = 0
    the ramp's last generation is at `end`; with hold >= G every generation is.
    """
    ramp = generations - hold
    if generation >= ramp:
        return end
    steps = ramp if hold > 0 else ramp - 1
    if steps <= 0:
        return end
    return int(round(start + (end - start) * generation / steps))


@dataclass(frozen=True)
class GenSoup(GenCNN):
    """Gen-CNN's settings plus the population schedule and the architecture gene's position and choices.

    Attributes:
        population_step: r, the population shrinks by r per generation down to `min_population`.
        min_population: N_min.
        arch_index: the architecture gene's position in the genome, None when the architecture is fixed (one
            architecture: every pair of parents can be fused, and no gene goes with the weights);
        arch_choices: its number of choices.
        fuse: False: a child takes the better parent's weights only, even when both share the architecture
            (`fusion: {weights: better}`: what fusion adds over inheritance alone).
    """

    population_step: int = 0
    min_population: int = 2
    arch_index: int | None = None
    arch_choices: int = 1
    fuse: bool = True
    name = "gensoup"
    inherits = True

    def architecture(self, genome: Sequence[float]) -> int:
        """The architecture's choice index, decoded as Gene.decode does for categorical genes."""
        if self.arch_index is None:
            return 0
        return min(math.floor(genome[self.arch_index] * self.arch_choices), self.arch_choices - 1)

    def ask(self, state: GAState, rng: np.random.Generator) -> tuple[tuple[Individual, ...], GAState]:
        if state.generation < 0:
            first = replace(
                self, population=population_size(0, self.population, self.population_step, self.min_population)
            )
            return GenCNN.ask(first, state, rng)
        return GenCNN.ask(self, state, rng)

    def _offspring(self, state: GAState, rng: np.random.Generator) -> tuple[np.ndarray, list]:
        parents, values = state.breeders()
        score, ev = selection_and_ev(values)
        genome = np.array([ind.genome for ind in parents])
        pc, pm = np.asarray(self.crossover, dtype=float), np.asarray(self.mutation, dtype=float)
        size = population_size(state.generation + 1, self.population, self.population_step, self.min_population)

        selected = tournament(score, rng)  # Algorithm 1 over the whole previous population
        children: list[np.ndarray] = []
        made: list[tuple[tuple[str, ...], str, tuple[float, ...]]] = []
        for i in selected[:size]:  # Algorithm 2, for the first N_g slots
            j = selected[rng.integers(len(selected))]
            better, other = (i, j) if score[i] >= score[j] else (j, i)
            cross = rng.random(self.n_genes) < pc
            child = genome[i].copy()
            child[cross] = weighted_crossover(genome[i][cross], genome[j][cross], ev[i], ev[j])
            child, mutated = uniform_mutation(child, pm, rng)
            if self.arch_index is not None:  # the architecture goes with the weights
                child[self.arch_index] = genome[better][self.arch_index]
            if not np.isfinite(score[better]):  # neither parent succeeded: no weights to start from
                bred = (parents[i].id, parents[j].id) if cross.any() and i != j else (parents[i].id,)
                made.append((bred, operator_name(bool(cross.any()), bool(mutated.any())), (0.0,) * len(bred)))
            elif i != j and np.isfinite(score[other]) and self.architecture(genome[i]) == self.architecture(genome[j]):
                total = ev[better] + ev[other]
                w = (0.5, 0.5) if total == 0 else (ev[better] / total, ev[other] / total)
                if w[1] > 0 and self.fuse:
                    made.append(((parents[better].id, parents[other].id), "fusion", (float(w[0]), float(w[1]))))
                else:  # the other parent is at the generation's minimum, or fusion is off: its weights don't count
                    made.append(((parents[better].id, parents[other].id), "inherit", (1.0, 0.0)))
            elif cross.any() and i != j:
                made.append(((parents[better].id, parents[other].id), "inherit", (1.0, 0.0)))
            else:
                made.append(((parents[better].id,), "inherit", (1.0,)))
            children.append(child)
        if self.elitism and not state.pool:  # NSGA-II's survivors are its elites
            best = best_index(score[selected])
            if best is not None:
                elite = selected[best]
                children[-1] = genome[elite].copy()
                made[-1] = ((parents[elite].id,), "elite", (1.0,))
        return np.array(children), made


def weights_needed(population: Sequence[Individual], keep: Iterable[str] = ()) -> set[str]:
    """Ids whose trained weights must stay alive: the parents of `population`, plus any in `keep`."""
    needed = {p for ind in population for p in ind.parent_ids}
    return needed | set(keep)
