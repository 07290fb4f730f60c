"""A search specification: the YAML file users write, validated on load (see README "Search-space files")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from popplast.core.loading import source_folder
from popplast.core.names import check_name
from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.fields import REQUIRED, Section, check_json, describe, load_yaml
from popplast.spec.fitness import FitnessSpec, fitness_dict, fitness_from
from popplast.spec.space import SearchSpace
from popplast.spec.stopper import CNN_METRIC, CNN_WATCHABLE, StopperSpec, stopper_from
from popplast.spec.strategy import (
    METHODS,
    REPLACEMENTS,
    SCHEDULES,
    STOPPING_BASELINES,
    StrategySpec,
    method_label,
    split_method,
    split_schedule,
    strategy_from,
)
from popplast.spec.warm_start import WarmStartSpec, warm_start_from
from popplast.strategies import catalogue
from popplast.strategies.catalogue import (
    CATALOGUE,
    OWN_SETTINGS,
    is_user_method,
    methods,
    several_refusal,
    supports_several,
)
from popplast.strategies.stoppers import SEVERAL

# what other modules import from here: the method names and the strategy section (spec/strategy.py)
__all__ = [
    "METHODS",
    "REPLACEMENTS",
    "SCHEDULES",
    "STOPPING_BASELINES",
    "StrategySpec",
    "method_label",
    "split_method",
]

SCHEDULERS = ("none", "cosine")
MAX_IMAGE_SIZE = 1024
# the split is held in memory as float32 at the search's image size
IMAGE_SIZE_LIMIT = (
    "expected at most 1024 pixels, got {value}: images are held in memory as float32 at this size "
    "(one 3-channel image of 1024 px is 12 MB)."
)
# fixed values that name files: relative ones are taken from the file's folder
FILE_KEYS = ("source_checkpoint", "suite_table")


@dataclass(frozen=True)
class DatasetSpec:
    """Where the images come from. `name`: digits, imagefolder, or a torchvision data set class name."""

    name: str = "digits"
    path: str | None = None
    root: str = "./data"
    download: bool = False
    split_seed: int = 0


@dataclass(frozen=True)
class Fidelity:
    """How hard one evaluation trains; `scheduler: cosine` anneals to 0.1·lr as the thesis' final training."""

    image_size: int = 32
    epochs: int = 3
    batch_size: int = 64
    max_train_samples: int | None = None
    scheduler: str = "none"


@dataclass(frozen=True)
class SearchSpec:
    """`objective`: 'module:function' of the user's training code (popplast.objectives), None for popplast's
    CNN trainer, which alone needs the dataset section and checks the space's names against its table."""

    source: str
    dataset: DatasetSpec
    fidelity: Fidelity
    final: Fidelity
    strategy: StrategySpec
    space: SearchSpace
    fixed: Mapping[str, Any] = field(default_factory=dict)
    objective: str | None = None
    fitness: FitnessSpec = FitnessSpec()
    stopper: StopperSpec = StopperSpec()
    warm_start: WarmStartSpec | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "SearchSpec":
        source = os.fspath(path)
        data = load_yaml(source)
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "SearchSpec":
        top = Section(data, source, "")
        base = source_folder(source)
        space = SearchSpace.from_section(top.section("space"))
        objective = top.take("objective", "str", None)
        if objective is not None and ":" not in objective:
            raise top.error(
                "objective", f"expected 'module:function' (for example mypkg.train:fit), got {describe(objective)}."
            )
        fitness = fitness_from(top, objective)
        # a user's objective loads its own data: a dataset section is popplast's CNN trainer's
        unused = Section({"name": "digits"}, source, "dataset")  # read as if written, so to_dict round-trips
        dataset = _dataset(top.section("dataset") if objective is None or "dataset" in data else unused, base)
        fid = top.section("fidelity", {} if objective else REQUIRED)
        fidelity = _fidelity(fid, Fidelity())
        final_section = fid.section("final", {})
        final = _fidelity(final_section, fidelity)
        final_section.finish()
        fid.finish()
        strategy = strategy_from(top.section("strategy"), space)
        if fitness.several and not supports_several(strategy.method, base):
            raise top.error("fitness" if fitness.more else "constraints", several_refusal(strategy.method))
        if objective is not None and strategy.soup != "none":
            raise SpecError(
                source,
                "strategy.final.soup",
                "the greedy soup measures popplast's CNN trainer's models; a user objective makes its own final "
                "model from the best state in its answer hook (fit.answer), so set soup: none.",
            )
        stopper = stopper_from(top)
        _check_stopper(stopper, strategy.method, objective, fitness, top)
        fixed = top.section("fixed", {})
        for name, value in fixed.data.items():
            if name in space.names:
                raise fixed.error(str(name), f"'{name}' is both fixed and a gene of the space; keep one.")
            problem = check_name(name, "fixed.")  # each run logs it as the params NAME and fixed.NAME
            if problem:
                raise fixed.error(str(name), f"{problem}.")
            check_json(value, source, fixed.key(name))  # the search run keeps its spec as JSON, to resume from
        warm = warm_start_from(top.section("warm_start", {}), space)
        if warm is not None and not catalogue.method(strategy.method, base).warm:
            raise top.error("warm_start", f"{strategy.method} cannot start warm; {', '.join(methods(warm=True))} can.")
        if warm is not None and strategy.islands > 1:
            raise top.error("warm_start", "a search of several islands cannot start warm yet; set islands: 1.")
        top.finish()
        values = {k: _file_path(base, v) if k in FILE_KEYS else v for k, v in fixed.data.items()}
        return cls(source, dataset, fidelity, final, strategy, space, values, objective, fitness, stopper, warm)

    @property
    def folder(self) -> str:
        """The search file's folder: where its relative paths, and its objective's module, are looked up."""
        return source_folder(self.source)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a file would say it (paths absolute, every default written out): from_dict reads it
        back to an equal spec, so a search run's copy of it is enough to resume the search."""
        return {
            "dataset": dict(vars(self.dataset)),
            "fidelity": {**vars(self.fidelity), "final": dict(vars(self.final))},
            "strategy": self._strategy_dict(),
            "space": {g.name: _gene_dict(g) for g in self.space.genes},
            **({"fixed": dict(self.fixed)} if self.fixed else {}),
            **({"objective": self.objective, **fitness_dict(self.fitness)} if self.objective else {}),
            **({"stopper": self.stopper.to_dict()} if self.stopper.active else {}),
            **({"warm_start": self.warm_start.to_dict()} if self.warm_start is not None else {}),
        }

    def _strategy_dict(self) -> dict[str, Any]:
        s = self.strategy
        if is_user_method(s.method):  # the loop's keys and the class's own settings
            return {
                "method": s.method,
                "population": s.population,
                "generations": s.generations,
                "seed": s.seed,
                **s.settings,
            }
        strategy = {k: v for k, v in vars(s).items() if k not in ("crossover", "mutation", "settings", "soup")}
        strategy.update(fusion=s.fusion.to_dict(), final={"soup": s.soup})
        for key in OWN_SETTINGS:  # written only for the methods that take them
            if key not in CATALOGUE[s.method].settings:
                del strategy[key]
        if s.schedule == "generational":
            for key in ("schedule", "replacement", "replay"):
                del strategy[key]
        if s.islands == 1:
            for key in ("islands", "migration_interval", "migration_topology", "migrants"):
                del strategy[key]
        names = self.space.names
        strategy.update(crossover=dict(zip(names, s.crossover)), mutation=dict(zip(names, s.mutation)))
        return strategy

    def with_overrides(self, **flags: Any) -> "SearchSpec":
        """Command-line flags (None: the file's value) merged into the file's settings, which are then checked
        once, by the file's own parser: a problem with a value a flag set names the flag, and one the flags
        made of the file's other settings (a method that does not take them) names the flag and the key."""
        named, rule = split_method(flags.pop("method", None) or "")
        method, schedule = split_schedule(named)
        schedule = flags.pop("schedule", None) or schedule
        stopper = flags.pop("stopper", None) or rule
        settings = flags.pop("settings", None)  # a user's strategy passed from Python: its own settings
        variant = flags.pop("variant", None) or {}  # a comparison's cell: fusion.align=..., final.soup=...
        data = self.to_dict()
        given: dict[str, str] = {}  # the file's key -> the flag that set it
        strategy = data["strategy"]
        if method and method != self.strategy.method:
            strategy = _switched(strategy, method)
            given["strategy.method"] = "--method"
        if settings is not None:
            strategy = {k: v for k, v in strategy.items() if k in SHARED_KEYS} | dict(settings)
        for key in ("population", "generations", "seed"):
            if flags.get(key) is not None:
                strategy[key] = flags[key]
                given[f"strategy.{key}"] = f"--{key}"
        for key, value in variant.items():
            section, _, name = key.partition(".")
            strategy[section] = {**strategy.get(section, {}), name: value}
            given[f"strategy.{key}"] = given[f"strategy.{section}"] = "--methods"
        if schedule is not None:
            if schedule == "generational":  # what only an asynchronous schedule takes goes with it
                strategy = {k: v for k, v in strategy.items() if k not in ASYNC_KEYS}
            strategy["schedule"] = schedule
            given["strategy.schedule"] = "--schedule"
        for key in ("epochs", "image_size"):
            if flags.get(key) is not None:
                data["fidelity"][key] = flags[key]
                given[f"fidelity.{key}"] = "--" + key.replace("_", "-")
        if stopper is not None:
            data["stopper"] = {**self.stopper.to_dict(), "rule": stopper}  # the file's settings, even under none
            given["stopper.rule"] = given["stopper"] = "--stopper"
        if flags.get("warm_start") is not None:  # a search run's id
            data["warm_start"] = {"run": flags["warm_start"]}
            given["warm_start"] = given["warm_start.run"] = "--warm-start"
        data["strategy"] = strategy
        try:
            return SearchSpec.from_dict(data, self.source)
        except SpecError as e:
            raise _flagged(e, given) from None


SHARED_KEYS = ("method", "population", "generations", "seed", "schedule")  # every method's strategy keys
ASYNC_KEYS = ("replacement", "replay", "islands", "migration_interval", "migration_topology", "migrants")


def _switched(strategy: dict[str, Any], method: str) -> dict[str, Any]:
    """The file's strategy section for another method: the loop's keys stay, and of the others those the
    new method may take (a user's strategy's settings are its own; Gen-Soup's schedule is Gen-Soup's)."""
    if is_user_method(method) or is_user_method(strategy["method"]):
        return {k: v for k, v in strategy.items() if k in SHARED_KEYS} | {"method": method}
    taken = CATALOGUE[method].settings if method in CATALOGUE else ()  # an unknown name: the parser says so
    return {k: v for k, v in strategy.items() if k not in OWN_SETTINGS or k in taken} | {"method": method}


def _flagged(e: SpecError, given: Mapping[str, str]) -> SpecError:
    """The parser's error about the merged settings, named by the flag behind it: the flag that set the key;
    else, for a key of the file, the flag that changed what the key means (the method, the schedule)."""
    if e.source == COMMAND_LINE or not given:
        return e
    if e.key in given:
        return SpecError(COMMAND_LINE, given[e.key], e.expected)
    section = e.key.split(".")[0]
    causes = [f"{section}.{k}" for k in ("method", "schedule", "rule")] + ["strategy.method", *given]
    flag = next(given[k] for k in causes if k in given)
    return SpecError(COMMAND_LINE, flag, f"{e.expected} ({e.key} in {e.source})")


def _stoppable(method: str, rule: str) -> bool:
    """popplast's loop stops any of its stoppable methods; one out of the loop runs its own scheduler's rules
    (tune-asha: Ray Tune's ASHA, with the asha section's settings)."""
    entry = catalogue.method(method)
    return entry.stoppable or rule in entry.stopper_rules


def _not_stoppable(method: str) -> str:
    own = [
        f"{m.name} (its scheduler's own {', '.join(m.stopper_rules)})" for m in CATALOGUE.values() if m.stopper_rules
    ]
    return (
        f"{method} cannot stop individuals early; a stopper goes with "
        f"{', '.join(methods(stoppable=True) + tuple(own))}, and a strategy of your own that declares stoppable = True."
    )


def _check_stopper(
    stopper: StopperSpec, method: str, objective: str | None, fitness: FitnessSpec, top: Section
) -> None:
    if not stopper.active:
        return
    if not _stoppable(method, stopper.rule):
        raise top.error("stopper", _not_stoppable(method))
    if fitness.several and stopper.rule not in SEVERAL:
        raise top.error(
            "stopper",
            f"{stopper.rule} judges one metric; with several objectives or constraints the stopper is asha "
            "(MO-ASHA: a rung's reports ranked by non-dominated sorting) or hyperband (brackets of it).",
        )
    if fitness.several and stopper.metric is not None:
        raise top.error(
            "stopper.metric",
            "with several objectives the stopper judges the objectives (and the constraints' metrics), "
            "reported together at each step; a metric of its own goes with one objective.",
        )
    own = fitness.metric if objective else CNN_METRIC
    if objective is None and stopper.metric not in (None, *CNN_WATCHABLE):
        raise top.error(
            "stopper.metric",
            f"popplast's CNN trainer reports {', '.join(CNN_WATCHABLE)} every epoch; got {describe(stopper.metric)}.",
        )
    if stopper.metric not in (None, own) and stopper.mode is None:
        raise top.error("stopper.mode", f"say whether {stopper.metric} is to be maximized or minimized.")


def _gene_dict(gene: Any) -> dict[str, Any]:
    if gene.type == "categorical":
        return {"type": gene.type, "choices": list(gene.choices)}
    return {"type": gene.type, "low": gene.low, "high": gene.high, "log": gene.log}


def _file_path(base: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value  # the hyperparameter's own check says what is wrong
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def _dataset(s: Section, base: str) -> DatasetSpec:
    name = s.take("name", "str")
    path = s.take("path", "str", None)
    if name == "imagefolder":
        if path is None:
            raise s.error("path", "imagefolder needs the path of a folder with one sub-folder per class.")
        path = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
        if not os.path.isdir(path):
            raise s.error("path", f"expected an existing image folder, but {path} does not exist or is not a folder.")
    elif path is not None:
        raise s.error("path", f"only the imagefolder data set takes a path; '{name}' does not.")
    root = os.path.normpath(os.path.join(base, os.path.expanduser(s.take("root", "str", "./data"))))
    split_seed = s.take("split_seed", "int", 0)
    if split_seed < 0:
        raise s.error("split_seed", f"expected an integer >= 0, got {split_seed}.")
    spec = DatasetSpec(name, path, root, s.take("download", "bool", False), split_seed)
    s.finish()
    return spec


def _fidelity(s: Section, defaults: Fidelity) -> Fidelity:
    out = {}
    for key, minimum in (("image_size", 4), ("epochs", 1), ("batch_size", 1)):
        value = s.take(key, "int", getattr(defaults, key))
        if value < minimum:
            raise s.error(key, f"expected an integer >= {minimum}, got {value}.")
        if key == "image_size" and value > MAX_IMAGE_SIZE:
            raise s.error(key, IMAGE_SIZE_LIMIT.format(value=value))
        out[key] = value
    # an explicit null lifts an inherited cap (a final fidelity trains on the whole training split)
    inherited = None if s.is_null("max_train_samples") else defaults.max_train_samples
    cap = s.take("max_train_samples", "int", inherited)
    if cap is not None and cap < 2:
        raise s.error("max_train_samples", f"expected an integer >= 2 or null, got {cap}.")
    scheduler = s.take("scheduler", "str", defaults.scheduler)
    if scheduler not in SCHEDULERS:
        raise s.error("scheduler", f"expected one of {', '.join(SCHEDULERS)}, got {describe(scheduler)}.")
    return Fidelity(max_train_samples=cap, scheduler=scheduler, **out)
