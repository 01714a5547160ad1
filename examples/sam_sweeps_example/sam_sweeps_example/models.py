"""A multilayer perceptron over the flattened image: a model with no convolution at all."""

from __future__ import annotations

from torch import nn


def mlp(num_classes: int, in_channels: int, image_size: int, width: int = 64, depth: int = 2) -> nn.Sequential:
    """`depth` hidden layers of `width` ReLU units; BatchNorm, so SAM's frozen statistics apply too."""
    layers: list[nn.Module] = [nn.Flatten()]
    features = in_channels * image_size * image_size
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.BatchNorm1d(width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)
