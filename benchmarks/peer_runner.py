"""One peer framework's optimiser on one suite task, through that framework's own API, inside the peer's own
virtual environment (benchmarks/peers.py makes them). Imports only numpy, the peer's package and popplast's
suite table reader (popplast/core/suite_table.py, numpy only; the repository root is on PYTHONPATH).

    PYTHONPATH=. VENV/bin/python benchmarks/peer_runner.py '{"peer": ..., "table": ..., "seed": 0, "evaluations": 100}'

Prints one JSON object: the grid rows evaluated, in the order the peer asked for them; the fitness each
was told (the task's metric, negated when it is minimised: popplast's convention, so one scorer reads both);
and the peer's settings where they are not its defaults (OPTIONS below).
An evaluation's noise is the recorded seed it draws, as popplast's evaluations draw theirs: from a generator
seeded by the peer's seed, one draw per evaluation.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any, Callable

import numpy as np

from popplast.core.suite_table import SuiteTable


class Task:
    """The objective every peer calls: a configuration's recorded value for a drawn seed, recorded in order."""

    def __init__(self, table: SuiteTable, seed: int) -> None:
        self.table, self.rng = table, np.random.default_rng(seed)
        self.sign = 1.0 if table.mode == "maximize" else -1.0
        self.rows: list[int] = []
        self.fitness: list[float] = []

    def __call__(self, config: dict[str, Any]) -> float:
        """The fitness (maximised) of `config`, whose values may come back as text or numpy scalars."""
        typed = {name: _choice(choices, config[name]) for name, choices in self.table.genes}
        row = self.table.index(typed)
        draw = self.table.draw(typed, int(self.rng.integers(2**62)))
        fitness = self.sign * float(self.table.values_of(self.table.metric)[row, draw, -1])
        self.rows.append(row)
        self.fitness.append(fitness)
        return fitness


def _choice(choices: tuple[Any, ...], value: Any) -> Any:
    for choice in choices:
        if choice == value or str(choice) == str(value):
            return choice
    raise KeyError(f"{value!r} is not one of {choices}")


def nevergrad_ngopt(task: Task, seed: int, n: int) -> None:
    import nevergrad as ng

    parametrization = ng.p.Dict(**{name: ng.p.Choice(list(choices)) for name, choices in task.table.genes})
    parametrization.random_state = np.random.RandomState(seed)
    optimizer = ng.optimizers.NGOpt(parametrization=parametrization, budget=n, num_workers=1)
    for _ in range(n):
        candidate = optimizer.ask()
        optimizer.tell(candidate, -task(candidate.value))  # nevergrad minimises


def _syne_tune(searcher: str) -> Callable[[Task, int, int], None]:
    def run(task: Task, seed: int, n: int) -> None:
        import datetime

        from syne_tune.backend.trial_status import Trial
        from syne_tune.config_space import choice
        from syne_tune.optimizer import baselines

        space = {name: choice(list(choices)) for name, choices in task.table.genes}
        scheduler = getattr(baselines, searcher)(space, metric="fitness", do_minimize=False, random_seed=seed)
        for trial_id in range(n):
            suggestion = scheduler.suggest()
            trial = Trial(trial_id, suggestion.config, datetime.datetime.now())
            scheduler.on_trial_add(trial)
            value = task({name: suggestion.config[name] for name, _ in task.table.genes})
            scheduler.on_trial_complete(trial, {"fitness": value})

    return run


def _deephyper(search_class: str, **options: Any) -> Callable[[Task, int, int], None]:
    def run(task: Task, seed: int, n: int) -> None:
        import deephyper.hpo as hpo

        problem = hpo.HpProblem()
        for name, choices in task.table.genes:
            problem.add_hyperparameter([str(c) for c in choices], name)
        with tempfile.TemporaryDirectory() as log_dir:
            search = getattr(hpo, search_class)(problem, random_state=seed, log_dir=log_dir, **options)
            search.search(lambda job: task(dict(job.parameters)), max_evals=n)

    return run


def hebo(task: Task, seed: int, n: int) -> None:
    from hebo.design_space.design_space import DesignSpace
    from hebo.optimizers.hebo import HEBO

    np.random.seed(seed)  # HEBO draws from numpy's and torch's global generators
    import torch

    torch.manual_seed(seed)
    space = DesignSpace().parse(
        [{"name": name, "type": "cat", "categories": [str(c) for c in choices]} for name, choices in task.table.genes]
    )
    optimizer = HEBO(space, rand_sample=10)
    for _ in range(n):
        suggestion = optimizer.suggest(n_suggestions=1)
        value = task(suggestion.iloc[0].to_dict())
        optimizer.observe(suggestion, np.array([[-value]]))  # HEBO minimises


# A peer's settings where they are not its defaults; each search's record carries them. CBO's default
# acquisition optimiser, a mixed-variable GA (pymoo's), took 1.9 s an evaluation here (hpolib, 100
# evaluations: 190 s a search, 18 hours for the suites' 350); `sampling` scores 10,000 random configurations
# with the same surrogate (extremely randomised trees), DeepHyper's documented alternative, in 0.08 s an evaluation.
# `deephyper-cbo-mixedga` is CBO with that default, named, to check the setting on one task.
OPTIONS: dict[str, dict[str, Any]] = {
    "deephyper-cbo": {"acq_optimizer": "sampling"},
    "deephyper-cbo-mixedga": {"acq_optimizer": "mixedga"},
}

PEERS: dict[str, Callable[[Task, int, int], None]] = {
    "nevergrad-ngopt": nevergrad_ngopt,
    "syne-tune-rea": _syne_tune("REA"),
    "syne-tune-bore": _syne_tune("BORE"),
    "syne-tune-tpe": _syne_tune("TPE"),
    "deephyper-cbo": _deephyper("CBO", **OPTIONS["deephyper-cbo"]),
    "deephyper-cbo-mixedga": _deephyper("CBO", **OPTIONS["deephyper-cbo-mixedga"]),
    "deephyper-re": _deephyper("RegularizedEvolution"),
    "hebo": hebo,
}


def main() -> None:
    job = json.loads(sys.argv[1])
    task = Task(SuiteTable.load(job["table"]), job["seed"])
    with open(os.devnull, "w") as quiet:  # the peers' own logging stays out of the JSON on stdout
        stdout, sys.stdout = sys.stdout, quiet
        try:
            PEERS[job["peer"]](task, job["seed"], job["evaluations"])
        finally:
            sys.stdout = stdout
    told = {"rows": task.rows[: job["evaluations"]], "fitness": task.fitness[: job["evaluations"]]}
    if job["peer"] in OPTIONS:
        told["options"] = OPTIONS[job["peer"]]
    print(json.dumps(told))


if __name__ == "__main__":
    main()
