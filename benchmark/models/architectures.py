"""Model zoo: plain CNNs (no skips, no BatchNorm: Lipschitz-bound methods can run on them),
PreActResNet-18 and WideResNets, each registered in `MODELS`.

Every model takes inputs in [0, 1] and normalises them itself: its first module is a
`Normalize` holding the per-channel mean and std of the training data as buffers. A builder has
the signature `builder(num_classes, input_shape, mean, std) -> nn.Module`; construction uses
PyTorch's default initialisation (the WideResNet keeps the TRADES initialisation), so it is
deterministic under `torch.manual_seed`.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.registry import MODELS

PLAIN_LAYER_TYPES = (nn.Conv2d, nn.Linear, nn.ReLU, nn.Flatten)


class Normalize(nn.Module):
    """(x - mean) / std per channel; `mean` and `std` are saved with the model as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std need one entry per channel, got {len(mean)} and {len(std)}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def plain_cnn(
    in_ch: int,
    hw: tuple[int, int],
    widths: Sequence[int],
    hidden: int | Sequence[int],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    strides: Sequence[int] | None = None,
) -> nn.Sequential:
    """A plain CNN as an `nn.Sequential`: Normalize, then Conv2d + ReLU per entry of `widths`,
    Flatten, Linear + ReLU per hidden width, and a final Linear to `num_classes`.

    Args:
        in_ch: input channels.
        hw: input height and width.
        widths: output channels of the convolutions.
        hidden: width(s) of the hidden linear layers (an int for one layer; empty for none).
        num_classes: number of logits.
        mean, std: per-channel input statistics for the `Normalize` layer.
        strides: one per convolution, 1 or 2 (default: 1 for the first, 2 for the rest). A stride-1
            convolution is 3x3 with padding 1 (keeps the size); a stride-2 one is 4x4 with padding 1
            (halves it, rounding down).
    """
    strides = tuple(strides) if strides is not None else (1,) + (2,) * (len(widths) - 1)
    if len(strides) != len(widths) or not set(strides) <= {1, 2}:
        raise ValueError(f"need one stride (1 or 2) per conv width, got widths {tuple(widths)} strides {strides}")
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    layers: list[nn.Module] = [Normalize(mean, std)]
    channels, (height, width) = in_ch, hw
    for out_ch, stride in zip(widths, strides):
        kernel = 3 if stride == 1 else 4
        layers += [nn.Conv2d(channels, out_ch, kernel, stride, padding=1), nn.ReLU()]
        channels, height, width = out_ch, height // stride, width // stride
    if height < 1 or width < 1:
        raise ValueError(f"input {hw} is too small for {len(widths)} convolutions with strides {strides}")
    layers.append(nn.Flatten())
    features = channels * height * width
    for size in hidden:
        layers += [nn.Linear(features, size), nn.ReLU()]
        features = size
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def is_plain(model: nn.Module) -> bool:
    """True if `model` is an `nn.Sequential` of a `Normalize` followed only by Conv2d, Linear,
    ReLU and Flatten layers (the networks Lipschitz-bound methods such as CRM-LipLT accept)."""
    if not isinstance(model, nn.Sequential) or len(model) < 2 or not isinstance(model[0], Normalize):
        return False
    return all(type(layer) in PLAIN_LAYER_TYPES for layer in list(model)[1:])


# ----------------------------------------------------------------------------- PreActResNet-18


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016), as in Rice et al.'s robust_overfitting."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """PreActResNet of robust_overfitting (Rice et al. 2020) with a `Normalize` first. The last
    layer is `linear`. Global average pooling makes it accept any input size (4x4 pooling on the
    32x32 inputs it was made for, as in the reference)."""

    def __init__(self, num_blocks: Sequence[int], num_classes: int, in_ch: int, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_ch, 64, 3, 1, padding=1, bias=False)
        layers, in_planes = [], 64
        for planes, blocks, stride in zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2)):
            stage = []
            for block_stride in [stride] + [1] * (blocks - 1):
                stage.append(PreActBlock(in_planes, planes, block_stride))
                in_planes = planes
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


# ----------------------------------------------------------------------------- WideResNet


class WideBasicBlock(nn.Module):
    """The pre-activation block of the TRADES WideResNet (dropout 0)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.conv_shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        # the reference adds the raw input when shapes match, else a 1x1 conv of the activated input
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(activated)
        return shortcut + out


class WideResNet(nn.Module):
    """WideResNet-depth-widen of the TRADES code (Zhang et al. 2019), dropout 0, with a
    `Normalize` first and the TRADES initialisation. The last layer is `fc`. The reference's
    unused `sub_block1` is left out; global average pooling (8x8 on 32x32 inputs, as in the
    reference) lets it accept any input size."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_ch: int, mean, std):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        blocks_per_stage = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_ch, channels[0], 3, 1, padding=1, bias=False)
        stages = []
        for in_planes, out_planes, stride in zip(channels[:-1], channels[1:], (1, 2, 2)):
            blocks = [WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                      for i in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.fc = nn.Linear(channels[3], num_classes)
        self._init_like_trades()

    def _init_like_trades(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


# ----------------------------------------------------------------------------- registry


@MODELS.register(name="cnn-mnist")
def _cnn_mnist(num_classes: int, input_shape: tuple[int, int, int], mean, std) -> nn.Module:
    # Two stride-2 convs (32, 64) and a 128-unit hidden layer (~0.44M parameters, ~2 MMAC per
    # image): AutoAttack's Square runs 5000 forward passes per robust point, so the default
    # track's protocol cost is proportional to this model's FLOPs.
    return plain_cnn(input_shape[0], input_shape[1:], (32, 64), 128, num_classes, mean, std, strides=(2, 2))


@MODELS.register(name="cnn-cifar")
def _cnn_cifar(num_classes: int, input_shape: tuple[int, int, int], mean, std) -> nn.Module:
    return plain_cnn(input_shape[0], input_shape[1:], (32, 64, 128), 256, num_classes, mean, std)


@MODELS.register(name="cnn-tiny")
def _cnn_tiny(num_classes: int, input_shape: tuple[int, int, int], mean, std) -> nn.Module:
    return plain_cnn(input_shape[0], input_shape[1:], (8,), (), num_classes, mean, std, strides=(2,))


@MODELS.register(name="preact-resnet18")
def _preact_resnet18(num_classes: int, input_shape: tuple[int, int, int], mean, std) -> nn.Module:
    return PreActResNet((2, 2, 2, 2), num_classes, input_shape[0], mean, std)


@MODELS.register(name="wrn-34-10")
def _wrn_34_10(num_classes: int, input_shape: tuple[int, int, int], mean, std) -> nn.Module:
    return WideResNet(34, 10, num_classes, input_shape[0], mean, std)


@MODELS.register(name="wrn-28-10")
def _wrn_28_10(num_classes: int, input_shape: tuple[int, int, int], mean, std) -> nn.Module:
    return WideResNet(28, 10, num_classes, input_shape[0], mean, std)


@MODELS.register(name="madry-mnist")
def _madry_mnist(num_classes: int, input_shape: tuple[int, int, int], mean, std) -> nn.Module:
    # The MNIST challenge model of Madry et al. (ICLR 2018; github.com/MadryLab/mnist_challenge,
    # model.py): 5x5 conv 32 + 2x2 max-pool, 5x5 conv 64 + 2x2 max-pool, fc 1024, fc 10 (3.3M
    # parameters). Max-pooling makes it no plain network, so it gets no certified L2 column.
    channels, height, width = input_shape
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (height // 4) * (width // 4), 1024), nn.ReLU(), nn.Linear(1024, num_classes),
    )


def build_model(
    name: str,
    num_classes_or_bundle,
    input_shape: tuple[int, int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """Build the registered model `name`, either for a data bundle,
    `build_model(name, bundle)`, or explicitly, `build_model(name, num_classes, input_shape, mean, std)`.
    Seed with `torch.manual_seed` first for reproducible weights."""
    if isinstance(num_classes_or_bundle, numbers.Integral):
        num_classes = int(num_classes_or_bundle)
        if input_shape is None or mean is None or std is None:
            raise TypeError("build_model(name, num_classes, ...) also needs input_shape, mean and std")
    else:
        if any(arg is not None for arg in (input_shape, mean, std)):
            raise TypeError("build_model(name, bundle) takes everything from the bundle: pass nothing else")
        bundle = num_classes_or_bundle
        num_classes, input_shape, mean, std = bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or len(mean) != input_shape[0] or len(std) != input_shape[0]:
        raise ValueError(f"input_shape must be (C, H, W) with C = len(mean) = len(std), "
                         f"got {input_shape}, {len(mean)} means, {len(std)} stds")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return MODELS.get(name)(num_classes, input_shape, tuple(mean), tuple(std))
