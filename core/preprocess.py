"""Frame preprocessing: resize so the long side is the model's input size, pad to a patch multiple.

Masks come back through :meth:`Resized.unpad_masks`, which crops the padding and resizes to the
original frame size, so exported masks align pixel for pixel with the input frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Resized:
    orig_hw: tuple[int, int]  # input frame (H, W)
    resized_hw: tuple[int, int]  # after resize, before padding
    padded_hw: tuple[int, int]  # model input

    def unpad_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """``[M, h, w]`` mask logits on the padded model grid -> ``[M, H, W]`` bool at frame size."""
        if logits.shape[0] == 0:
            return torch.zeros(0, *self.orig_hw, dtype=torch.bool, device=logits.device)
        ph, pw = self.padded_hw
        h, w = logits.shape[-2:]
        # crop the padding on the low-resolution grid (in fractional cells), then resize once
        crop_h = max(1, round(h * self.resized_hw[0] / ph))
        crop_w = max(1, round(w * self.resized_hw[1] / pw))
        x = logits[:, :crop_h, :crop_w].float().unsqueeze(0)
        x = F.interpolate(x, size=self.orig_hw, mode="bilinear", align_corners=False)
        return x[0] > 0


@dataclass(frozen=True)
class ResizedFrame:
    """A frame resized for the model (:func:`resize_frame`), not yet a tensor: uint8 pixels and their geometry.

    Made with NumPy and OpenCV only, so a reader thread can make it while the model runs on the main
    thread (torch ops there would start a second OpenMP team on the same cores)."""

    pixels: np.ndarray  # [rh, rw, 3] uint8 RGB (may be the caller's read-only frame when no resize was needed)
    geometry: Resized
    planes: np.ndarray | None = None  # [3, Hp, Wp] float32, zero-padded: the model input, made ahead (``planes=True``)


def resize_frame(frame: np.ndarray, long_side: int, multiple: int, *, planes: bool = False) -> ResizedFrame:
    """RGB uint8 ``[H, W, 3]`` -> the frame resized so its long side is ``long_side`` (area interpolation
    when shrinking, linear when enlarging) and the geometry of the padding to a multiple of ``multiple``.
    ``planes``: also make the padded float planes :func:`to_input` wraps (the same values, made here)."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame [H, W, 3], got {frame.dtype} {frame.shape}")
    h, w = frame.shape[:2]
    scale = long_side / max(h, w)
    rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
    if (rh, rw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (rw, rh), interpolation=interp)
    ph, pw = -(-rh // multiple) * multiple, -(-rw // multiple) * multiple
    chw = None
    if planes:
        chw = np.zeros((3, ph, pw), np.float32)
        chw[:, :rh, :rw] = frame.transpose(2, 0, 1)  # uint8 -> float32 is exact: the values torch would make
    return ResizedFrame(frame, Resized((h, w), (rh, rw), (ph, pw)), chw)


def to_input(resized: ResizedFrame) -> torch.Tensor:
    """A :class:`ResizedFrame` -> float ``[1, 3, Hp, Wp]`` in 0..255, zero-padded at the bottom and right."""
    if resized.planes is not None:
        return torch.from_numpy(resized.planes).unsqueeze(0)
    frame = resized.pixels
    (rh, rw), (ph, pw) = resized.geometry.resized_hw, resized.geometry.padded_hw
    if not frame.flags.writeable:  # sources hand out read-only cached frames; torch wants to own writable memory
        frame = frame.copy()
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float()
    x = F.pad(x, (0, pw - rw, 0, ph - rh))
    return x.unsqueeze(0)


def prepare_frame(frame: np.ndarray, long_side: int, multiple: int) -> tuple[torch.Tensor, Resized]:
    """RGB uint8 ``[H, W, 3]`` -> float ``[1, 3, Hp, Wp]`` in 0..255 and the geometry to undo it
    (:func:`resize_frame` then :func:`to_input`)."""
    resized = resize_frame(frame, long_side, multiple)
    return to_input(resized), resized.geometry
