"""The torchvision-path dataset over in-memory uint8 tensors (CIFAR, Tiny-ImageNet, digits, synthetic).

Every item goes through PIL exactly as torchvision's CIFAR10 does (one H×W×C
uint8 array → `Image.fromarray` → the transform), so one class serves every
in-memory dataset and the device loader's batches can be checked against it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class InMemoryImages(Dataset):
    """(transform(PIL image), int label) pairs over uint8 N×C×H×W images."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"expected uint8 N×C×H×W images with 1 or 3 channels, got {images.dtype} {tuple(images.shape)}"
            )
        # H×W×C (or H×W for one channel, PIL mode "L"), contiguous so fromarray does not copy twice
        pixels = images.permute(0, 2, 3, 1).numpy()
        self.pixels = np.ascontiguousarray(pixels[..., 0] if images.shape[1] == 1 else pixels)
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.pixels[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
