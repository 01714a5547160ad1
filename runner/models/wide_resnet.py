"""WideResNet (Zagoruyko and Komodakis, 2016) with pre-activation blocks, for 32 px inputs.

`init` chooses the initialisation: `authors` is the one of the paper's code
(models/wide_resnet.py of the authors' repository: convolutions kaiming-normal
with fan_out, BatchNorm weight 1 and bias 0, the classifier's bias 0, its
weight left at PyTorch's default), `torch` keeps PyTorch's defaults for every
layer. The paper presets use `authors`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class WideBlock(nn.Module):
    """BN-ReLU-conv twice; the shortcut projects when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        return out + shortcut


# model.init of conf/model/wrn28_10.yaml: the choices.
INITS = ("authors", "torch")


def init_as_authors(model: nn.Module) -> None:
    """The authors' WideResNet initialisation: kaiming-normal (fan_out) convolutions, BN 1/0, classifier bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)


class WideResNet(nn.Module):
    """WRN-depth-k: three stages of (depth - 4) / 6 blocks of widths 16k, 32k, 64k."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        dropout: float = 0.0,
        init: str = "authors",
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"WideResNet init={init!r} must be one of {', '.join(INITS)}")
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (e.g. 16, 22, 28), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"WideResNet widen_factor must be >= 1, got {widen_factor}")
        blocks = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        layers = []
        in_planes = widths[0]
        for stage, planes in enumerate(widths[1:]):
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(WideBlock(in_planes, planes, stride, dropout))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)
        if init == "authors":
            init_as_authors(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(x))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def wide_resnet(
    depth: int = 28,
    widen_factor: int = 10,
    num_classes: int = 10,
    in_channels: int = 3,
    dropout: float = 0.0,
    init: str = "authors",
) -> WideResNet:
    """Any WRN-depth-k; the paper's network is depth 28, widen factor 10 (36.5 M parameters)."""
    return WideResNet(depth, widen_factor, num_classes, in_channels, dropout, init)


def wide_resnet28_10(
    num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0, init: str = "authors"
) -> WideResNet:
    """WRN-28-10 as in the paper."""
    return WideResNet(28, 10, num_classes, in_channels, dropout, init)
