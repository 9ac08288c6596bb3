"""Mask2Former's masked-attention transformer decoder (the layers, the loop and the attention masks).

As in the authors' release (mmdet's Mask2Former decoder, 9 layers, ``operation_order = (cross_attn, norm,
self_attn, norm, ffn, norm)``), each layer is post-norm:

    x = norms[0](x + CrossAttn(q = x + query_pos, k = memory + memory_pos, v = memory, mask))
    x = norms[1](x + SelfAttn(q = k = x + query_pos, v = x))
    x = norms[2](x + FFN(x))

Layer ``i`` attends to level ``i % L`` (coarse to fine, round robin). Before every layer the current queries are
normalised by ``post_norm`` and turned into class and mask logits by the head's prediction function; the mask
logits, resized bilinearly to that level's size, give the attention mask: a query may attend only to positions
where ``sigmoid(mask) >= 0.5``. A query whose mask is empty on that level (every position masked) attends
everywhere instead. The masks are detached (no gradient flows through the thresholding). The prediction after
the last layer is the output; the earlier ones are the auxiliary outputs (the first from the learned queries
themselves, before any layer).

Parameter names follow mmdet >= 3.0 (``layers.{i}.cross_attn.attn.in_proj_weight``, ``...self_attn.attn...``,
``layers.{i}.ffn.layers...``, ``layers.{i}.norms.{0,1,2}``, ``post_norm``); ``core.model.m2f_head`` maps the
released checkpoints' names (mmcv's ``attentions.0`` / ``attentions.1`` / ``ffns.0``) onto them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.model.m2f_pixel_decoder import FFN

#: ``predict(x_normed [B, Q, C]) -> (class_logits [B, Q, K + 1], mask_logits [B, Q, H, W])``
PredictFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def attention_mask_from_logits(mask_logits: torch.Tensor, size: tuple[int, int], num_heads: int) -> torch.Tensor:
    """Masked-attention mask ``[B * num_heads, Q, h * w]`` (bool, True = may *not* attend) from mask logits.

    ``mask_logits [B, Q, H, W]`` are resized bilinearly (``align_corners=False``) to ``size = (h, w)``; positions
    with ``sigmoid < 0.5`` are masked. A row with every position masked is cleared (the query attends everywhere),
    as mmdet does, so the softmax never sees an all ``-inf`` row. Rows are batch-major then head, the layout of
    ``nn.MultiheadAttention``'s 3D ``attn_mask``. Detached.
    """
    if mask_logits.ndim != 4:
        raise ValueError(f"mask_logits must be [B, Q, H, W], got {tuple(mask_logits.shape)}")
    b, q = mask_logits.shape[:2]
    with torch.no_grad():
        resized = F.interpolate(mask_logits.detach(), size=tuple(size), mode="bilinear", align_corners=False)
        masked = resized.flatten(2).sigmoid() < 0.5  # [B, Q, h*w]
        masked = masked & ~masked.all(dim=-1, keepdim=True)
        return masked[:, None].expand(b, num_heads, q, masked.shape[-1]).reshape(b * num_heads, q, -1)


class QueryAttention(nn.Module):
    """Residual multi-head attention with positions added to query and key (mmcv's ``MultiheadAttention``).

    ``forward`` returns ``query + attn(query + query_pos, key + key_pos, value)``; the attention itself is
    ``torch.nn.MultiheadAttention`` (``attn``: ``in_proj_weight [3C, C]``, ``in_proj_bias``, ``out_proj``).
    """

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        query_pos: torch.Tensor | None = None,
        key_pos: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``query [B, Q, C]``, ``key``/``value [B, S, C]``, positions broadcastable to them; ``attn_mask`` bool
        ``[B * heads, Q, S]`` or ``[Q, S]``, True = not attended."""
        q = query if query_pos is None else query + query_pos
        k = key if key_pos is None else key + key_pos
        out, _ = self.attn(q, k, value, attn_mask=attn_mask, need_weights=False)
        return query + out


class Mask2FormerDecoderLayer(nn.Module):
    """Masked cross-attention -> norm -> self-attention -> norm -> FFN -> norm (post-norm)."""

    def __init__(self, dim: int, *, num_heads: int = 8, ffn_channels: int = 2048, dropout: float = 0.0) -> None:
        super().__init__()
        self.cross_attn = QueryAttention(dim, num_heads, dropout=dropout)
        self.self_attn = QueryAttention(dim, num_heads, dropout=dropout)
        self.ffn = FFN(dim, ffn_channels, dropout=dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(
        self,
        x: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x``, ``query_pos`` ``[B, Q, C]``; ``memory``, ``memory_pos`` ``[B, S, C]`` (or ``[1, S, C]``)."""
        x = self.norms[0](self.cross_attn(x, memory, memory, query_pos, memory_pos, attn_mask))
        x = self.norms[1](self.self_attn(x, x, x, query_pos, query_pos))
        return self.norms[2](self.ffn(x))


@dataclass
class DecoderResult:
    predictions: list[tuple[torch.Tensor, torch.Tensor]]  # (class, mask) logits: before layer 1, ..., after layer L
    queries: torch.Tensor  # [B, Q, C] the last layer's output, before post_norm


class Mask2FormerDecoder(nn.Module):
    """``num_layers`` :class:`Mask2FormerDecoderLayer` and the ``post_norm`` applied before every prediction.

    Args:
        dim: query and memory channels C (256).
        num_layers: decoder layers (9).
        num_heads: attention heads (8).
        ffn_channels: FFN hidden width (2048).
        dropout: attention and FFN dropout (0 in the release).
    """

    def __init__(
        self, dim: int = 256, *, num_layers: int = 9, num_heads: int = 8, ffn_channels: int = 2048, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.layers = nn.ModuleList(
            Mask2FormerDecoderLayer(dim, num_heads=num_heads, ffn_channels=ffn_channels, dropout=dropout)
            for _ in range(num_layers)
        )
        self.post_norm = nn.LayerNorm(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmdet's initialisation of the decoder: xavier-normal for every matrix."""
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def forward(
        self,
        queries: torch.Tensor,
        query_pos: torch.Tensor,
        memories: Sequence[torch.Tensor],
        memory_pos: Sequence[torch.Tensor],
        level_sizes: Sequence[tuple[int, int]],
        predict: PredictFn,
    ) -> DecoderResult:
        """Run the layers, predicting before each (for its attention mask) and after the last.

        Args:
            queries: ``[B, Q, C]`` initial query features.
            query_pos: ``[B, Q, C]`` query position embeddings.
            memories: per level ``[B, h_l * w_l, C]`` tokens (level embedding included), coarse first.
            memory_pos: per level ``[B or 1, h_l * w_l, C]`` key positions.
            level_sizes: per level ``(h_l, w_l)``.
            predict: the head's prediction from ``post_norm(queries)`` (see :data:`PredictFn`).
        """
        levels = len(memories)
        if not levels or len(memory_pos) != levels or len(level_sizes) != levels:
            raise ValueError("memories, memory_pos and level_sizes must be non-empty and of equal length")
        x = queries
        predictions = []
        for i, layer in enumerate(self.layers):
            lvl = i % levels
            cls, masks = predict(self.post_norm(x))
            predictions.append((cls, masks))
            attn_mask = attention_mask_from_logits(masks, level_sizes[lvl], self.num_heads)
            x = layer(x, query_pos, memories[lvl], memory_pos[lvl], attn_mask)
        predictions.append(predict(self.post_norm(x)))
        return DecoderResult(predictions, x)
