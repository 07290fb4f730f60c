"""The plastic-rule evaluator (paper 004) as an objective: a whole slice of a population scored in one call.

A rule vector's fitness is the frozen accuracy on a training batch after one plastic pass over it from reset
weights (training/rule_evaluator.py). Scoring individuals one at a time would waste what makes evolve-rules
fast: the plastic network runs a population as one batched tensor program. So this objective is vectorised:
the search loop hands it a slice of the generation (`evaluate_many`), every individual of which carries the
generation's shared batch in its configuration (RuleSearch.context).
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np

from popplast.core.individual import Individual
from popplast.core.result import EvalResult
from popplast.objectives.function import describe_error
from popplast.training.rule_evaluator import RuleEvaluator


class RulesObjective:
    """Scores slices of rule vectors on the evaluator's task and network (the same on every worker)."""

    def __init__(self, evaluator: RuleEvaluator) -> None:
        self.evaluator = evaluator

    def evaluate_many(self, items: Sequence[tuple[Individual, Mapping[str, Any]]]) -> list[EvalResult]:
        """One result per (individual, configuration), in their order; an error fails the whole slice, and
        the search goes on."""
        start = time.perf_counter()
        where = self.evaluator.where
        try:
            batch = np.asarray(items[0][1]["batch"], dtype=np.int64)
            fitness = self.evaluator.fitness(np.array([ind.genome for ind, _ in items], dtype=float), batch)
        except Exception as e:
            return [EvalResult.failed(ind.id, describe_error(e), worker=where) for ind, _ in items]
        seconds = (time.perf_counter() - start) / len(items)
        return [
            EvalResult(ind.id, float(f), {"train_seconds": seconds}, worker=where)
            for (ind, _), f in zip(items, fitness)
        ]
