"""The simulated cluster: virtual time by hand on 3 workers, determinism, injected faults retried as on Ray,
stoppers judging in virtual time, and a table recorded from a real search in MLflow replayed exactly."""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

import pytest
from mlflow import MlflowClient

import popplast
from popplast.core.individual import Individual
from popplast.execution.executor import Evaluation
from popplast.execution.simulated.executor import SimulatedExecutor
from popplast.execution.simulated.models import CostModel, Table
from popplast.execution.simulated.settings import Simulation
from popplast.spec.space import Gene, SearchSpace
from tests.helpers import individuals, write_spec

SPACE = SearchSpace((Gene("arch", "categorical", choices=("a", "b", "c")), Gene("x", "float", low=0.0, high=1.0)))
# seconds: a 1, b 2, c 3; score x (final), reached over 3 steps
MODEL = CostModel(seconds=1.0, costs={"arch": {"a": 1.0, "b": 2.0, "c": 3.0}}, base=0.0, terms={}, steps=3)


def evaluations(archs):
    return [
        Evaluation(Individual(f"g000-i{k:03d}", (0.5, 0.5), 0, seed=k), {"arch": a, "x": 0.5})
        for k, a in enumerate(archs)
    ]


def executor(workers=3, model=MODEL, **faults):
    return SimulatedExecutor(Simulation(model, **faults), SPACE, workers, "score", True, steps=3)


def test_virtual_time_on_three_workers_by_hand():
    """Costs 3, 1, 2, 1, 2 on 3 workers: w0 runs item 0 (0–3); w1 item 1 (0–1), then item 3 (1–2); w2
    item 2 (0–2), then item 4 (2–4): item 2's end is pushed before item 3's, so w2 is free first at t = 2.
    Busy 9 worker-seconds of 3 × 4: utilisation 0.75."""
    sim = executor()
    results = list(sim.map(evaluations(["c", "a", "b", "a", "b"])))
    got = [(r.individual_id, r.worker, float(r.tags["started"]), float(r.tags["ended"])) for r in results]
    assert got == [
        ("g000-i001", "sim-1", 0.0, 1.0),
        ("g000-i002", "sim-2", 0.0, 2.0),
        ("g000-i003", "sim-1", 1.0, 2.0),
        ("g000-i000", "sim-0", 0.0, 3.0),
        ("g000-i004", "sim-2", 2.0, 4.0),
    ]
    assert sim.clock == 4.0 and sim.busy == 9.0 and sim.utilisation == pytest.approx(0.75)
    # ordered: the same schedule, told in the order taken, at most `window` in flight
    ordered = executor()
    assert [r.individual_id for r in ordered.map(evaluations(["c", "a", "b", "a", "b"]), ordered=True)] == [
        f"g000-i{k:03d}" for k in range(5)
    ]
    # dispatch: each evaluation starts half a second after its worker is free
    slow = executor(dispatch_seconds=0.5)
    assert [float(r.tags["ended"]) for r in slow.map(evaluations(["a", "a", "a", "a"]))] == [1.5, 1.5, 1.5, 3.0]


def test_a_slow_driver_shows_as_idle_workers_not_as_busy_ones():
    """Costs 5, 3, 4, 2 s on 2 workers, and the driver spends 2 s on each result (`driver_time`, on a clock the
    test moves). w1 ends item 1 at 3 and takes item 2 when the driver asks, at 5 (idle 3–5); w0 ends item 0 at
    5 and takes item 3 at 7; items 2 and 3 end at 9 on their workers, item 3 told at 11 (the driver was on
    item 2). Busy: the 14 s of work, each span ending when its worker finished, not when the driver got to it."""
    now = [0.0]
    model = CostModel(seconds=1.0, costs={"x": {"0.5": 5, "0.3": 3, "0.4": 4, "0.2": 2}}, base=0.0, terms={}, steps=3)
    sim = SimulatedExecutor(
        Simulation(model, driver_time=True), SPACE, 2, "score", True, steps=3, driver_clock=lambda: now[0]
    )
    work = [
        Evaluation(Individual(f"g000-i{k:03d}", (0.5, x), 0, seed=k), {"arch": "a", "x": x})
        for k, x in enumerate([0.5, 0.3, 0.4, 0.2])
    ]
    got = []
    for r in sim.map(work):
        got.append((r.individual_id, float(r.tags["started"]), float(r.tags["ended"]), r.metrics["train_seconds"]))
        now[0] += 2.0
    assert got == [
        ("g000-i001", 0.0, 3.0, 3.0),
        ("g000-i000", 0.0, 5.0, 5.0),
        ("g000-i002", 5.0, 9.0, 4.0),
        ("g000-i003", 7.0, 9.0, 2.0),
    ]
    assert sim.busy == 14.0 and sim.clock == 13.0 and sim.driver_seconds == 8.0
    # wall time from the first start to the last end (core/utilisation.py), not to the clock: the driver's
    # 4 s over the last two results, after every worker had ended, are no worker's idle time
    assert sim.utilisation == pytest.approx(14 / (2 * 9))


def test_injected_worker_losses_are_retried_as_on_ray_and_failures_are_recorded():
    lost = executor(worker_losses=1.0, restart_seconds=5.0)
    [result] = list(lost.map(evaluations(["a"])))
    assert not result.ok and "the worker died in all 3 attempts" in result.error
    assert len(result.retries) == 2 and all("simulated worker loss" in e for e in result.retries)
    assert lost.lost == 3
    failing = executor(failures=1.0)
    [failed] = list(failing.map(evaluations(["a"])))
    assert not failed.ok and "injected failure" in failed.error and failed.retries == []
    # half the attempts lost: some evaluations succeed on a second or third worker, with their retries
    some = executor(worker_losses=0.5)
    results = list(some.map(evaluations(["a", "b", "c"] * 10)))
    retried = [r for r in results if r.ok and r.retries]
    assert len(results) == 30 and retried and all(len(r.retries) in (1, 2) for r in retried)


def test_stopped_in_virtual_time_at_the_step_the_stopper_judged():
    from popplast.execution.stopping import StopJudge
    from popplast.strategies.stoppers import ASHA

    model = CostModel(seconds=3.0, base=0.0, terms={"x": {"best": 1.0, "width": 1.0, "weight": 1.0}}, steps=3)
    sim = executor(workers=1, model=model)
    judge = StopJudge(ASHA(1, 3, 3), "score", True, "score")
    channel = sim.stop_channel(judge)
    work = [
        Evaluation(Individual(f"g000-i{k:03d}", (0.5, x), 0, seed=k), {"arch": "a", "x": x}, stops=channel)
        for k, x in enumerate([0.9, 0.2, 0.1, 0.95])
    ]
    results = list(sim.map(work))
    for r in results:
        judge.settle(r)
    steps = {r.individual_id: (r.stopped_at, r.metrics["steps"], float(r.tags["ended"])) for r in results}
    # rung 1: i000 leads (goes on), i001 and i002 are below it (stopped at step 1 after 1 s), i003 leads
    assert steps == {
        "g000-i000": (None, 3.0, 3.0),
        "g000-i001": (1, 1.0, 4.0),
        "g000-i002": (1, 1.0, 5.0),
        "g000-i003": (None, 3.0, 8.0),
    }


SPEC = """
objective: simobj:fit
fitness: {metric: score, mode: maximize}
fidelity: {epochs: 3}
strategy: {method: ga, population: 6, generations: 3, seed: 4}
space:
  arch: {type: categorical, choices: [a, b, c]}
  x: {type: float, low: 0.0, high: 1.0}
"""

OBJECTIVE = '''
import time


def fit(config, trial):
    """Three steps whose score rises to 1 − (x − 0.3)²; arch b and c sleep a little longer."""
    final = 1 - (config["x"] - 0.3) ** 2
    for step in range(1, 4):
        time.sleep({"a": 0.0, "b": 0.01, "c": 0.02}[config["arch"]])
        value = final * step / 3
        trial.report(step, score=value)
        if trial.should_stop():
            break
    return {"score": value, "other": config["x"]}
'''


@pytest.fixture
def sim_spec(tmp_path):
    (tmp_path / "simobj.py").write_text(textwrap.dedent(OBJECTIVE))
    return write_spec(tmp_path, SPEC, "search.yaml")


def simulated(spec, tmp_path, name, simulate, workers=4, **kw):
    uri = f"sqlite:///{tmp_path / name}.db"
    result = popplast.run(
        spec, executor="simulated", simulate=simulate, tracking_uri=uri, progress=False, workers=workers, **kw
    )
    return result, uri


def lineage(uri, result):
    rows = sorted(individuals(uri, result.search_run_id), key=lambda r: r["id"])
    client = MlflowClient(uri)
    spans = {  # virtual times, as recorded; none for an evaluation whose worker died in every attempt
        r["id"]: (client.get_run(r["run_id"]).data.tags.get("popplast.started"),) for r in rows
    }
    return [(r["id"], r["parents"], r["fitness"], spans[r["id"]]) for r in rows]


@pytest.mark.parametrize("schedule", ["generational", "async"])
def test_the_driver_keeps_of_each_result_what_a_checkpoint_holds(sim_spec, schedule):
    """The observers (the tracker) hear each result whole; the loop keeps its summary only: its per-step
    history and tags are not held a second time, which halved the driver's memory per evaluation."""
    import numpy as np

    from popplast.execution.search import run_search
    from popplast.execution.simulated import simulated_executor
    from popplast.spec.search import SearchSpec
    from popplast.strategies.build import build_strategy

    spec = SearchSpec.from_yaml(str(sim_spec)).with_overrides(schedule=schedule)
    heard = {}

    class Heard:
        def individual_finished(self, individual, config, result):
            heard[individual.id] = result

    sim = simulated_executor(spec, Simulation(MODEL), 3)
    outcome = run_search(spec, build_strategy(spec, 18), sim, np.random.default_rng(0), [Heard()])
    assert len(outcome.results) == 18 and set(outcome.results) == set(heard)
    assert all(r.history and r.tags["ended"] and r.worker for r in heard.values())
    for key, kept in outcome.results.items():
        whole = heard[key]
        assert (kept.history, kept.tags, kept.worker, kept.retries) == ({}, {}, "", [])
        assert (kept.fitness, kept.metrics, kept.error, kept.stopped_at) == (
            whole.fitness,
            whole.metrics,
            whole.error,
            whole.stopped_at,
        )


@pytest.mark.parametrize("method", ["gensoup", "pbt"])
def test_an_inheriting_child_reports_its_own_steps_from_1_as_a_real_objective_does(sim_spec, method):
    """A child that continues its parent's training reports steps 1..budget (the real CNN trainer's epochs, a
    user objective's trial.report), to the stopper and in its history, so a stopper judges it at the rungs a
    real search would; its model curve still goes on from the parent's step (the stand-in weights say so)."""
    import numpy as np

    from popplast.execution.search import run_search
    from popplast.execution.simulated import simulated_executor
    from popplast.execution.stopping import stop_judge
    from popplast.spec.search import SearchSpec
    from popplast.strategies.build import build_strategy

    spec = SearchSpec.from_yaml(str(sim_spec)).with_overrides(method=method, stopper="asha")
    strategy = build_strategy(spec, 18)
    judge = stop_judge(spec, strategy)
    assert judge is not None
    heard, started = {}, {}

    class Heard:
        def individual_finished(self, individual, config, result):
            heard[individual.id] = (individual.seed, result)

    class Continued:  # the model, noting the steps each individual's state had trained before (by its seed)
        def outcome(self, space, config, start, steps, rng, seed=None):
            started[seed] = start
            return model.outcome(space, config, start, steps, rng, seed)

    model = CostModel(seconds=3.0, base=0.0, terms={"x": {"best": 1.0, "width": 1.0, "weight": 1.0}}, steps=3)
    sim = simulated_executor(spec, Simulation(Continued()), 3)
    run_search(spec, strategy, sim, np.random.default_rng(0), [Heard()], stopper=judge)
    reported: dict[str, list[int]] = {}
    for event in judge.log:
        if event[0] == "report":
            reported.setdefault(event[1], []).append(event[2])
    continued = [i for i, (seed, _) in heard.items() if started[seed] > 0]
    assert continued and set(continued) <= set(reported)  # children that went on from a parent, judged
    assert judge.stopped  # the rule acted on what they reported
    assert all(steps == list(range(1, len(steps) + 1)) for steps in reported.values())
    histories = {i: [step for step, _ in r.history["score"]] for i, (_, r) in heard.items() if r.ok}
    assert all(steps == list(range(1, len(steps) + 1)) for steps in histories.values())
    assert all(histories[i] == reported[i] for i in continued)


@pytest.mark.parametrize("method", ["ga", "gensoup-async"])
def test_the_simulator_is_deterministic_for_a_seed_through_the_real_loop_and_tracking(sim_spec, tmp_path, method):
    model = tmp_path / "model.yaml"
    model.write_text(
        textwrap.dedent(
            """
            cost: {seconds: 10, noise: 0.2, genes: {arch: {a: 1, b: 2, c: 4}}}
            score: {base: 1.0, noise: 0.05, genes: {x: {best: 0.3, width: 1.0, weight: 1.0}}}
            worker_losses: 0.2
            seed: 1
            """
        )
    )
    a, uri_a = simulated(sim_spec, tmp_path, "a", str(model), method=method)
    b, uri_b = simulated(sim_spec, tmp_path, "b", str(model), method=method)
    assert a.evaluations == 18 and lineage(uri_a, a) == lineage(uri_b, b)
    assert a.worker_utilisation == pytest.approx(b.worker_utilisation) and 0 < a.worker_utilisation < 1
    client = MlflowClient(uri_a)
    retried = [r for r in client.search_runs([client.get_run(a.search_run_id).info.experiment_id])]
    assert any(r.data.tags.get("popplast.status") == "retried" for r in retried)  # lost workers, logged as on Ray


def test_the_simulators_utilisation_is_the_worker_utilisation_it_tracks(sim_spec, tmp_path, monkeypatch):
    """One definition (core/utilisation.py): the spans of the evaluations that came back, from the first
    start to the last end; attempts lost with their worker count in neither. The executor's figure was busy
    time with the lost attempts over the clock from 0 (before the first dispatch): dispatch and worker losses
    made the two differ."""
    import popplast.execution.simulated

    made = []
    simulated_executor = popplast.execution.simulated.simulated_executor

    def spy(*args, **kwargs):
        made.append(simulated_executor(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(popplast.execution.simulated, "simulated_executor", spy)
    model = tmp_path / "model.yaml"
    model.write_text(
        "cost: {seconds: 10, noise: 0.2, genes: {arch: {a: 1, b: 2, c: 4}}}\nscore: {base: 1.0, noise: 0.05}\n"
        "worker_losses: 0.2\nfailures: 0.1\ndispatch_seconds: 1.5\nrestart_seconds: 5\nseed: 1\n"
    )
    result, uri = simulated(sim_spec, tmp_path, "u", str(model), workers=4, stopper="asha")
    [executor] = made
    tracked = MlflowClient(uri).get_run(result.search_run_id).data.metrics["worker_utilisation"]
    assert executor.lost > 0 and 0 < tracked < 1  # the tags' milliseconds are all that differs
    assert executor.utilisation == pytest.approx(tracked, rel=1e-4)
    assert result.worker_utilisation == pytest.approx(tracked)


def test_the_workers_chart_of_a_wide_search_stays_a_readable_size(sim_spec, tmp_path):
    from PIL import Image

    model = tmp_path / "model.yaml"
    model.write_text("cost: {seconds: 10, noise: 0.2}\nscore: {base: 1.0, noise: 0.05}\nseed: 1\n")
    result, uri = simulated(sim_spec, tmp_path, "wide", str(model), workers=120, population=120, generations=2)
    client = MlflowClient(uri)
    chart = client.download_artifacts(result.search_run_id, "workers.png", str(tmp_path))
    with Image.open(chart) as image:
        assert image.size == (1000, 1600)  # a lane 0.35 in high would make it 4,360 px
    assert result.evaluations == 240 and 0 < result.worker_utilisation < 1


def test_a_table_recorded_from_a_real_search_replays_its_results(sim_spec, tmp_path):
    """Record a real (local) search, replay the same search on the simulated cluster from the table: every
    configuration is in the table, so every individual gets its real fitness and the lineage is the same."""
    real_uri = f"sqlite:///{tmp_path / 'real.db'}"
    real = popplast.run(sim_spec, executor="local", tracking_uri=real_uri, progress=False, stopper="asha")
    table_file = tmp_path / "table.json"
    from popplast.cli.main import main

    assert main(["record-table", real.search_run_id, "--tracking-uri", real_uri, "--out", str(table_file)]) == 0
    table = Table.load(table_file)
    data = json.loads(table_file.read_text())
    assert data["format"] == "popplast-table/1" and len(table.rows) == 18 and table.metric == "score"
    full = [r for r in table.rows if r.status == "ok"]
    assert all(len(r.curve) == 3 and r.metrics["other"] == pytest.approx(r.config["x"], abs=1e-6) for r in full)
    assert {r.status for r in table.rows} == {"ok", "stopped"}  # ASHA stopped some of the real ones
    # one simulated worker reports in the order the local executor did: ASHA stops the same individuals
    replayed, uri = simulated(sim_spec, tmp_path, "replay", str(table_file), workers=1, stopper="asha")

    def outcome(u, res):
        rows = sorted(individuals(u, res.search_run_id), key=lambda r: r["id"])
        return [(r["id"], r["parents"], r["status"], round(r["fitness"], 6)) for r in rows]

    assert outcome(uri, replayed) == outcome(real_uri, real)
    # a configuration the table lacks gets its nearest recorded one's values
    space = SearchSpace((Gene("arch", "categorical", choices=("a", "b", "c")), Gene("x", "float", low=0.0, high=1.0)))
    row = full[0]
    near = table.nearest(space, {**row.config, "x": row.config["x"] + 1e-9})
    assert near.config == row.config


@pytest.mark.parametrize(
    "simulate, expected",
    [
        (None, "--simulate"),
        ("retrain", "nothing to retrain"),
        ("missing.yaml", "no such file"),
        ("bad.json", "cannot read the table"),
        ("loop.yaml", "at seed: an alias stands for a value that contains it"),  # read as search files are
    ],
)
def test_bad_simulation_input_is_one_line_and_exit_code_2(sim_spec, tmp_path, capsys, simulate, expected):
    from popplast.cli.main import main

    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "loop.yaml").write_text("&a {seed: *a}\n")
    args = ["run", str(sim_spec), "--executor", "simulated", "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}"]
    if simulate == "retrain":
        args += ["--retrain", "--simulate", str(tmp_path / "bad.json")]
    elif simulate:
        args += ["--simulate", str(tmp_path / simulate)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


ROW = {"config": {"arch": "a", "x": 0.5}, "curve": [0.1, 0.2, 0.3], "seconds": 1.0}


def table_with(edits=None, **changes):
    """A good table of four rows with `edits` {row index: changes, None dropping a key}, then top-level
    `changes` (None dropping a key)."""
    table: dict[str, Any] = {"format": "popplast-table/1", "metric": "score", "mode": "maximize"}
    table["rows"] = [dict(ROW) for _ in range(4)]
    for i, row in (edits or {}).items():
        table["rows"][i] = {k: v for k, v in {**table["rows"][i], **row}.items() if v is not None}
    return {k: v for k, v in {**table, **changes}.items() if v is not None}


HOSTILE = {  # file name, its content (JSON for .json, text for .yaml), what the one line says
    "list at top level": ("t.json", [ROW], "t.json, at (top level): expected a mapping, got a list"),
    "no rows": ("t.json", table_with(rows={"0": ROW}), "at rows: expected a list, got a dict"),
    "row not a mapping": ("t.json", table_with(rows=[ROW, 3]), "at rows[1]: expected a mapping"),
    "missing config": ("t.json", table_with({3: {"config": None}}), "at rows[3].config: this key is required"),
    "missing gene": ("t.json", table_with({3: {"config": {"arch": "a"}}}), "at rows[3].config: no gene 'x' of the"),
    "gene of the wrong type": (
        "t.json",
        table_with({2: {"config": {"arch": "b", "x": "high"}}}),
        "at rows[2].config.x: expected a finite number, got str 'high'",
    ),
    "nan in a curve": (
        "t.json",
        table_with({1: {"curve": [0.1, float("nan"), 0.3]}}),
        "at rows[1].curve[1]: expected a finite number, got float nan",
    ),
    "infinite metric": (
        "t.json",
        table_with({0: {"metrics": {"other": float("inf")}}}),
        "at rows[0].metrics.other: expected a finite number, got float inf",
    ),
    "metric name MLflow refuses": (
        "t.json",
        table_with({0: {"metrics": {"acc(%)": 0.5}}}),
        "at rows[0].metrics: 'acc(%)' is no name MLflow takes",
    ),
    "negative seconds": ("t.json", table_with({2: {"seconds": -3.0}}), "at rows[2].seconds: expected seconds >= 0"),
    "seconds as text": ("t.json", table_with({0: {"seconds": "1"}}), "at rows[0].seconds: expected a finite number"),
    "curve as text": ("t.json", table_with({0: {"curve": "0.1 0.2"}}), "at rows[0].curve: expected a list"),
    "unknown status": ("t.json", table_with({0: {"status": "done"}}), "at rows[0].status: expected ok or stopped"),
    "unknown row key": ("t.json", table_with({0: {"secs": 1}}), "at rows[0].secs: unknown key"),
    "metric missing": ("t.json", table_with(metric=None), "at metric: this key is required"),
    "yaml list at top level": ("s.yaml", "- table: t.json\n", "s.yaml, at (top level): expected a mapping"),
    "a bad table named by a simulation file": (
        "s.yaml",
        "table: t.json\n",
        "t.json, at rows[3].config: no gene 'x' of the space",
    ),
    "cost of no gene": ("s.yaml", "cost: {genes: {lr: {a: 2}}}\n", "at cost.genes.lr: no gene 'lr' in the search"),
    "cost of no choice": ("s.yaml", "cost: {genes: {arch: {d: 2}}}\n", "at cost.genes.arch.d: not a choice of 'arch'"),
    "negative cost seconds": ("s.yaml", "cost: {seconds: -60}\n", "at cost.seconds: expected a number >= 0"),
    "negative cost factor": ("s.yaml", "cost: {genes: {arch: {b: -1}}}\n", "at cost.genes.arch.b: expected a cost"),
    "cost factor as text": ("s.yaml", "cost: {genes: {arch: {b: x2}}}\n", "at cost.genes.arch.b: expected a cost"),
    "score term of no gene": ("s.yaml", "cost: {}\nscore: {genes: {lr: {a: 1}}}\n", "at score.genes.lr: no gene"),
    "score term not a mapping": ("s.yaml", "cost: {}\nscore: {genes: {x: 0.3}}\n", "at score.genes.x: expected a"),
    "zero width": (
        "s.yaml",
        "cost: {}\nscore: {genes: {x: {best: 0.3, width: 0}}}\n",
        "at score.genes.x.width: expected a number > 0",
    ),
    "zero rate": ("s.yaml", "cost: {}\nscore: {rate: 0}\n", "at score.rate: expected a number > 0"),
    "nan in a simulation file": ("s.yaml", "cost: {seconds: .nan}\n", "at cost.seconds: expected a finite number"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_table_or_simulation_file_is_one_line_exit_2_and_starts_nothing(sim_spec, tmp_path, capsys, case):
    """Each was an AttributeError or KeyError (a missing gene's mid-search), or was accepted (NaN curves,
    negative seconds that ran the virtual clock backwards)."""
    import threading

    import psutil

    from popplast.cli.main import main

    name, content, expected = HOSTILE[case]
    if name == "t.json":
        (tmp_path / name).write_text(json.dumps(content))
    else:
        (tmp_path / name).write_text(content)
        (tmp_path / "t.json").write_text(json.dumps(table_with({3: {"config": {"arch": "a"}}})))
    threads, children = set(threading.enumerate()), set(psutil.Process().children())  # the session's Ray's
    db = tmp_path / "x.db"
    args = ["run", str(sim_spec), "--executor", "simulated", "--simulate", str(tmp_path / name)]
    assert main([*args, "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and expected in err, err
    assert err.startswith(f"popplast: error: Invalid search specification in {tmp_path}")
    assert not db.exists() and set(threading.enumerate()) <= threads and set(psutil.Process().children()) <= children
    with pytest.raises(popplast.SpecError, match=re.escape(expected)):  # the Python API: the same error
        popplast.run(sim_spec, executor="simulated", simulate=str(tmp_path / name), tracking_uri=f"sqlite:///{db}")
    assert not db.exists()


def test_a_table_nested_thousands_deep_is_one_line(sim_spec, tmp_path, capsys):
    from popplast.cli.main import main

    (tmp_path / "t.json").write_text("[" * 100_000)  # Python's JSON reader recurses: RecursionError
    args = ["run", str(sim_spec), "--executor", "simulated", "--simulate", str(tmp_path / "t.json")]
    assert main([*args, "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "nested too deeply" in err


def test_a_recorded_table_leaves_out_final_metrics_that_are_not_finite(tmp_path):
    """An objective's other final metrics may be NaN (a diverged model's loss; only the fitness metric and
    the reported steps must be finite): recorded as they were, the table's own load refused them."""
    from popplast.reports.record_table import record_table

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    search = client.create_run(experiment, tags={"popplast.role": "search"})
    client.log_param(search.info.run_id, "fitness.metric", "score")
    for k, loss in enumerate([0.5, float("nan")]):  # (MLflow's SQLite store keeps inf as the largest float)
        tags = {"mlflow.parentRunId": search.info.run_id, "popplast.individual_id": f"g000-i{k:03d}"}
        run = client.create_run(experiment, tags={**tags, "popplast.status": "ok", "popplast.generation": "0"})
        client.log_param(run.info.run_id, "arch", "a")
        client.log_param(run.info.run_id, "x", str(0.25 * k))
        for step in (1, 2, 3):
            client.log_metric(run.info.run_id, "score", 0.1 * step, step=step)
        client.log_metric(run.info.run_id, "loss", loss)
        client.log_metric(run.info.run_id, "train_seconds", 2.0)
    table = record_table(uri, search.info.run_id)
    table.save(tmp_path / "table.json")
    loaded = Table.load(tmp_path / "table.json")
    loaded.check(SPACE)
    assert [r.metrics for r in loaded.rows] == [{"loss": 0.5}, {}]
    assert [r.curve for r in loaded.rows] == [pytest.approx((0.1, 0.2, 0.3))] * 2


def test_the_simulated_cluster_stops_evaluations_past_the_timeout_in_virtual_time(sim_spec, tmp_path):
    """Architecture c costs 80 virtual seconds, the limit is 50: its evaluations are failed with the Ray
    pool's words and their workers replaced; a and b (10 and 20 s) finish (issue 31's --eval-timeout)."""
    model = tmp_path / "model.yaml"
    model.write_text("cost: {seconds: 10, genes: {arch: {a: 1, b: 2, c: 8}}}\nscore: {base: 1.0}\n")
    result, uri = simulated(sim_spec, tmp_path, "timeout", str(model), eval_timeout=50)
    rows = individuals(uri, result.search_run_id)
    client = MlflowClient(uri)
    slow = [r for r in rows if client.get_run(r["run_id"]).data.params["arch"] == "c"]
    assert slow and result.failed == len(slow)
    for row in slow:
        assert row["status"] == "failed"
        assert "timed out after 50 s (--eval-timeout)" in client.get_run(row["run_id"]).data.tags["popplast.error"]
