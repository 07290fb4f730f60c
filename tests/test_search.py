"""End-to-end searches on digits: the MLflow lineage contract, reproducibility (local and Ray), the real CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from mlflow import MlflowClient

import popplast
from tests.helpers import TINY_SPEC, individuals, lineage, wait_for_search_run, write_spec

pytestmark = pytest.mark.slow
BIN = os.path.join(os.path.dirname(sys.executable), "popplast")


def test_local_search_logs_every_individual_with_its_lineage(tiny_spec, tracking_uri):
    result = popplast.run(tiny_spec, executor="local", tracking_uri=tracking_uri, progress=False)
    rows = individuals(tracking_uri, result.search_run_id)
    assert len(rows) == 12 == result.evaluations
    by_id = {r["id"]: r for r in rows}
    client = MlflowClient(tracking_uri)
    for row in rows:
        assert row["method"] == "ga" and row["status"] == "ok" and row["mlflow_status"] == "FINISHED"
        tags = client.get_run(row["run_id"]).data.tags
        assert len(tags["popplast.initial_weights_hash"]) == len(tags["popplast.trained_weights_hash"]) == 16
        assert set(row["genes"]) == {"gene.architecture", "gene.optimizer", "gene.lr_scale"}
        if row["generation"] == 0:
            assert row["operator"] == "init" and row["parents"] == []
        else:
            assert row["parents"], row
            for parent, parent_run in zip(row["parents"], row["parent_runs"], strict=True):
                assert by_id[parent]["generation"] == row["generation"] - 1
                assert by_id[parent]["run_id"] == parent_run
    best = by_id[result.best.id]
    assert best["run_id"] == result.best_run_id and best["fitness"] == pytest.approx(result.best_fitness)
    assert result.best_fitness == max(r["fitness"] for r in rows)
    search = MlflowClient(tracking_uri).get_run(result.search_run_id)
    assert search.data.tags["popplast.best_run_id"] == result.best_run_id
    assert search.data.metrics["best_test_accuracy"] == pytest.approx(result.best_metrics["test_accuracy"])
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(result.search_run_id)}
    assert {"final_population.json", "best_individual.json", "tiny.yaml"} <= artifacts


def test_artifacts_lie_beside_the_sqlite_store_not_in_the_current_directory(tiny_spec, tmp_path, monkeypatch):
    here, store = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), store.mkdir()
    monkeypatch.chdir(here)
    uri = f"sqlite:///{store / 'x.db'}"
    result = popplast.run(tiny_spec, generations=1, executor="local", tracking_uri=uri, progress=False)
    assert list(here.iterdir()) == []  # MLflow's default would have been ./mlruns here
    artifacts = store / "x-artifacts" / "tiny" / result.search_run_id / "artifacts"
    assert (artifacts / "tiny.yaml").is_file() and (artifacts / "spec.json").is_file()
    [hint] = [line for line in result.summary().splitlines() if line.startswith("Open it: ")]
    command = hint.removeprefix("Open it: ").split()
    assert command[1:] == ["ui", "--backend-store-uri", uri] and os.path.isfile(command[0])  # runnable from here


def test_the_mlflow_hint_names_the_venvs_mlflow_from_the_checkout(monkeypatch):
    from popplast.core.result import ui_command

    venv = os.path.dirname(os.path.dirname(sys.executable))
    monkeypatch.chdir(os.path.dirname(venv))
    expected = os.path.join(os.path.basename(venv), "bin", "mlflow")
    assert ui_command("sqlite:///mlflow.db") == f"{expected} ui --backend-store-uri sqlite:///mlflow.db"


@pytest.mark.cluster  # Ray against local for every method is in test_objectives.py; the CNN trainer too: the slow tier
def test_same_seed_same_search_on_ray_and_locally(tiny_spec, tmp_path, ray_address):
    uris = [f"sqlite:///{tmp_path / name}.db" for name in ("ray1", "ray2", "local")]
    results = [
        popplast.run(tiny_spec, executor="ray", workers=2, tracking_uri=uris[0], progress=False),
        popplast.run(tiny_spec, executor="ray", workers=2, tracking_uri=uris[1], progress=False),
        popplast.run(tiny_spec, executor="local", tracking_uri=uris[2], progress=False),
    ]
    logged = [lineage(individuals(uri, r.search_run_id)) for uri, r in zip(uris, results)]
    assert logged[0] == logged[1] == logged[2]
    assert len({(r.best.id, r.best.genome, r.best_fitness) for r in results}) == 1
    other = popplast.run(tiny_spec, executor="local", seed=8, tracking_uri=uris[2], progress=False)
    assert lineage(individuals(uris[2], other.search_run_id)) != logged[2]


@pytest.mark.cluster  # the CLI on Ray is in test_early_stopping.py and test_async.py too: the slow tier
def test_cli_on_ray_with_two_workers(tiny_spec, tmp_path, ray_address):
    uri = f"sqlite:///{tmp_path / 'cli.db'}"
    out = subprocess.run(
        [
            BIN,
            "run",
            str(tiny_spec),
            "--workers",
            "2",
            "--address",
            ray_address,
            "--tracking-uri",
            uri,
            "--generations",
            "2",
            "--experiment",
            "cli-test",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "[popplast] generation 2/2 · 8/8 evaluations" in out.stderr
    assert "Best individual g00" in out.stdout and f"mlflow ui --backend-store-uri {uri}" in out.stdout
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("cli-test")
    [search] = client.search_runs([experiment.experiment_id], "tags.`popplast.role` = 'search'")
    assert search.data.params["workers"] == "2" and search.data.params["executor"] == "ray"
    rows = individuals(uri, search.info.run_id)
    assert len(rows) == 8 and {r["generation"] for r in rows} == {0, 1}
    workers = {client.get_run(r["run_id"]).data.tags["popplast.worker"] for r in rows}
    assert len(workers) == 2, "both Ray workers evaluated individuals"


def test_a_search_on_a_busy_cluster_says_it_begins_with_fewer_workers(
    tiny_spec, tmp_path, ray_address, monkeypatch, capsys
):
    import ray

    import popplast.search.session

    @ray.remote(num_cpus=1)
    class Busy:  # another user's work, holding one of the instance's two CPUs
        def ready(self) -> bool:
            return True

    busy = Busy.remote()
    ray.get(busy.ready.remote())
    monkeypatch.setattr(popplast.search.session, "WORKERS_START_WAIT", 2.0)
    try:
        result = popplast.run(
            tiny_spec, executor="ray", workers=2, generations=1, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"
        )
    finally:
        ray.kill(busy)
    # one worker, or none yet if starting it took longer than the wait
    said = r"\[popplast\] [01] of 2 Ray workers started within 2 s \(0 of the cluster's 2 CPUs free\); the search"
    assert re.search(said, capsys.readouterr().err)
    assert result.evaluations == 4 and not result.failed


def test_retrain_logs_a_loadable_model(tmp_path, tracking_uri, ray_address):
    import mlflow.pytorch
    import torch

    final = (
        "fidelity: {image_size: 8, epochs: 1, batch_size: 64, max_train_samples: 400, "
        "final: {epochs: 8, max_train_samples: null, scheduler: cosine}}"
    )
    spec = write_spec(tmp_path, TINY_SPEC.replace(TINY_SPEC.splitlines()[2], final))
    result = popplast.run(spec, workers=2, generations=1, retrain=True, tracking_uri=tracking_uri, progress=False)
    # 8 epochs on all 1077 training images against 1 epoch on 400 during the search
    retrained, searched = result.retrain_metrics["test_accuracy"], result.best_metrics["test_accuracy"]
    assert result.model_uri and retrained > 0.8 and retrained > searched + 0.2
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pytorch.load_model(result.model_uri)
    channels = 1 if result.best_config["architecture"] in ("lenet5", "small_vgg") else 3
    assert model(torch.zeros(5, channels, 8, 8)).shape == (5, 10)


def test_more_workers_than_cpus_is_refused_before_training(tiny_spec, tmp_path, ray_address, capsys):
    from popplast.cli.main import main

    code = main(["run", str(tiny_spec), "--workers", "3", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    err = capsys.readouterr().err
    assert code == 2
    assert "3 workers × --cpus-per-worker 1 need 3 CPUs, but the Ray cluster has 2" in err
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    assert client.search_runs([client.get_experiment_by_name("tiny").experiment_id]) == []


def test_wrong_ray_address_fails_fast(tiny_spec, tmp_path):
    out = subprocess.run(
        [BIN, "run", str(tiny_spec), "--address", "127.0.0.1:1", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 2
    assert "no Ray cluster answers at '127.0.0.1:1'" in out.stderr and "Traceback" not in out.stderr


def test_a_crashing_evaluation_is_recorded_as_failed_and_the_search_goes_on(tmp_path, tracking_uri):
    # inception_v3 needs at least 75×75 pixels: every individual that decodes to it crashes on 8×8 images
    spec = write_spec(tmp_path, TINY_SPEC.replace("[lenet5, small_vgg]", "[lenet5, inception_v3]"))
    result = popplast.run(spec, executor="local", tracking_uri=tracking_uri, progress=False)
    rows = individuals(tracking_uri, result.search_run_id)
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and len(rows) == 12 and result.failed == len(failed)
    client = MlflowClient(tracking_uri)
    for row in failed:
        run = client.get_run(row["run_id"])
        assert run.info.status == "FAILED" and "fitness" not in run.data.metrics
        assert run.data.params["architecture"] == "inception_v3" and run.data.tags["popplast.error"]
    assert result.best_config["architecture"] == "lenet5"


def test_astrocyte_genes_in_a_gencnn_search(tmp_path, tracking_uri):
    text = TINY_SPEC.replace("  crossover: {architecture: 0.0, optimizer: 0.0, lr_scale: 0.9}\n", "  crossover: 0.5\n")
    text = text.replace("  mutation: {architecture: 0.4, optimizer: 0.4, lr_scale: 0.3}\n", "  mutation: 0.3\n")
    text += (
        "  astro_str: {type: float, low: 0.5, high: 1.5}\n  astro_weak: {type: float, low: 0.5, high: 1.5}\n"
        "fixed: {astro_ng: 2, astro_as: 0.5}\n"
    )
    result = popplast.run(
        write_spec(tmp_path, text), executor="local", generations=2, tracking_uri=tracking_uri, progress=False
    )
    rows = individuals(tracking_uri, result.search_run_id)
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    params = MlflowClient(tracking_uri).get_run(rows[0]["run_id"]).data.params
    assert 0.5 <= float(params["astro_str"]) <= 1.5 and params["astro_ng"] == "2" and "gene.astro_weak" in params


@pytest.mark.parametrize(
    "name, code",
    [("SIGTERM", 143), pytest.param("SIGINT", 130, marks=pytest.mark.cluster)],  # SIGINT: slow tier
)
def test_a_signal_marks_the_search_killed_stops_its_ray_and_leaves_a_checkpoint_that_resumes(
    name, code, tiny_spec, tmp_path
):
    """As `ray job stop`, a pod eviction or `timeout` (SIGTERM) or Ctrl-C (SIGINT) stop a driver: exit 143 or
    130, the search run KILLED with the reason, the Ray instance it started gone, and `--resume` finishes it."""
    import signal

    import psutil

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    spec = tiny_spec.parent / "longer.yaml"
    spec.write_text(tiny_spec.read_text().replace("generations: 3", "generations: 6"))
    proc = subprocess.Popen(
        [BIN, "run", str(spec), "--workers", "2", "--tracking-uri", uri, "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(uri)
    run_id = wait_for_search_run(
        tmp_path / "m.db",
        lambda client, run: any(
            f.path.endswith("state-g0000.json") for f in client.list_artifacts(run.info.run_id, "checkpoint")
        ),
    )
    ray_processes = [p for p in psutil.Process(proc.pid).children(recursive=True) if "ray" in " ".join(p.cmdline())]
    assert ray_processes, "the driver started a local Ray instance"
    proc.send_signal(getattr(signal, name))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    search = client.get_run(run_id)
    assert search.info.status == "KILLED" and search.data.tags["popplast.end_reason"] == f"interrupted by {name}"
    assert f"the search run {search.info.run_id} is marked KILLED" in err and "Traceback" not in err
    gone, alive = psutil.wait_procs(ray_processes, timeout=60)
    assert not alive, [p.cmdline() for p in alive]
    resumed = popplast.run(resume=search.info.run_id, executor="local", tracking_uri=uri, progress=False)
    assert resumed.evaluations == 24 and client.get_run(search.info.run_id).info.status == "FINISHED"
