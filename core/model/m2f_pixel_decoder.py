"""Mask2Former's pixel decoder: deformable-attention encoder over the coarse levels, FPN step to stride 4.

This is the pixel decoder of the authors' release (mmdet's ``MSDeformAttnPixelDecoder`` as configured in
``configs/vis/rovis/rovis_mask2former_r50_ytvis21.py`` of PatGlan/Video-Patch-Pruning), written from its
description:

1. The ``L`` (3) coarsest inputs (strides 32, 16, 8; coarse first) are projected to ``feat_channels`` by a
   1x1 conv + GroupNorm (``input_convs``). Their tokens are concatenated, coarse level first.
2. ``num_layers`` (6) post-norm encoder layers: ``x = LN(x + MSDeformAttn(x + pos, x))``, then
   ``x = LN(x + FFN(x))``. The position of a token is the 2D sine encoding of its pixel plus the learned
   ``level_encoding`` of its level. Each token's reference point is its own pixel centre
   ``((j + 0.5) / w, (i + 0.5) / h)``, the same normalised point on every level.
3. The remaining finer inputs (stride 4) get a lateral 1x1 conv + GN, plus the next coarser output upsampled
   bilinearly, then a 3x3 conv + GN + ReLU (``lateral_convs`` / ``output_convs``).
4. ``mask_feature`` (1x1 conv) turns the finest output into the per-pixel mask features.

Returned: the mask features ``[B, out_channels, H/4, W/4]`` and the first ``num_outs`` (3) outputs, coarse to
fine ``[B, feat_channels, h_l, w_l]`` (strides 32, 16, 8), which the transformer decoder attends to.

Parameter names follow mmdet (``input_convs.{i}.conv`` / ``.gn``, ``encoder.layers.{i}.self_attn`` /
``ffn.layers`` / ``norms``, ``level_encoding``, ``lateral_convs``, ``output_convs``, ``mask_feature``); see
``core.model.m2f_head`` for the key table of the released checkpoints.

The FFN and the sine position encoding are shared with the transformer decoder (``core.model.m2f_decoder``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.model.deform_attn import MSDeformAttn


def sine_position_encoding(
    height: int,
    width: int,
    num_feats: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """DETR's normalised 2D sine encoding of an unpadded ``height x width`` map, ``[height * width, 2 * num_feats]``.

    Row ``i`` has coordinate ``y = 2 pi (i + 1) / (height + 1e-6)`` (columns likewise). Channel ``k`` of the y half
    is ``sin(y / t_k)`` for even ``k`` and ``cos(y / t_k)`` for odd ``k``, ``t_k = temperature ** (2 (k // 2) /
    num_feats)``; the y half comes first, then the x half (mmdet's ``SinePositionalEncoding(normalize=True)``).
    Rows of the result are the pixels in row-major order.
    """
    eps, scale = 1e-6, 2.0 * math.pi
    k = torch.arange(num_feats, dtype=torch.float32, device=device)
    periods = temperature ** (2.0 * torch.div(k, 2, rounding_mode="floor") / num_feats)

    def encode(n: int) -> torch.Tensor:  # [n, num_feats]
        coord = torch.arange(1, n + 1, dtype=torch.float32, device=device) / (n + eps) * scale
        angle = coord[:, None] / periods
        out = torch.empty_like(angle)
        out[:, 0::2] = angle[:, 0::2].sin()
        out[:, 1::2] = angle[:, 1::2].cos()
        return out

    ey, ex = encode(height), encode(width)
    table = torch.cat([ey[:, None].expand(height, width, num_feats), ex[None].expand(height, width, num_feats)], -1)
    return table.reshape(height * width, 2 * num_feats).to(dtype)


def pixel_centres(height: int, width: int, *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised ``(x, y)`` centres of the pixels of a ``height x width`` map, row-major, ``[height * width, 2]``."""
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    return torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)], -1).reshape(-1, 2)


class ConvNorm(nn.Module):
    """Conv2d + GroupNorm (+ ReLU): mmcv's ``ConvModule`` with a GN norm, parameters ``conv.*`` and ``gn.*``."""

    def __init__(
        self, cin: int, cout: int, kernel_size: int = 1, *, bias: bool, norm_groups: int, relu: bool = False
    ) -> None:
        super().__init__()
        if cout % norm_groups:
            raise ValueError(f"{cout} channels cannot be split into {norm_groups} GroupNorm groups")
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)
        self.gn = nn.GroupNorm(norm_groups, cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.conv(x))
        return F.relu(x) if self.relu else x


class FFN(nn.Module):
    """``x + Linear(ReLU(Linear(x)))`` with mmcv's ``FFN`` parameter names (``layers.0.0``, ``layers.1``)."""

    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout)),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class DeformEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention over all levels' tokens, then the FFN."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        num_levels: int,
        num_points: int,
        ffn_channels: int,
        dropout: float = 0.0,
        fused: bool | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(
            dim=dim, num_heads=num_heads, num_levels=num_levels, num_points=num_points, dropout=dropout, fused=fused
        )
        self.ffn = FFN(dim, ffn_channels, dropout=dropout)
        self.norms = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: list[tuple[int, int]],
        level_start_index: torch.Tensor,
    ) -> torch.Tensor:
        """``x``, ``pos`` ``[B, S, C]``; ``reference_points`` ``[B, S, L, 2]``. The value is ``x`` without ``pos``."""
        x = self.norms[0](x + self.self_attn(x + pos, reference_points, x, spatial_shapes, level_start_index))
        return self.norms[1](self.ffn(x))


class DeformEncoder(nn.Module):
    """A stack of :class:`DeformEncoderLayer` (``encoder.layers.{i}``); no final norm (the release has none)."""

    def __init__(self, num_layers: int, dim: int, **layer_kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DeformEncoderLayer(dim, **layer_kwargs) for _ in range(num_layers))

    def forward(self, x, pos, reference_points, spatial_shapes, level_start_index) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, pos, reference_points, spatial_shapes, level_start_index)
        return x


class MSDeformPixelDecoder(nn.Module):
    """Backbone maps (fine to coarse) -> mask features at the finest stride and the coarse-to-fine levels.

    Args:
        in_channels: channels of each input map, finest first (the release's ViT-Adapter: ``[C] * 4`` at strides
            4, 8, 16, 32; Tiny C = 192, Small C = 384).
        feat_channels: width of the encoder and of the returned levels (256).
        out_channels: width of the mask features (256).
        num_encoder_levels: how many of the coarsest inputs the deformable encoder sees (3).
        num_layers: encoder layers (6).
        num_heads: deformable-attention heads (8).
        num_points: sampling points per head and level (4).
        ffn_channels: encoder FFN hidden width (1024).
        norm_groups: GroupNorm groups (32).
        num_outs: how many outputs, coarse first, are returned as levels for the transformer decoder (3).
        dropout: dropout in the encoder (0 in the release).
        fused: forwarded to :class:`~core.model.deform_attn.MSDeformAttn`.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (256, 512, 1024, 2048),
        *,
        feat_channels: int = 256,
        out_channels: int = 256,
        num_encoder_levels: int = 3,
        num_layers: int = 6,
        num_heads: int = 8,
        num_points: int = 4,
        ffn_channels: int = 1024,
        norm_groups: int = 32,
        num_outs: int = 3,
        dropout: float = 0.0,
        fused: bool | None = None,
    ) -> None:
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if not 1 <= num_encoder_levels <= len(in_channels):
            raise ValueError(f"num_encoder_levels must be in 1..{len(in_channels)}, got {num_encoder_levels}")
        if feat_channels % 2:
            raise ValueError(f"feat_channels must be even for the sine encoding, got {feat_channels}")
        if not 1 <= num_outs <= len(in_channels):
            raise ValueError(f"num_outs must be in 1..{len(in_channels)}, got {num_outs}")
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.out_channels = out_channels
        self.num_encoder_levels = num_encoder_levels
        self.num_outs = num_outs
        n = len(in_channels)
        # input_convs[i] projects input n - 1 - i: the coarsest first, as the encoder's levels.
        self.input_convs = nn.ModuleList(
            ConvNorm(in_channels[n - 1 - i], feat_channels, 1, bias=True, norm_groups=norm_groups)
            for i in range(num_encoder_levels)
        )
        self.encoder = DeformEncoder(
            num_layers,
            feat_channels,
            num_heads=num_heads,
            num_levels=num_encoder_levels,
            num_points=num_points,
            ffn_channels=ffn_channels,
            dropout=dropout,
            fused=fused,
        )
        self.level_encoding = nn.Embedding(num_encoder_levels, feat_channels)
        # lateral_convs[i] / output_convs[i] handle input i (finer than the encoder's levels).
        self.lateral_convs = nn.ModuleList(
            ConvNorm(in_channels[i], feat_channels, 1, bias=False, norm_groups=norm_groups)
            for i in range(n - num_encoder_levels)
        )
        self.output_convs = nn.ModuleList(
            ConvNorm(feat_channels, feat_channels, 3, bias=False, norm_groups=norm_groups, relu=True)
            for _ in range(n - num_encoder_levels)
        )
        self.mask_feature = nn.Conv2d(feat_channels, out_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmdet's initialisation: xavier-uniform input convs, kaiming-uniform (a=1) FPN and mask convs, N(0, 1)
        level encoding, xavier-normal encoder matrices, then Deformable DETR's init of each deformable attention."""
        for block in self.input_convs:
            nn.init.xavier_uniform_(block.conv.weight)
            nn.init.zeros_(block.conv.bias)
        convs = [b.conv for b in (*self.lateral_convs, *self.output_convs)] + [self.mask_feature]
        for conv in convs:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.normal_(self.level_encoding.weight)
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        for layer in self.encoder.layers:
            layer.self_attn.reset_parameters()

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``features``: ``len(in_channels)`` maps ``[B, C_l, H_l, W_l]``, finest first.

        Returns ``(mask_features [B, out_channels, H_0, W_0], levels)`` with ``levels`` the first ``num_outs``
        outputs, coarse to fine, ``[B, feat_channels, h, w]``.
        """
        if len(features) != len(self.in_channels):
            raise ValueError(f"expected {len(self.in_channels)} feature maps, got {len(features)}")
        for i, (f, c) in enumerate(zip(features, self.in_channels)):
            if f.ndim != 4 or f.shape[1] != c:
                raise ValueError(f"feature {i} must be [B, {c}, H, W], got {tuple(f.shape)}")
        n, b = len(features), features[0].shape[0]
        tokens, pos, refs, shapes = [], [], [], []
        for i in range(self.num_encoder_levels):
            feat = features[n - 1 - i]
            h, w = feat.shape[-2:]
            shapes.append((h, w))
            tokens.append(self.input_convs[i](feat).flatten(2).transpose(1, 2))
            table = sine_position_encoding(h, w, self.feat_channels // 2, device=feat.device, dtype=feat.dtype)
            pos.append(table + self.level_encoding.weight[i])
            refs.append(pixel_centres(h, w, device=feat.device, dtype=feat.dtype))
        x = torch.cat(tokens, 1)
        pos_all = torch.cat(pos, 0)[None].expand(b, -1, -1)
        ref = torch.cat(refs, 0)[None, :, None, :].expand(b, -1, self.num_encoder_levels, -1)
        sizes = [h * w for h, w in shapes]
        starts = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype=torch.long, device=x.device)
        memory = self.encoder(x, pos_all, ref, shapes, starts)

        outs = [
            m.transpose(1, 2).reshape(b, self.feat_channels, h, w)
            for m, (h, w) in zip(memory.split(sizes, dim=1), shapes)
        ]
        for i in range(n - self.num_encoder_levels - 1, -1, -1):
            lateral = self.lateral_convs[i](features[i])
            up = F.interpolate(outs[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(self.output_convs[i](lateral + up))
        return self.mask_feature(outs[-1]), outs[: self.num_outs]
