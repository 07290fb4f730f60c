"""Gen-Soup: schedules, lineage rules, and a real run whose weights flow parent → child through Ray."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast
from popplast.core.gensoup import GenSoup, image_size, population_size
from tests.conftest import write_spec


def test_population_schedule():
    # thesis: N0 = 50, r = 5, N_min = 10
    assert [population_size(g, 50, 5, 10) for g in (0, 1, 7, 8, 20)] == [50, 45, 15, 10, 10]


def test_image_size_schedule():
    # thesis: 224 → 302, a linear ramp over the first G − 10 generations, then 10 at the largest size
    sizes = [image_size(g, 25, 224, 302, 10) for g in range(25)]
    assert sizes[0] == 224 and sizes[14:] == [302] * 11 and sizes == sorted(sizes)
    assert image_size(3, 5, 16, 16, 0) == 16


def soup(**kw):
    settings = dict(n_genes=3, population=8, crossover=[0.0, 0.9, 0.9], mutation=[0.0, 0.3, 0.3],
                    population_step=2, min_population=3, arch_index=0, arch_choices=2)
    return GenSoup(**{**settings, **kw})


def test_lineage_rules_over_generations():
    gs, rng = soup(), np.random.default_rng(0)
    state, previous, fitness = gs.init(), {}, {}
    for generation in range(5):
        population, state = gs.ask(state, rng)
        assert len(population) == population_size(generation, 8, 2, 3)
        for child in population:
            if generation == 0:
                assert child.operator == "init"
                continue
            assert child.operator in ("inherit", "fusion", "elite") and set(child.parent_ids) <= set(previous)
            assert sum(child.fusion_weights) == pytest.approx(1.0)
            first = previous[child.parent_ids[0]]
            assert gs.architecture(child.genome) == gs.architecture(first.genome)  # goes with the weights
            if len(child.parent_ids) == 2:
                assert fitness[child.parent_ids[0]] >= fitness[child.parent_ids[1]]  # the better parent first
            if child.operator == "fusion":
                other = previous[child.parent_ids[1]]
                assert gs.architecture(first.genome) == gs.architecture(other.genome)
        previous = {i.id: i for i in population}
        fitness = {i.id: float(np.sum(i.genome)) for i in population}
        state, _ = gs.tell(state, fitness)
    assert population[-1].operator == "elite"


SOUP_SPEC = """
dataset: {name: digits}
fidelity: {image_size: 8, epochs: 1, batch_size: 64, max_train_samples: 400}
strategy:
  method: gensoup
  population: 6
  population_step: 1
  min_population: 3
  generations: 4
  final_image_size: 10
  seed: 3
  crossover: {architecture: 0.0, optimizer: 0.0, lr_scale: 0.9}
  mutation: {architecture: 0.0, optimizer: 0.25, lr_scale: 0.25}
space:
  architecture: {type: categorical, choices: [lenet5, small_vgg]}
  optimizer: {type: categorical, choices: [adam, rmsprop]}
  lr_scale: {type: float, low: 0.3, high: 3.0, log: true}
"""


@pytest.mark.slow
def test_gensoup_run_on_ray(tmp_path, tracking_uri, ray_address):
    import mlflow.pytorch

    from popplast.training.data import load_split
    from popplast.core.spec import DatasetSpec
    from popplast.training.train import measure

    result = popplast.run(write_spec(tmp_path, SOUP_SPEC), workers=2, tracking_uri=tracking_uri, progress=False)
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.search_run_id}'")
    tags = {r.data.tags["popplast.individual_id"]: r.data.tags for r in runs}
    assert len(tags) == 6 + 5 + 4 + 3
    operators = {t["popplast.operator"] for t in tags.values()}
    assert operators <= {"init", "inherit", "fusion", "elite"} and {"fusion", "elite"} <= operators
    for key, t in tags.items():
        generation = int(t["popplast.generation"])
        parents = [p for p in t["popplast.parent_ids"].split(",") if p]
        assert all(int(tags[p]["popplast.generation"]) == generation - 1 for p in parents)
        if generation:
            weights = [float(w) for w in t["popplast.fusion_weights"].split(",")]
            assert sum(weights) == pytest.approx(1.0, abs=1e-5)
        single = [p for p, w in zip(parents, t["popplast.fusion_weights"].split(",")) if float(w) > 0]
        if t["popplast.operator"] in ("inherit", "elite") and len(single) == 1:
            # the child started from exactly its parent's trained weights: they went through the object store
            assert t["popplast.initial_weights_hash"] == tags[single[0]]["popplast.trained_weights_hash"]
    image_sizes = {int(r.data.params["image_size"]) for r in runs}
    assert image_sizes == {8, 9, 10}
    # the logged model is the best individual and reproduces its test metrics
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pytorch.load_model(result.model_uri)
    best_size = int(client.get_run(result.best_run_id).data.params["image_size"])
    data = load_split(DatasetSpec("digits"), best_size, 1, 400)
    assert measure(model, data, "cpu")["test_accuracy"] == pytest.approx(result.best_metrics["test_accuracy"])
    # references were released: never all trained weights at once
    total = sum(r.data.metrics["weights_bytes"] for r in runs if "weights_bytes" in r.data.metrics)
    assert 0 < result.peak_weight_bytes < total
