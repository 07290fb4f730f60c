"""The search file's `stopper:` section (or `--stopper RULE`), and the rule it builds (strategies/stoppers.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from popplast.errors import COMMAND_LINE, SpecError
from popplast.spec.fields import Section, describe
from popplast.strategies.stoppers import ASHA, STOPPERS, Hyperband, Median, Stopper, default_grace

CNN_METRIC = "val_mcc"  # the CNN trainer's fitness, which it reports every epoch when a stopper watches
CNN_WATCHABLE = ("val_mcc", "val_accuracy", "val_f1", "train_loss")


@dataclass(frozen=True)
class StopperSpec:
    """`rule`: none, median, asha or hyperband. `max_steps`: the step an individual finishes at (default: the
    fidelity's epochs). `grace_steps`: the median rule's warm-up, steps with no decision (default: a tenth of
    max_steps, at least 1). `metric`: the reported metric it watches (default: the fitness metric)."""

    rule: str = "none"
    min_steps: int = 1
    reduction_factor: int = 3
    max_steps: int | None = None
    grace_steps: int | None = None
    min_samples: int = 3
    metric: str | None = None
    mode: str | None = None  # of a metric other than the fitness: maximize or minimize

    @property
    def active(self) -> bool:
        return self.rule != "none"

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def stopper_from(top: Section) -> StopperSpec:
    """The file's section: a mapping, or just the rule's name (`stopper: asha`); none when absent."""
    raw = top.data.get("stopper")
    if isinstance(raw, str):
        spec = StopperSpec(rule=top.take("stopper", "str"))
        check(spec, lambda key, text: top.error("stopper", text))
        return spec
    s = top.section("stopper", {})
    spec = StopperSpec(
        rule=s.take("rule", "str") if s.data else "none",
        min_steps=s.take("min_steps", "int", 1),
        reduction_factor=s.take("reduction_factor", "int", 3),
        max_steps=s.take("max_steps", "int", None),
        grace_steps=s.take("grace_steps", "int", None),
        min_samples=s.take("min_samples", "int", 3),
        metric=s.take("metric", "str", None),
        mode=s.take("mode", "str", None),
    )
    check(spec, s.error)
    s.finish()
    return spec


def check(spec: StopperSpec, error: Any) -> None:
    if spec.rule not in STOPPERS:
        raise error("rule", f"expected one of {', '.join(STOPPERS)}, got {describe(spec.rule)}.")
    for key, minimum in (("min_steps", 1), ("reduction_factor", 2), ("grace_steps", 0), ("min_samples", 1)):
        if getattr(spec, key) is not None and getattr(spec, key) < minimum:
            raise error(key, f"expected an integer >= {minimum}, got {getattr(spec, key)}.")
    if spec.mode is not None and spec.mode not in ("maximize", "minimize"):
        raise error("mode", f"expected maximize or minimize, got {describe(spec.mode)}.")
    if spec.max_steps is not None and spec.max_steps < spec.min_steps:
        raise error("max_steps", f"expected an integer >= min_steps ({spec.min_steps}), got {spec.max_steps}.")


def with_rule(spec: StopperSpec, rule: str | None) -> StopperSpec:
    """`--stopper RULE` over the file's section (its other settings stay)."""
    if rule is None:
        return spec
    if rule not in STOPPERS:
        raise SpecError(COMMAND_LINE, "--stopper", f"expected one of {', '.join(STOPPERS)}, got {describe(rule)}.")
    return dataclasses.replace(spec, rule=rule)


def build_stopper(spec: StopperSpec, max_steps: int) -> Stopper | None:
    """The rule, or None for `none`; `max_steps` when the section leaves it to the fidelity."""
    steps = spec.max_steps or max_steps
    if spec.rule == "asha":
        return ASHA(spec.min_steps, spec.reduction_factor, steps)
    if spec.rule == "hyperband":
        return Hyperband(spec.min_steps, spec.reduction_factor, steps)
    if spec.rule == "median":
        return Median(grace_steps(spec, steps), spec.min_samples, steps)
    return None


def grace_steps(spec: StopperSpec, max_steps: int) -> int:
    """The median rule's warm-up: the section's, else the default for the budget's steps."""
    return spec.grace_steps if spec.grace_steps is not None else default_grace(spec.max_steps or max_steps)
