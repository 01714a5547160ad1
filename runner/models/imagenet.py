"""Models taken from the libraries made for them: torchvision's ResNet-50 and timm's ViT."""

from __future__ import annotations

import torch.nn as nn


def imagenet_resnet50(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-50 (ImageNet stem), randomly initialised."""
    import torchvision

    if in_channels != 3:
        raise ValueError(f"ResNet-50 expects 3 input channels (RGB), got in_channels={in_channels}")
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


def vit(
    img_size: int = 32,
    patch_size: int = 4,
    embed_dim: int = 192,
    depth: int = 9,
    num_heads: int = 12,
    mlp_ratio: float = 2.0,
    num_classes: int = 10,
    in_channels: int = 3,
    drop_path_rate: float = 0.1,
) -> nn.Module:
    """A timm VisionTransformer with the small-image settings of the authors' ViT runs."""
    from timm.models.vision_transformer import VisionTransformer

    if img_size % patch_size != 0:
        raise ValueError(f"ViT image size {img_size} is not a multiple of patch size {patch_size}")
    if embed_dim % num_heads != 0:
        raise ValueError(f"ViT embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_channels,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
        drop_path_rate=drop_path_rate,
    )
