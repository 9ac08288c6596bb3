"""Ground-truth outlines, pure NumPy (no Qt): a dashed yellow / black contour per GT track and its label.

The style is unlike the predictions' (filled masks in track colours, solid contours): every outline
pixel is yellow or near-black in diagonal dashes of :data:`DASH` pixels, so a GT outline reads on any
frame and next to any track colour. A *flashed* track (a miss the user clicked in the review panel) is
drawn thicker, in white and magenta. Labels ("GT #id category") sit under the mask's lowest pixel, so
they do not cover the predictions' labels, which sit above their masks.
"""

from __future__ import annotations

import cv2
import numpy as np

from vpp_gui.overlay import Label, contour_width, label_line

GT_COLOR = (255, 230, 0)
GT_DARK = (20, 20, 20)
FLASH_COLOR = (255, 255, 255)
FLASH_DARK = (255, 0, 200)
DASH = 6


def outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    """Inner edge of a bool mask, ``thickness`` px wide (the frame border counts as background)."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8) if thickness > 1 else np.ones((3, 3), np.uint8)
    inner = cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return m.astype(bool) & ~inner.astype(bool)


def dash_pattern(height: int, width: int, dash: int = DASH) -> np.ndarray:
    """[H, W] bool: True on the bright dashes (diagonal stripes ``dash`` px wide)."""
    y, x = np.ogrid[:height, :width]
    return ((x + y) // dash) % 2 == 0


def render_gt(masks: list[tuple[int, int, np.ndarray]], height: int, width: int, *, flash: int | None = None,
              thickness: int | None = None) -> np.ndarray | None:
    """RGBA ``[H, W, 4]`` outlines of ``(gt id, category id, bool mask)`` triples; None when nothing shows."""
    t = contour_width(height, width) if thickness is None else thickness
    edge = np.zeros((height, width), bool)
    flashed = np.zeros((height, width), bool)
    for gid, _cid, mask in masks:
        if not mask.any():
            continue
        if gid == flash:
            flashed |= outline(mask, 2 * t + 1)
        else:
            edge |= outline(mask, t)
    if not edge.any() and not flashed.any():
        return None
    bright = dash_pattern(height, width)
    out = np.zeros((height, width, 4), np.uint8)
    for where, (hi, lo) in ((edge, (GT_COLOR, GT_DARK)), (flashed, (FLASH_COLOR, FLASH_DARK))):
        out[where & bright, :3] = hi
        out[where & ~bright, :3] = lo
        out[where, 3] = 255
    return out


def gt_labels(masks: list[tuple[int, int, np.ndarray]], categories: dict[int, str], *,
              class_agnostic: bool = False) -> list[Label]:
    """One label per non-empty GT mask, just under its lowest pixel (inside the frame)."""
    out = []
    for gid, cid, mask in masks:
        rows = np.flatnonzero(mask.any(axis=1))
        if not len(rows):
            continue
        height = mask.shape[0]
        line = label_line(height)
        bottom = int(rows[-1])
        x = float(np.flatnonzero(mask[bottom])[0])
        y = float(min(bottom + 2, max(0.0, height - line)))
        name = "" if class_agnostic else categories.get(cid, f"class {cid}")
        out.append(Label(x, y, f"GT #{gid}" + (f" {name}" if name else ""), GT_COLOR))
    return out
