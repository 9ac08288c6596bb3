"""ViT-Adapter parts: spatial prior module, ConvFFN, injector, extractor and their interaction block.

Layouts: the ViT's tokens are ``[B, N, C]`` on the stride-16 grid ``(H, W)`` (``N = H * W``); the
adapter's multi-scale tokens ``c`` are ``[B, Nc, C]``, the stride-8, -16 and -32 maps (``2H x 2W``,
``H x W``, ``H/2 x W/2``) flattened row-major and concatenated, ``Nc = 4N + N + N/4``. Images must be a
multiple of 32 so the four strides divide exactly.

Written from the structure of the VPP release (PatGlan/Video-Patch-Pruning,
``custom_mmdet/models/backbones/adapter_modules.py``, itself ViT-Adapter's): module and parameter names
follow it so its state-dict keys map one to one. Its deformable attention is mmcv's
``MultiScaleDeformableAttention`` called without ``identity``, so mmcv adds the (layer-normed) query
back: injector ``x + gamma * (MSDA(LN(x), LN(c)) + LN(x))``, extractor ``c + MSDA(LN(c), LN(x)) + LN(c)``
(then ``+ ConvFFN(LN(.))``). ``MSDeformAttn(add_identity=True, dropout=0.1)`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from core.model.deform_attn import MSDeformAttn


@dataclass(frozen=True)
class DeformInputs:
    """What one deformable attention needs besides its query and value.

    ``reference_points`` ``[1, Q, 2]`` normalised ``(x, y)`` pixel centres of the queries;
    ``spatial_shapes`` the value levels' ``(h, w)``; ``level_start_index`` ``[L]`` long.
    """

    reference_points: torch.Tensor
    spatial_shapes: tuple[tuple[int, int], ...]
    level_start_index: torch.Tensor

    def references(self, batch: int) -> torch.Tensor:
        """``[B, Q, L, 2]``: the same point on every value level."""
        levels = len(self.spatial_shapes)
        return self.reference_points[:, :, None, :].expand(batch, -1, levels, -1)


def reference_points(shapes: Sequence[tuple[int, int]], device: torch.device | str = "cpu") -> torch.Tensor:
    """``[1, sum h*w, 2]`` normalised ``(x, y)`` of every pixel centre of the maps, row-major, in order."""
    points = []
    for h, w in shapes:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1))
    return torch.cat(points, dim=0)[None]


def level_shapes(grid: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The adapter's stride-8/16/32 ``(h, w)`` for a stride-16 token ``grid``."""
    h, w = grid
    return (2 * h, 2 * w), (h, w), (h // 2, w // 2)


def deform_inputs(grid: tuple[int, int], device: torch.device | str = "cpu") -> tuple[DeformInputs, DeformInputs]:
    """``(injector, extractor)`` inputs for a stride-16 token ``grid``.

    Injector: ViT tokens query the three adapter levels. Extractor: adapter tokens query the ViT map.
    """
    shapes = level_shapes(grid)
    sizes = torch.tensor([h * w for h, w in shapes], device=device)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    injector = DeformInputs(reference_points([tuple(grid)], device), shapes, starts)
    extractor = DeformInputs(reference_points(shapes, device), (tuple(grid),), sizes.new_zeros(1))
    return injector, extractor


def _bn_conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """Convolutional stem: image ``[B, 3, 32H, 32W]`` -> strides 4, 8, 16, 32, each projected to C.

    ``stem``: 3x3 conv stride 2 + two 3x3 convs (each BatchNorm + ReLU), then 3x3 max-pool stride 2
    (stride 4, ``inplanes``); ``conv2``/``conv3``/``conv4``: one 3x3 stride-2 conv each (2x, 4x, 4x
    ``inplanes``); ``fc1..fc4``: 1x1 convs to ``embed_dim``. The release uses SyncBatchNorm (the same
    parameters and buffers; convert with ``nn.SyncBatchNorm.convert_sync_batchnorm`` for DDP).

    Returns ``c1`` ``[B, C, 8H, 8W]`` (a map) and ``c2, c3, c4`` as tokens ``[B, h*w, C]``.
    """

    def __init__(self, *, inplanes: int = 64, embed_dim: int = 192) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *_bn_conv(3, inplanes, 2), *_bn_conv(inplanes, inplanes, 1), *_bn_conv(inplanes, inplanes, 1),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        self.conv2 = nn.Sequential(*_bn_conv(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*_bn_conv(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*_bn_conv(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stem(images)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        tokens = [fc(c).flatten(2).transpose(1, 2) for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))]
        return self.fc1(c1), *tokens


class DWConv(nn.Module):
    """3x3 depthwise conv applied to each level of the adapter tokens ``[B, Nc, D]`` separately."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        shapes = level_shapes(grid)
        b, nc, d = x.shape
        if nc != sum(h * w for h, w in shapes):
            raise ValueError(f"{nc} adapter tokens do not match the levels {shapes} of grid {grid}")
        parts = x.split([h * w for h, w in shapes], dim=1)
        out = [
            self.dwconv(p.transpose(1, 2).reshape(b, d, h, w)).flatten(2).transpose(1, 2)
            for p, (h, w) in zip(parts, shapes)
        ]
        return torch.cat(out, dim=1)


class ConvFFN(nn.Module):
    """Linear(C, D) -> DWConv -> GELU -> dropout -> Linear(D, C) -> dropout on ``[B, Nc, C]``."""

    def __init__(self, dim: int, hidden: int, *, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), grid)))
        return self.drop(self.fc2(x))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a whole sample's branch with probability ``p`` (rescaled), training only."""
    if p <= 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


def _deform_attn(dim: int, num_heads: int, levels: int, points: int, ratio: float, dropout: float,
                 add_identity: bool) -> MSDeformAttn:
    return MSDeformAttn(dim=dim, num_heads=num_heads, num_levels=levels, num_points=points,
                        value_ratio=ratio, dropout=dropout, add_identity=add_identity)


class Injector(nn.Module):
    """ViT tokens ``x`` ``[B, N, C]`` attend to the adapter tokens ``c`` (3 levels): ``x + gamma * attn``.

    ``gamma`` starts at ``init_values`` (the release: 0, so a fresh adapter leaves the ViT unchanged).
    """

    def __init__(self, dim: int, *, num_heads: int = 6, n_points: int = 4, n_levels: int = 3,
                 deform_ratio: float = 1.0, init_values: float = 0.0, norm_eps: float = 1e-6,
                 attn_dropout: float = 0.1, attn_add_identity: bool = True, with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.feat_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = _deform_attn(dim, num_heads, n_levels, n_points, deform_ratio, attn_dropout, attn_add_identity)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor, c: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        def inner(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            attn = self.attn(self.query_norm(x), inputs.references(x.shape[0]), self.feat_norm(c),
                             inputs.spatial_shapes, inputs.level_start_index)
            return x + self.gamma * attn

        if self.with_cp and x.requires_grad:
            return checkpoint(inner, x, c, use_reentrant=False)
        return inner(x, c)


class Extractor(nn.Module):
    """Adapter tokens ``c`` ``[B, Nc, C]`` attend to the ViT map ``x`` (1 level), then a ConvFFN."""

    def __init__(self, dim: int, *, num_heads: int = 6, n_points: int = 4, n_levels: int = 1,
                 deform_ratio: float = 1.0, with_cffn: bool = True, cffn_ratio: float = 0.25, drop: float = 0.0,
                 drop_path: float = 0.0, norm_eps: float = 1e-6, attn_dropout: float = 0.1,
                 attn_add_identity: bool = True, with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.drop_path_rate = drop_path
        self.query_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.feat_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = _deform_attn(dim, num_heads, n_levels, n_points, deform_ratio, attn_dropout, attn_add_identity)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio), drop=drop)
            self.ffn_norm = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, c: torch.Tensor, x: torch.Tensor, inputs: DeformInputs, grid: tuple[int, int]) -> torch.Tensor:
        def inner(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            c = c + self.attn(self.query_norm(c), inputs.references(c.shape[0]), self.feat_norm(x),
                              inputs.spatial_shapes, inputs.level_start_index)
            if self.with_cffn:
                c = c + drop_path(self.ffn(self.ffn_norm(c), grid), self.drop_path_rate, self.training)
            return c

        if self.with_cp and c.requires_grad:
            return checkpoint(inner, c, x, use_reentrant=False)
        return inner(c, x)


class InteractionBlock(nn.Module):
    """One injector before a group of ViT blocks, one extractor (+ optional extra ones) after it.

    The pruned backbone runs the blocks; :meth:`inject` and :meth:`extract` are called on the dense
    token map at the group's boundaries. :meth:`forward` is the plain dense composition.
    """

    def __init__(self, dim: int, *, num_heads: int = 6, n_points: int = 4, deform_ratio: float = 1.0,
                 init_values: float = 0.0, with_cffn: bool = True, cffn_ratio: float = 0.25, drop: float = 0.0,
                 drop_path: float = 0.0, extra_extractors: int = 0, norm_eps: float = 1e-6,
                 attn_dropout: float = 0.1, attn_add_identity: bool = True, with_cp: bool = False) -> None:
        super().__init__()
        common = dict(num_heads=num_heads, n_points=n_points, deform_ratio=deform_ratio, norm_eps=norm_eps,
                      attn_dropout=attn_dropout, attn_add_identity=attn_add_identity, with_cp=with_cp)
        ffn = dict(with_cffn=with_cffn, cffn_ratio=cffn_ratio, drop=drop, drop_path=drop_path)
        self.injector = Injector(dim, n_levels=3, init_values=init_values, **common)
        self.extractor = Extractor(dim, n_levels=1, **ffn, **common)
        self.extra_extractors = (
            nn.Sequential(*(Extractor(dim, n_levels=1, **ffn, **common) for _ in range(extra_extractors)))
            if extra_extractors else None
        )

    def inject(self, x: torch.Tensor, c: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        return self.injector(x, c, inputs)

    def extract(self, c: torch.Tensor, x: torch.Tensor, inputs: DeformInputs, grid: tuple[int, int]) -> torch.Tensor:
        c = self.extractor(c, x, inputs, grid)
        for extractor in self.extra_extractors or ():
            c = extractor(c, x, inputs, grid)
        return c

    def forward(self, x: torch.Tensor, c: torch.Tensor, blocks: Sequence[nn.Module], inject_inputs: DeformInputs,
                extract_inputs: DeformInputs, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense: inject, run ``blocks`` on every token, extract. Returns ``(x, c)``."""
        x = self.inject(x, c, inject_inputs)
        for blk in blocks:
            x = blk(x)
        return x, self.extract(c, x, extract_inputs, grid)


def init_adapter_weights(m: nn.Module) -> None:
    """The release's initialisation of the adapter's own layers (apply, then reset the MSDA modules).

    Linear: truncated normal (std 0.02), zero bias; LayerNorm/BatchNorm: ones and zeros; (transposed)
    convs: normal with std sqrt(2 / fan_out), fan_out = k_h * k_w * out_channels / groups, zero bias.
    """
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        if m.bias is not None:
            nn.init.zeros_(m.bias)

