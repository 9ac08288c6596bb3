"""Multi-scale pixel decoder over the (dense-restored) ViT token maps.

A plain ViT has one stride (16). Like ViTDet's simple feature pyramid, the tapped block outputs are
turned into strides 8, 16 and 32 (transposed conv up, 1x1 conv, strided conv down), fused top-down
(FPN), and the stride-8 map becomes the per-pixel mask features. The transformer decoder attends to
the three levels, coarse to fine. This is lighter than Mask2Former's deformable-attention pixel
decoder (the authors' release) on purpose: on a CPU the head must not eat the backbone's savings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_gn(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.GroupNorm(8, cout), nn.ReLU())


class PixelDecoder(nn.Module):
    """Token maps -> (mask features at stride 8, [stride-32, stride-16, stride-8] levels).

    Args:
        embed_dim: ViT channels C.
        dim: decoder channels D.
        num_inputs: number of tapped token maps (>= 2). The first goes to stride 8, the last to
            stride 32, the ones in between are summed at stride 16.
    """

    def __init__(self, embed_dim: int, dim: int = 128, *, num_inputs: int = 4) -> None:
        super().__init__()
        if num_inputs < 2:
            raise ValueError(f"the pixel decoder needs at least 2 token maps, got {num_inputs}")
        self.embed_dim = embed_dim
        self.dim = dim
        self.num_inputs = num_inputs
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim) for _ in range(num_inputs))
        self.up = nn.ConvTranspose2d(embed_dim, dim, kernel_size=2, stride=2)
        self.mid = nn.ModuleList(nn.Conv2d(embed_dim, dim, 1) for _ in range(num_inputs - 2))
        self.down = nn.Conv2d(embed_dim, dim, kernel_size=2, stride=2)
        self.out32 = _conv_gn(dim, dim)
        self.out16 = _conv_gn(dim, dim)
        self.out8 = _conv_gn(dim, dim)
        self.mask_proj = nn.Conv2d(dim, dim, 1)

    def forward(
        self, features: list[torch.Tensor], grid: tuple[int, int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``features``: ``num_inputs`` maps ``[B, N, C]``. Returns ``[B, D, 2gh, 2gw]`` mask features and
        the levels ``[B, D, h, w]`` at strides 32, 16, 8."""
        if len(features) != self.num_inputs:
            raise ValueError(f"expected {self.num_inputs} token maps, got {len(features)}")
        maps = [
            norm(f).transpose(1, 2).reshape(f.shape[0], self.embed_dim, *grid)
            for norm, f in zip(self.norms, features)
        ]
        s8 = self.up(maps[0])
        s16 = sum(conv(m) for conv, m in zip(self.mid, maps[1:-1])) if self.mid else None
        s32 = self.down(F.pad(maps[-1], (0, grid[1] % 2, 0, grid[0] % 2), mode="replicate"))
        p32 = self.out32(s32)
        up32 = F.interpolate(p32, size=grid, mode="nearest")
        p16 = self.out16(up32 if s16 is None else s16 + up32)
        p8 = self.out8(s8 + F.interpolate(p16, size=s8.shape[-2:], mode="nearest"))
        return self.mask_proj(p8), [p32, p16, p8]

    def flops(self, grid: tuple[int, int]) -> int:
        gh, gw = grid
        n16, n8, n32 = gh * gw, 4 * gh * gw, ((gh + 1) // 2) * ((gw + 1) // 2)
        c, d = self.embed_dim, self.dim
        up = 2 * n8 * c * d  # each output pixel: one C->D tap of the 2x2 transposed kernel
        mid = len(self.mid) * 2 * n16 * c * d
        down = 2 * n32 * 4 * c * d
        convs = 2 * 9 * d * d * (n32 + n16 + n8)
        return up + mid + down + convs + 2 * n8 * d * d
