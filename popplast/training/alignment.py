"""Weight matching (Ainsworth, Hayase & Srinivasa, ICLR 2023, "Git Re-Basin", Algorithm 1; ALGORITHMS.md §12).

For a model B against a reference A of the same structure: repeat over the permutation groups in random
order, fix the others, and choose group l's permutation P_l maximising Σ ⟨W_A, P_l W_B⟩ over every weight
the group touches (a linear assignment problem, scipy's `linear_sum_assignment`); stop when a pass over
every group changes none. Data-free. The groups come from training/permutations.py.

A permutation `perm` of a group is an index array: the aligned model's unit i is B's unit perm[i].
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from popplast.training.permutations import PermutationSpec, Segment

Perms = dict[int, np.ndarray]


def identity(spec: PermutationSpec) -> Perms:
    return {g: np.arange(n) for g, n in spec.groups.items()}


def random_permutation(spec: PermutationSpec, rng: np.random.Generator) -> Perms:
    return {g: rng.permutation(n) for g, n in spec.groups.items()}


def permute(
    spec: PermutationSpec, perms: Perms, state: Mapping[str, torch.Tensor], skip: tuple[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """`state` with every group's permutation applied to the axes it acts on (`skip`: one (key, axis) left
    as it is, for the matching step); keys the spec does not name are returned as they are."""
    out = dict(state)
    for key, axes in spec.axes.items():
        tensor = state[key]
        for axis, segments in enumerate(axes):
            if segments is None or (key, axis) == skip:
                continue
            tensor = tensor.index_select(axis, torch.as_tensor(_index(segments, perms), device=tensor.device))
        out[key] = tensor
    return out


def _index(segments: tuple[Segment, ...], perms: Perms) -> np.ndarray:
    parts, offset = [], 0
    for s in segments:
        order = perms[s.group] if s.group is not None else np.arange(s.size)
        parts.append((order[:, None] * s.repeat + np.arange(s.repeat)).ravel() + offset)
        offset += s.length
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def weight_matching(
    spec: PermutationSpec,
    reference: Mapping[str, torch.Tensor],
    other: Mapping[str, torch.Tensor],
    rng: np.random.Generator,
    max_passes: int = 100,
) -> Perms:
    """The permutations that align `other` to `reference` (both state dicts of the spec's model)."""
    perms = identity(spec)
    groups = list(spec.groups)
    places = {g: list(spec.touching(g)) for g in groups}
    a = {k: v.detach().to("cpu", torch.float64) for k, v in reference.items() if k in spec.axes}
    b = {k: v.detach().to("cpu", torch.float64) for k, v in other.items() if k in spec.axes}
    for _ in range(max_passes):
        changed = False
        for g in rng.permutation(groups) if groups else ():
            n = spec.groups[int(g)]
            score = torch.zeros(n, n, dtype=torch.float64)
            for key, axis, offset, seg in places[int(g)]:
                wa = _rows(a[key], axis, offset, seg)
                wb = _rows(permute(_only(spec, key), perms, {key: b[key]}, skip=(key, axis))[key], axis, offset, seg)
                score += wa @ wb.T
            cost = score.numpy()
            _, chosen = linear_sum_assignment(cost, maximize=True)
            rows = np.arange(n)
            if cost[rows, chosen].sum() > cost[rows, perms[int(g)]].sum() + 1e-12 * max(1.0, abs(cost).max()):
                perms[int(g)] = chosen
                changed = True
        if not changed:
            break
    return perms


def _only(spec: PermutationSpec, key: str) -> PermutationSpec:
    return PermutationSpec(spec.groups, {key: spec.axes[key]})


def _rows(tensor: torch.Tensor, axis: int, offset: int, seg: Segment) -> torch.Tensor:
    """The segment's units as rows: (size, everything else)."""
    part = tensor.narrow(axis, offset, seg.length).movedim(axis, 0)
    return part.reshape(seg.size, -1)


def align(
    spec: PermutationSpec, states: Sequence[Mapping[str, torch.Tensor]], seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """Every state after the first permuted to match the first (the better parent); the first as it is."""
    rng = np.random.default_rng(seed)
    first = dict(states[0])
    return [first] + [permute(spec, weight_matching(spec, first, s, rng), s) for s in states[1:]]
