"""What the catalogue (strategies/catalogue.py) says of one method: its family and capabilities. A user's
strategy gets one too (strategies/user_strategy.py), made from what its class declares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GENETIC, SAMPLER, ES, TUNE, USER = "genetic", "sampler", "es", "tune", "user"


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    schedules: tuple[str, ...] = ("generational",)
    inherits: bool = False  # children start from trained states (the loop keeps and passes them)
    stoppable: bool = False  # its evaluations report steps to the loop's stopper
    budget: str = "generations"  # generations: whole ones of `population`; shrinking: Gen-Soup's; trials: any number
    in_loop: bool = True  # False: Ray Tune's own loop (no checkpoints or resume; the ray executor only)
    islands: bool = False  # with schedule: async, K islands (strategies/islands.py)
    settings: tuple[str, ...] = ()  # strategy keys only it takes
    stopper_rules: tuple[str, ...] = ()  # a method out of the loop: the rules its own scheduler runs
    several: bool = False  # ranks by Pareto fronts: takes several objectives and constraints (ALGORITHMS.md §11)
    antithetic: bool = False  # samples antithetic pairs: its population must be even
    reference: bool = False  # the method a comparison's target is the median of, when it runs
    check: str | None = None  # "module:function" checking a spec before anything starts (what it needs of it)
    strategy_class: Any = None  # a user's strategy (family user): the class built from the spec's settings

    @property
    def warm(self) -> bool:
        """It can start from given configurations (`warm_start:`): popplast's genetic strategies seed their
        first generation with them, the Optuna samplers enqueue them as their first trials."""
        return self.family in (GENETIC, SAMPLER)

    @property
    def genetic(self) -> bool:
        """popplast's own GA family: it takes the GA's crossover, mutation and elitism."""
        return self.family == GENETIC
