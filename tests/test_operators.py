"""Each Gen-CNN operator against a hand-worked example (thesis Algorithms 1–2, eqs. 3.4–3.6)."""

import numpy as np
import pytest

from popplast.strategies.operators import (
    best_index,
    normalise,
    selection_score,
    tournament,
    uniform_mutation,
    weighted_crossover,
)


class Scripted:
    """A generator that returns prepared draws, so a hand-worked example can be replayed exactly."""

    def __init__(self, integers=(), random=()):
        self._integers = list(integers)
        self._random = list(random)

    def integers(self, low, high=None, size=None):
        out, self._integers = self._integers[:size], self._integers[size:]
        return np.array(out)

    def random(self, size=None):
        out, self._random = self._random[:size], self._random[size:]
        return np.array(out)


def test_normalise_min_max():
    assert normalise([0.2, 0.6, 1.0]) == pytest.approx([0.0, 0.5, 1.0])


def test_normalise_all_equal_gives_one():
    assert normalise([0.7, 0.7, 0.7]) == pytest.approx([1.0, 1.0, 1.0])


def test_normalise_failures_get_zero_and_do_not_move_the_range():
    assert normalise([0.2, np.nan, 1.0, 0.6]) == pytest.approx([0.0, 0.0, 1.0, 0.5])
    assert normalise([np.nan, np.nan]) == pytest.approx([0.0, 0.0])


def test_selection_score_ranks_failures_below_the_worst_success():
    score = selection_score([0.2, np.nan, 1.0])
    assert score[1] == -np.inf and score[0] == 0.0 and score[2] == 1.0


def test_tournament_hand_worked():
    # Ev = [0, 0.5, 1, 0.25]; opponents drawn: [2, 0, 1, 3]
    # slot 0 (0) vs 2 (1)   → 2;   slot 1 (0.5) vs 0 (0) → 1
    # slot 2 (1) vs 1 (0.5) → 2;   slot 3 vs itself: not strictly better → the opponent, 3
    selected = tournament(np.array([0.0, 0.5, 1.0, 0.25]), Scripted(integers=[2, 0, 1, 3]))
    assert selected.tolist() == [2, 1, 2, 3]


def test_tournament_tie_goes_to_the_opponent():
    assert tournament(np.array([0.5, 0.5]), Scripted(integers=[1, 0])).tolist() == [1, 0]


def test_tournament_failed_loses_to_any_success():
    score = selection_score([np.nan, 0.1, 0.3])  # [−inf, 0, 1]
    assert tournament(score, Scripted(integers=[1, 0, 0])).tolist() == [1, 1, 2]


def test_weighted_crossover_hand_worked():
    # (0.2·1 + 0.8·0.5) / 1.5 = 0.4 ;  (0.6·1 + 0.0·0.5) / 1.5 = 0.4
    child = weighted_crossover(np.array([0.2, 0.6]), np.array([0.8, 0.0]), 1.0, 0.5)
    assert child == pytest.approx([0.4, 0.4])


def test_weighted_crossover_zero_fitness_is_plain_mean():
    assert weighted_crossover(np.array([0.2]), np.array([0.8]), 0.0, 0.0) == pytest.approx([0.5])


def test_weighted_crossover_one_zero_parent_copies_the_other():
    assert weighted_crossover(np.array([0.2]), np.array([0.8]), 0.0, 0.7) == pytest.approx([0.8])


def test_uniform_mutation_hand_worked():
    # decisions [0.3, 0.3, 0.6] < pm [1.0, 0.0, 0.5] → [mutate, keep, keep]; fresh values [0.9, 0.8, 0.7]
    genome, mutated = uniform_mutation(
        np.array([0.1, 0.2, 0.3]), np.array([1.0, 0.0, 0.5]), Scripted(random=[0.3, 0.3, 0.6, 0.9, 0.8, 0.7])
    )
    assert genome == pytest.approx([0.9, 0.2, 0.3])
    assert mutated.tolist() == [True, False, False]


def test_best_index_first_on_ties_and_none_when_all_failed():
    assert best_index(np.array([0.1, 0.9, 0.9])) == 1
    assert best_index(np.array([-np.inf, -np.inf])) is None
