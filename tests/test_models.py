"""Model builders: every built-in, torchvision adaptation, and the offline message for pretrained weights."""

import pytest
import torch

from popplast.training.models import BUILTINS, PretrainedUnavailable, build_model, ensure_pretrained, input_channels


@pytest.mark.parametrize("name", BUILTINS.names())
@pytest.mark.parametrize("channels, size", [(1, 8), (1, 16), (3, 32)])
def test_builtin_forward_shape(name, channels, size):
    model = build_model(name, channels, 7)
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "mobilenet_v3_small", "resnet18", "regnet_x_400mf"])
def test_torchvision_models_adapt_classes_and_take_three_channels(name):
    assert input_channels(name, 1) == 3
    model = build_model(name, 3, 7).eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_unknown_architecture():
    with pytest.raises(KeyError, match="no_such_net"):
        build_model("no_such_net", 1, 10)


def test_pretrained_offline_gives_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: the weights must be downloaded
    try:
        model = build_model("mobilenet_v3_small", 3, 5, pretrained=True)
    except PretrainedUnavailable as e:
        message = str(e)
        assert "mobilenet_v3_small" in message and "pretrained: false" in message and str(tmp_path) in message
        return
    # With internet access the download succeeds; then the head must still be adapted.
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_builtins_have_no_pretrained_weights():
    with pytest.raises(PretrainedUnavailable, match="lenet5"):
        ensure_pretrained(["lenet5"])
