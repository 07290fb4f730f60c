"""Every method popplast runs, in one catalogue: what the driver, the spec's checks, the budget and the reports
need to know of each, so that none of them names a method (issue 32).

An entry says: its family (popplast's genetic strategies, an Optuna sampler, an evolution strategy, a Ray
Tune integration); the schedules it runs (generational, async); whether children start from trained states;
whether its evaluations report steps to the loop's stopper; how a budget maps onto its generations (whole
generations of the population, Gen-Soup's shrinking populations, or trials in rows of the population); whether
it runs in popplast's loop (checkpoints, resume, every executor) or in Ray Tune's own; the strategy settings
only it takes. How each is built is in core/strategies.py (a registry with one builder per entry).
"""

from __future__ import annotations

from dataclasses import dataclass

GENETIC, SAMPLER, ES, TUNE = "genetic", "sampler", "es", "tune"


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    schedules: tuple[str, ...] = ("generational",)
    inherits: bool = False  # children start from trained states (the loop keeps and passes them)
    stoppable: bool = False  # its evaluations report steps to the loop's stopper
    budget: str = "generations"  # generations: whole ones of `population`; shrinking: Gen-Soup's; trials: any number
    in_loop: bool = True  # False: Ray Tune's own loop (no checkpoints or resume; the ray executor only)
    islands: bool = False  # with schedule: async, K islands (core/islands.py)
    settings: tuple[str, ...] = ()  # strategy keys only it takes
    stopper_rules: tuple[str, ...] = ()  # a method out of the loop: the rules its own scheduler runs
    antithetic: bool = False  # samples antithetic pairs: its population must be even
    reference: bool = False  # the method a comparison's target is the median of, when it runs
    check: str | None = None  # "module:function" checking a spec before anything starts (what it needs of it)

    @property
    def genetic(self) -> bool:
        """popplast's own GA family: it takes the GA's crossover, mutation and elitism."""
        return self.family == GENETIC


SOUP_SETTINGS = ("population_step", "min_population", "final_image_size", "hold_generations")

CATALOGUE: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ga", GENETIC, ("generational", "async"), stoppable=True, islands=True),
        Method(
            "gensoup",
            GENETIC,
            ("generational", "async"),
            inherits=True,
            stoppable=True,
            budget="shrinking",
            islands=True,
            settings=SOUP_SETTINGS,
        ),
        Method("pbt", GENETIC, ("generational", "async"), inherits=True, stoppable=True),
        Method("tpe", SAMPLER, stoppable=True, budget="trials", reference=True),
        Method("cmaes", SAMPLER, stoppable=True, budget="trials"),
        Method("random", SAMPLER, stoppable=True, budget="trials"),
        Method("nsga2", SAMPLER, stoppable=True, budget="trials"),
        Method("elitist", ES, settings=("sigma",)),
        Method("openai", ES, settings=("sigma", "learning_rate"), antithetic=True),
        Method("snes", ES, settings=("sigma",)),
        Method("tune-tpe", TUNE, budget="trials", in_loop=False),
        Method("tune-pbt", TUNE, in_loop=False, check="popplast.integrations.tune:check_pbt"),
        Method("tune-asha", TUNE, budget="trials", in_loop=False, stopper_rules=("asha",)),
    )
}


def methods(**capabilities: object) -> tuple[str, ...]:
    """The names of the entries that have every capability given (`family="sampler"`, `inherits=True`, ...);
    `schedule="async"` selects those that run it."""
    schedule = capabilities.pop("schedule", None)
    return tuple(
        m.name
        for m in CATALOGUE.values()
        if all(getattr(m, k) == v for k, v in capabilities.items()) and (schedule is None or schedule in m.schedules)
    )


def method(name: str) -> Method:
    """The entry of `name` (KeyError for a name the catalogue does not hold: the spec's checks say so first)."""
    return CATALOGUE[name]


def check_spec(spec: object) -> None:
    """The method's own check of a spec (its `check`), if it has one: SpecError for what it cannot run."""
    import importlib

    entry = method(spec.strategy.method)  # type: ignore[attr-defined]
    if entry.check is not None:
        module, _, function = entry.check.partition(":")
        getattr(importlib.import_module(module), function)(spec)
