"""The search-space file in Optuna's terms: every gene type both ways, and chosen values decode to themselves."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from popplast.errors import SpecError
from popplast.spec.search import SearchSpec
from popplast.spec.space import Gene, SearchSpace
from popplast.strategies.budget import default_budget, with_budget
from popplast.strategies.optuna_space import SpaceNotConvertible, from_optuna, params_to_genome, to_optuna

SPACE = SearchSpace(
    (
        Gene("lr", "float", low=1e-5, high=1e-1, log=True),
        Gene("dropout", "float", low=0.0, high=0.5),
        Gene("width", "int", low=8, high=64, log=True),
        Gene("depth", "int", low=1, high=6),
        Gene("optimizer", "categorical", choices=("adam", "sgd", "rmsprop")),
        Gene("flags", "categorical", choices=(None, True, 3, 0.5)),
    )
)


def test_every_gene_type_converts_to_its_optuna_distribution():
    d = to_optuna(SPACE)
    assert d["lr"] == FloatDistribution(1e-5, 1e-1, log=True)
    assert d["dropout"] == FloatDistribution(0.0, 0.5)
    assert d["width"] == IntDistribution(8, 64, log=True)
    assert d["depth"] == IntDistribution(1, 6)
    assert d["optimizer"] == CategoricalDistribution(("adam", "sgd", "rmsprop"))
    assert d["flags"] == CategoricalDistribution((None, True, 3, 0.5))


def test_and_back_to_the_same_space():
    assert from_optuna(to_optuna(SPACE)) == SPACE


def test_values_optuna_chooses_decode_to_the_same_configuration():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    distributions = to_optuna(SPACE)
    for _ in range(300):
        trial = study.ask(distributions)
        genome = params_to_genome(SPACE, trial.params)
        assert all(0.0 <= g <= 1.0 for g in genome)
        decoded = SPACE.decode(genome)
        for name, value in trial.params.items():
            if SPACE[name].type == "float":
                assert math.isclose(decoded[name], value, rel_tol=1e-9, abs_tol=1e-12), name
            else:
                assert decoded[name] == value and type(decoded[name]) is type(value), name
        study.tell(trial, 0.0)


def test_values_past_a_bound_clip_to_the_edge_gene():
    assert params_to_genome(SearchSpace((Gene("lr", "float", low=0.1, high=1.0),)), {"lr": 1.7}) == (1.0,)


def test_what_optuna_cannot_hold_is_refused_by_name():
    with pytest.raises(SpaceNotConvertible, match="gene 'blocks'.*\\[1, 2\\] is a list"):
        to_optuna(SearchSpace((Gene("blocks", "categorical", choices=([1, 2], [3])),)))
    with pytest.raises(SpaceNotConvertible, match="'q': popplast's float genes are continuous"):
        from_optuna({"q": FloatDistribution(0.0, 1.0, step=0.1)})


SPEC = {
    "dataset": {"name": "digits"},
    "fidelity": {},
    "space": {"lr": {"type": "float", "low": 0.1, "high": 1.0}},
    "strategy": {"population": 10, "generations": 6},
}


def test_budgets_in_evaluations_for_every_method():
    spec = SearchSpec.from_dict(SPEC, "s.yaml")
    assert default_budget(spec) == 60
    assert with_budget(spec, 40).strategy.generations == 4
    assert with_budget(spec.with_overrides(method="tpe"), 45).strategy.generations == 5  # rows of 10 for layout
    soup = SearchSpec.from_dict(
        {
            **SPEC,
            "strategy": {
                "method": "gensoup",
                "population": 10,
                "generations": 6,
                "population_step": 2,
                "min_population": 4,
            },
        },
        "s.yaml",
    )
    assert default_budget(soup) == 10 + 8 + 6 + 4 + 4 + 4
    assert with_budget(soup, 30).strategy.generations == 4  # 10 + 8 + 6 + 4 = 28; a fifth would make 32
    with pytest.raises(SpecError, match="--budget-evals: ga evaluates whole generations of 10 .*s.yaml.*got 45"):
        with_budget(spec, 45)
    with pytest.raises(SpecError, match="--method: expected one of ga, gensoup, pbt, tpe"):
        spec.with_overrides(method="bayes")
