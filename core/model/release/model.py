"""ReleaseVPPModel: the authors' released architecture as one module, normalisation + ViT-Adapter (pruned ViT
inside) + Mask2Former. Composition only: the numbers are in :mod:`core.model.release.config`, the building in
:mod:`core.model.release.builder`.

The input is RGB in 0..255, normalised with the config's mean / std, *then* padded with zeros at the bottom /
right to a multiple of 32 (mmdet's ``DetDataPreprocessor(pad_size_divisor=32)`` pads the normalised image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.model.adapter import AdapterOutput, ViTAdapter
from core.model.backbone import BackboneOutput, PruneMode, PruneState, Selection
from core.model.m2f_head import Mask2FormerHead, Mask2FormerOutput
from core.model.release.config import ReleaseConfig


@dataclass
class ReleaseOutput:
    """One frame of :class:`ReleaseVPPModel`.

    ``input_size``: the padded model input ``(H, W)``; ``valid_size``: the unpadded part ``(h, w)`` (top-left).
    ``flops``: the pruned ViT's (patch embedding, blocks, Map-SM / selective scoring); the adapter's SPM,
    injectors / extractors and the head are not counted.
    """

    adapter: AdapterOutput
    head: Mask2FormerOutput
    input_size: tuple[int, int]
    valid_size: tuple[int, int]

    @property
    def backbone(self) -> BackboneOutput:
        return self.adapter.backbone

    @property
    def kept_masks(self) -> list[torch.Tensor]:
        return self.adapter.kept_masks

    @property
    def keep_ratio(self) -> float:
        return self.adapter.keep_ratio

    @property
    def state(self) -> PruneState | None:
        return self.adapter.state

    @property
    def class_logits(self) -> torch.Tensor:
        return self.head.class_logits

    @property
    def mask_logits(self) -> torch.Tensor:
        return self.head.mask_logits

    @property
    def embeddings(self) -> torch.Tensor:
        return self.head.embeddings

    @property
    def num_queries(self) -> int:
        return self.head.num_queries

    @property
    def flops(self) -> int:
        return self.adapter.backbone.flops


TrackQueries = tuple[torch.Tensor | None, torch.Tensor | None]


class ReleaseVPPModel(nn.Module):
    """The released VIS model, one frame at a time: ``forward(images, state, *, keep, mode, track_queries, selection)``.

    Args:
        adapter: the ViT-Adapter around the pruned ViT (strides 4, 8, 16, 32).
        head: the Mask2Former head.
        config: the numbers it was built from (saved with the weights).
    """

    def __init__(self, adapter: ViTAdapter, head: Mask2FormerHead, config: ReleaseConfig) -> None:
        super().__init__()
        self.adapter = adapter
        self.head = head
        self.config = config
        self.input_multiple = int(config.input_multiple)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_queries(self) -> int:
        return self.head.num_queries

    def forward(
        self,
        images: torch.Tensor,
        state: PruneState | None = None,
        *,
        keep: tuple[float, ...] | None = None,
        mode: PruneMode = "vpp",
        track_queries: TrackQueries | torch.Tensor | None = None,
        return_aux: bool = False,
        selection: Selection | None = None,
    ) -> ReleaseOutput:
        """``images`` ``[B, 3, H, W]`` float RGB in 0..255, any size (padded here to a multiple of 32).

        ``state``: the previous frame's :attr:`ReleaseOutput.state` (None: first frame of a clip). ``keep``
        (keep fraction per prune point: Map-SM, blocks 3, 6, 9; None: dense budget) and ``mode`` ("vpp",
        "random", "dense") are this call's run settings. ``track_queries``: ``(features, position embeddings)``
        of tracked objects, ``[T, 256]`` or ``[B, T, 256]`` (embeddings None: zeros, as the release), e.g.
        :meth:`core.model.rovis_tracker.RovisTracker.track_queries`. ``selection``: "topk" / "release" for this
        call (None: ``config.selection``, the model file's).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        b, _, h, w = images.shape
        x = (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        m = self.input_multiple
        ph, pw = math.ceil(h / m) * m, math.ceil(w / m) * m
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h))  # zeros in normalised units, as mmdet's preprocessor
        feats, embeds = _split_track_queries(track_queries, b)
        adapted = self.adapter(x, state, keep=keep, mode=mode,
                               selection=self.config.selection if selection is None else selection)
        out = self.head(adapted.features, feats, embeds, return_aux=return_aux)
        return ReleaseOutput(adapted, out, (ph, pw), (h, w))


def _split_track_queries(track_queries, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if track_queries is None:
        return None, None
    if isinstance(track_queries, torch.Tensor):
        feats, embeds = track_queries, None
    else:
        feats, embeds = track_queries
    if feats is None or feats.numel() == 0:
        return None, None
    if feats.ndim == 2:
        feats = feats[None].expand(batch, -1, -1)
        if embeds is not None:
            embeds = embeds[None].expand(batch, -1, -1)
    return feats, embeds
