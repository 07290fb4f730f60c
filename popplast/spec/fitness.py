"""An objective's fitness section: which metric (or metrics, for several objectives) its result is ranked by,
in which direction, and the constraints over its metrics (README "Several objectives", ALGORITHMS.md §11)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from popplast.core.names import check_name
from popplast.errors import SpecError
from popplast.spec.fields import Section, describe


@dataclass(frozen=True)
class FitnessSpec:
    """Which metric an objective's result is ranked by, and in which direction (popplast maximises fitness:
    a minimised metric's fitness is its negative); `test`: the held-out metric it also returns, which
    comparison reports put beside the fitness (None: it names none, and reports show no test column)."""

    metric: str = "fitness"
    mode: str = "maximize"
    test: str | None = None
    more: tuple[tuple[str, str], ...] = ()  # the second and later objectives, (metric, mode), of a list
    constraints: tuple["Constraint", ...] = ()
    # the hypervolume's reference point, one value per objective in its metric's units (None: derived from
    # the first generation's results, execution/front.py)
    reference: tuple[float, ...] | None = None

    @property
    def objectives(self) -> tuple[tuple[str, str], ...]:
        """Every objective, (metric, mode), the first one `metric`."""
        return ((self.metric, self.mode), *self.more)

    @property
    def several(self) -> bool:
        """Ranked by Pareto fronts (ALGORITHMS.md §11): more than one objective, or any constraint."""
        return bool(self.more or self.constraints)

    def vector(self, metrics: Mapping[str, float]) -> tuple[float, ...]:
        """What a strategy is told for a multi-objective result: each objective maximised (a minimised one
        negated), then the total constraint violation (core/pareto.py)."""
        signed = [metrics[m] if mode == "maximize" else -metrics[m] for m, mode in self.objectives]
        return (*signed, sum(c.violation(metrics[c.metric]) for c in self.constraints))


@dataclass(frozen=True)
class Constraint:
    """`metric <= bound` or `metric >= bound` over an objective's returned metrics."""

    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: Any) -> "Constraint | None":
        """'METRIC <= NUMBER' or 'METRIC >= NUMBER' (as the file writes it, and as str() gives it back);
        None for anything else."""
        match = re.fullmatch(r"\s*([A-Za-z_][\w./-]*)\s*(<=|>=)\s*(\S+)\s*", text) if isinstance(text, str) else None
        bound = _float(match.group(3)) if match else None
        if match is None or bound is None or not math.isfinite(bound):
            return None
        return cls(match.group(1), match.group(2), bound)

    def violation(self, value: float) -> float:
        return max(0.0, value - self.bound) if self.op == "<=" else max(0.0, self.bound - value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound!r}"


def fitness_from(top: Section, objective: str | None) -> FitnessSpec:
    """`fitness:` a mapping (one objective) or a list of them; `constraints:` a list of 'METRIC <= NUMBER'."""
    raw = top.data.get("fitness")
    constraints = _constraints(top, objective)
    if not isinstance(raw, list):
        section = top.section("fitness", {})
        reference = section.take("reference", "number", None)
        spec = replace(_fitness(section, objective), constraints=constraints)
        if reference is not None and not constraints:
            raise section.error(
                "reference", "a hypervolume's reference point goes with several objectives or constraints."
            )
        return replace(spec, reference=None if reference is None else (reference,))
    top.take("fitness", "any")
    if objective is None:
        raise top.error(
            "fitness",
            "popplast's CNN trainer ranks by validation MCC alone; several objectives "
            "go with an objective of your own (objective: module:function).",
        )
    if not raw:
        raise top.error("fitness", "expected a list of {metric, mode} objectives, got an empty list.")
    sections = [Section(item, top.source, f"fitness[{i}]") for i, item in enumerate(raw)]
    references = [section.take("reference", "number", None) for section in sections]
    specs = [_fitness(section, objective) for section in sections]
    metrics = [s.metric for s in specs]
    for i, metric in enumerate(metrics):
        if metric in metrics[:i]:
            raise SpecError(top.source, f"fitness[{i}].metric", f"{metric!r} is listed twice.")
    for i, s in enumerate(specs[1:], 1):
        if s.test is not None:
            raise SpecError(top.source, f"fitness[{i}].test", "only the first objective names a test metric.")
    given = [r is not None for r in references]
    if any(given) and not all(given):
        missing = given.index(False)
        raise SpecError(
            top.source, f"fitness[{missing}].reference", "a reference point has a value for every objective or none."
        )
    if len(specs) == 1 and not constraints and given[0]:
        raise SpecError(
            top.source,
            "fitness[0].reference",
            "a hypervolume's reference point goes with several objectives or constraints.",
        )
    return replace(
        specs[0],
        more=tuple((s.metric, s.mode) for s in specs[1:]),
        constraints=constraints,
        reference=tuple(references) if all(given) else None,
    )


def _constraints(top: Section, objective: str | None) -> tuple[Constraint, ...]:
    raw = top.take("constraints", "any", None)
    if raw is None:
        return ()
    if objective is None:
        raise top.error(
            "constraints",
            "constraints are over an objective's returned metrics; they go with an "
            "objective of your own (objective: module:function).",
        )
    if not isinstance(raw, list):
        raise top.error("constraints", f"expected a list such as ['params <= 50000'], got {describe(raw)}.")
    out = []
    for i, text in enumerate(raw):
        constraint = Constraint.parse(text)
        if constraint is None:
            raise SpecError(
                top.source,
                f"constraints[{i}]",
                f"expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER', got {describe(text)}.",
            )
        out.append(constraint)
    return tuple(out)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _fitness(s: Section, objective: str | None) -> FitnessSpec:
    if s.data and objective is None:
        raise s.error(
            "metric",
            "popplast's CNN trainer ranks by validation MCC; a fitness section goes with an "
            "objective (objective: module:function).",
        )
    spec = FitnessSpec(
        s.take("metric", "str", "fitness"), s.take("mode", "str", "maximize"), s.take("test", "str", None)
    )
    if spec.mode not in ("maximize", "minimize"):
        raise s.error("mode", f"expected maximize or minimize, got {describe(spec.mode)}.")
    problem = check_name(spec.metric, "best_")  # every individual would fail returning it (objectives/function.py)
    if problem:
        raise s.error("metric", f"{problem}.")
    s.finish()
    return spec


def fitness_dict(fitness: FitnessSpec) -> dict[str, Any]:
    """The fitness section (and constraints) as a file says them; `test` only where it names a metric (files
    without it read the same)."""
    first = {k: getattr(fitness, k) for k in ("metric", "mode", "test") if k != "test" or fitness.test is not None}
    items: list[dict[str, Any]] = [first, *({"metric": m, "mode": d} for m, d in fitness.more)]
    for item, value in zip(items, fitness.reference or ()):
        item["reference"] = value  # the mapping form's too: `first` is items[0]
    out: dict[str, Any] = {"fitness": items if fitness.more else first}
    if fitness.constraints:
        out["constraints"] = [str(c) for c in fitness.constraints]
    return out
