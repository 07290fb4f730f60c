"""The asynchronous strategies' contract under failures (issue 30): steady-state GA and Gen-Soup, their
islands, and asynchronous PBT, driven as a pool of workers drives them (results told one at a time, in a
random order, some of them failures), with the state round-tripped through JSON now and then:

- every id is asked once in a search, and every told result is accepted exactly once;
- a parent was told before its child was asked;
- a child's weights come only from parents that succeeded (a failed evaluation has no state): every parent
  with a fusion weight above 0 was told a finite fitness;
- the search asks exactly its budget, and the same seed and completion order give the same individuals.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from popplast.spec.search import SearchSpec
from popplast.strategies.build import build_strategy

SPACE = {
    "architecture": {"type": "categorical", "choices": ["lenet5", "small_vgg"]},
    "lr_scale": {"type": "float", "low": 0.1, "high": 3.0, "log": True},
    "batch_size": {"type": "int", "low": 16, "high": 64},
}

ASYNC = {
    "ga-async": {"method": "ga"},
    "ga-async-worst": {"method": "ga", "replacement": "worst"},
    "ga-async-islands": {"method": "ga", "islands": 2, "migration_interval": 3},
    "gensoup-async": {"method": "gensoup"},
    "gensoup-async-islands": {
        "method": "gensoup",
        "islands": 2,
        "migration_interval": 3,
        "migration_topology": "complete",
    },
    "pbt-async": {"method": "pbt"},
}


def spec_for(name: str) -> SearchSpec:
    strategy = {"population": 6, "generations": 6, "schedule": "async", **ASYNC[name]}
    return SearchSpec.from_dict({"dataset": {"name": "digits"}, "fidelity": {}, "strategy": strategy, "space": SPACE})


def drive(name: str, seed: int, failure_rate: float, workers: int = 3, round_trip_every: int = 5):
    """Ask while a worker is free, tell one in-flight individual at a time (drawn from the test's own
    generator), a share of them failed; return what was asked and told."""
    spec = spec_for(name)
    strategy, rng, order = build_strategy(spec), np.random.default_rng(seed), np.random.default_rng(seed + 100)
    budget = spec.strategy.population * spec.strategy.generations
    state = strategy.init()
    asked, told, flying, births = [], {}, [], 0
    while births < budget or flying:
        while births < budget and len(flying) < workers:
            individuals, state = strategy.ask(state, rng)
            if not individuals:
                break
            (child,) = individuals
            births += 1
            for parent, weight in zip(child.parent_ids, child.fusion_weights or (1.0,) * len(child.parent_ids)):
                assert parent in told, f"{child.id}'s parent {parent} was not told before it was asked"
                if weight > 0:
                    assert told[parent] is not None, f"{child.id} takes weights from {parent}, which failed"
            asked.append((child.id, child.genome, child.parent_ids, child.operator, child.fusion_weights, child.seed))
            flying.append(child)
        assert flying, "nothing in flight and nothing to ask before the budget is spent"
        child = flying.pop(int(order.integers(len(flying))))
        value = None if order.random() < failure_rate else float(np.sum(child.genome))
        state, _ = strategy.tell(state, {child.id: value})
        told[child.id] = value
        with pytest.raises((KeyError, ValueError)):
            strategy.tell(state, {child.id: 1.0})  # told already
        if len(told) % round_trip_every == 0:
            state = strategy.state_from_dict(json.loads(json.dumps(state.to_dict())))
    return asked, told, state


@pytest.mark.parametrize("name", list(ASYNC))
@pytest.mark.parametrize("failure_rate", [0.0, 0.3, 0.7])
def test_ids_are_unique_and_every_result_is_told_once_under_failures(name, failure_rate):
    asked, told, state = drive(name, seed=7, failure_rate=failure_rate)
    ids = [row[0] for row in asked]
    assert len(ids) == len(set(ids)) == 36, "an id was asked twice"
    assert set(told) == set(ids) and state.evaluations == 36
    assert not state.in_flight


@pytest.mark.parametrize("name", list(ASYNC))
def test_the_same_seed_and_completion_order_give_the_same_individuals(name):
    assert drive(name, 3, 0.3)[0] == drive(name, 3, 0.3, round_trip_every=2)[0]
    assert drive(name, 3, 0.3)[0] != drive(name, 4, 0.3)[0]


def test_asynchronous_pbt_numbers_a_segment_after_a_failed_one_afresh():
    """Member 0's second segment fails: its third is g002-i000, never g001-i000 a second time, and it exploits
    a member whose latest segment succeeded (its failed segment ranks last and has no state)."""
    spec = spec_for("pbt-async")
    strategy, rng = build_strategy(spec), np.random.default_rng(0)
    state = strategy.init()
    first = []
    for _ in range(6):
        (child,), state = strategy.ask(state, rng)
        first.append(child)
    state, _ = strategy.tell(state, {c.id: 1.0 + i for i, c in enumerate(first)})
    (again,), state = strategy.ask(state, rng)
    assert again.id == "g001-i000"
    state, _ = strategy.tell(state, {"g001-i000": None})
    others = []
    for _ in range(5):  # the members ready before member 0 is again
        (child,), state = strategy.ask(state, rng)
        others.append(child.id)
    assert others == [f"g001-i{k:03d}" for k in range(1, 6)]
    (third,), state = strategy.ask(state, rng)
    assert third.id == "g002-i000" and third.generation == 2
    assert third.operator == "exploit" and third.parent_ids[0] in {c.id for c in first[1:]}
