"""A simulated cluster (`--executor simulated --simulate PATH`): the real strategies, loop, stoppers and
tracking, with evaluations that cost virtual time (executor.py), from a recorded table or a cost model
(models.py, settings.py). `record.py` records a table from a finished search in MLflow."""

from __future__ import annotations

from typing import Any

from popplast.spec.search import SearchSpec


def simulation_for(spec: SearchSpec, simulate: Any) -> Any:
    """What `simulate` names (a table .json or .npz, a simulation .yaml; None: a suite task's own table) as a
    Simulation, checked whole and against the spec's space, or a SpecError."""
    from popplast.core.suite_table import SUITE_TABLE
    from popplast.errors import COMMAND_LINE, SpecError
    from popplast.execution.simulated.settings import load_simulation

    if simulate is None and SUITE_TABLE in spec.fixed:  # a suite task's search file: its own table
        simulate = spec.fixed[SUITE_TABLE]
    if simulate is None:
        raise SpecError(
            COMMAND_LINE, "--simulate", "the simulated executor needs --simulate TABLE.json or SIMULATION.yaml."
        )
    return load_simulation(simulate, spec.fidelity.epochs, spec.space)


def simulated_executor(spec: SearchSpec, simulate: Any, workers: int | None, eval_timeout: float | None = None) -> Any:
    """The simulated cluster for `spec`: `simulate` a path (a table .json, a simulation .yaml) or a
    Simulation; `workers` default to the population (the most a generation can keep busy)."""
    from popplast.execution.simulated.executor import SimulatedExecutor
    from popplast.spec.stopper import CNN_METRIC

    simulation = simulation_for(spec, simulate)
    metric = CNN_METRIC if spec.objective is None else spec.fitness.metric
    maximize = spec.objective is None or spec.fitness.mode == "maximize"
    return SimulatedExecutor(
        simulation,
        spec.space,
        workers or spec.strategy.population,
        metric,
        maximize,
        spec.fidelity.epochs,
        eval_timeout=eval_timeout,
    )
