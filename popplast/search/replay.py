"""`popplast.replay`: the Python API behind `popplast replay`. The schedule an individual was trained with,
retrained from scratch without the search.

The schedule is the individual's pedigree (reports/pedigree.py), its line of descent through the parent it
took most from. For a strategy whose children start from their parents' trained states (Gen-Soup, PBT) each
step is trained from the step before's state, with the step's configuration, seed and fidelity (epochs and
image size as the search trained that generation); what other parents added by fusion is left out, so the
replay is the line's schedule, not a copy of the search's weights. For the other strategies nothing flows
along the line: the replay trains the individual's own configuration from scratch with its seed. Steps run
one after another in this process; the result is logged beside the search (tracking/replay_run.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from popplast.console import say
from popplast.defaults import REPLAY_CPUS, TRACKING_URI
from popplast.errors import COMMAND_LINE, SpecError


@dataclass
class ReplayResult:
    individual: str
    steps: list[str]  # the individuals whose configurations were trained, in order
    fitness: float | None  # of the last step
    original_fitness: float | None  # what the search measured for the individual
    metrics: dict[str, float] = field(default_factory=dict)
    replay_run_id: str = ""
    search_run_id: str = ""
    wall_seconds: float = 0.0

    def summary(self) -> str:
        fitness = "failed" if self.fitness is None else f"{self.fitness:.4f}"
        original = "failed" if self.original_fitness is None else f"{self.original_fitness:.4f}"
        return "\n".join(
            [
                f"Replayed the schedule of {self.individual}: {len(self.steps)} steps ({' → '.join(self.steps)}) "
                f"in {self.wall_seconds:.1f} s",
                f"  fitness {fitness} (in the search: {original})",
                f"MLflow: replay run {self.replay_run_id}, under the search run {self.search_run_id}",
            ]
        )


def replay(
    search_run_id: str,
    *,
    individual: str | None = None,
    tracking_uri: str = TRACKING_URI,
    cpus: int = REPLAY_CPUS,
    progress: bool = True,
) -> ReplayResult:
    """Retrain `individual`'s schedule (default: the search's best). Raises SpecError for an unknown run or
    individual, or a Tune search (whose trials popplast cannot retrain as they ran)."""
    from popplast.core.individual import Individual
    from popplast.execution.work import configuration, generation_fidelity, trained_config
    from popplast.objectives.select import make_evaluator, objective_for
    from popplast.reports.lineage import LineageError, lineage_of
    from popplast.reports.pedigree import pedigree
    from popplast.reports.search_record import read_search
    from popplast.spec.search import SearchSpec
    from popplast.strategies import catalogue
    from popplast.strategies.catalogue import CATALOGUE
    from popplast.tracking.replay_run import ReplayTracker

    record = read_search(tracking_uri, search_run_id)
    if record.method in CATALOGUE and not CATALOGUE[record.method].in_loop:
        raise SpecError(
            COMMAND_LINE, "SEARCH_RUN_ID", f"the search run {search_run_id} ran {record.method} on Ray Tune."
        )
    spec, fn = objective_for(SearchSpec.from_dict(record.spec, record.source), None)
    try:
        lineage = lineage_of(tracking_uri, search_run_id)
    except LineageError as e:
        raise SpecError(COMMAND_LINE, "SEARCH_RUN_ID", f"{e}.") from None
    if individual is not None and individual not in lineage.nodes:
        raise SpecError(COMMAND_LINE, "--individual", f"{individual!r} is not an individual of {search_run_id}.")
    steps = pedigree(lineage, individual)
    inherits = catalogue.method(spec.strategy.method).inherits  # a user's strategy's too
    if not inherits:
        steps = steps[-1:]  # nothing flows along the line: the individual's own configuration is its schedule
    focus = steps[-1]["individual"]
    tracker = ReplayTracker(tracking_uri, lineage.experiment_id, search_run_id, focus, lineage.nodes[focus].run_id)
    evaluator = make_evaluator(spec, cpus, fn)
    start, state, previous, result = time.perf_counter(), None, None, None
    for number, step in enumerate(steps):
        node = lineage.nodes[step["individual"]]
        genome = tuple(float(node.params[f"gene.{name}"]) for name in spec.space.names)
        made = Individual(
            node.individual_id,
            genome,
            node.generation,
            (previous,) if previous else (),
            "inherit" if previous else "init",
            (1.0,) if previous else (),
            node.seed,
        )
        budget = generation_fidelity(spec, node.generation) if inherits else None
        parents: Any = ((state, 1.0),) if state is not None else ()
        config = configuration(spec, made)
        result = evaluator.evaluate(made, config, parents, budget, return_weights=inherits)
        trained = trained_config(spec, config, budget)
        tracker.step_finished(number, made, trained, result)
        fitness = "failed" if not result.ok else f"{result.fitness:.4f}"
        say(progress, f"[popplast] replay step {number + 1}/{len(steps)}: {made.id}, fitness {fitness}")
        if not result.ok:
            break
        state, previous = result.weights, made.id
    assert result is not None
    original = lineage.nodes[focus].fitness
    metrics = {**result.metrics, **({"fitness": result.fitness} if result.ok else {})}
    if original is not None:
        metrics["original_fitness"] = original
    tracker.end(metrics, result.ok)
    return ReplayResult(
        focus,
        [s["individual"] for s in steps],
        float(result.fitness) if result.ok else None,
        original,
        {k: float(v) for k, v in result.metrics.items()},
        tracker.run_id,
        search_run_id,
        time.perf_counter() - start,
    )
