"""VPPModel: normalisation + pruned backbone + segmentation head. Composition only; no numbers here
(:mod:`core.model.vpp.config` and :mod:`core.model.vpp.builder` know the variants)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.model.backbone import BackboneOutput, PrunedViT, PruneMode, PruneState
from core.model.head import MaskHead
from core.model.mask_decoder import DecoderOutput


@dataclass
class VPPOutput:
    decoder: DecoderOutput
    backbone: BackboneOutput
    head_flops: int

    @property
    def flops(self) -> int:
        return self.backbone.flops + self.head_flops


class VPPModel(nn.Module):
    """Video instance segmentation with Video Patch Pruning, one frame at a time.

    Args:
        backbone: the pruned ViT (any module with the same ``forward(images, state, *, keep, mode)`` contract).
        head: the segmentation head (``forward(features, grid)``, ``flops(grid)``).
        pixel_mean / pixel_std: RGB normalisation in 0..255 units.
    """

    def __init__(
        self,
        backbone: PrunedViT,
        head: MaskHead,
        *,
        pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53),
        pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(
        self,
        images: torch.Tensor,
        state: PruneState | None = None,
        *,
        keep: tuple[float, ...] | None = None,
        mode: PruneMode = "vpp",
    ) -> VPPOutput:
        """``images`` ``[B, 3, H, W]`` float RGB in 0..255, H and W multiples of the patch size.

        ``keep`` (keep fraction per prune point; None: dense budget) and ``mode`` ("vpp", "random",
        "dense") are this call's run settings, passed to the backbone; the model stores neither.
        """
        x = (images - self.pixel_mean) / self.pixel_std
        bb = self.backbone(x, state, keep=keep, mode=mode)
        dec = self.head(bb.features, bb.grid)
        return VPPOutput(dec, bb, self.head.flops(bb.grid))
