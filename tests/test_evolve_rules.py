"""`popplast evolve-rules` end to end: on Ray with two workers, the MLflow layout, the gradient baseline,
reproducibility across executors, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast.search.evolve_rules as rules_api
from popplast.cli.main import main
from popplast.errors import SpecError
from popplast.spec.rules import RulesSpec
from tests.helpers import write_spec

BIN = os.path.join(os.path.dirname(sys.executable), "popplast")
TINY_RULES = """
task: {dataset: classification, samples: 600, class_sep: 10.0, seed: 2}
network: {hidden: 12, cap: 6, rounds: 3, seed: 2}
strategy: {method: openai, population: 8, generations: 4, batch_size: 50, seed: 2}
generalisation: {passes: 2, samples: 200}
"""


@pytest.mark.slow
@pytest.mark.cluster  # test_ray_and_local_evolve_the_same_rules covers Ray: the slow tier
def test_cli_evolve_rules_on_ray_with_two_workers(tmp_path, ray_address):
    spec = write_spec(tmp_path, TINY_RULES, "rules.yaml")
    uri = f"sqlite:///{tmp_path / 'rules.db'}"
    out = subprocess.run(
        [BIN, "evolve-rules", str(spec), "--workers", "2", "--address", ray_address, "--tracking-uri", uri],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Rules evolved with openai over 4 generations" in out.stdout and "304 genes" in out.stdout
    assert "[popplast] generation 4/4" in out.stderr
    client = MlflowClient(uri)
    [search] = client.search_runs(
        [client.get_experiment_by_name("rules").experiment_id], "tags.`popplast.role` = 'search'"
    )
    assert search.data.params["workers"] == "2" and search.info.status == "FINISHED"
    for key in ("train_accuracy", "test_accuracy", "generalisation_test_accuracy"):
        assert 0 <= search.data.metrics[key] <= 1
    generations = client.search_runs(
        [search.info.experiment_id], f"tags.mlflow.parentRunId = '{search.info.run_id}'", order_by=["start_time ASC"]
    )
    assert [int(r.data.tags["popplast.generation"]) for r in generations] == [0, 1, 2, 3]
    for previous, run in zip(generations, generations[1:]):
        assert run.data.tags["popplast.parent_run_ids"] == previous.info.run_id
        assert {"best", "mean", "sigma", "spread", "mean_update_norm"} <= set(run.data.metrics)
    path = client.download_artifacts(search.info.run_id, "rules.json", str(tmp_path))
    rules = json.load(open(path))
    assert len(rules["rules"]) == 304 and len(rules["hidden_rule"]) == 256
    assert len(rules["best_evaluated"]) == 304 and 0 <= rules["best_evaluated_fitness"] <= 1


@pytest.mark.slow
def test_ray_and_local_evolve_the_same_rules(tmp_path, ray_address):
    spec = write_spec(tmp_path, TINY_RULES, "rules.yaml")
    on_ray = rules_api.evolve_rules(spec, workers=2, tracking_uri=f"sqlite:///{tmp_path}/a.db", progress=False)
    local = rules_api.evolve_rules(spec, executor="local", tracking_uri=f"sqlite:///{tmp_path}/b.db", progress=False)
    assert np.allclose(on_ray.rules, local.rules, atol=1e-12) and on_ray.test_accuracy == local.test_accuracy


def test_gradient_baseline_and_elitist_run_locally(tmp_path):
    spec = write_spec(tmp_path, TINY_RULES, "rules.yaml")
    for method, population in (("gradient", 2), ("elitist", 5), ("snes", 6)):
        result = rules_api.evolve_rules(
            spec,
            method=method,
            population=population,
            executor="local",
            tracking_uri=f"sqlite:///{tmp_path}/m.db",
            progress=False,
        )
        assert result.method == method and len(result.rules) == 304
        assert len(result.generalisation_curve) == 2 and 0 <= result.generalisation_batch_accuracy <= 1


SHIPPED_RULES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "search_spaces", "rules_classification.yaml"
)


@pytest.mark.parametrize(
    "flags, sigma, learning_rate",
    [
        ({"method": "elitist"}, 0.01, 0.05),  # the file's documented command: the paper's σ
        ({"method": "openai"}, 0.1, 0.05),
        ({"method": "gradient"}, 0.1, 0.01),  # the paper's Adam rate for the gradient baseline
        ({"method": "elitist", "sigma": 0.2, "learning_rate": 0.3}, 0.2, 0.3),  # flags win
    ],
)
def test_the_shipped_file_runs_each_methods_own_sigma_unless_told(flags, sigma, learning_rate):
    spec = RulesSpec.from_yaml(SHIPPED_RULES).with_overrides(**flags)
    assert (spec.strategy.sigma, spec.strategy.learning_rate) == (sigma, learning_rate)


def test_sigma_in_the_file_holds_for_every_method_and_the_flags_override_it(tmp_path):
    spec = RulesSpec.from_yaml(
        write_spec(tmp_path, TINY_RULES.replace("batch_size: 50,", "batch_size: 50, sigma: 0.3,"))
    )
    assert spec.with_overrides(method="elitist").strategy.sigma == 0.3
    assert spec.with_overrides(method="elitist", sigma=0.05).strategy.sigma == 0.05
    with pytest.raises(SpecError, match="--sigma: expected a number > 0"):
        spec.with_overrides(sigma=0.0)


def test_evolve_rules_elitist_records_the_papers_sigma(tmp_path):
    spec = write_spec(tmp_path, TINY_RULES.replace("generations: 4", "generations: 1"), "rules.yaml")
    uri = f"sqlite:///{tmp_path}/m.db"
    flags = ["--method", "elitist", "--population", "4", "--executor", "local", "--tracking-uri", uri, "--quiet"]
    code = main(["evolve-rules", str(spec), *flags])
    client = MlflowClient(uri)
    [search] = client.search_runs(
        [client.get_experiment_by_name("rules").experiment_id], "tags.`popplast.role` = 'search'"
    )
    assert code == 0 and search.data.params["strategy.sigma"] == "0.01"


@pytest.mark.parametrize(
    "text, flags, expected",
    [
        (
            TINY_RULES.replace("cap: 6", "cap: 20"),
            [],
            "at network.cap: expected an integer in 1..hidden (12), got int 20.",
        ),
        (TINY_RULES.replace("population: 8", "population: 7"), [], "at strategy.population: expected an even number"),
        (TINY_RULES + "budget: 1\n", [], "at budget: unknown key"),
        (
            TINY_RULES.replace("batch_size: 50", "batch_size: 500"),
            [],
            "at strategy.batch_size: expected at most the task's 480 training samples",
        ),
        (TINY_RULES.replace("dataset: classification", "dataset: mnist"), [], "at task.dataset: expected one of"),
        (TINY_RULES, ["--generations", "0"], "Invalid option --generations: expected an integer >= 1, got int 0."),
    ],
)
def test_bad_rules_input(text, flags, expected, tmp_path, capsys):
    spec = write_spec(tmp_path, text, "rules.yaml")
    code = main(
        ["evolve-rules", str(spec), "--executor", "local", "--tracking-uri", f"sqlite:///{tmp_path}/m.db", *flags]
    )
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err


def test_a_slice_that_fails_fails_each_of_its_individuals_with_the_error(tmp_path):
    from popplast.core.individual import Individual
    from popplast.objectives.rules import RulesObjective
    from popplast.plasticity.plastic_rnn import genome_size
    from popplast.training.rule_evaluator import RuleEvaluator

    spec = RulesSpec.from_yaml(write_spec(tmp_path, TINY_RULES))
    objective = RulesObjective(RuleEvaluator(spec, threads=1))
    individuals = [Individual(f"g000-i00{i}", (0.0,) * genome_size(3), 0, operator="es-sample") for i in range(3)]
    good = objective.evaluate_many([(ind, {"batch": tuple(range(50))}) for ind in individuals])
    assert [r.ok for r in good] == [True] * 3 and len({r.fitness for r in good}) == 1  # same rules, same batch
    bad = objective.evaluate_many([(ind, {"batch": (10**6,)}) for ind in individuals])  # past the split's end
    assert [r.individual_id for r in bad] == [i.id for i in individuals]
    assert all(r.fitness is None and r.error.startswith("IndexError") for r in bad)
