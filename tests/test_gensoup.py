"""Gen-Soup: schedules, lineage rules, and a real run whose weights flow parent → child through Ray."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast
from popplast.spec.search import SearchSpec
from popplast.strategies.build import build_strategy
from popplast.strategies.gensoup import GenSoup, image_size, population_size
from tests.helpers import write_spec


def test_population_schedule():
    # thesis: N0 = 50, r = 5, N_min = 10
    assert [population_size(g, 50, 5, 10) for g in (0, 1, 7, 8, 20)] == [50, 45, 15, 10, 10]


def test_image_size_schedule():
    # thesis: 224 → 302, a linear ramp over the first G − 10 generations, then 10 at the largest size
    sizes = [image_size(g, 25, 224, 302, 10) for g in range(25)]
    assert sizes[0] == 224 and sizes[15:] == [302] * 10 and sizes[14] < 302 and sizes == sorted(sizes)
    assert image_size(3, 5, 16, 16, 0) == 16
    assert [image_size(g, 5, 16, 32, 0) for g in range(5)] == [16, 20, 24, 28, 32]  # no hold: the ramp reaches 32
    assert [image_size(g, 3, 16, 32, 5) for g in range(3)] == [32, 32, 32]


def test_an_epoch_budget_with_a_stopper_gives_gensoup_the_generations_its_ramp_spans():
    """183 epochs at 3 epochs a generation pay for 61 evaluations at full cost: Gen-Soup's shrinking
    populations (10, 9, ..., 4, 4, 4, 4) fit 10 generations in them, and its image-size ramp reaches 16 px
    for the last two. Sized for ASHA's cheapest evaluations (1 epoch), it got 40 generations, and the search
    ran out of epochs at generation 9 at 10 px (issue 30)."""
    from popplast.execution.work import generation_fidelity
    from popplast.strategies.budget import evaluations_for_epochs, generation_sizes, with_budget

    data = {
        "dataset": {"name": "digits"},
        "fidelity": {"epochs": 3, "image_size": 8},
        "strategy": {
            "method": "gensoup",
            "population": 10,
            "population_step": 1,
            "min_population": 4,
            "final_image_size": 16,
            "hold_generations": 2,
        },
        "stopper": "asha",
        "space": {"lr_scale": {"type": "float", "low": 0.5, "high": 2.0}},
    }
    spec = SearchSpec.from_dict(data, "soup.yaml")
    budgeted = with_budget(spec, evaluations_for_epochs(spec, 183))
    sizes = generation_sizes(budgeted)
    assert len(sizes) == 10 and sum(sizes) * 3 <= 183 < (sum(sizes) + 4) * 3
    ramp = [generation_fidelity(budgeted, g).image_size for g in range(len(sizes))]
    assert ramp[-2:] == [16, 16] and ramp[0] == 8 and ramp == sorted(ramp)


def soup(**kw):
    settings = dict(
        n_genes=3,
        population=8,
        crossover=[0.0, 0.9, 0.9],
        mutation=[0.0, 0.3, 0.3],
        population_step=2,
        min_population=3,
        arch_index=0,
        arch_choices=2,
    )
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


def test_fixed_architecture_leaves_every_gene_to_the_operators():
    """With the architecture fixed (no gene), gene 0 is a hyperparameter like the others: mutated with pm = 1,
    it must not be copied from the better parent (it was, onto lr_scale, when arch_index defaulted to 0)."""
    spec = SearchSpec.from_dict(
        {
            "dataset": {"name": "digits"},
            "fidelity": {},
            "fixed": {"architecture": "lenet5"},
            "strategy": {"method": "gensoup", "population": 8, "mutation": 1.0},
            "space": {
                "lr_scale": {"type": "float", "low": 0.1, "high": 1.0},
                "weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
            },
        }
    )
    gs, rng = build_strategy(spec), np.random.default_rng(0)
    state = gs.init()
    population, state = gs.ask(state, rng)
    state, _ = gs.tell(state, {ind.id: float(i) for i, ind in enumerate(population)})
    first = {ind.id: ind for ind in population}
    children, _ = gs.ask(state, rng)
    bred = [c for c in children if c.operator != "elite"]
    assert bred and all(c.genome[0] != first[c.parent_ids[0]].genome[0] for c in bred)
    assert all(c.operator == "fusion" for c in bred if len(c.parent_ids) == 2 and min(c.fusion_weights) > 0)


def test_a_parent_with_zero_weight_is_an_inheritance_not_a_fusion():
    """Two parents of one architecture where the other is at the generation's minimum (Ev = 0): the weights
    are (1, 0), the better parent's alone, and the child is labelled inherit."""
    gs, rng = soup(population=4, population_step=0, arch_choices=1), np.random.default_rng(1)
    state = gs.init()
    population, state = gs.ask(state, rng)
    state, _ = gs.tell(state, {ind.id: float(i) for i, ind in enumerate(population)})
    labelled = []
    for _ in range(20):
        children, _ = gs.ask(state, rng)
        labelled += [(c.operator, c.fusion_weights) for c in children if len(c.parent_ids) == 2]
    assert ("inherit", (1.0, 0.0)) in labelled
    assert all(min(w) > 0 for op, w in labelled if op == "fusion")


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
@pytest.mark.cluster  # gensoup on Ray is in test_objectives.py (a user objective): the slow tier
def test_gensoup_run_on_ray(tmp_path, tracking_uri, ray_address):
    import mlflow.pytorch

    from popplast.spec.search import DatasetSpec
    from popplast.training.data import load_split
    from popplast.training.train import measure

    result = popplast.run(write_spec(tmp_path, SOUP_SPEC), workers=2, tracking_uri=tracking_uri, progress=False)
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([result.experiment_id], f"tags.mlflow.parentRunId = '{result.search_run_id}'")
    tags = {r.data.tags["popplast.individual_id"]: r.data.tags for r in runs}
    assert len(tags) == 6 + 5 + 4 + 3
    operators = {t["popplast.operator"] for t in tags.values()}
    assert operators <= {"init", "inherit", "fusion", "elite"} and {"fusion", "elite"} <= operators
    for t in tags.values():
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
