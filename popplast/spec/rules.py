"""The file `popplast evolve-rules` reads: task, plastic network, strategy and evaluation settings."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.fields import Section, describe, load_yaml
from popplast.strategies.catalogue import CATALOGUE

DATASETS = ("classification", "digits")
DIGITS_SAMPLES = 1797  # scikit-learn's load_digits
RULE_METHODS = ("elitist", "openai", "snes", "gradient")
# what a file that sets no sigma or learning_rate gets, per method: the paper's (1+λ) ES mutates with σ 0.01,
# OpenAI-ES takes Adam steps of 0.05 on its mean, the gradient baseline uses the paper's Adam rate 0.01
DEFAULT_SIGMA = {"elitist": 0.01, "openai": 0.1, "snes": 0.1, "gradient": 0.1}
DEFAULT_LEARNING_RATE = {"elitist": 0.05, "openai": 0.05, "snes": 0.05, "gradient": 0.01}


@dataclass(frozen=True)
class TaskSpec:
    """make_classification (4 classes, class_sep 10 as the paper's hypercube side 20) or scikit-learn digits."""

    dataset: str = "classification"
    samples: int = 5000
    features: int = 10
    classes: int = 4
    class_sep: float = 10.0
    test_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class NetworkSpec:
    hidden: int = 20
    cap: int = 10
    rounds: int = 3
    edge_probability: float = 0.5
    eta: float = 0.01
    update: str = "all"  # all | misclassified (the base code's behaviour)
    seed: int = 0


@dataclass(frozen=True)
class RuleStrategySpec:
    method: str = "openai"
    population: int = 64
    generations: int = 300
    sigma: float | None = None  # None: the method's (DEFAULT_SIGMA)
    learning_rate: float | None = None  # None: the method's (DEFAULT_LEARNING_RATE)
    batch_size: int = 100
    seed: int = 0


@dataclass(frozen=True)
class GeneralisationSpec:
    """A fresh data set (task seed + `seed_offset`), shown one sample at a time for `passes` passes, rules frozen."""

    passes: int = 50
    samples: int = 1000
    seed_offset: int = 1000


@dataclass(frozen=True)
class RulesSpec:
    source: str
    task: TaskSpec
    network: NetworkSpec
    strategy: RuleStrategySpec
    generalisation: GeneralisationSpec

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "RulesSpec":
        source = os.fspath(path)
        data = load_yaml(source)
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "RulesSpec":
        top = Section(data, source, "")
        spec = cls(
            source,
            _read(top.section("task", {}), TaskSpec),
            _read(top.section("network", {}), NetworkSpec),
            _read(top.section("strategy", {}), RuleStrategySpec),
            _read(top.section("generalisation", {}), GeneralisationSpec),
        )
        top.finish()
        spec.check()
        return spec

    def train_samples(self) -> int:
        """The training split's size, as training/rule_tasks.load_task cuts it."""
        total = DIGITS_SAMPLES if self.task.dataset == "digits" else self.task.samples
        return int(round(total * (1 - self.task.test_fraction)))

    def check(self, source: str | None = None) -> None:
        src = source or self.source
        problems = [
            ("task.dataset", self.task.dataset in DATASETS, f"one of {', '.join(DATASETS)}", self.task.dataset),
            ("task.classes", self.task.classes >= 2, "an integer >= 2", self.task.classes),
            ("task.test_fraction", 0 < self.task.test_fraction < 1, "a number in (0, 1)", self.task.test_fraction),
            (
                "network.cap",
                1 <= self.network.cap <= self.network.hidden,
                f"an integer in 1..hidden ({self.network.hidden})",
                self.network.cap,
            ),
            ("network.rounds", 1 <= self.network.rounds <= 6, "an integer in 1..6", self.network.rounds),
            (
                "network.edge_probability",
                0 < self.network.edge_probability <= 1,
                "a number in (0, 1]",
                self.network.edge_probability,
            ),
            (
                "network.update",
                self.network.update in ("all", "misclassified"),
                "all or misclassified",
                self.network.update,
            ),
            (
                "strategy.method",
                self.strategy.method in RULE_METHODS,
                f"one of {', '.join(RULE_METHODS)}",
                self.strategy.method,
            ),
            ("strategy.population", self.strategy.population >= 2, "an integer >= 2", self.strategy.population),
            ("strategy.generations", self.strategy.generations >= 1, "an integer >= 1", self.strategy.generations),
            (
                "strategy.sigma",
                self.strategy.sigma is None or self.strategy.sigma > 0,
                "a number > 0",
                self.strategy.sigma,
            ),
            (
                "strategy.learning_rate",
                self.strategy.learning_rate is None or self.strategy.learning_rate > 0,
                "a number > 0",
                self.strategy.learning_rate,
            ),
            ("strategy.batch_size", self.strategy.batch_size >= 1, "an integer >= 1", self.strategy.batch_size),
            (
                "strategy.batch_size",
                self.strategy.batch_size <= self.train_samples(),
                f"at most the task's {self.train_samples()} training samples (a batch is drawn without repeats)",
                self.strategy.batch_size,
            ),
            ("generalisation.passes", self.generalisation.passes >= 1, "an integer >= 1", self.generalisation.passes),
        ]
        if self.strategy.method in CATALOGUE and CATALOGUE[self.strategy.method].antithetic:
            even = self.strategy.population % 2 == 0
            problems.append(
                (
                    "strategy.population",
                    even,
                    "an even number for OpenAI-ES's antithetic pairs",
                    self.strategy.population,
                )
            )
        for key, ok, expected, value in problems:
            if not ok:
                if src == COMMAND_LINE:
                    key = "--" + key.split(".")[-1].replace("_", "-")
                raise SpecError(src, key, f"expected {expected}, got {describe(value)}.")

    def with_overrides(self, **flags: Any) -> "RulesSpec":
        """Apply command-line overrides (None: keep the file's value), then give the sigma and learning rate
        that neither the file nor a flag set the default of the method that runs (DEFAULT_SIGMA,
        DEFAULT_LEARNING_RATE), so `--method elitist` runs the paper's σ 0.01 unless σ is asked for."""
        changes = {k: v for k, v in flags.items() if v is not None}
        strategy = dataclasses.replace(self.strategy, **changes)
        spec = dataclasses.replace(self, strategy=strategy)
        spec.check(COMMAND_LINE if changes else None)
        method = strategy.method
        return dataclasses.replace(
            spec,
            strategy=dataclasses.replace(
                strategy,
                sigma=DEFAULT_SIGMA[method] if strategy.sigma is None else strategy.sigma,
                learning_rate=DEFAULT_LEARNING_RATE[method]
                if strategy.learning_rate is None
                else strategy.learning_rate,
            ),
        )


def _read(section: Section, cls: type) -> Any:
    values = {}
    for f in dataclasses.fields(cls):
        default = f.default
        kind = "number" if default is None else {int: "int", float: "number", str: "str"}[type(default)]
        values[f.name] = section.take(f.name, kind, default)
    section.finish()
    return cls(**values)
