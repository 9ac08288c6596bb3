"""Multi-scale deformable attention (Deformable DETR's MSDeformAttn), pure PyTorch with an optional kernel.

Each query looks at a few points per head and per level instead of at every value token. For query q,
head h, level l and point p, a linear layer of the query predicts an offset and an attention logit; the
sampling location is the query's reference point plus the offset, and the output of head h is the sum
over levels and points of the softmax weight times the value bilinearly sampled at that location.

Layouts (B batch, Q queries, S value tokens = sum over levels of h_l * w_l, H heads, L levels,
P points, D = value channels per head):

* value tokens are the levels' ``[h_l, w_l]`` maps flattened row-major and concatenated,
  finest level first in the usual caller, ``[B, S, C]``;
* ``spatial_shapes`` ``[L, 2]`` holds ``(h_l, w_l)``; ``level_start_index`` ``[L]`` is its exclusive
  cumulative sum of ``h_l * w_l``;
* locations are normalised ``(x, y)`` in ``[0, 1]``: ``(0, 0)`` is the top-left corner of the map and
  ``(1, 1)`` the bottom-right corner, so a pixel centre is ``((j + 0.5) / w, (i + 0.5) / h)``. This is
  ``grid_sample`` with ``align_corners=False`` after mapping ``[0, 1]`` to ``[-1, 1]``; points outside
  the map read zeros (``padding_mode="zeros"``), bilinearly blended with the border pixels.

The fused CUDA kernel (mmcv's ``ms_deform_attn`` op, or Deformable DETR's ``MultiScaleDeformableAttention``
extension) computes the same sum; it is used only when one is importable and the tensors are on CUDA
(``fused=None``), or on request (``fused=True``). The parameter names (``sampling_offsets``,
``attention_weights``, ``value_proj``, ``output_proj``) and shapes are those of Deformable DETR,
ViT-Adapter and mmcv, so their checkpoints map one to one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

SpatialShapes = torch.Tensor | Sequence[tuple[int, int]]


# ---------------------------------------------------------------------------------------------------
# Optional fused kernels. Both take (value, spatial_shapes, level_start_index, sampling_locations,
# attention_weights, im2col_step) with the layouts documented above and return [B, Q, H * D].
# ---------------------------------------------------------------------------------------------------


def _load_mmcv_kernel() -> Callable[..., torch.Tensor] | None:
    try:
        from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
    except Exception:  # not installed, or installed without compiled ops (mmcv-lite)
        return None
    return MultiScaleDeformableAttnFunction.apply


def _load_detr_kernel() -> Callable[..., torch.Tensor] | None:
    try:
        import MultiScaleDeformableAttention as ext  # the extension built by Deformable DETR's models/ops
    except Exception:
        return None

    class _DetrKernel(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value, shapes, starts, locations, weights, im2col_step):
            ctx.im2col_step = im2col_step
            ctx.save_for_backward(value, shapes, starts, locations, weights)
            return ext.ms_deform_attn_forward(value, shapes, starts, locations, weights, im2col_step)

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_output):
            value, shapes, starts, locations, weights = ctx.saved_tensors
            grad_value, grad_locations, grad_weights = ext.ms_deform_attn_backward(
                value, shapes, starts, locations, weights, grad_output.contiguous(), ctx.im2col_step
            )
            return grad_value, None, None, grad_locations, grad_weights, None

    def run(value, shapes, starts, locations, weights, im2col_step):
        # The extension is float32 only.
        out = _DetrKernel.apply(value.float(), shapes, starts, locations.float(), weights.float(), im2col_step)
        return out.to(value.dtype)

    return run


_MMCV_KERNEL = _load_mmcv_kernel()
_DETR_KERNEL = None if _MMCV_KERNEL is not None else _load_detr_kernel()
_fused_kernel: Callable[..., torch.Tensor] | None = _MMCV_KERNEL or _DETR_KERNEL
FUSED_KERNEL_NAME: str | None = None
if _MMCV_KERNEL is not None:
    FUSED_KERNEL_NAME = "mmcv.ops.multi_scale_deform_attn"
elif _DETR_KERNEL is not None:
    FUSED_KERNEL_NAME = "MultiScaleDeformableAttention"


def fused_kernel_available() -> bool:
    """True when a fused CUDA kernel was importable (it still needs CUDA tensors to run)."""
    return _fused_kernel is not None


# ---------------------------------------------------------------------------------------------------
# The pure-PyTorch core
# ---------------------------------------------------------------------------------------------------


def _shapes_list(spatial_shapes: SpatialShapes) -> list[tuple[int, int]]:
    if isinstance(spatial_shapes, torch.Tensor):
        if spatial_shapes.ndim != 2 or spatial_shapes.shape[1] != 2:
            raise ValueError(f"spatial_shapes must be [L, 2] (h, w), got {tuple(spatial_shapes.shape)}")
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    shapes = [tuple(int(v) for v in hw) for hw in spatial_shapes]
    if any(len(hw) != 2 for hw in shapes):
        raise ValueError(f"spatial_shapes must be a list of (h, w) pairs, got {spatial_shapes!r}")
    return shapes  # type: ignore[return-value]


def _check_total(shapes: list[tuple[int, int]], s: int) -> None:
    total = sum(h * w for h, w in shapes)
    if total != s:
        raise ValueError(f"value has S={s} tokens but spatial_shapes {shapes} hold {total}")


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of bilinear samples of each head's value maps (no projections).

    Args:
        value: ``[B, S, H, D]`` per-head values, the levels flattened row-major and concatenated.
        spatial_shapes: ``[L, 2]`` long tensor (or a list) of ``(h_l, w_l)``; sum of ``h_l * w_l`` == S.
        sampling_locations: ``[B, Q, H, L, P, 2]`` normalised ``(x, y)``; ``[0, 1]`` spans the map
            (corner to corner), points outside it read zero padding.
        attention_weights: ``[B, Q, H, L, P]`` weights of the samples (softmax-normalised by the caller).

    Returns:
        ``[B, Q, H * D]``, head-major channels (head 0's D channels first).
    """
    if value.ndim != 4:
        raise ValueError(f"value must be [B, S, H, D], got {tuple(value.shape)}")
    if sampling_locations.ndim != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(f"sampling_locations must be [B, Q, H, L, P, 2], got {tuple(sampling_locations.shape)}")
    b, s, heads, d = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    shapes = _shapes_list(spatial_shapes)
    if sampling_locations.shape[0] != b or sampling_locations.shape[2] != heads:
        raise ValueError(
            f"sampling_locations {tuple(sampling_locations.shape)} do not match value {tuple(value.shape)} "
            "in batch or heads"
        )
    if len(shapes) != levels:
        raise ValueError(f"spatial_shapes has {len(shapes)} levels, sampling_locations has {levels}")
    _check_total(shapes, s)
    if tuple(attention_weights.shape) != (b, q, heads, levels, points):
        raise ValueError(
            f"attention_weights must be {(b, q, heads, levels, points)}, got {tuple(attention_weights.shape)}"
        )

    # Heads go into the batch of grid_sample: maps [B*H, D, h, w], grids [B*H, Q, P, 2] in [-1, 1].
    grids = (2.0 * sampling_locations - 1.0).permute(0, 2, 1, 3, 4, 5).reshape(b * heads, q, levels, points, 2)
    weights = attention_weights.permute(0, 2, 1, 3, 4).reshape(b * heads, 1, q, levels, points)
    out = value.new_zeros(b * heads, d, q)
    for level, per_level in enumerate(value.split([h * w for h, w in shapes], dim=1)):
        h, w = shapes[level]
        maps = per_level.permute(0, 2, 3, 1).reshape(b * heads, d, h, w)
        sampled = F.grid_sample(
            maps, grids[:, :, level].to(maps.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
        )  # [B*H, D, Q, P]
        out = out + (sampled * weights[..., level, :].to(sampled.dtype)).sum(-1)
    return out.reshape(b, heads * d, q).transpose(1, 2).contiguous()


# ---------------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------------


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention from queries ``[B, Q, C]`` to multi-level value tokens ``[B, S, C]``.

    Args:
        dim: query and value channels C.
        num_heads: attention heads H.
        num_levels: feature levels L (must match ``spatial_shapes`` at forward).
        num_points: sampling points P per head and level.
        value_dim: width of the projected values (``value_proj`` output, ``output_proj`` input); must be
            divisible by ``num_heads``. ``None``: ``int(dim * value_ratio)``.
        value_ratio: ViT-Adapter's ``ratio`` / mmcv's ``value_proj_ratio`` (the VPP release's Tiny
            config: 1.0). Only used when ``value_dim`` is None.
        fused: use a fused CUDA kernel. ``None`` (auto): when one is importable and the tensors are on
            CUDA; ``True``: always (raises if none is importable, or on non-CUDA tensors); ``False``: never.
        im2col_step: batch chunk of the fused kernel (Deformable DETR's and mmcv's default 64).
        dropout: dropout on the output (mmcv's module applies 0.1 before adding the identity).
        add_identity: return ``query + dropout(output)`` as mmcv's ``MultiScaleDeformableAttention`` does.
            The VPP release's ViT-Adapter injector/extractor call mmcv's module with no ``identity``, so
            their (layer-normed) query is added back on top of their own residual.
    """

    def __init__(
        self,
        *,
        dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        value_dim: int | None = None,
        value_ratio: float = 1.0,
        fused: bool | None = None,
        im2col_step: int = 64,
        dropout: float = 0.0,
        add_identity: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if value_dim is not None and value_ratio != 1.0:
            raise ValueError("give value_dim or value_ratio, not both")
        value_dim = int(dim * value_ratio) if value_dim is None else value_dim
        if value_dim <= 0 or value_dim % num_heads:
            raise ValueError(f"value width {value_dim} is not a positive multiple of num_heads {num_heads}")
        if fused and _fused_kernel is None:
            raise RuntimeError(
                "fused=True but no fused kernel is importable (install mmcv with its CUDA ops, or build "
                "Deformable DETR's MultiScaleDeformableAttention extension); use fused=None or False"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.value_dim = value_dim
        self.fused = fused
        self.im2col_step = im2col_step
        self.add_identity = add_identity
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, value_dim)
        self.output_proj = nn.Linear(value_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation.

        Offsets start as a constant (zero weight): head h points along the direction at angle
        ``2 pi h / H``, scaled so its larger coordinate is 1 (a ring on the unit square), and point p
        lies ``p + 1`` pixels out along it, on every level. Attention weights start uniform (zero weight
        and bias); the projections are xavier-uniform with zero bias.
        """
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        angle = torch.arange(heads, dtype=torch.float64) * (2.0 * math.pi / heads)
        direction = torch.stack([angle.cos(), angle.sin()], dim=-1)  # [H, 2] as (x, y)
        direction = direction / direction.abs().amax(dim=-1, keepdim=True)
        distance = torch.arange(1, points + 1, dtype=torch.float64)  # [P]
        ring = direction[:, None, None, :] * distance[None, None, :, None]  # [H, 1, P, 2]
        ring = ring.expand(heads, levels, points, 2)
        with torch.no_grad():
            nn.init.zeros_(self.sampling_offsets.weight)
            self.sampling_offsets.bias.copy_(ring.reshape(-1).to(self.sampling_offsets.bias.dtype))
            nn.init.zeros_(self.attention_weights.weight)
            nn.init.zeros_(self.attention_weights.bias)
            for proj in (self.value_proj, self.output_proj):
                nn.init.xavier_uniform_(proj.weight)
                nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: SpatialShapes,
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from each query to P points per head around its reference point on every level.

        Args:
            query: ``[B, Q, C]`` (position embedding already added by the caller).
            reference_points: ``[B, Q, L, 2]`` normalised ``(x, y)`` per level, offsets are in pixels of
                that level; or ``[B, Q, L, 4]`` boxes ``(cx, cy, w, h)``, offsets scaled by
                ``0.5 * (w, h) / P``.
            value: ``[B, S, C]`` the levels' tokens, flattened row-major and concatenated.
            spatial_shapes: ``[L, 2]`` long ``(h_l, w_l)``; a list of pairs avoids a device sync.
            level_start_index: ``[L]`` start of each level in S (exclusive cumsum of ``h_l * w_l``).
            padding_mask: ``[B, S]`` bool, True where a value token is padding; those tokens contribute 0.

        Returns:
            ``[B, Q, C]`` (plus ``query`` when ``add_identity``).
        """
        b, q = self._check(query, reference_points, value, level_start_index, padding_mask)
        shapes = _shapes_list(spatial_shapes)
        if len(shapes) != self.num_levels:
            raise ValueError(f"spatial_shapes has {len(shapes)} levels, the module was built for {self.num_levels}")
        s = value.shape[1]
        _check_total(shapes, s)
        heads, levels, points = self.num_heads, self.num_levels, self.num_points

        v = self.value_proj(value)
        if padding_mask is not None:
            v = v.masked_fill(padding_mask[..., None], 0.0)
        v = v.reshape(b, s, heads, self.value_dim // heads)

        offsets = self.sampling_offsets(query).reshape(b, q, heads, levels, points, 2)
        logits = self.attention_weights(query).reshape(b, q, heads, levels * points)
        weights = logits.softmax(-1).reshape(b, q, heads, levels, points)

        ref = reference_points[:, :, None, :, None, :]  # [B, Q, 1, L, 1, 2 or 4]
        if reference_points.shape[-1] == 2:
            size = torch.tensor([[w, h] for h, w in shapes], dtype=offsets.dtype, device=offsets.device)  # [L, 2]
            locations = ref + offsets / size[:, None, :]
        else:
            locations = ref[..., :2] + offsets * (0.5 / points) * ref[..., 2:]

        if self._use_fused(v):
            shapes_t = torch.as_tensor(shapes, dtype=torch.long, device=v.device)
            out = _fused_kernel(
                v, shapes_t, level_start_index.to(v.device, torch.long), locations, weights, self.im2col_step
            )
        else:
            out = ms_deform_attn_sample(v, shapes, locations, weights)
        out = self.dropout(self.output_proj(out))
        return query + out if self.add_identity else out

    def _check(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None,
    ) -> tuple[int, int]:
        if query.ndim != 3 or query.shape[-1] != self.dim:
            raise ValueError(f"query must be [B, Q, {self.dim}], got {tuple(query.shape)}")
        b, q, _ = query.shape
        if value.ndim != 3 or value.shape[0] != b or value.shape[-1] != self.dim:
            raise ValueError(f"value must be [{b}, S, {self.dim}], got {tuple(value.shape)}")
        if (
            reference_points.ndim != 4
            or tuple(reference_points.shape[:3]) != (b, q, self.num_levels)
            or reference_points.shape[-1] not in (2, 4)
        ):
            raise ValueError(
                f"reference_points must be [{b}, {q}, {self.num_levels}, 2 or 4], got {tuple(reference_points.shape)}"
            )
        if tuple(level_start_index.shape) != (self.num_levels,):
            raise ValueError(f"level_start_index must be [{self.num_levels}], got {tuple(level_start_index.shape)}")
        if padding_mask is not None and tuple(padding_mask.shape) != (b, value.shape[1]):
            raise ValueError(f"padding_mask must be [{b}, {value.shape[1]}], got {tuple(padding_mask.shape)}")
        return b, q

    def _use_fused(self, value: torch.Tensor) -> bool:
        if self.fused is False:
            return False
        if _fused_kernel is None or not value.is_cuda:
            if self.fused:
                raise RuntimeError(
                    f"fused=True needs an importable kernel and CUDA tensors (kernel: {FUSED_KERNEL_NAME}, "
                    f"tensors on {value.device}); use fused=None or False"
                )
            return False
        return True

    def flops(self, num_queries: int, num_values: int) -> int:
        """FLOPs (2 per multiply-add, as the other parts) for ``num_queries`` queries over ``num_values`` tokens.

        Counts the four projections, each bilinear sample as 4 multiply-adds per channel and the weighted
        sum over samples as 1; the softmax is not counted (as in ``vit.Attention``).
        """
        samples = num_queries * self.num_heads * self.num_levels * self.num_points
        per_head = self.value_dim // self.num_heads
        projections = (
            num_values * self.dim * self.value_dim  # value_proj
            + num_queries * self.dim * self.sampling_offsets.out_features
            + num_queries * self.dim * self.attention_weights.out_features
            + num_queries * self.value_dim * self.dim  # output_proj
        )
        sampling = samples * per_head * (4 + 1)
        return 2 * (projections + sampling)
