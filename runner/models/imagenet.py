"""The ImageNet ResNet-50, taken from torchvision.

The authors' repository holds only a CIFAR-style ResNet-50 (3x3 stem, no
max-pool, 100 classes, models/resnet.py), which cannot be what their ImageNet
table was trained with as released; torchvision's network is the standard
ImageNet ResNet-50 (docs/paper.md, the fidelity table).
"""

from __future__ import annotations

import torch.nn as nn


def imagenet_resnet50(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-50 (ImageNet stem), randomly initialised."""
    import torchvision

    if in_channels != 3:
        raise ValueError(f"ResNet-50 expects 3 input channels (RGB), got in_channels={in_channels}")
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)
