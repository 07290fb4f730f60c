"""A user's own strategy: a class named in the search file (`strategy: {method: mypkg.search:MyStrategy}`) or
an instance passed from Python (`popplast.run(spec, strategy=MyStrategy(...))`). It implements the Strategy
protocol (core/strategy.py), is built as `MyStrategy(n_genes=..., population=..., **settings)` from the
strategy section's other keys, and says what it can do in class attributes (not dataclass fields):

    inherits = False   # required: children start from their parents' trained states (parent_ids and
                       # fusion_weights name individuals of the generation before)
    stoppable = False  # optional: it accepts the fitness of evaluations a stopper cut short
    several = False    # optional: with a multi-objective file it is told vectors (core/pareto.py), not numbers

It runs generational: the loop asks whole generations of `population`. `popplast.testing.check_strategy` is the
conformance suite to run on one.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any, Mapping

from popplast.core.loading import LoadError, load_attribute
from popplast.errors import COMMAND_LINE, SpecError
from popplast.strategies.method import USER, Method

SHARED_KEYS = ("method", "population", "generations", "seed", "schedule")  # the loop's, not the strategy's
BUILT_FROM = ("n_genes", "population")  # what the spec gives every user strategy's constructor
PROTOCOL = ("init", "ask", "tell", "state_from_dict")
CAPABILITIES = ("inherits", "stoppable", "several")
_ENTRIES: dict[str, Method] = {}  # by name, once imported: the spec, the budget and the driver all ask


def user_entry(name: str, folder: str | None = None) -> Method:
    """The catalogue entry of the strategy class `name` (`module:Class`), imported the first time."""
    if name not in _ENTRIES:
        cls = load_attribute(name, folder, example="mypkg.search:MyStrategy")
        _ENTRIES[name] = entry_of(name, cls)
    return _ENTRIES[name]


def entry_of(name: str, cls: Any) -> Method:
    """What the class declares, checked: LoadError naming what is wrong."""
    if not isinstance(cls, type):
        raise LoadError(f"{name!r} is a {type(cls).__name__}, not a class")
    missing = [m for m in PROTOCOL if not callable(getattr(cls, m, None))]
    if missing:
        raise LoadError(f"{name} is no Strategy (popplast.core.strategy): it has no {', '.join(missing)}")
    if not hasattr(cls, "inherits"):
        raise LoadError(
            f"{name} does not say whether children inherit trained states: give it inherits = False or True"
        )
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    for key in CAPABILITIES:
        value = getattr(cls, key, False)
        if key in fields:
            raise LoadError(f"{name}.{key} is a dataclass field; a capability is a class attribute ({key} = {value!r})")
        if not isinstance(value, bool):
            raise LoadError(f"{name}.{key} is {value!r}; expected True or False")
    schedule = getattr(cls, "schedule", "generational")
    if schedule != "generational":
        raise LoadError(f"{name}.schedule is {schedule!r}; a strategy of your own runs generational")
    return Method(
        name,
        USER,
        inherits=cls.inherits,
        stoppable=getattr(cls, "stoppable", False),
        several=getattr(cls, "several", False),
        strategy_class=cls,
    )


def build(entry: Method, n_genes: int, population: int, settings: Mapping[str, Any]) -> Any:
    return entry.strategy_class(n_genes=n_genes, population=population, **settings)


def settings_problem(
    entry: Method, n_genes: int, population: int, settings: Mapping[str, Any]
) -> tuple[str, str] | None:
    """(key, message) when the class cannot be built with these settings, else None: a setting its
    constructor does not take, or one it refuses (its own ValueError or TypeError)."""
    parameters = inspect.signature(entry.strategy_class).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        takes = [k for k in parameters if k not in BUILT_FROM]
        for key in settings:
            if key not in parameters or key in BUILT_FROM:
                listed = ", ".join(takes) if takes else "none"
                return key, f"{entry.name} takes no setting {key!r} (its settings: {listed})."
    try:
        build(entry, n_genes, population, settings)
    except (TypeError, ValueError) as e:
        return "method", f"{entry.name} refused its settings {dict(settings)}: {type(e).__name__}: {e}."
    return None


def described(strategy: Any, n_genes: int) -> tuple[str, int, dict[str, Any]]:
    """A strategy passed from Python as (name, population, settings): what the search records, so that a resume
    or a replay builds an equal one. It must be a dataclass whose init fields are its constructor's keywords,
    defined at a module's top level, its settings plain JSON."""
    cls = type(strategy)
    name = f"{cls.__module__}:{cls.__qualname__}"
    if not dataclasses.is_dataclass(strategy):
        raise LoadError(
            f"a strategy passed from Python is recorded by its settings to be resumed: make {cls.__name__} a "
            "dataclass whose fields are its constructor's keywords, or name its class in strategy.method"
        )
    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        raise LoadError(
            f"{cls.__name__} is defined in {'a function' if '<locals>' in cls.__qualname__ else '__main__'}, where a "
            "resumed search cannot import it by name: define it at the top level of a module"
        )
    entry = entry_of(name, cls)
    fields = {f.name: getattr(strategy, f.name) for f in dataclasses.fields(strategy) if f.init}
    absent = [k for k in BUILT_FROM if k not in fields]
    if absent:
        raise LoadError(f"{cls.__name__} has no field {absent[0]}; popplast builds it with n_genes and population")
    if fields["n_genes"] != n_genes:
        raise LoadError(f"the strategy was made for {fields['n_genes']} genes; the search space has {n_genes}")
    if not isinstance(fields["population"], int) or fields["population"] < 2:
        raise LoadError(f"the strategy's population must be an integer >= 2, got {fields['population']!r}")
    settings = {k: v for k, v in fields.items() if k not in BUILT_FROM}
    taken = [k for k in settings if k in SHARED_KEYS]
    if taken:
        raise LoadError(f"{cls.__name__} has a field {taken[0]!r}, a key of the search's own; rename it")
    try:  # recorded as the spec's JSON: what a resume builds it from
        settings = json.loads(json.dumps(settings, allow_nan=False))
        same = build(entry, n_genes, fields["population"], settings) == strategy
    except (TypeError, ValueError) as e:
        raise LoadError(f"{cls.__name__}'s settings must be plain JSON values: {e}") from None
    if not same:
        raise LoadError(
            f"{cls.__name__}(n_genes, population, **its fields read back from JSON) is not the strategy passed "
            "(a tuple comes back a list; a dataclass with eq=False never compares equal)"
        )
    _ENTRIES[name] = entry
    return name, fields["population"], settings


def strategy_flags(n_genes: int, strategy: Any, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The flags with a strategy passed from Python among them (its name, population and settings); SpecError
    when it cannot be recorded, or a flag says another method or population."""
    try:
        name, population, settings = described(strategy, n_genes)
    except LoadError as e:
        raise SpecError(COMMAND_LINE, "strategy", f"{e}.") from None
    for key, value in (("method", name), ("population", population)):
        if flags.get(key) not in (None, value):
            raise SpecError(COMMAND_LINE, key, f"{flags[key]!r}, while the strategy passed says {value!r}; give one.")
    return {**flags, "method": name, "population": population, "settings": settings}
