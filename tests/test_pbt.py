"""popplast's PBT: exploit and explore by hand-checked rules, reproducibility, and a real run whose members
go on from trained weights (ALGORITHMS.md §8)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient

import popplast
from popplast.spec.search import SearchSpec
from popplast.strategies.build import build_strategy
from popplast.strategies.ga import GAState
from tests.helpers import individuals

SPACE = {
    "architecture": {"type": "categorical", "choices": ["lenet5", "small_vgg"]},
    "lr_scale": {"type": "float", "low": 0.1, "high": 3.0, "log": True},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.01},
}


def pbt(population: int = 8):
    spec = SearchSpec.from_dict(
        {
            "dataset": {"name": "digits"},
            "fidelity": {},
            "strategy": {"method": "pbt", "population": population},
            "space": SPACE,
        }
    )
    return build_strategy(spec), spec


def test_the_bottom_quarter_exploits_the_top_quarter_and_the_rest_go_on():
    strategy, spec = pbt(8)
    rng = np.random.default_rng(0)
    members, state = strategy.ask(strategy.init(), rng)
    fitness = {m.id: float(i) for i, m in enumerate(members)}  # slot 7 best, slot 0 worst
    fitness[members[3].id] = None  # a failed member ranks last
    state, _ = strategy.tell(state, fitness)
    children, _ = strategy.ask(state, rng)
    bottom, top = {members[0].id, members[3].id}, {members[7].id, members[6].id}
    for slot, (child, parent) in enumerate(zip(children, members)):
        assert child.id == f"g001-i{slot:03d}" and child.fusion_weights == (1.0,)
        if parent.id in bottom:
            assert child.operator == "exploit" and child.parent_ids[0] in top
            source = next(m for m in members if m.id == child.parent_ids[0])
            assert child.genome[0] == source.genome[0]  # the categorical gene as it was
            for index in (1, 2):
                gene = spec.space.genes[index]
                low, high = gene.bounds()
                was, now = gene.decode(source.genome[index]), gene.decode(child.genome[index])
                assert low - 1e-12 <= now <= high + 1e-12
                perturbed = any(np.isclose(now, min(max(was * f, low), high)) for f in (0.8, 1.2))
                assert perturbed or child.genome[index] != source.genome[index]  # else resampled
        else:
            assert (child.operator, child.parent_ids, child.genome) == ("inherit", (parent.id,), parent.genome)


def test_same_seed_same_members_and_the_state_survives_json():
    runs = []
    for _ in range(2):
        strategy, _ = pbt(6)
        rng, state, seen = np.random.default_rng(4), None, []
        state = strategy.init()
        for _generation in range(4):
            members, state = strategy.ask(state, rng)
            seen += [(m.id, m.operator, m.parent_ids, m.genome, m.seed) for m in members]
            state, _ = strategy.tell(state, {m.id: float(np.sum(m.genome)) for m in members})
            state = GAState.from_dict(json.loads(json.dumps(state.to_dict())))
        runs.append(seen)
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_pbt_members_go_on_from_trained_weights(tiny_spec, tmp_path):
    """popplast's CNN trainer under PBT (Ray against local: tests/test_objectives.py)."""
    uri = f"sqlite:///{tmp_path}/b.db"
    local = popplast.run(tiny_spec, method="pbt", executor="local", tracking_uri=uri, progress=False)
    rows = individuals(uri, local.search_run_id)
    client = MlflowClient(uri)
    tags = {r["id"]: client.get_run(r["run_id"]).data.tags for r in rows}
    assert {r["operator"] for r in rows} == {"init", "inherit", "exploit"}
    for row in rows:
        if row["generation"] > 0:  # the state it started from is the one its parent trained
            parent = row["parents"][0]
            assert tags[row["id"]]["popplast.initial_weights_hash"] == tags[parent]["popplast.trained_weights_hash"]
    assert local.model_uri  # the best member's trained model, as Gen-Soup's answer
