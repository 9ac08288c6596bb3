"""Plain ViT parts: patch embedding, attention (fused SDPA and reference paths), MLP, pre-norm block.

Token tensors are ``[B, N, C]`` (batch, tokens, channels). Nothing here knows about pruning: the
pruned backbone (``backbone.py``) calls the blocks on gathered subsets of tokens.
"""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Image ``[B, 3, H, W]`` -> tokens ``[B, N, C]`` with a non-overlapping ``patch``x``patch`` conv.

    H and W must be multiples of ``patch`` (the preprocessing pads them).
    """

    def __init__(self, patch: int = 16, in_chans: int = 3, embed_dim: int = 192) -> None:
        super().__init__()
        self.patch = patch
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = x.shape[-2:]
        if h % self.patch or w % self.patch:
            raise ValueError(f"input {h}x{w} is not a multiple of the patch size {self.patch}; pad it first")
        x = self.proj(x)  # [B, C, gh, gw]
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid

    def flops(self, num_tokens: int) -> int:
        return 2 * num_tokens * self.in_chans * self.patch * self.patch * self.embed_dim


class Attention(nn.Module):
    """Multi-head self-attention on ``[B, n, C]``.

    ``fused_attn`` picks ``F.scaled_dot_product_attention`` (fast kernels) or an explicit softmax
    reference path; the two agree to float precision (tested).
    """

    fused_attn: Final[bool]

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, fused_attn: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``key_mask`` ``[B, n]`` bool (optional): only these tokens are attended to (as keys/values)."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, n, head_dim]
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if mask is not None:
                attn = attn.masked_fill(~mask, float("-inf"))
            x = attn.softmax(dim=-1) @ v
        x = x.transpose(1, 2).reshape(b, n, c)
        return self.proj(x)

    def flops(self, n: int) -> int:
        c = self.num_heads * self.head_dim
        linear = 2 * n * c * 3 * c + 2 * n * c * c
        attention = 2 * (2 * n * n * c)  # q @ k^T and attn @ v
        return linear + attention


class Mlp(nn.Module):
    """Linear -> GELU -> Linear on the channel axis."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))

    def flops(self, n: int) -> int:
        return 2 * n * (self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True, fused_attn: bool = True
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, fused_attn=fused_attn)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.mlp(self.norm2(x))

    def flops(self, n: int) -> int:
        return self.attn.flops(n) + self.mlp.flops(n)


class PositionEmbedding(nn.Module):
    """Learned absolute position embedding on a base grid, bicubically resized to any token grid.

    At inference the resized table is cached per (grid, device, dtype); training always recomputes it
    so gradients reach the parameter.
    """

    def __init__(self, embed_dim: int, base_grid: tuple[int, int] = (32, 32)) -> None:
        super().__init__()
        self.base_grid = base_grid
        self.weight = nn.Parameter(torch.zeros(1, embed_dim, *base_grid))
        nn.init.trunc_normal_(self.weight, std=0.02)
        self._cache: dict[tuple, torch.Tensor] = {}

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        """Return ``[1, gh*gw, C]``."""
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self._resize(grid)
        key = (grid, self.weight.device, self.weight.dtype, self.weight._version, id(self.weight))
        table = self._cache.get(key)
        if table is None:
            self._cache.clear()  # one grid at a time is the common case; keep memory bounded
            table = self._cache[key] = self._resize(grid)
        return table

    def _resize(self, grid: tuple[int, int]) -> torch.Tensor:
        w = self.weight
        if tuple(grid) != tuple(self.base_grid):
            w = F.interpolate(w, size=grid, mode="bicubic", align_corners=False)
        return w.flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Patch embedding + position embedding + ``depth`` blocks. The caller runs the blocks.

    Exposes ``blocks`` so the pruned backbone can tap block outputs (block 0 for Map-SM keys, the deep
    block for its values) and run any block range on a gathered subset of tokens.
    """

    def __init__(
        self,
        *,
        patch: int = 16,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        pos_grid: tuple[int, int] = (32, 32),
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.depth = depth
        self.patch_embed = PatchEmbed(patch=patch, embed_dim=embed_dim)
        self.pos_embed = PositionEmbedding(embed_dim, pos_grid)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, fused_attn=fused_attn) for _ in range(depth)
        )
        self.apply(_init_weights)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """``[B, 3, H, W]`` -> tokens ``[B, N, C]`` with positions added, and the ``(gh, gw)`` grid."""
        tokens, grid = self.patch_embed(images)
        return tokens + self.pos_embed(grid).to(tokens.dtype), grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Dense reference forward: all tokens through all blocks, ``[B, N, C]``."""
        x, _ = self.embed(images)
        for blk in self.blocks:
            x = blk(x)
        return x


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
