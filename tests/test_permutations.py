"""Weight matching's promises (ALGORITHMS.md §12): the permutation groups traced from a model leave its function
unchanged when permuted, weight matching recovers a known permutation exactly, and the aligned average of a
model and its shuffled copy is the model. Checked on the architectures popplast ships, torchvision models with
residual additions, depthwise convolutions and concatenations, and users' models; a model the trace cannot
follow fuses as before, saying so."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from popplast.training.alignment import align, permute, random_permutation, weight_matching
from popplast.training.fusion import align_parents, fuse_state_dicts
from popplast.training.models import build_model
from popplast.training.permutations import NotTraceable, permutation_spec


class ResidualMLP(nn.Module):
    """A user's model: a residual connection and a LayerNorm between linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(10, 32)
        self.hidden = nn.Linear(32, 32)
        self.norm = nn.LayerNorm(32)
        self.out = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        h = h + torch.relu(self.hidden(h))
        return self.out(self.norm(h))


class Branches(nn.Module):
    """Two convolutions concatenated, BatchNorm over the concatenation, then a flatten into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 5, 3, padding=1)
        self.norm = nn.BatchNorm2d(13)
        self.mix = nn.Conv2d(13, 6, 1)
        self.fc = nn.Linear(6 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.norm(torch.cat([self.a(x), self.b(x)], 1)))
        h = nn.functional.adaptive_avg_pool2d(self.mix(h), 4)
        return self.fc(torch.flatten(h, 1))


class Scaled(nn.Module):
    """A parameter used outside any known layer (a learned per-channel scale): its channels must stay put,
    while the hidden linear layer after it can still be permuted."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 4).view(1, 4, 1, 1))
        self.fc = nn.Linear(4 * 6 * 6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(self.conv(x) * self.scale, 1)
        return self.out(torch.relu(self.fc(h)))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on a value: torch.fx cannot trace it
            return self.fc(x)
        return -self.fc(x)


F = nn.functional


class _Hostile(nn.Module):
    """Models written to trip the trace (from an adversarial review): each must keep its function under
    every permutation the trace allows, or be pinned."""


class ReadsAWeightDirectly(_Hostile):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x))) + F.linear(x, self.fc1.weight)[:, :3]


class KeywordTensors(_Hostile):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.o = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        joined = torch.cat(tensors=[self.a(input=x), self.b(x)], dim=1)
        return self.o(joined + torch.mul(input=self.c(x), other=2.0))


class PoolsOverFeatures(_Hostile):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.pool, self.fc2 = nn.Linear(4, 8), nn.AvgPool1d(3, 1, 1), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.pool(torch.relu(self.fc1(x))))


class TiedWeights(_Hostile):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.c, self.b = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.c(torch.relu(self.a(x)))))


class LayerUsedTwice(_Hostile):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.h, self.o = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.o(torch.relu(self.h(torch.relu(self.h(torch.relu(self.a(x)))))))


class Transposed(_Hostile):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.o = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        return self.o(h) + h.T.sum(0)[:, None]


class MixesChannels(_Hostile):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.o = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.o(F.softmax(self.a(x), dim=1)) + self.a(x).mean(1, keepdim=True)


HOSTILE = [
    (ReadsAWeightDirectly, (4,)),
    (KeywordTensors, (4,)),
    (PoolsOverFeatures, (4,)),
    (TiedWeights, (4,)),
    (LayerUsedTwice, (4,)),
    (Transposed, (4,)),
    (MixesChannels, (4,)),
]


@pytest.mark.parametrize("kind, shape", HOSTILE, ids=[k.__name__ for k, _ in HOSTILE])
def test_what_the_trace_cannot_follow_is_pinned_not_permuted(kind: type, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model, x = kind().eval(), torch.randn(6, *shape)
    spec = permutation_spec(model, x)
    for seed in range(3):
        changed = kind()
        changed.load_state_dict(
            permute(spec, random_permutation(spec, np.random.default_rng(seed)), model.state_dict())
        )
        with torch.no_grad():
            torch.testing.assert_close(changed.eval()(x), model(x), rtol=1e-5, atol=1e-6)
    if kind is LayerUsedTwice:  # the one that can be permuted: h's units, tied across both calls
        assert list(spec.groups.values()) == [6]


MODELS = {
    "lenet5": (lambda: build_model("lenet5", 1, 10), (1, 16, 16)),
    "small_vgg": (lambda: build_model("small_vgg", 1, 10), (1, 16, 16)),
    "resnet18": (lambda: build_model("resnet18", 3, 10), (3, 32, 32)),
    "mobilenet_v3_small": (lambda: build_model("mobilenet_v3_small", 3, 10), (3, 32, 32)),
    "squeezenet1_0": (lambda: build_model("squeezenet1_0", 3, 10), (3, 64, 64)),
    "residual_mlp": (ResidualMLP, (10,)),
    "branches": (Branches, (3, 8, 8)),
    "scaled": (Scaled, (1, 8, 8)),
}
# the four the issue names: weight matching must recover their shuffled units exactly
RECOVERED = ("lenet5", "small_vgg", "resnet18", "residual_mlp")


def _made(name: str, seed: int) -> tuple[nn.Module, torch.Tensor]:
    build, shape = MODELS[name]
    torch.manual_seed(seed)
    model = build().eval()
    for m in model.modules():  # statistics other than the defaults, so that permuting them wrongly shows
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model, torch.randn(3, *shape)


def _trained(name: str) -> tuple[nn.Module, torch.Tensor]:
    """A model trained for a few steps on random data, so its units differ as a trained model's do."""
    model, x = _made(name, 0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    out_dim = model(x[:2]).shape[-1]
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.arange(len(x)) % out_dim).backward()
        opt.step()
    return model.eval(), x


def _loaded(name: str, state: dict) -> nn.Module:
    model = MODELS[name][0]()
    model.load_state_dict(state)
    return model.eval()


@pytest.mark.parametrize("name", list(MODELS))
def test_permuting_the_traced_groups_leaves_the_function_unchanged(name: str) -> None:
    model, x = _made(name, 0)
    spec = permutation_spec(model, x)
    assert spec.groups, f"{name}: no permutation group found"
    for seed in range(3):
        shuffled = permute(spec, random_permutation(spec, np.random.default_rng(seed)), model.state_dict())
        assert any(not torch.equal(shuffled[k], v) for k, v in model.state_dict().items())
        with torch.no_grad():
            torch.testing.assert_close(_loaded(name, shuffled)(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", RECOVERED)
def test_weight_matching_recovers_a_known_permutation_exactly(name: str) -> None:
    model, x = _trained(name)
    spec = permutation_spec(model, x)
    state = model.state_dict()
    shuffled = permute(spec, random_permutation(spec, np.random.default_rng(7)), state)
    perms = weight_matching(spec, state, shuffled, np.random.default_rng(0))
    back = permute(spec, perms, shuffled)
    for key, value in state.items():
        assert torch.equal(back[key], value), key
    # the aligned average of a model and its shuffled copy is the model; the plain average is not
    aligned = fuse_state_dicts(align(spec, [state, shuffled]), [0.5, 0.5])
    plain = fuse_state_dicts([state, shuffled], [0.5, 0.5])
    with torch.no_grad():
        torch.testing.assert_close(_loaded(name, aligned)(x), model(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(_loaded(name, plain)(x), model(x), atol=1e-3)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), weight=st.floats(0.05, 0.95))
def test_aligning_a_shuffled_copy_before_any_weighted_average_gives_the_model(seed: int, weight: float) -> None:
    model, x = _made("small_vgg", seed % 1000)
    spec = permutation_spec(model, x)
    state = model.state_dict()
    shuffled = permute(spec, random_permutation(spec, np.random.default_rng(seed)), state)
    fused = fuse_state_dicts(align(spec, [state, shuffled], seed=seed), [weight, 1 - weight])
    for key, value in state.items():
        torch.testing.assert_close(fused[key], value)


def test_unknown_operations_pin_the_channels_they_touch() -> None:
    """The learned scale multiplies the conv's channels where the trace cannot permute it: the conv's output
    group is pinned (not permuted), and no group acts on the model's outputs."""
    model, x = _made("scaled", 0)
    spec = permutation_spec(model, x)
    assert "scale" not in spec.axes and "conv.weight" not in spec.axes
    assert spec.axes["fc.weight"][1] is None  # its inputs: the scaled channels
    assert spec.axes["out.weight"][0] is None  # the outputs stay in their order
    assert list(spec.groups.values()) == [6]


def test_a_model_the_trace_cannot_follow_fuses_unaligned_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    model = Untraceable()
    with pytest.raises(NotTraceable):
        permutation_spec(model, torch.ones(2, 4))
    states = [Untraceable().state_dict(), Untraceable().state_dict()]
    out, note = align_parents(model, states, torch.ones(2, 4), seed=0)
    assert note.startswith("none: cannot trace Untraceable")
    assert all(torch.equal(a[k], b[k]) for a, b in zip(out, states) for k in b)
    assert "cannot align Untraceable" in capsys.readouterr().err


def test_parents_that_do_not_fit_the_model_are_left_as_they_are() -> None:
    model, x = _made("lenet5", 0)
    other = build_model("small_vgg", 1, 10).state_dict()
    out, note = align_parents(model, [model.state_dict(), other], x, seed=0)
    assert note.startswith("none: ") and "different architectures" in note
    assert out[1].keys() == other.keys()


def test_alignment_brings_independently_initialised_networks_closer() -> None:
    """Two differently seeded networks: matching raises the inner product of their weights (its objective)."""
    a, x = _made("small_vgg", 1)
    b, _ = _made("small_vgg", 2)
    spec = permutation_spec(a, x)
    sa, sb = a.state_dict(), b.state_dict()
    aligned = permute(spec, weight_matching(spec, sa, sb, np.random.default_rng(0)), sb)

    def agreement(s: dict) -> float:
        return sum(float((sa[k].double() * s[k].double()).sum()) for k in spec.axes if sa[k].dim() > 1)

    assert agreement(aligned) > agreement(sb)
