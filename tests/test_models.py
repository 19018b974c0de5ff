"""Model zoo: every registered model builds and gives logits; normalisation is inside the model;
plain CNNs are recognised as plain."""
from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from benchmark.core.registry import MODELS
from benchmark.models.architectures import (
    Normalize,
    PreActResNet,
    WideResNet,
    build_model,
    is_plain,
    plain_cnn,
)

pytestmark = pytest.mark.unit

NUM_CLASSES = 10
NATURAL_INPUT_SHAPES = {"cnn-mnist": (1, 28, 28), "cnn-tiny": (1, 8, 8)}  # default (3, 32, 32)
PLAIN_MODELS = {"cnn-mnist", "cnn-cifar", "cnn-tiny"}


def _input_shape(name: str) -> tuple[int, int, int]:
    return NATURAL_INPUT_SHAPES.get(name, (3, 32, 32))


@functools.cache
def _built(name: str) -> nn.Module:
    """Each registered model is built once per session (WRN-34-10 has ~46M parameters)."""
    channels = _input_shape(name)[0]
    torch.manual_seed(0)
    return build_model(name, NUM_CLASSES, _input_shape(name), [0.5] * channels, [0.25] * channels).eval()


def test_registry_lists_the_zoo():
    expected = {"cnn-mnist", "cnn-cifar", "cnn-tiny", "preact-resnet18", "wrn-34-10", "wrn-28-10"}
    assert expected <= set(MODELS.names())


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_gives_logits_and_starts_with_normalize(name):
    model = _built(name)
    x = torch.rand(2, *_input_shape(name), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, NUM_CLASSES) and torch.isfinite(logits).all()
    assert isinstance(next(model.children()), Normalize)
    assert is_plain(model) == (name in PLAIN_MODELS)


def test_known_parameter_counts():
    assert sum(p.numel() for p in _built("preact-resnet18").parameters()) == 11_172_170
    assert sum(p.numel() for p in _built("wrn-34-10").parameters()) == 46_160_474


def test_construction_is_deterministic_under_manual_seed():
    def weights(seed):
        torch.manual_seed(seed)
        return build_model("cnn-mnist", 10, (1, 28, 28), [0.1], [0.3]).state_dict()

    first, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["1.weight"], other["1.weight"])


def _small_models(mean, std) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "plain": plain_cnn(3, (8, 8), (4, 4), 8, 5, mean, std),
        "preact": PreActResNet((1, 1, 1, 1), 5, 3, mean, std),
        "wide": WideResNet(10, 1, 5, 3, mean, std),
    }


def test_normalize_is_applied_inside_every_family():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    base = _small_models([0.5] * 3, [0.25] * 3)
    shifted = _small_models([0.2] * 3, [0.25] * 3)
    for family, model in base.items():
        with torch.no_grad():
            assert not torch.allclose(model.eval()(x), shifted[family].eval()(x)), family
            # equivalently: feeding x + 0.3 to the first model matches the shifted-mean one
            assert torch.allclose(model(x + 0.3), shifted[family](x), atol=1e-5), family


def test_normalize_buffers_travel_with_the_state_dict():
    model = plain_cnn(1, (8, 8), (4,), (), 3, [0.1], [0.2])
    state = model.state_dict()
    assert torch.allclose(state["0.mean"].flatten(), torch.tensor([0.1]))
    assert torch.allclose(state["0.std"].flatten(), torch.tensor([0.2]))
    with pytest.raises(ValueError):
        Normalize([0.1, 0.2], [0.3])
    with pytest.raises(ValueError):
        Normalize([0.1], [0.0])


def test_plain_cnn_layout_and_is_plain():
    model = plain_cnn(1, (28, 28), (32, 64, 64), 128, 10, [0.1], [0.3])
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Normalize", "Conv2d", "ReLU", "Conv2d", "ReLU", "Conv2d", "ReLU",
                     "Flatten", "Linear", "ReLU", "Linear"]
    assert model[1].stride == (1, 1) and model[3].kernel_size == (4, 4) and model[3].stride == (2, 2)
    assert model[8].in_features == 64 * 7 * 7
    assert is_plain(model)
    assert not is_plain(nn.Sequential(*model[1:]))  # no Normalize first
    assert not is_plain(nn.Sequential(*model, nn.BatchNorm1d(10)))
    assert not is_plain(_small_models([0.5] * 3, [0.25] * 3)["preact"])


def test_build_model_from_a_bundle_like_object():
    class Bundle:
        num_classes, input_shape, mean, std = 4, (1, 8, 8), (0.3,), (0.2,)

    model = build_model("cnn-tiny", Bundle())
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 4)
    with pytest.raises(TypeError):
        build_model("cnn-tiny", Bundle(), (1, 8, 8))
    with pytest.raises(TypeError):
        build_model("cnn-tiny", 4)
    with pytest.raises(ValueError, match="C = len"):
        build_model("cnn-tiny", 4, (3, 8, 8), [0.5], [0.2])


def test_wide_resnet_rejects_bad_depth():
    with pytest.raises(ValueError, match="6n"):
        WideResNet(30, 1, 10, 3, [0.5] * 3, [0.2] * 3)
