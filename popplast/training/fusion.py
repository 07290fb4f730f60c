"""Weight fusion: the fitness-weighted average of trained models (Gen-Soup, thesis ch. 5; ALGORITHMS.md §3).

θ = Σ_k w_k θ_k / Σ_k w_k over floating-point tensors; integer buffers (BatchNorm's num_batches_tracked)
are copied from the parent with the largest weight, as timm's weight averaging does. Optionally, BatchNorm
running statistics are re-estimated on a few training batches after fusion (the average of two networks'
statistics is not the statistics of the averaged network).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from popplast.training.weights import from_shareable


class FusionError(ValueError):
    pass


_UNTRACEABLE: set[str] = set()  # model classes this process has said it cannot align, said once each


def align_parents(
    model: nn.Module, states: Sequence[Mapping[str, Any]], example: torch.Tensor | None, seed: int
) -> tuple[list[dict[str, torch.Tensor]], str]:
    """The parents' states (the better first) with every other parent's hidden units permuted to match the
    better one's, by weight matching over `model`'s permutation groups (ALGORITHMS.md §12); and what was done,
    for the child's `fusion_alignment` tag. A model that cannot be traced, or parents that do not fit it,
    come back as they are, and the note says why (a model that cannot be traced is also said once per
    process on stderr)."""
    import sys

    from popplast.training.alignment import align
    from popplast.training.permutations import NotTraceable, permutation_spec

    tensors = [from_shareable(s) for s in states]
    own = model.state_dict()
    try:
        for i, state in enumerate(tensors):
            _check_match(state, own, f"parent {i}", "the child's model")
    except FusionError as e:
        return tensors, f"none: {e}"
    try:
        spec = permutation_spec(model, example if example is not None else example_input(model))
    except NotTraceable as e:
        kind = type(model).__name__
        if kind not in _UNTRACEABLE:
            _UNTRACEABLE.add(kind)
            print(
                f"popplast: cannot align {kind} for fusion ({e}); its parents are averaged as they are", file=sys.stderr
            )
        return tensors, f"none: cannot trace {kind} ({e})"
    units = sum(spec.groups.values())
    return align(spec, tensors, seed), f"weight_matching: {len(spec.groups)} permutation groups, {units} units"


def example_input(model: nn.Module) -> torch.Tensor:
    """An input of the shape the model's first layer takes (2 samples; 32 × 32 images, 64-long sequences), for
    a model given without one."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return torch.zeros(2, m.in_channels, 32, 32, device=device)
        if isinstance(m, nn.Conv1d):
            return torch.zeros(2, m.in_channels, 64, device=device)
        if isinstance(m, nn.Linear):
            return torch.zeros(2, m.in_features, device=device)
    from popplast.training.permutations import NotTraceable

    raise NotTraceable("no Conv2d, Conv1d or Linear layer to guess its input from: pass an example input")


def fuse_state_dicts(
    states: Sequence[Mapping[str, Any]], weights: Sequence[float], out: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Weighted average of any number of state dicts with the same keys and shapes (tensors or numpy arrays).

    Weights must be non-negative with a positive sum; they are normalised. When every weight is zero
    (parents at the bottom of the min–max scale, as in the crossover rule) the plain mean is used. Integer
    buffers, and every tensor when one parent has all the weight, are the parent's own.

    `out`: tensors to write the result into (a model's own, see `load_fused`), so that no new memory is
    taken: fresh pages cost more than the arithmetic (ResNet-18's 44.6 MiB on a 2-core VM: 17 ms to copy into
    fresh memory, 7 ms into memory in use; benchmarks/weights.py). Without `out`, new tensors, except that the
    parent's own tensors are returned, uncopied, where one parent has all the weight.
    """
    states = [from_shareable(s) for s in states]
    if not states or len(states) != len(weights):
        raise FusionError(
            f"expected one weight per state dict, got {len(states)} state dicts and {len(weights)} weights"
        )
    if any(w < 0 for w in weights):
        raise FusionError(f"fusion weights must be non-negative, got {list(weights)}")
    total = float(sum(weights))
    norm = [1.0 / len(weights)] * len(weights) if total == 0 else [w / total for w in weights]
    keys = list(states[0])
    for i, state in enumerate(states[1:], start=1):
        _check_match(state, states[0], f"state dict {i}", "state dict 0")
    if out is not None:
        _check_match(states[0], out, "the parents' state dicts", "the model")
    leader = max(range(len(norm)), key=lambda k: norm[k])
    fused = {}
    for key in keys:
        first = states[0][key]
        dst = None if out is None else out[key]
        if not first.is_floating_point() or norm[leader] == 1.0:
            # integer buffers, or one parent: its tensors as they are, bit for bit
            fused[key] = states[leader][key] if dst is None else dst.copy_(states[leader][key])
            continue
        # accumulated in place (in `dst` where given): no temporary per parent
        acc = torch.mul(first, norm[0]) if dst is None else torch.mul(first.to(dst.device), norm[0], out=dst)
        for w, state in zip(norm[1:], states[1:]):
            acc.add_(state[key].to(acc.device), alpha=w)
        fused[key] = acc
    return fused


@torch.no_grad()
def load_fused(model: nn.Module, states: Sequence[Mapping[str, Any]], weights: Sequence[float]) -> None:
    """Set `model`'s parameters and buffers to the fused state dicts, written straight into the model's own
    tensors (what `model.load_state_dict(fuse_state_dicts(...))` does, without the intermediate copy)."""
    fuse_state_dicts(states, weights, out=model.state_dict())


def _check_match(state: Mapping[str, Any], reference: Mapping[str, Any], name: str, reference_name: str) -> None:
    if list(state) != list(reference):
        missing, extra = set(reference) - set(state), set(state) - set(reference)
        raise FusionError(
            f"{name} does not match {reference_name}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(extra)[:5]} (different architectures cannot be fused)"
        )
    for key in reference:
        if tuple(state[key].shape) != tuple(reference[key].shape):
            raise FusionError(
                f"{key!r} has shape {tuple(state[key].shape)} in {name} but "
                f"{tuple(reference[key].shape)} in {reference_name} (different architectures cannot "
                "be fused)"
            )


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu") -> int:
    """Recompute BatchNorm running statistics from the given input batches (cumulative average); returns
    how many batches were used. A model without BatchNorm is left as it is."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches seen
    was_training = model.training
    model.train()
    used = 0
    for x in batches:
        model(x.to(device))
        used += 1
    for m, momentum in saved.items():
        m.momentum = momentum
    model.train(was_training)
    return used
