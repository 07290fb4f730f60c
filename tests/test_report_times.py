"""A comparison report's times are the evaluations' own (`popplast.started`/`popplast.ended`), not MLflow's
run times, which say when a result reached MLflow; on a simulated cluster they are virtual, wall seconds too."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

import popplast
from popplast.reports.comparison import read_comparison
from popplast.reports.report import report_markdown

T0 = 1_700_000_000.0  # the search began (seconds since the epoch, the workers' clock)


def _run(client, experiment, parent, start_ms, end_ms, tags=None, params=None, metrics=None):
    """A run as MLflow holds it, with the start and end times MLflow gave it (when it was written)."""
    run = client.create_run(experiment, start_time=start_ms, tags={"mlflow.parentRunId": parent, **(tags or {})})
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), end_ms, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
    )
    client.set_terminated(run_id, "FINISHED", end_time=end_ms)
    return run_id


def per_method(text):
    """The per-method table of a report.md: method → column heading → cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method | seeds | "))
    heads = lines[start].strip("| ").split(" | ")
    rows = [line.strip("| ").split(" | ") for line in lines[start + 2 :] if line.startswith("| ")]
    return {row[0]: dict(zip(heads, row)) for row in rows if len(row) == len(heads)}


def _comparison(uri, searches):
    """A comparison run with one search per method (seed 0), each with its individuals' runs.

    `searches`: method → [(individual id, started, ended, fitness, MLflow end time in ms)].
    """
    client = MlflowClient(uri)
    experiment = client.create_experiment("late")
    top = client.create_run(experiment, tags={"popplast.role": "comparison"}).info.run_id
    client.log_batch(
        top, params=[Param("methods", '["ga", "tpe"]'), Param("seed_values", "[0]"), Param("executor", "ray")]
    )
    start_ms = int(T0 * 1000) - 5_000  # the search run: the driver started it 5 s before the first evaluation
    for method, individuals in searches.items():
        best = max(f for _, _, _, f, _ in individuals)
        search = _run(
            client,
            experiment,
            top,
            start_ms,
            start_ms + 900_000,
            tags={"popplast.role": "search"},
            params={"method": method, "seed": 0, "executor": "ray"},
            metrics={"best_fitness": best, "best_test_mcc": best - 0.01, "wall_seconds": 40.0},
        )
        for ident, started, ended, fitness, written_ms in individuals:
            tags = {"popplast.individual_id": ident, "popplast.status": "ok"}
            tags.update({"popplast.started": f"{T0 + started:.3f}", "popplast.ended": f"{T0 + ended:.3f}"})
            _run(client, experiment, search, written_ms, written_ms, tags, {}, {"fitness": fitness, "epochs": 1})
    client.set_terminated(top, "FINISHED")
    return client, top


def test_seconds_and_order_come_from_the_evaluations_not_from_when_mlflow_got_them(tmp_path):
    """ga's three evaluations reached MLflow together, 10 minutes late (a backlog shipped as one bulk batch:
    one end time, so MLflow's order is the ids'); tpe's reached it one by one in the reverse of their order."""
    late = int(T0 * 1000) + 600_000
    client, top = _comparison(
        f"sqlite:///{tmp_path}/m.db",
        {
            "ga": [
                ("g000-i000", 0.0, 30.0, 0.5, late),
                ("g000-i001", 0.0, 10.0, 0.9, late),
                ("g000-i002", 10.0, 20.0, 0.7, late),
            ],
            "tpe": [
                ("g000-i000", 0.0, 12.0, 0.6, late + 2_000),
                ("g000-i001", 0.0, 15.0, 0.9, late + 1_000),
                ("g000-i002", 12.0, 25.0, 0.8, late),
            ],
        },
    )
    comparison = read_comparison(client, top)
    ga, tpe = comparison.cells[("ga", 0)], comparison.cells[("tpe", 0)]
    assert ga.fitness == [0.9, 0.7, 0.5] and ga.seconds == pytest.approx([10.0, 20.0, 30.0])
    assert tpe.fitness == [0.6, 0.9, 0.8] and tpe.seconds == pytest.approx([12.0, 15.0, 25.0])
    # the target is tpe's median best, 0.9: ga reached it with its first evaluation to end, at 10 s
    table = per_method(report_markdown(comparison))
    reached = {m: [table[m][f"{unit} to target"] for unit in ("evaluations", "seconds")] for m in ("ga", "tpe")}
    assert reached == {"ga": ["1.0 ± 0.0", "10.0 ± 0.0"], "tpe": ["2.0 ± 0.0", "15.0 ± 0.0"]}


def test_runs_without_span_tags_fall_back_to_mlflow_end_times(tmp_path):
    """A store written before popplast recorded the spans: MLflow's end times, since the search run started."""
    client, top = _comparison(
        f"sqlite:///{tmp_path}/m.db",
        {"ga": [("g000-i000", 0.0, 1.0, 0.5, int(T0 * 1000) + 3_000)], "tpe": [("g000-i000", 0.0, 1.0, 0.4, 9)]},
    )
    for run in client.search_runs([client.get_run(top).info.experiment_id], "tags.`popplast.status` = 'ok'"):
        for key in ("popplast.started", "popplast.ended"):
            client.delete_tag(run.info.run_id, key)
    assert read_comparison(client, top).cells[("ga", 0)].seconds == pytest.approx([8.0])


SIM_SPEC = """
objective: tiny:fit
fitness: {metric: val_acc, mode: maximize}
fidelity: {epochs: 2}
strategy: {method: ga, population: 4, generations: 2, seed: 3}
space:
  x: {type: float, low: -1.0, high: 1.0}
"""

COSTS = """
cost: {seconds: 60, noise: 0.1}
score: {base: 0.5, noise: 0.1}
"""


def test_a_simulated_comparison_reports_virtual_seconds_only(tmp_path):
    (tmp_path / "search.yaml").write_text(textwrap.dedent(SIM_SPEC))
    (tmp_path / "costs.yaml").write_text(textwrap.dedent(COSTS))
    uri = f"sqlite:///{tmp_path}/m.db"
    result = popplast.compare(
        str(tmp_path / "search.yaml"),
        methods="ga,random",
        budget_evals=8,
        seeds=2,
        workers=2,
        executor="simulated",
        simulate=str(tmp_path / "costs.yaml"),
        tracking_uri=uri,
        optuna_storage=f"sqlite:///{tmp_path}/optuna.db",
        out=str(tmp_path / "report"),
        progress=False,
    )
    client = MlflowClient(uri)
    comparison = read_comparison(client, result.run_id)
    for cell in comparison.cells.values():
        runs = client.search_runs(
            [client.get_run(cell.search_run_id).info.experiment_id],
            f"tags.mlflow.parentRunId = '{cell.search_run_id}'",
        )
        started = [float(r.data.tags["popplast.started"]) for r in runs]
        ended = sorted(float(r.data.tags["popplast.ended"]) for r in runs)
        assert min(started) == 0.0 and cell.seconds == pytest.approx(ended)  # virtual: the search began at 0
        assert cell.wall_seconds == pytest.approx(max(ended)) and cell.wall_seconds > 100  # two rounds of ~60 s
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Seconds are virtual" in text and "![against virtual time](anytime_seconds.png)" in text
    table = per_method(text)
    for method in ("ga", "random"):
        walls = [c.wall_seconds for (m, _), c in comparison.cells.items() if m == method]
        assert table[method]["wall seconds"] == f"{np.mean(walls):.1f} ± {np.std(walls, ddof=1):.1f}"  # virtual
        to_target = re.match(r"([\d.]+) ± ", table[method]["seconds to target"])
        assert to_target is None or float(to_target.group(1)) > 30  # no evaluation ends sooner in virtual time
