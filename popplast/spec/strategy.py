"""The search file's `strategy:` section, and the names of the methods it may run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from popplast.core.loading import LoadError, source_folder
from popplast.core.names import check_name
from popplast.spec.fields import Section, check_json, describe
from popplast.spec.space import SearchSpace
from popplast.strategies.catalogue import CATALOGUE, OWN_SETTINGS, is_user_method, methods

SCHEDULES = ("generational", "async")  # strategy.schedule
REPLACEMENTS = ("aging", "worst")
CROSSOVER, MUTATION = 0.9, 0.2  # the GA's per-gene probabilities unless the file says otherwise
ASYNC_SUFFIX = "-async"  # METHOD-async: the method with schedule: async (ga-async, gensoup-async, pbt-async)
METHODS = tuple(CATALOGUE)  # every method's name (strategies/catalogue.py says what each can do)
ASYNC_METHODS = methods(schedule="async")  # for messages: the methods that run asynchronously
# the multi-fidelity baselines by their usual names: a sampler with a stopper (METHOD+RULE says the same)
STOPPING_BASELINES = {
    "tpe-hyperband": ("tpe", "hyperband"),
    "tpe-asha": ("tpe", "asha"),
    "random-asha": ("random", "asha"),
}


def split_method(name: str) -> tuple[str, str | None]:
    """'ga+asha' → ('ga', 'asha'); 'tpe-hyperband' → ('tpe', 'hyperband'); 'ga' → ('ga', None); the method
    part may end in -async (ga-async: the GA with `schedule: async`)."""
    if name in STOPPING_BASELINES:
        return STOPPING_BASELINES[name]
    method, plus, rule = name.partition("+")
    return method, (rule if plus else None)


def split_schedule(method: str) -> tuple[str, str | None]:
    """'ga-async' → ('ga', 'async'); 'ga' → ('ga', None)."""
    if method.endswith(ASYNC_SUFFIX) and method[: -len(ASYNC_SUFFIX)] in ASYNC_METHODS:
        return method[: -len(ASYNC_SUFFIX)], "async"
    return method, None


def method_label(method: str, rule: str, schedule: str = "generational") -> str:
    """The name a comparison shows: the method (-async when asynchronous), with its stopper (by the
    baseline's name where it has one)."""
    shown = method + (ASYNC_SUFFIX if schedule == "async" else "")
    if rule == "none":
        return shown
    named = {v: k for k, v in STOPPING_BASELINES.items()}
    return named.get((shown, rule), f"{shown}+{rule}")


ALIGNMENTS = ("none", "weight_matching")  # strategy.fusion.align
INITIALISATIONS = ("own", "shared")  # strategy.fusion.init
FUSED_WEIGHTS = ("average", "better")  # strategy.fusion.weights
SOUPS = ("none", "greedy")  # strategy.final.soup


@dataclass(frozen=True)
class FusionSpec:
    """How a Gen-Soup child starts from its parents' trained weights (ALGORITHMS.md §3, §12).

    Attributes:
        align: "weight_matching" permutes every other parent's hidden units to match the better parent's
            before the weighted average (Ainsworth et al. 2023); "none" averages them as they are.
        init: "shared": every individual of one architecture that starts from scratch starts from the same
            weights, drawn from the search's seed; "own": from its own seed.
        weights: "average": parents of one architecture are fused by the fitness-weighted average;
            "better": a child takes the better parent's weights only (no fusion).
    """

    align: str = "none"
    init: str = "own"
    weights: str = "average"

    def to_dict(self) -> dict[str, str]:
        return {"align": self.align, "init": self.init, "weights": self.weights}


# a method's variants by its fusion settings: what a search run records (params), what a comparison's
# --methods may set per cell (gensoup[fusion.align=weight_matching]) and the label its cells are shown by
VARIANT_KEYS = {
    "fusion.align": ALIGNMENTS,
    "fusion.init": INITIALISATIONS,
    "fusion.weights": FUSED_WEIGHTS,
    "final.soup": SOUPS,
}


def variant_params(spec: "StrategySpec") -> dict[str, str]:
    """The fusion settings of a method that takes them, as `fusion.align`, ... (what its search run records)."""
    taken = CATALOGUE[spec.method].settings if spec.method in CATALOGUE else ()
    values = {**{f"fusion.{k}": v for k, v in spec.fusion.to_dict().items()}, "final.soup": spec.soup}
    return {k: v for k, v in values.items() if k.partition(".")[0] in taken}


def variant_label(label: str, params: Mapping[str, str]) -> str:
    """`label` with the variant settings that differ from their defaults: gensoup[fusion.align=weight_matching]."""
    return variant_name(
        label, {k: params[k] for k in VARIANT_KEYS if params.get(k, VARIANT_KEYS[k][0]) != VARIANT_KEYS[k][0]}
    )


def variant_name(method: str, settings: Mapping[str, str]) -> str:
    """`method[KEY=VALUE;...]` with the settings in one order (what split_variant reads); `method` without any."""
    return f"{method}[{';'.join(f'{k}={settings[k]}' for k in sorted(settings))}]" if settings else method


def split_variant(name: str) -> tuple[str, dict[str, str]]:
    """'gensoup[fusion.align=weight_matching;fusion.init=shared]' → ('gensoup', {...}); ValueError when a
    setting is not KEY=VALUE with a variant key and one of its values."""
    if not name.endswith("]") or "[" not in name:
        return name, {}
    method, _, inside = name[:-1].partition("[")
    settings = {}
    for item in (i.strip() for i in inside.split(";") if i.strip()):
        key, eq, value = item.partition("=")
        if not eq or key not in VARIANT_KEYS or value not in VARIANT_KEYS[key]:
            allowed = "; ".join(f"{k}={'|'.join(v)}" for k, v in VARIANT_KEYS.items())
            raise ValueError(f"{item!r} in {name!r}: expected KEY=VALUE among {allowed}")
        settings[key] = value
    return method, settings


PLAIN_FUSION = FusionSpec()  # the thesis's: the parents averaged as they are, each from its own initialisation


@dataclass(frozen=True)
class StrategySpec:
    """GA settings; crossover and mutation hold one probability per gene, in the space's order."""

    method: str = "ga"
    population: int = 10
    generations: int = 5
    crossover: tuple[float, ...] = ()
    mutation: tuple[float, ...] = ()
    elitism: bool = True
    seed: int = 0
    # Gen-Soup only: N_g = max(population - population_step * g, min_population); the image size ramps from
    # fidelity.image_size to final_image_size over the first generations - hold_generations generations.
    population_step: int = 0
    min_population: int = 2
    final_image_size: int | None = None
    hold_generations: int = 0
    # evolution strategies only: None keeps the method's own (popplast.strategies.es)
    sigma: float | None = None
    learning_rate: float | None = None
    # ga only: async breeds a child whenever a worker is free (strategies/steady_state.py); `replacement` says who
    # leaves the population (aging: the oldest; worst); `replay` tells results in the order they were asked
    schedule: str = "generational"
    replacement: str = "aging"
    replay: bool = False
    # async ga and gensoup: K islands sharing the population and the workers (strategies/islands.py)
    islands: int = 1
    migration_interval: int = 10
    migration_topology: str = "ring"
    migrants: int = 1
    # Gen-Soup only: how children fuse their parents; Gen-Soup and PBT: the final soup (`final: {soup: greedy}`)
    fusion: FusionSpec = PLAIN_FUSION
    soup: str = "none"
    # a user's strategy (method: module:Class): the section's other keys, its constructor's keywords
    settings: Mapping[str, Any] = field(default_factory=dict)


def strategy_from(s: Section, space: SearchSpace) -> StrategySpec:
    method = s.take("method", "str", "ga")
    if is_user_method(method):
        return _user_strategy(s, method, space)
    if method not in METHODS:
        raise s.error(
            "method",
            f"expected one of {', '.join(METHODS)} or a class of your own (module:Class), got {describe(method)}.",
        )
    population, generations = _sizes(s)
    spec = StrategySpec(
        method=method,
        population=population,
        generations=generations,
        crossover=_per_gene(s, "crossover", space, CROSSOVER),
        mutation=_per_gene(s, "mutation", space, MUTATION),
        elitism=s.take("elitism", "bool", True),
        seed=_seed(s),
        population_step=s.take("population_step", "int", 0),
        min_population=s.take("min_population", "int", 2),
        final_image_size=s.take("final_image_size", "int", None),
        hold_generations=s.take("hold_generations", "int", 0),
        sigma=s.take("sigma", "number", None),
        learning_rate=s.take("learning_rate", "number", None),
        schedule=s.take("schedule", "str", "generational"),
        replacement=s.take("replacement", "str", "aging"),
        replay=s.take("replay", "bool", False),
        islands=s.take("islands", "int", 1),
        migration_interval=s.take("migration_interval", "int", 10),
        migration_topology=s.take("migration_topology", "str", "ring"),
        migrants=s.take("migrants", "int", 1),
        fusion=_fusion(s),
        soup=_soup(s),
    )
    _check_schedule(spec, s)
    entry = CATALOGUE[method]
    for key in ("sigma", "learning_rate"):
        value = getattr(spec, key)
        if value is not None and key not in entry.settings:
            raise s.error(key, f"{key} is a setting of {_takers(key)}; this search's method is {method}.")
        if value is not None and not value > 0:
            raise s.error(key, f"expected a number > 0, got {value}.")
    if entry.antithetic and population % 2:
        raise s.error(
            "population", f"{method} samples antithetic pairs: expected an even population, got {population}."
        )
    for key in OWN_SETTINGS:
        if key in s.data and key not in entry.settings:
            raise s.error(key, f"only {_takers(key)} takes {key}; this search's method is {method}.")
    for key, minimum in (
        ("population_step", 0),
        ("min_population", 2),
        ("hold_generations", 0),
        ("final_image_size", 4),
    ):
        value = getattr(spec, key)
        if value is not None and value < minimum:
            raise s.error(key, f"expected an integer >= {minimum}, got {value}.")
    s.finish()
    return spec


def _fusion(s: Section) -> FusionSpec:
    f = s.section("fusion", {})
    spec = FusionSpec(
        _choice(f, "align", ALIGNMENTS), _choice(f, "init", INITIALISATIONS), _choice(f, "weights", FUSED_WEIGHTS)
    )
    f.finish()
    return spec


def _soup(s: Section) -> str:
    f = s.section("final", {})
    soup = _choice(f, "soup", SOUPS)
    f.finish()
    return soup


def _choice(s: Section, key: str, choices: tuple[str, ...]) -> str:
    value = s.take(key, "str", choices[0])
    if value not in choices:
        raise s.error(key, f"expected one of {', '.join(choices)}, got {describe(value)}.")
    return value


def _sizes(s: Section) -> tuple[int, int]:
    population = s.take("population", "int", 10)
    if population < 2:
        raise s.error("population", f"expected an integer >= 2, got {population}.")
    generations = s.take("generations", "int", 5)
    if generations < 1:
        raise s.error("generations", f"expected an integer >= 1, got {generations}.")
    return population, generations


def _user_strategy(s: Section, method: str, space: SearchSpace) -> StrategySpec:
    """A user's strategy class: the loop's keys read as for any method, every other key one of its settings."""
    from popplast.strategies import catalogue
    from popplast.strategies.user_strategy import SHARED_KEYS, settings_problem

    try:
        entry = catalogue.method(method, source_folder(s.source))
    except LoadError as e:
        raise s.error("method", f"{e}.") from None
    population, generations = _sizes(s)
    seed = _seed(s)
    schedule = s.take("schedule", "str", "generational")
    if schedule != "generational":
        raise s.error(
            "schedule",
            f"a strategy of your own runs generational; got {describe(schedule)} (say schedule: generational, "
            "or pass --schedule generational).",
        )
    settings = {str(k): v for k, v in s.data.items() if k not in SHARED_KEYS}
    for key, value in settings.items():
        s.take(key, "any")
        named = check_name(key, "strategy.")  # the search run logs it as the param strategy.KEY
        if named:
            raise s.error(key, f"{named}.")
        check_json(value, s.source, s.key(key))  # the search run keeps its spec as JSON, to resume from
    problem = settings_problem(entry, len(space), population, settings)
    if problem:
        raise s.error(*problem)
    s.finish()
    return user_strategy_spec(method, population, generations, seed, settings, len(space))


def user_strategy_spec(
    method: str, population: int, generations: int, seed: int, settings: Mapping[str, Any], n_genes: int
) -> StrategySpec:
    """A user's strategy's section: the loop's keys and its settings, every other method's setting at its
    default (the GA's per-gene probabilities too, for a command line that runs the GA over the same file)."""
    n = n_genes
    return StrategySpec(
        method, population, generations, (CROSSOVER,) * n, (MUTATION,) * n, seed=seed, settings=settings
    )


def _check_schedule(spec: StrategySpec, s: Section) -> None:
    if spec.schedule not in SCHEDULES:
        raise s.error("schedule", f"expected one of {', '.join(SCHEDULES)}, got {describe(spec.schedule)}.")
    if spec.schedule == "async" and spec.method not in ASYNC_METHODS:
        raise s.error(
            "schedule",
            f"asynchronous evolution is implemented for {', '.join(ASYNC_METHODS)}; this search's method is "
            f"{spec.method}.",
        )
    if spec.schedule == "async" and spec.population_step:
        raise s.error("population_step", "an asynchronous search has no generations to shrink; leave it at 0.")
    if spec.replacement not in REPLACEMENTS:
        raise s.error("replacement", f"expected aging or worst, got {describe(spec.replacement)}.")
    island_keys = ("islands", "migration_interval", "migration_topology", "migrants")
    if spec.islands != 1 or any(k in s.data for k in island_keys[1:]):
        _check_islands(spec, s)
    for key in ("replacement", "replay"):
        if key in s.data and spec.schedule != "async":
            raise s.error(key, f"{key} goes with schedule: async (a generational search replaces whole generations).")


def _takers(key: str) -> str:
    """The methods that take the strategy setting `key`, for a message."""
    return ", ".join(m.name for m in CATALOGUE.values() if key in m.settings)


def _check_islands(spec: StrategySpec, s: Section) -> None:
    if spec.schedule != "async" or not CATALOGUE[spec.method].islands:
        raise s.error("islands", "islands are asynchronous ga or gensoup sub-populations: set schedule: async.")
    if spec.islands < 2 or spec.population % spec.islands or spec.population // spec.islands < 2:
        raise s.error(
            "islands",
            f"expected K >= 2 islands that divide the population into islands of at least 2 (population "
            f"{spec.population}), got {spec.islands}.",
        )
    if spec.migration_topology not in ("ring", "complete"):
        raise s.error("migration_topology", f"expected ring or complete, got {describe(spec.migration_topology)}.")
    for key in ("migration_interval", "migrants"):
        if getattr(spec, key) < 1:
            raise s.error(key, f"expected an integer >= 1, got {getattr(spec, key)}.")


def _seed(s: Section) -> int:
    seed = s.take("seed", "int", 0)
    if seed < 0:
        raise s.error("seed", f"expected an integer >= 0, got {seed}.")
    return seed


def _per_gene(s: Section, key: str, space: SearchSpace, default: float) -> tuple[float, ...]:
    """A probability per gene: one number for all genes, or a mapping naming every gene."""
    value = s.take(key, "any", default)
    if isinstance(value, dict):
        probs = Section(value, s.source, s.key(key))
        out = tuple(probs.take(name, "number") for name in space.names)
        probs.finish()
        names = space.names
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out, names = (float(value),) * len(space), ("",) * len(space)
    else:
        raise s.error(key, f"expected a probability or a mapping from gene name to probability, got {describe(value)}.")
    for name, p in zip(names, out):
        if not 0.0 <= p <= 1.0:
            where = f"{key}.{name}" if name else key
            raise s.error(where, f"expected a probability in [0, 1], got {p}.")
    return out
