"""The greedy soup (Wortsman et al., ICML 2022, Recipe 1; ALGORITHMS.md §12): candidates of one architecture
ordered by validation metric, best first; each is added to the running uniform average only if the soup's
validation metric does not drop (measured after BatchNorm statistics are re-estimated on the average)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from popplast.training.fusion import fuse_state_dicts


@dataclass
class Soup:
    """The ingredients kept (ids, best first), the soup's validation metric and the best candidate's alone
    (`start`), each candidate tried after the first (id, the trial soup's metric, kept), and the soup's state."""

    ingredients: list[str]
    metric: float
    state: dict[str, Any]
    start: float
    tried: list[tuple[str, float, bool]] = field(default_factory=list)


def greedy_soup(
    candidates: Sequence[tuple[str, Mapping[str, Any]]],
    score: Callable[[Mapping[str, Any], bool], tuple[float, dict[str, Any]]],
) -> Soup:
    """`candidates`: (id, state) ordered by validation metric, best first; `score(state, averaged)`: the
    validation metric of a model loaded with `state`, and the model's state as measured (with its BatchNorm
    statistics re-estimated first when `averaged`). The first candidate is scored as it is: the soup starts
    as the best model, so it ends no worse on validation."""
    first_id, first = candidates[0]
    metric, measured = score(first, False)
    soup = Soup([first_id], metric, measured, metric)
    kept = [first]
    for cid, state in candidates[1:]:
        value, measured = score(fuse_state_dicts([*kept, state], [1.0] * (len(kept) + 1)), True)
        accepted = value >= soup.metric
        soup.tried.append((cid, value, accepted))
        if accepted:
            kept.append(state)
            soup.ingredients.append(cid)
            soup.metric, soup.state = value, measured
    return soup


def improved(soup: Soup) -> bool:
    """Whether the soup beats the best candidate alone on validation (else the best is the answer)."""
    return len(soup.ingredients) > 1 and soup.metric > soup.start
