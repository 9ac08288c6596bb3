"""The segmentation head: pixel decoder + query decoder behind one small interface.

Any head with ``forward(features, grid) -> DecoderOutput`` and ``flops(grid) -> int`` can replace it
(e.g. a Mask2Former with a deformable-attention pixel decoder, to load the authors' checkpoints).
"""

from __future__ import annotations

import torch
from torch import nn

from core.model.mask_decoder import DecoderOutput, MaskDecoder
from core.model.pixel_decoder import PixelDecoder


class MaskHead(nn.Module):
    def __init__(self, pixel_decoder: PixelDecoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        if pixel_decoder.dim != mask_decoder.dim:
            raise ValueError(f"pixel decoder dim {pixel_decoder.dim} != mask decoder dim {mask_decoder.dim}")
        self.pixel_decoder = pixel_decoder
        self.mask_decoder = mask_decoder

    def forward(self, features: list[torch.Tensor], grid: tuple[int, int]) -> DecoderOutput:
        mask_features, levels = self.pixel_decoder(features, grid)
        return self.mask_decoder(mask_features, levels)

    def flops(self, grid: tuple[int, int]) -> int:
        gh, gw = grid
        sizes = [((gh + 1) // 2, (gw + 1) // 2), (gh, gw), (2 * gh, 2 * gw)]
        return self.pixel_decoder.flops(grid) + self.mask_decoder.flops(sizes, sizes[-1])
