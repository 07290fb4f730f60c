"""Every method popplast runs, in one catalogue: what the driver, the spec's checks, the budget and the reports
need to know of each, so that none of them names a method (issue 32).

An entry says: its family (popplast's genetic strategies, an Optuna sampler, an evolution strategy, a Ray
Tune integration); the schedules it runs (generational, async); whether children start from trained states;
whether its evaluations report steps to the loop's stopper; how a budget maps onto its generations (whole
generations of the population, Gen-Soup's shrinking populations, or trials in rows of the population); whether
it runs in popplast's loop (checkpoints, resume, every executor) or in Ray Tune's own; the strategy settings
only it takes. How each is built is in strategies/build.py (a registry with one builder per entry).

A user's own strategy is named by its class (`mypkg.search:MyStrategy`, like an objective) and gets an entry
of the family "user" from what the class declares (strategies/user_strategy.py); `method(name)` finds both kinds.
"""

from __future__ import annotations

from popplast.strategies.method import ES, GENETIC, SAMPLER, TUNE, Method

SOUP_SETTINGS = ("population_step", "min_population", "final_image_size", "hold_generations")
FUSION_SETTINGS = ("fusion", "final")  # how children fuse their parents (Gen-Soup), the final soup (§12)
OWN_SETTINGS = SOUP_SETTINGS + FUSION_SETTINGS  # strategy keys only the methods that list them take

CATALOGUE: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ga", GENETIC, ("generational", "async"), stoppable=True, islands=True, several=True),
        Method(
            "gensoup",
            GENETIC,
            ("generational", "async"),
            inherits=True,
            stoppable=True,
            budget="shrinking",
            islands=True,
            settings=OWN_SETTINGS,
            several=True,
        ),
        Method(
            "pbt", GENETIC, ("generational", "async"), inherits=True, stoppable=True, settings=("final",), several=True
        ),
        Method("tpe", SAMPLER, stoppable=True, budget="trials", reference=True, several=True),
        Method("cmaes", SAMPLER, stoppable=True, budget="trials"),
        Method("gp", SAMPLER, stoppable=True, budget="trials", several=True),
        Method("random", SAMPLER, stoppable=True, budget="trials", several=True),
        Method("nsga2", SAMPLER, stoppable=True, budget="trials", several=True),
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


def method(name: str, folder: str | None = None) -> Method:
    """The entry of `name`: a built-in method, or a user's strategy class (`module:Class`, imported from `folder`
    first the first time it is asked for; LoadError when it cannot be). KeyError for any other name: the
    spec's checks say so first."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    if not is_user_method(name):
        raise KeyError(name)
    from popplast.strategies.user_strategy import user_entry

    return user_entry(name, folder)


def supports_several(name: str, folder: str | None = None) -> bool:
    """The method ranks by Pareto fronts (several objectives, constraints); an unknown name: False (the spec's
    own check names it)."""
    try:
        return method(name, folder).several
    except KeyError:
        return False


def several_refusal(name: str) -> str:
    """The one line a method that ranks by one number answers a multi-objective file with."""
    return (
        f"{name} ranks individuals by one number; several objectives or constraints go with "
        f"{', '.join(methods(several=True))}, and a strategy of your own that declares several = True."
    )


def is_user_method(name: str) -> bool:
    """A user's strategy is named as `module:Class`; no built-in method's name holds a colon."""
    return ":" in name


def check_spec(spec: object) -> None:
    """The method's own check of a spec (its `check`), if it has one: SpecError for what it cannot run."""
    import importlib

    entry = method(spec.strategy.method)  # type: ignore[attr-defined]
    if entry.check is not None:
        module, _, function = entry.check.partition(":")
        getattr(importlib.import_module(module), function)(spec)
