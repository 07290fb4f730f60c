"""Weight fusion (Gen-Soup): identical models, one-hot weights, the weighted mean, integer buffers, refusals."""

import pytest
import torch

from popplast.training.fusion import FusionError, fuse_state_dicts, load_fused, reestimate_batchnorm
from popplast.training.models import build_model
from popplast.training.weights import to_shareable


def model(seed: int, name: str = "small_vgg") -> torch.nn.Module:
    torch.manual_seed(seed)
    m = build_model(name, 1, 10)
    m.train()
    m(torch.randn(8, 1, 8, 8))  # move BN statistics and num_batches_tracked away from their defaults
    return m


def test_fusing_identical_models_returns_the_same_model():
    state = model(0).state_dict()
    fused = fuse_state_dicts([state, state, state], [0.2, 0.5, 0.3])
    assert all(torch.allclose(fused[k], state[k], rtol=0, atol=1e-7) for k in state)


def test_weights_one_zero_return_the_first_parent():
    a, b = model(0).state_dict(), model(1).state_dict()
    fused = fuse_state_dicts([a, b], [1.0, 0.0])
    assert all(torch.equal(fused[k], a[k]) for k in a)


def test_weighted_mean_and_integer_buffers_from_the_best_parent():
    a, b = model(0).state_dict(), model(1).state_dict()
    b = {k: (v + 5 if not v.is_floating_point() else v) for k, v in b.items()}  # distinguishable counters
    fused = fuse_state_dicts([a, b], [0.9, 0.3])
    key = "0.weight"
    assert torch.allclose(fused[key], 0.75 * a[key] + 0.25 * b[key], atol=1e-6)
    counters = [k for k in a if k.endswith("num_batches_tracked")]
    assert counters and all(torch.equal(fused[k], a[k]) for k in counters)


def test_zero_weights_give_the_plain_mean():
    a, b = model(0).state_dict(), model(1).state_dict()
    fused = fuse_state_dicts([a, b], [0.0, 0.0])
    assert torch.allclose(fused["0.weight"], (a["0.weight"] + b["0.weight"]) / 2, atol=1e-6)


def test_mismatched_architectures_are_refused():
    with pytest.raises(FusionError, match="different architectures"):
        fuse_state_dicts([model(0, "small_vgg").state_dict(), model(0, "lenet5").state_dict()], [1, 1])
    a = model(0).state_dict()
    b = dict(a)
    b["0.weight"] = torch.zeros(3, 3)
    with pytest.raises(FusionError, match="'0.weight' has shape"):
        fuse_state_dicts([a, b], [1, 1])
    with pytest.raises(FusionError, match="one weight per state dict"):
        fuse_state_dicts([a], [1, 1])


@pytest.mark.parametrize("weights", [[0.6, 0.4], [1.0, 0.0], [0.0, 0.0]])
def test_load_fused_writes_the_model_in_place_bit_for_bit(weights):
    a, b = model(0).state_dict(), model(1).state_dict()
    expected = model(2)
    expected.load_state_dict(fuse_state_dicts([a, b], weights))
    child = model(2)
    storage = {k: v.data_ptr() for k, v in child.state_dict().items()}
    load_fused(child, [to_shareable(a), to_shareable(b)], weights)  # numpy arrays, as from the object store
    after = child.state_dict()
    assert all(torch.equal(after[k], v) for k, v in expected.state_dict().items())
    assert {k: v.data_ptr() for k, v in after.items()} == storage  # written into the model's own tensors


def test_load_fused_refuses_parents_of_another_architecture():
    child = model(0, "lenet5")
    before = {k: v.clone() for k, v in child.state_dict().items()}
    with pytest.raises(FusionError, match="does not match the model.*different architectures"):
        load_fused(child, [model(1).state_dict()], [1.0])
    assert all(torch.equal(child.state_dict()[k], v) for k, v in before.items())  # untouched


def test_batchnorm_reestimation_matches_the_data():
    m = model(0)
    x = torch.randn(64, 1, 8, 8) * 3 + 2
    used = reestimate_batchnorm(m, [x[:32], x[32:]])
    first_bn = m[1]
    expected = m[0](x).mean(dim=(0, 2, 3))
    assert used == 2 and torch.allclose(first_bn.running_mean, expected, atol=1e-4)
    assert first_bn.momentum == 0.1 and reestimate_batchnorm(build_model("lenet5", 1, 10), [x]) == 0


@pytest.mark.gpu
def test_load_fused_into_a_cuda_model_equals_the_cpu_result():
    a, b = model(0).state_dict(), model(1).state_dict()
    on_cpu, on_gpu = model(2), model(2).cuda()
    load_fused(on_cpu, [to_shareable(a), to_shareable(b)], [0.6, 0.4])
    load_fused(on_gpu, [to_shareable(a), to_shareable(b)], [0.6, 0.4])  # numpy sources, CUDA destination
    for key, value in on_cpu.state_dict().items():
        assert torch.allclose(on_gpu.state_dict()[key].cpu(), value, rtol=0, atol=1e-6), key
