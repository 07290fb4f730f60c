"""Several objectives (ALGORITHMS.md §11): constraint-domination, NSGA-II's sorting, crowding and survival, the
utility Gen-Soup fuses by, MO-PBT's exploit and the hypervolume, worked by hand and against independent
implementations (a brute-force peeling of fronts by the definition, Optuna's crowding distance and its WFG
hypervolume, a grid count)."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popplast.core import pareto
from popplast.core.individual import Individual
from popplast.spec.space import Gene
from popplast.strategies.ga import GAState, GenCNN, survive
from popplast.strategies.gensoup import GenSoup
from popplast.strategies.operators import best_first, normalise, ranking
from popplast.strategies.pbt import PBT
from popplast.strategies.steady_state import SteadyStateGA


def v(*objectives: float, violation: float = 0.0) -> list[float]:
    return [*objectives, violation]


def test_constraint_domination_by_hand() -> None:
    assert pareto.dominates(v(1, 1), v(1, 0))  # no worse in both, better in one
    assert not pareto.dominates(v(1, 0), v(0, 1)) and not pareto.dominates(v(0, 1), v(1, 0))
    assert not pareto.dominates(v(1, 1), v(1, 1))
    assert pareto.dominates(v(0, 0), v(9, 9, violation=0.1))  # feasible beats any infeasible
    assert pareto.dominates(v(0, 0, violation=1), v(9, 9, violation=2))  # less violation wins
    assert not pareto.dominates(v(9, 9, violation=2), v(0, 0, violation=2))  # equal violations: neither


def test_fronts_by_hand() -> None:
    values = [
        v(3, 1),  # 0: front 0
        v(1, 3),  # 1: front 0
        v(2, 2),  # 2: front 0
        v(1, 1),  # 3: dominated by 2 → front 1
        v(0, 0),  # 4: front 2
        v(9, 9, violation=0.5),  # 5: infeasible, after every feasible one
        v(9, 9, violation=0.2),  # 6: less violation, before 5
        None,  # 7: failed
        v(5, 5, violation=0.2),  # 8: same violation as 6: same front
    ]
    assert pareto.fronts(values).tolist() == [0, 0, 0, 1, 2, 4, 3, -1, 3]
    assert pareto.first_front(values) == [0, 1, 2]


def _peel(values: list[list[float]]) -> list[int]:
    """Fronts by the definition: repeatedly take the entries no remaining entry constraint-dominates."""
    left, front, out = set(range(len(values))), 0, [0] * len(values)
    while left:
        layer = {i for i in left if not any(pareto.dominates(values[j], values[i]) for j in left if j != i)}
        for i in layer:
            out[i] = front
        left -= layer
        front += 1
    return out


vectors = st.lists(
    st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4), st.sampled_from([0, 0, 0, 1, 2])),
    min_size=1,
    max_size=14,
)


@settings(max_examples=200, deadline=None)
@given(vectors)
def test_fronts_match_peeling_by_the_definition(rows: list[tuple[int, ...]]) -> None:
    values = [[float(x) for x in r] for r in rows]
    assert pareto.fronts(values).tolist() == _peel(values)


def test_crowding_by_hand() -> None:
    # one front of four points, maximised; ranges 3 and 3
    front = np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 0.5], [3.0, 0.0]])
    d = pareto.crowding(front)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx((2 - 0) / 3 + (3 - 0.5) / 3)
    assert d[2] == pytest.approx((3 - 1) / 3 + (2 - 0) / 3)


@settings(max_examples=100, deadline=None)
@given(st.integers(3, 12), st.integers(2, 4), st.integers(0, 10_000))
def test_crowding_matches_optunas_nsga2(n: int, k: int, seed: int) -> None:
    points = np.random.default_rng(seed).permutation(n * k * 4)[: n * k].reshape(n, k).astype(float)  # distinct
    trials = [
        optuna.trial.create_trial(values=list(p), distributions={}, params={}, state=optuna.trial.TrialState.COMPLETE)
        for p in points
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    from optuna.samplers.nsgaii._elite_population_selection_strategy import _calc_crowding_distance

    theirs = _calc_crowding_distance(list(trials))
    ours = pareto.crowding(points)
    for i in range(n):
        assert ours[i] == pytest.approx(theirs[i]), (i, points)


def test_utility_orders_as_the_crowded_tournament() -> None:
    values = [v(3, 1), v(1, 3), v(2, 2), v(1, 1), v(0, 0), None]
    u = pareto.utilities(values)
    # front 1 (ids 0–2): boundaries 0 and 1 count c = 1 → u = 0; the middle one c = 2 → u = −1 + 2/3
    assert u[0] == u[1] == 0.0
    assert u[2] == pytest.approx(-1 + 2 / 3)
    assert u[3] == pytest.approx(-1.0)  # front 2 alone: its own extreme
    assert u[4] == pytest.approx(-2.0)
    assert np.isnan(u[5])


@settings(max_examples=100, deadline=None)
@given(vectors)
def test_utility_sorts_by_front_then_crowding(rows: list[tuple[int, ...]]) -> None:
    values = [[float(x) for x in r] for r in rows]
    front, distance = pareto.crowding_by_front(values)
    u = pareto.utilities(values)
    for i, j in itertools.permutations(range(len(values)), 2):
        if front[i] < front[j] and not (distance[j] == np.inf and distance[i] == 0):
            assert u[i] > u[j]
        elif front[i] == front[j] and distance[i] > distance[j]:
            assert u[i] > u[j]


def test_scattered_order_by_hand() -> None:
    front = np.array([[0.0, 4.0], [1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    # the best in the first objective, then the farthest from it, then the middle, then the two left
    assert pareto.scattered(front) == [4, 0, 2, 1, 3]


def test_mo_pbt_ranks_front_by_front_each_scattered() -> None:
    values = [v(0, 4), v(4, 0), v(2, 2), v(1, 1), v(0, 0, violation=1), None]
    assert pareto.ranked(values) == [1, 0, 2, 3, 4, 5]
    assert best_first(values, np.zeros(6)) == [1, 0, 2, 3, 4, 5]


def test_mo_pbt_exploit_takes_the_scattered_top_and_the_bottom() -> None:
    genes = [Gene("lr", "float", 1e-3, 1.0, log=True)]
    pbt = PBT(n_genes=1, population=8, crossover=[0.0], mutation=[0.0], genes=genes, quantile=0.25)
    members = tuple(Individual(f"g000-i{i:03d}", (i / 10,), 0) for i in range(8))
    told = [v(0, 6), v(6, 0), v(3, 3), v(1, 1), v(2, 2), v(0, 0), v(0, 0.5), v(5, 5, violation=1)]
    state = GAState(0, members, {m.id: t for m, t in zip(members, told)})
    # front 1: 0, 1, 2 (scattered: 1, then 0, then 2); front 2: 4; 3; 6; 5; then the infeasible 7
    assert best_first(told, np.zeros(8)) == [1, 0, 2, 4, 3, 6, 5, 7]
    _, made = pbt._offspring(state, np.random.default_rng(0))
    exploited = {i for i, m in enumerate(made) if m[1] == "exploit"}
    assert exploited == {5, 7}  # the bottom 2 of that order
    assert {made[i][0][0] for i in exploited} <= {members[1].id, members[0].id}  # from the top 2


def test_nsga2_survival_keeps_the_best_of_pool_and_generation() -> None:
    old = tuple(Individual(f"g000-i{i:03d}", (0.5,), 0) for i in range(4))
    new = tuple(Individual(f"g001-i{i:03d}", (0.5,), 1) for i in range(4))
    state = GAState(
        1,
        new,
        {new[0].id: v(5, 5), new[1].id: v(0, 0), new[2].id: None, new[3].id: v(1, 6)},
        pool=old,
        pool_fitness={old[0].id: v(6, 1), old[1].id: v(1, 1), old[2].id: v(2, 2), old[3].id: v(0, 1)},
    )
    kept = survive(state)
    # front 1: g000-i000 (6,1), g001-i000 (5,5), g001-i003 (1,6); front 2: g000-i002 (2,2), cut at 4
    assert {i.id for i in kept.pool} == {"g000-i000", "g001-i000", "g001-i003", "g000-i002"}
    assert set(kept.pool_fitness) == {i.id for i in kept.pool}


def test_several_objectives_ga_breeds_from_survivors_and_keeps_no_copy() -> None:
    ga = GenCNN(n_genes=2, population=6, crossover=[0.9, 0.9], mutation=[0.2, 0.2])
    rng = np.random.default_rng(0)
    state = ga.init()
    for generation in range(3):
        population, state = ga.ask(state, rng)
        if generation:
            pool = {i.id for i in state.pool}
            assert all(p in pool for ind in population for p in ind.parent_ids)
            assert all(ind.operator != "elite" for ind in population)
        told = {ind.id: v(ind.genome[0], 1 - ind.genome[0] ** 2 + ind.genome[1] / 10) for ind in population}
        state, metrics = ga.tell(state, told)
        assert len(state.pool) == 6 and metrics
    # round trip through JSON keeps the pool and its vectors
    import json

    again = ga.state_from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state


def test_gensoup_fuses_by_the_utility_normalised() -> None:
    soup = GenSoup(n_genes=1, population=4, crossover=[0.0], mutation=[0.0], elitism=False)
    members = tuple(Individual(f"g000-i{i:03d}", (0.5,), 0) for i in range(4))
    told = [v(3, 0), v(0, 3), v(2, 2), v(1, 1)]
    state = GAState(0, members, {m.id: t for m, t in zip(members, told)})
    u, order = pareto.utilities(told), ranking(told)
    ev = normalise(u)  # §11: the weights from u, normalised as a fitness
    assert ev.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 0.0])  # u: 0, 0 (extremes), −1 + 2/3 (c = 2), −1
    made = [m for seed in range(10) for m in soup._offspring(state, np.random.default_rng(seed))[1]]
    index = {m.id: i for i, m in enumerate(members)}
    fused = 0
    for parents, operator, weights in made:
        if operator == "fusion":
            a, b = (index[p] for p in parents)
            assert weights == pytest.approx((ev[a] / (ev[a] + ev[b]), ev[b] / (ev[a] + ev[b])))
            assert order[a] >= order[b]  # the better parent by front and crowding comes first
            fused += 1
    assert fused


def test_steady_state_worst_replacement_drops_the_lowest_utility() -> None:
    ga = SteadyStateGA(n_genes=1, population=3, crossover=[0.0], mutation=[0.0], replacement="worst")
    members = [Individual(f"g000-i{i:03d}", (0.5,), 0) for i in range(3)]
    values = {members[0].id: v(3, 0), members[1].id: v(0, 3), members[2].id: v(1, 1)}
    newcomer = Individual("g001-i000", (0.5,), 1)
    ga.join(members, values, newcomer, v(2, 2))
    assert [m.id for m in members] == ["g000-i000", "g000-i001", "g001-i000"]  # (1, 1) was dominated


def _grid_volume(points: np.ndarray, reference: np.ndarray, step: float) -> float:
    """The dominated volume counted on a grid of cell centres (2-D and 3-D, integer points)."""
    top = points.max(axis=0)
    axes = [np.arange(r + step / 2, t, step) for r, t in zip(reference, top)]
    cells = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(reference))
    covered = (cells[:, None, :] <= points[None, :, :]).all(axis=2).any(axis=1)
    return float(covered.sum() * step ** len(reference))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(2, 4), st.integers(0, 10_000))
def test_hypervolume_matches_optunas_wfg(n: int, k: int, seed: int) -> None:
    from optuna._hypervolume import compute_hypervolume

    points = np.random.default_rng(seed).random((n, k))
    reference = np.full(k, -0.1)
    ours = pareto.hypervolume(points, reference)
    theirs = compute_hypervolume(-points, -reference)  # Optuna minimises
    assert ours == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_matches_a_grid_count(k: int) -> None:
    rng = np.random.default_rng(k)
    points = rng.integers(1, 8, size=(6, k)).astype(float)
    reference = np.zeros(k)
    assert pareto.hypervolume(points, reference) == pytest.approx(_grid_volume(points, reference, 1.0))


def test_hypervolume_by_hand_and_points_outside_the_reference() -> None:
    points = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0]])
    assert pareto.hypervolume(points, [0.0, 0.0]) == pytest.approx(3 + 2 + 1)  # 3×1 + 1×3 + 2×2 − overlaps
    assert pareto.hypervolume(np.array([[-1.0, 5.0]]), [0.0, 0.0]) == 0.0


def test_mo_asha_promotes_the_top_third_of_a_rung_by_front_then_crowding() -> None:
    from popplast.strategies.stoppers import ASHA

    asha = ASHA(min_steps=1, reduction_factor=3, max_steps=9)
    assert asha.rungs == (1, 3)
    verdicts = {
        name: asha.judge(name, 1, v(*point))
        for name, point in [
            ("a", (1, 1)),  # alone: promoted
            ("b", (2, 2)),  # dominates a; 2 reports, top 1: promoted
            ("c", (0.5, 0.5)),  # 3 reports, top 1, two better: stopped
            ("d", (3, 0)),  # beside b on the front, both extremes: none better, promoted
            ("e", (2, 2.5)),  # dominates b; front {d, e}: promoted
            ("f", (1.5, 1.5)),  # 6 reports, top 2; d, e, b better: stopped
        ]
    }
    assert verdicts == {"a": False, "b": False, "c": True, "d": False, "e": False, "f": True}
    # a stopped individual is recorded at no later rung; the promoted ones are judged again at step 3
    assert asha.judge("b", 3, v(2, 2)) is False and "c" not in asha.recorded[3]


def test_mo_asha_counts_a_violation_after_every_feasible_report() -> None:
    from popplast.strategies.stoppers import ASHA

    asha = ASHA(min_steps=1, reduction_factor=2, max_steps=4)
    assert asha.judge("feasible", 1, v(0, 0)) is False
    assert asha.judge("infeasible", 1, v(9, 9, violation=1.0)) is True  # 2 reports, top 1: the feasible one


def test_ties_across_fronts_never_let_a_dominated_member_win() -> None:
    """Duplicated points (discrete objectives make them common): the better front always ranks first in
    survival, replacement and MO-ASHA's promotion, even where §11's u ties (a front of copies, a member of
    crowding 0 beside the next front's extreme)."""
    from popplast.strategies.stoppers import promoted

    old = tuple(Individual(f"g000-i{i:03d}", (0.5,), 0) for i in range(2))
    new = tuple(Individual(f"g001-i{i:03d}", (0.5,), 1) for i in range(2))
    state = GAState(
        1,
        new,
        {new[0].id: v(1, 1), new[1].id: v(1, 1)},
        pool=old,
        pool_fitness={old[0].id: v(0, 0.5), old[1].id: v(0.5, 0)},
    )
    assert {i.id for i in survive(state).pool} == {new[0].id, new[1].id}
    assert ranking([v(2), v(2), v(1)]).tolist() == [1.0, 1.0, -1.0]  # one objective and a constraint's slot
    assert not promoted(v(0.5, 0), [v(0.9, 0), v(0.9, 0)], 3)  # as scalar ASHA would stop it
    front = pareto.crowding(np.array([[1.0, 1.0], [1.0, 1.0]]))
    assert np.isinf(front).all()  # copies of one point: their own extremes


def test_a_spec_keeps_its_reference_point_through_overrides() -> None:
    from popplast.spec.search import SearchSpec

    spec = SearchSpec.from_yaml("search_spaces/noisy_digits_budget.yaml")
    assert spec.fitness.reference == (0.0, 5001.0)
    assert SearchSpec.from_dict(spec.to_dict(), spec.source) == spec
    assert spec.with_overrides(method="gensoup").fitness == spec.fitness
    one = {**spec.to_dict(), "fitness": {"metric": "val_mcc", "reference": 0.0}}
    assert SearchSpec.from_dict(one, spec.source).fitness.reference == (0.0,)  # one objective, a constraint
