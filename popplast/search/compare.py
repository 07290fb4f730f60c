"""`popplast.compare`: every method, every seed, the same space, split, evaluator, workers and budget.

Cells (method, seed) run one after another on one Ray instance; each is an ordinary search nested under
the comparison's MLflow run, so an interrupted comparison resumes by skipping the cells MLflow holds as
finished (an Optuna cell that was cut off continues its study). The report is then built from MLflow alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

from popplast.console import say
from popplast.defaults import COMPARE_SEEDS, CPUS_PER_WORKER, EXECUTOR, GPUS_PER_WORKER, OPTUNA_STORAGE, TRACKING_URI
from popplast.errors import COMMAND_LINE, SearchFailed, SpecError
from popplast.search.run import run
from popplast.search.session import check_options
from popplast.spec.search import (
    METHODS,
    STOPPING_BASELINES,
    SearchSpec,
    method_label,
    split_method,
    split_schedule,
)
from popplast.spec.strategy import split_variant, variant_label, variant_name, variant_params
from popplast.strategies import catalogue
from popplast.strategies.budget import default_budget, evaluations_for_epochs, with_budget
from popplast.strategies.method import SAMPLER
from popplast.strategies.stoppers import STOPPERS

DEFAULT_METHODS = ("ga", "tpe", "random")


@dataclass
class ComparisonResult:
    run_id: str
    tracking_uri: str
    report_files: list[str]
    cells_run: int
    cells_skipped: int
    failed_cells: list[str]
    wall_seconds: float

    def summary(self) -> str:
        lines = [
            f"Comparison run {self.run_id}: {self.cells_run} searches run, {self.cells_skipped} already done"
            f" ({self.wall_seconds:.0f} s)"
        ]
        if self.failed_cells:
            lines.append("Failed (every evaluation failed; not in the report): " + ", ".join(self.failed_cells))
        lines += [f"Report: {path}" for path in self.report_files]
        lines.append(f"Rebuild it from MLflow: popplast report {self.run_id} --tracking-uri {self.tracking_uri}")
        return "\n".join(lines)


def compare(
    space: str | os.PathLike | SearchSpec,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    budget_evals: int | None = None,
    budget_epochs: int | None = None,
    seeds: int = COMPARE_SEEDS,
    workers: int | None = None,
    cpus_per_worker: float = CPUS_PER_WORKER,
    gpus_per_worker: float = GPUS_PER_WORKER,
    executor: str = EXECUTOR,
    address: str | None = None,
    tracking_uri: str = TRACKING_URI,
    experiment: str | None = None,
    optuna_storage: str = OPTUNA_STORAGE,
    simulate: Any = None,
    out: str = ".",
    resume: str | None = None,
    progress: bool = True,
    eval_timeout: float | None = None,
    warm_start: str | None = None,
) -> ComparisonResult:
    """Run every method `seeds` times with paired seeds and write the report; see `popplast compare --help`."""
    from popplast.reports.comparison import ComparisonError, ComparisonTracker
    from popplast.reports.report import build_report

    spec = space if isinstance(space, SearchSpec) else SearchSpec.from_yaml(space)
    methods = _check_methods(methods)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise SpecError(COMMAND_LINE, "--seeds", f"expected an integer >= 1, got {seeds!r}.")
    if budget_epochs is not None and budget_evals is not None:
        raise SpecError(COMMAND_LINE, "--budget-epochs", "give a budget in evaluations or in epochs, not both.")
    budget = budget_evals if budget_evals is not None or budget_epochs else default_budget(spec)
    entries: dict[str, str] = {}  # each cell's label (its method with the fusion settings it runs) → its entry
    for method in methods:  # every cell's settings are checked before the first one trains
        try:
            cell_spec = _variant(spec, method).with_overrides(
                method=_with_rule(method)[0],
                stopper=_with_rule(method)[1],
                schedule=_schedule(method),
                warm_start=warm_start,
            )
        except SpecError as e:  # a cell's method is this command's --methods
            if e.source == COMMAND_LINE and e.key == "--method":
                raise SpecError(COMMAND_LINE, "--methods", f"{method}: {e.expected}") from None
            raise
        check_options(executor, workers, cpus_per_worker, gpus_per_worker, method, eval_timeout)
        with_budget(cell_spec, budget if budget_epochs is None else evaluations_for_epochs(cell_spec, budget_epochs))
        catalogue.check_spec(cell_spec)  # what the method itself needs of the file
        label = variant_label(split_variant(method)[0], variant_params(cell_spec.strategy))
        if label in entries:
            raise SpecError(
                COMMAND_LINE, "--methods", f"{entries[label]} and {method} run the same searches ({label})."
            )
        entries[label] = method
    methods = tuple(entries)  # as MLflow's search runs will name them (reports/comparison.py)
    seed_values = [spec.strategy.seed + i for i in range(seeds)]
    experiment = experiment or os.path.splitext(os.path.basename(spec.source))[0]
    tracker = ComparisonTracker(tracking_uri, experiment)
    start = time.perf_counter()
    with _ray(executor, address):
        workers = _workers(executor, workers, cpus_per_worker, spec.strategy.population)
        settings = {
            "space_file": spec.source,
            "methods": list(methods),
            "seeds": seeds,
            "seed_values": seed_values,
            "budget_evals": budget,
            **({"budget_epochs": budget_epochs} if budget_epochs is not None else {}),
            "workers": workers,
            "executor": executor,
        }
        try:
            if resume:
                tracker.reopen(resume, settings)
            else:
                tracker.start(f"{experiment}-compare", settings)
        except ComparisonError as e:
            raise SpecError(COMMAND_LINE, "--resume", str(e)) from None
        done = tracker.finished_cells()
        cells = [(m, i, sd) for i, sd in enumerate(seed_values) for m in methods]
        failed, ran = [], 0
        try:
            for k, (method, i, seed) in enumerate(cells, start=1):
                if (method, seed) in done:
                    continue
                say(progress, f"[popplast] comparison {tracker.run_id}: search {k}/{len(cells)}, {method}, seed {seed}")
                cell_spec = dataclasses.replace(
                    _variant(spec, entries[method]),
                    dataset=dataclasses.replace(spec.dataset, split_seed=spec.dataset.split_seed + i),
                )
                study = f"{tracker.run_id[:12]}-{method}-seed{seed}"
                try:
                    run(
                        cell_spec,
                        method=_with_rule(method)[0],
                        stopper=_with_rule(method)[1],  # a method named without a rule stops nothing
                        schedule=_schedule(method),  # nor one named without -async waits for nobody
                        seed=seed,
                        budget_evals=budget,
                        budget_epochs=budget_epochs,
                        workers=workers,
                        cpus_per_worker=cpus_per_worker,
                        gpus_per_worker=gpus_per_worker,
                        executor=executor,
                        simulate=simulate,
                        eval_timeout=eval_timeout,
                        warm_start=warm_start,
                        tracking_uri=tracking_uri,
                        experiment=experiment,
                        optuna_storage=optuna_storage,
                        study_name=study,
                        resume=_study_to_resume(method, optuna_storage, study),
                        progress=progress,
                        parent_run_id=tracker.run_id,
                    )
                except SearchFailed:
                    failed.append(f"{method}/seed {seed}")
                ran += 1
        except BaseException:
            tracker.end("FAILED")
            say(True, f"[popplast] comparison interrupted; continue it with --resume {tracker.run_id}")
            raise
    files = build_report(tracking_uri, tracker.run_id, out, log=True)
    tracker.end()
    return ComparisonResult(
        tracker.run_id, tracking_uri, files, ran, len(cells) - ran, failed, time.perf_counter() - start
    )


def report(comparison_run_id: str, *, tracking_uri: str = TRACKING_URI, out: str = ".", log: bool = False) -> list[str]:
    """Rebuild a comparison's report.md and curves from MLflow alone; returns the files written."""
    from popplast.reports.report import build_report

    return build_report(tracking_uri, comparison_run_id, out, log=log)


def _check_methods(methods: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = _entries(methods)
    variants = {}
    for m in methods:
        try:
            variants[m] = split_variant(m)
        except ValueError as e:
            raise SpecError(COMMAND_LINE, "--methods", f"{e}.") from None
    bases = [variants[m][0] for m in methods]
    unknown = [
        m
        for m in bases
        if not _known(split_schedule(split_method(m)[0])[0]) or split_method(m)[1] not in (None, *STOPPERS)
    ]
    if unknown or not methods:
        raise SpecError(
            COMMAND_LINE,
            "--methods",
            f"expected a comma-separated list of {', '.join(METHODS + tuple(STOPPING_BASELINES))} or strategies "
            f"of your own (module:Class), each optionally with -async (ga, gensoup, pbt), "
            f"+{'|'.join(STOPPERS[1:])} and [fusion.KEY=VALUE;...] (gensoup; final.soup=greedy: gensoup, pbt); got "
            f"{','.join(methods) or 'nothing'}.",
        )
    # tpe+hyperband is tpe-hyperband; a variant's settings in one order (a cell's label, what MLflow will
    # name it by, is made from the spec it runs: compare())
    methods = [variant_name(method_label(*_with_rule(variants[m][0])), variants[m][1]) for m in methods]
    if len(set(methods)) != len(methods):
        raise SpecError(COMMAND_LINE, "--methods", f"expected each method once, got {','.join(methods)}.")
    return tuple(methods)


def _known(method: str) -> bool:
    """A built-in method, or a name a user's strategy class could have (imported when its cell is checked)."""
    return method in METHODS or catalogue.is_user_method(method)


def _schedule(name: str) -> str:
    return split_schedule(split_method(split_variant(name)[0])[0])[1] or "generational"


def _entries(methods: str) -> list[str]:
    """The comma-separated entries of --methods; a variant's brackets may hold commas of their own."""
    entries, depth, current = [], 0, ""
    for ch in methods:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += ch
    return [e.strip() for e in [*entries, current] if e.strip()]


def _variant(spec: SearchSpec, label: str) -> SearchSpec:
    """The file's spec with a cell's variant settings (gensoup[fusion.align=weight_matching]) applied."""
    name, settings = split_variant(label)
    if not settings:
        return spec
    return spec.with_overrides(method=_with_rule(name)[0], schedule=_schedule(name), variant=settings)


def _with_rule(name: str) -> tuple[str, str]:
    method, rule = split_method(split_variant(name)[0])
    return method, rule or "none"


def _study_to_resume(method: str, storage: str, study: str) -> str | None:
    """The search run of this cell's study when an earlier, interrupted comparison started it."""
    if catalogue.method(split_schedule(split_method(split_variant(method)[0])[0])[0]).family != SAMPLER:
        return None
    from popplast.integrations.optuna_study import study_search_run

    return study_search_run(storage, study)


@contextlib.contextmanager
def _ray(executor: str, address: str | None) -> Any:
    """One Ray instance for every cell (starting one per search would cost seconds each)."""
    if executor != "ray":
        yield
        return
    from popplast.execution.ray_session import ray_session

    with ray_session(address):
        yield


def _workers(executor: str, workers: int | None, cpus: float, population: int) -> int:
    """The same number of workers for every method: what the cluster's CPUs allow, at most the population
    (a simulated cluster: as many as asked for, else the population)."""
    if executor == "simulated":
        return workers or population
    if executor != "ray":
        return 1
    if workers is not None:
        return workers
    from popplast.execution.ray_session import default_workers

    return default_workers(population, cpus)
