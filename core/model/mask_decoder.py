"""Mask2Former-style query decoder: N learned queries -> class logits, mask logits, track embeddings.

Each layer does masked cross-attention to one pixel-decoder level (round robin, coarse to fine), then
self-attention among the queries, then an FFN. The attention mask of a layer is the previous
prediction's mask (sigmoid > 0.5) resized to that level; a query whose mask is empty attends
everywhere. Masks are the dot product of a per-query embedding with the stride-8 mask features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DecoderOutput:
    class_logits: torch.Tensor  # [B, Q, K + 1], last index = "no object"
    mask_logits: torch.Tensor  # [B, Q, h8, w8]
    embeddings: torch.Tensor  # [B, Q, E] L2-normalised track embeddings
    aux: list[tuple[torch.Tensor, torch.Tensor]]  # per earlier layer (class, mask) logits, training only


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, q, k, v, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, nq, d = q.shape
        h = self.heads

        def split(t):
            return t.reshape(b, -1, h, d // h).transpose(1, 2)

        x = F.scaled_dot_product_attention(split(self.q(q)), split(self.k(k)), split(self.v(v)), attn_mask=mask)
        return self.out(x.transpose(1, 2).reshape(b, nq, d))

    def flops(self, nq: int, nk: int) -> int:
        d = self.q.in_features
        return 2 * d * d * (2 * nq + 2 * nk) + 4 * nq * nk * d


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.cross = _Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Linear(ffn, dim))
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, pos, memory, memory_pos, mask):
        x = self.norm1(x + self.cross(x + pos, memory + memory_pos, memory, mask))
        qk = x + pos
        x = self.norm2(x + self.self_attn(qk, qk, x))
        return self.norm3(x + self.ffn(x))

    def flops(self, nq: int, nk: int) -> int:
        d, f = self.ffn[0].in_features, self.ffn[0].out_features
        return self.cross.flops(nq, nk) + self.self_attn.flops(nq, nq) + 4 * nq * d * f


class MaskDecoder(nn.Module):
    """Queries attend to the pixel decoder's levels and predict classes, masks and track embeddings.

    Args:
        dim: decoder channels D (must equal the pixel decoder's).
        num_classes: object categories K (the extra last logit is "no object").
        num_queries: Q.
        num_layers: decoder layers (Mask2Former: 9).
        heads: attention heads.
        ffn: FFN hidden width.
        num_levels: pixel-decoder levels attended round robin.
        embed_dim: size of the track embedding used for frame-to-frame matching.
    """

    def __init__(
        self,
        dim: int = 128,
        num_classes: int = 40,
        *,
        num_queries: int = 50,
        num_layers: int = 6,
        heads: int = 4,
        ffn: int = 512,
        num_levels: int = 3,
        embed_dim: int = 64,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_levels = num_levels
        self.query_feat = nn.Embedding(num_queries, dim)
        self.query_pos = nn.Embedding(num_queries, dim)
        self.level_embed = nn.Embedding(num_levels, dim)
        self.layers = nn.ModuleList(_Layer(dim, heads, ffn) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.class_head = nn.Linear(dim, num_classes + 1)
        self.mask_head = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)
        )
        self.track_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, embed_dim))
        self._pos_cache: dict[tuple, torch.Tensor] = {}

    def forward(self, mask_features: torch.Tensor, levels: list[torch.Tensor]) -> DecoderOutput:
        """``mask_features`` ``[B, D, h8, w8]``; ``levels`` ``num_levels`` maps ``[B, D, h, w]``."""
        b = mask_features.shape[0]
        memories, memory_pos, sizes = [], [], []
        for i, lvl in enumerate(levels):
            h, w = lvl.shape[-2:]
            sizes.append((h, w))
            memories.append(lvl.flatten(2).transpose(1, 2))
            memory_pos.append((self._sine(h, w, lvl.device) + self.level_embed.weight[i]).to(lvl.dtype)[None])
        x = self.query_feat.weight[None].expand(b, -1, -1)
        pos = self.query_pos.weight[None].expand(b, -1, -1)
        aux = []
        cls, masks, attn_mask = self._predict(x, mask_features, sizes[0], with_class=self.training)
        for i, layer in enumerate(self.layers):
            lvl = i % self.num_levels
            if i:
                cls, masks, attn_mask = self._predict(x, mask_features, sizes[lvl], with_class=self.training)
            if self.training and i:
                aux.append((cls, masks))
            x = layer(x, pos, memories[lvl], memory_pos[lvl], attn_mask)
        cls, masks, _ = self._predict(x, mask_features, None, with_class=True)
        emb = F.normalize(self.track_head(self.norm(x)), dim=-1)
        return DecoderOutput(cls, masks, emb, aux)

    def _predict(self, x, mask_features, attn_size, *, with_class: bool):
        x = self.norm(x)
        cls = self.class_head(x) if with_class else None
        masks = torch.einsum("bqd,bdhw->bqhw", self.mask_head(x), mask_features)
        if attn_size is None:
            return cls, masks, None
        small = F.interpolate(masks, size=attn_size, mode="bilinear", align_corners=False)
        attend = small.flatten(2) > 0  # sigmoid > 0.5
        attend = attend | ~attend.any(dim=-1, keepdim=True)  # empty mask: attend everywhere
        return cls, masks, attend.unsqueeze(1).detach()  # [B, 1, Q, HW] broadcast over heads

    def _sine(self, h: int, w: int, device) -> torch.Tensor:
        """Fixed 2D sine position encoding ``[h*w, D]`` (cached per size)."""
        key = (h, w, str(device))
        table = self._pos_cache.get(key)
        if table is None:
            if len(self._pos_cache) > 8:
                self._pos_cache.clear()
            quarter = self.dim // 4
            freq = torch.exp(torch.arange(quarter, device=device) * (-math.log(10000.0) / max(quarter, 1)))
            ys = torch.arange(h, device=device, dtype=torch.float32)[:, None] / max(h, 1) * 2 * math.pi
            xs = torch.arange(w, device=device, dtype=torch.float32)[:, None] / max(w, 1) * 2 * math.pi
            ey = torch.cat([(ys * freq).sin(), (ys * freq).cos()], dim=-1)  # [h, D/2]
            ex = torch.cat([(xs * freq).sin(), (xs * freq).cos()], dim=-1)  # [w, D/2]
            table = torch.cat([ey[:, None].expand(h, w, -1), ex[None].expand(h, w, -1)], dim=-1).reshape(h * w, -1)
            if table.shape[1] < self.dim:
                table = F.pad(table, (0, self.dim - table.shape[1]))
            self._pos_cache[key] = table
        return table

    def flops(self, level_sizes: list[tuple[int, int]], mask_size: tuple[int, int]) -> int:
        """Counted FLOPs at inference for levels of the given sizes and stride-8 mask features."""
        q, d = self.num_queries, self.dim
        hw8 = mask_size[0] * mask_size[1]
        mask_mlp = 3 * 2 * q * d * d
        predict = mask_mlp + 2 * q * d * hw8
        cls = 2 * q * d * (self.num_classes + 1)
        total = 0
        for i, layer in enumerate(self.layers):
            h, w = level_sizes[i % self.num_levels]
            total += predict + layer.flops(q, h * w)
        total += predict + cls  # the final prediction
        e1, e2 = self.track_head[0], self.track_head[2]
        return total + 2 * q * (e1.in_features * e1.out_features + e2.in_features * e2.out_features)
