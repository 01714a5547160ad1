"""The vision transformer of the paper's code, for small images, and the choice between it and timm's.

The authors' ViT (models/ViT.py of their repository, itself after the
SPT_LSA_ViT code) differs from timm's `VisionTransformer` in ways that change
training, not only the parameter count:

- patches are flattened and projected by one linear layer (timm: a strided
  convolution, the same function class);
- the query/key/value projection has no bias (timm: with bias);
- every linear layer is xavier-normal with zero bias, LayerNorms 1/0, and the
  class token and position embedding are drawn from N(0, 1) (timm: truncated
  normal with std 0.02, the class token 1e-6);
- every block drops its residual branches with the same stochastic-depth rate
  (timm: rates rising linearly from 0 to the given one over the blocks);
- the head is LayerNorm + linear on the class token, with no extra final norm.

`vit(architecture="authors")` builds this network, `architecture="timm"` timm's
with the same sizes; the ViT configs default to `authors`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# model.architecture of conf/model/vit_*.yaml: the choices.
ARCHITECTURES = ("authors", "timm")


def _init_as_authors(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class DropPath(nn.Module):
    """Stochastic depth: a residual branch dropped per example with probability `rate` while training."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device) < keep
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head self-attention with a bias-free qkv projection and a biased output projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.out(attended.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + drop(attn(norm x)), then x + drop(mlp(norm x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: DropPath) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class AuthorsViT(nn.Module):
    """ViT as the paper's code builds it (see the module docstring for how it differs from timm's)."""

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        num_classes: int,
        in_channels: int,
        drop_path_rate: float,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Linear(in_channels * patch_size**2, embed_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, patches + 1, embed_dim))
        drop_path = DropPath(drop_path_rate)  # one rate for every block, as in the authors' code
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, mlp_ratio, drop_path) for _ in range(depth)))
        self.head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, num_classes))
        self.apply(_init_as_authors)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """B×C×H×W -> B×(patches)×(p·p·C), each patch flattened row by row with channels last."""
        batch, channels, height, width = images.shape
        p = self.patch_size
        grid = images.reshape(batch, channels, height // p, p, width // p, p)
        return grid.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // p) * (width // p), p * p * channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(self.patchify(images))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1) + self.pos_embed
        return self.head(self.blocks(x)[:, 0])


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
    architecture: str = "authors",
) -> nn.Module:
    """A ViT for small images: the authors' network (default) or timm's `VisionTransformer` of the same sizes."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"ViT architecture={architecture!r} must be one of {', '.join(ARCHITECTURES)}")
    if img_size % patch_size != 0:
        raise ValueError(f"ViT image size {img_size} is not a multiple of patch size {patch_size}")
    if embed_dim % num_heads != 0:
        raise ValueError(f"ViT embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    sizes = dict(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    if architecture == "authors":
        return AuthorsViT(
            **sizes,
            mlp_ratio=mlp_ratio,
            num_classes=num_classes,
            in_channels=in_channels,
            drop_path_rate=drop_path_rate,
        )
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        **sizes,
        in_chans=in_channels,
        num_classes=num_classes,
        mlp_ratio=mlp_ratio,
        drop_path_rate=drop_path_rate,
    )
