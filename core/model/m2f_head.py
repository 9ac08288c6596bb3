"""The authors' Mask2Former head: deformable pixel decoder + masked-attention decoder + class / mask heads.

This is mmdet's ``Mask2FormerHead`` as the VPP release uses it (``AdditionalQueriesFormerHead`` in
``custom_mmtrack/models/track_heads/rovis_head.py``): ``num_queries`` learned queries (``query_feat``) with
learned positions (``query_embed``); per decoder level a learned ``level_embed`` added to the memory tokens and
a sine position encoding for the keys; class logits ``cls_embed`` (K + 1, the last is "no object") and mask
logits ``mask_embed(q) . mask_features`` (a 3-layer MLP) at stride 4, predicted from ``post_norm(queries)``.

Track queries (ROVIS / TrackFormer): the query features of objects tracked from the previous frame are appended
after the learned queries, with a zero position embedding unless one is given (the release's
``use_query_embed=False``). What follows from the architecture (and is tested): the prediction from the initial
queries (``aux[0]``) and the first layer's cross-attention of the learned queries do not depend on the appended
queries (both act per query); from the first self-attention on, every query sees the others, so the later
predictions of the learned queries do change.

State-dict keys are mmdet >= 3.0's names under ``detector.panoptic_head.``, one to one. The released checkpoints
(trained with mmdet 3.0.0rc5 / mmcv 2.0.0rc4, whose transformer layers are mmcv ``BaseTransformerLayer``) name
the attentions and FFNs by position instead; :data:`RELEASE_KEY_RENAMES` / :func:`rename_release_key` map them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from core.model.m2f_decoder import Mask2FormerDecoder
from core.model.m2f_pixel_decoder import MSDeformPixelDecoder, sine_position_encoding

#: Prefix of the head's keys in the released (mmengine) checkpoints.
RELEASE_PREFIX = "detector.panoptic_head."

#: Release (mmcv ``BaseTransformerLayer``) names -> this head's (mmdet >= 3.0) names, keys relative to the head.
#: In the encoder ``attentions.0`` is the deformable self-attention; in the decoder, whose operation order is
#: (cross_attn, norm, self_attn, norm, ffn, norm), ``attentions.0`` is the cross- and ``attentions.1`` the
#: self-attention. Everything else (input_convs, level_encoding, lateral_convs, output_convs, mask_feature,
#: norms, post_norm, query_embed, query_feat, level_embed, cls_embed, mask_embed) is named the same.
RELEASE_KEY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^(pixel_decoder\.encoder\.layers\.\d+\.)attentions\.0\.", r"\1self_attn."),
    (r"^(pixel_decoder\.encoder\.layers\.\d+\.)ffns\.0\.", r"\1ffn."),
    (r"^(transformer_decoder\.layers\.\d+\.)attentions\.0\.", r"\1cross_attn."),
    (r"^(transformer_decoder\.layers\.\d+\.)attentions\.1\.", r"\1self_attn."),
    (r"^(transformer_decoder\.layers\.\d+\.)ffns\.0\.", r"\1ffn."),
)


def rename_release_key(key: str) -> str:
    """A head key of a released checkpoint (with or without :data:`RELEASE_PREFIX`) -> this head's key.

    Keys already in mmdet >= 3.0 naming come back unchanged (bar the prefix).
    """
    if key.startswith(RELEASE_PREFIX):
        key = key[len(RELEASE_PREFIX) :]
    for pattern, repl in RELEASE_KEY_RENAMES:
        key = re.sub(pattern, repl, key)
    return key


@dataclass
class Mask2FormerOutput:
    """One forward of :class:`Mask2FormerHead`; ``Q' = num_queries + T`` with ``T`` appended track queries."""

    class_logits: torch.Tensor  # [B, Q', K + 1], last index = "no object"
    mask_logits: torch.Tensor  # [B, Q', H/4, W/4]
    embeddings: torch.Tensor  # [B, Q', C] last layer's query features (before post_norm): the next track queries
    aux: list[tuple[torch.Tensor, torch.Tensor]]  # (class, mask) logits before the last: initial, layers 1..L-1
    num_queries: int  # the learned queries come first; indices >= num_queries are the appended track queries


class Mask2FormerHead(nn.Module):
    """Backbone maps at strides 4, 8, 16, 32 -> class and mask logits per query.

    Args:
        in_channels: channels of the four input maps, finest first (Tiny ``[192] * 4``, Small ``[384] * 4``).
        feat_channels: pixel-decoder, query and decoder width (256).
        out_channels: mask feature / mask embedding width (256).
        num_queries: learned queries (100).
        num_classes: categories K (40 for YouTube-VIS 2021); the class head has K + 1 outputs.
        num_levels: levels the pixel decoder's encoder and the transformer decoder use (3).
        encoder_layers / encoder_heads / encoder_ffn: pixel-decoder encoder (6 / 8 / 1024).
        num_points: deformable sampling points (4).
        decoder_layers / decoder_heads / decoder_ffn: transformer decoder (9 / 8 / 2048).
        norm_groups: GroupNorm groups in the pixel decoder (32).
        enforce_input_proj: 1x1 convs on the decoder's memory (mmdet's ``enforce_decoder_input_project``; the
            release: False, so ``decoder_input_projs`` are identities without parameters).
        dropout: dropout everywhere (0 in the release).
        fused: fused deformable-attention kernel switch, see :class:`~core.model.deform_attn.MSDeformAttn`.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (256, 512, 1024, 2048),
        *,
        feat_channels: int = 256,
        out_channels: int = 256,
        num_queries: int = 100,
        num_classes: int = 40,
        num_levels: int = 3,
        encoder_layers: int = 6,
        encoder_heads: int = 8,
        encoder_ffn: int = 1024,
        num_points: int = 4,
        decoder_layers: int = 9,
        decoder_heads: int = 8,
        decoder_ffn: int = 2048,
        norm_groups: int = 32,
        enforce_input_proj: bool = False,
        dropout: float = 0.0,
        fused: bool | None = None,
    ) -> None:
        super().__init__()
        if num_queries < 1 or num_classes < 1:
            raise ValueError(f"num_queries and num_classes must be >= 1, got {num_queries}, {num_classes}")
        self.feat_channels = feat_channels
        self.num_queries = num_queries
        self.num_classes = num_classes
        self.num_levels = num_levels
        self.pixel_decoder = MSDeformPixelDecoder(
            in_channels,
            feat_channels=feat_channels,
            out_channels=out_channels,
            num_encoder_levels=num_levels,
            num_layers=encoder_layers,
            num_heads=encoder_heads,
            num_points=num_points,
            ffn_channels=encoder_ffn,
            norm_groups=norm_groups,
            num_outs=num_levels,
            dropout=dropout,
            fused=fused,
        )
        self.transformer_decoder = Mask2FormerDecoder(
            feat_channels, num_layers=decoder_layers, num_heads=decoder_heads, ffn_channels=decoder_ffn,
            dropout=dropout,
        )  # fmt: skip
        self.decoder_input_projs = nn.ModuleList(
            nn.Conv2d(feat_channels, feat_channels, 1) if enforce_input_proj else nn.Identity()
            for _ in range(num_levels)
        )
        self.query_embed = nn.Embedding(num_queries, feat_channels)
        self.query_feat = nn.Embedding(num_queries, feat_channels)
        self.level_embed = nn.Embedding(num_levels, feat_channels)
        self.cls_embed = nn.Linear(feat_channels, num_classes + 1)
        self.mask_embed = nn.Sequential(
            nn.Linear(feat_channels, feat_channels),
            nn.ReLU(),
            nn.Linear(feat_channels, feat_channels),
            nn.ReLU(),
            nn.Linear(feat_channels, out_channels),
        )
        for proj in self.decoder_input_projs:
            if isinstance(proj, nn.Conv2d):
                nn.init.kaiming_uniform_(proj.weight, a=1)
                nn.init.zeros_(proj.bias)

    def forward(
        self,
        features: Sequence[torch.Tensor],
        extra_queries: torch.Tensor | None = None,
        extra_query_embed: torch.Tensor | None = None,
        *,
        return_aux: bool = True,
    ) -> Mask2FormerOutput:
        """Predict classes and masks for the learned queries and any appended track queries.

        Args:
            features: four maps ``[B, C_l, H_l, W_l]`` at strides 4, 8, 16, 32 (finest first).
            extra_queries: ``[B, T, feat_channels]`` track-query features appended after the learned queries
                (e.g. the previous frame's ``embeddings`` of tracked objects); ``T`` may be 0.
            extra_query_embed: ``[B, T, feat_channels]`` their position embeddings; None: zeros (the release).
            return_aux: keep the auxiliary predictions (needed for the loss); False returns ``aux=[]``.
        """
        mask_features, levels = self.pixel_decoder(features)
        b = mask_features.shape[0]
        memories, memory_pos, sizes = [], [], []
        for i, level in enumerate(levels):
            h, w = level.shape[-2:]
            sizes.append((h, w))
            tokens = self.decoder_input_projs[i](level).flatten(2).transpose(1, 2)
            memories.append(tokens + self.level_embed.weight[i])
            table = sine_position_encoding(h, w, self.feat_channels // 2, device=level.device, dtype=level.dtype)
            memory_pos.append(table[None])

        queries = self.query_feat.weight[None].expand(b, -1, -1)
        query_pos = self.query_embed.weight[None].expand(b, -1, -1)
        if extra_queries is not None:
            queries, query_pos = self._append(queries, query_pos, extra_queries, extra_query_embed)
        elif extra_query_embed is not None:
            raise ValueError("extra_query_embed given without extra_queries")

        def predict(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(x), mask_features)
            return self.cls_embed(x), masks

        result = self.transformer_decoder(queries, query_pos, memories, memory_pos, sizes, predict)
        cls, masks = result.predictions[-1]
        aux = result.predictions[:-1] if return_aux else []
        return Mask2FormerOutput(cls, masks, result.queries, aux, self.num_queries)

    def _append(self, queries, query_pos, extra, extra_pos):
        b, _, c = queries.shape
        if extra.ndim != 3 or extra.shape[0] != b or extra.shape[2] != c:
            raise ValueError(f"extra_queries must be [{b}, T, {c}], got {tuple(extra.shape)}")
        if extra_pos is None:
            extra_pos = extra.new_zeros(extra.shape)
        elif tuple(extra_pos.shape) != tuple(extra.shape):
            raise ValueError(f"extra_query_embed must be {tuple(extra.shape)}, got {tuple(extra_pos.shape)}")
        extra = extra.to(queries.dtype)
        return torch.cat([queries, extra], 1), torch.cat([query_pos, extra_pos.to(query_pos.dtype)], 1)
