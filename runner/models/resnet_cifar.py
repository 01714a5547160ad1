"""ResNet-18 for small images: a 3x3 stride-1 stem and no max-pool, as in SAM papers.

The ImageNet stem (7x7 stride 2 + max-pool) would shrink a 32 px image to 8 px
before the first block; for CIFAR and Tiny-ImageNet the standard practice,
which the paper follows, is a 3x3 convolution that keeps the resolution.
`width` scales every stage, so a narrow network (width 8 or 16) trains on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projection when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet with BasicBlocks; `blocks_per_stage` (2, 2, 2, 2) gives ResNet-18."""

    def __init__(
        self,
        blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2),
        num_classes: int = 10,
        width: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if width < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"CifarResNet needs width, num_classes and in_channels >= 1, got "
                f"width={width}, num_classes={num_classes}, in_channels={in_channels}"
            )
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages = []
        in_planes = width
        for index, num_blocks in enumerate(blocks_per_stage):
            planes = width * 2**index
            for block_index in range(num_blocks):
                stride = 2 if index > 0 and block_index == 0 else 1
                stages.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_resnet18(num_classes: int = 10, width: int = 64, in_channels: int = 3) -> CifarResNet:
    """ResNet-18 with a 3x3 stem; `width` 64 is the standard network (11.2 M parameters)."""
    return CifarResNet((2, 2, 2, 2), num_classes=num_classes, width=width, in_channels=in_channels)
