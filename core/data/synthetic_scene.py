"""The *camouflage* scene of the synthetic generator: a background where one patch looks like an object.

``scene="camouflage"`` (:func:`core.data.synthetic.generate_clip`) changes three things, each so that a
token's own pixels no longer tell whether it lies on an object, only its context does:

- the background is a mosaic of large regions (a Voronoi partition of the padded canvas), most of
  them filled with the six categories' own colours and patterns, the rest with the muted canvas; a
  patch inside a "star" region is a patch of star texture, exactly like a patch inside a star;
- every object (and distractor) is drawn with a dark outline a few pixels wide, the only local cue
  that separates a region from an object; a token in an object's interior is a few tokens away from
  it, so telling "object" from "region of the same look" needs attention over several patches, the
  depth the pruned tokens skip;
- some clips have a linear motion blur along the camera's panning direction.

The regions move with the camera (they are part of the canvas), the objects move on their own.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Texture = Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, style, size) -> [size, size, 3]


def mosaic(rng: np.random.Generator, canvas: np.ndarray, texture: Texture, styles: int) -> np.ndarray:
    """``canvas`` ``[H, W, 3]`` uint8 repainted as Voronoi regions: about 70 % in a category's look."""
    h, w = canvas.shape[:2]
    n = int(rng.integers(10, 22))
    seeds = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], 1)
    step = 4  # the partition is computed on a coarse grid, then upsampled (region edges stay sharp)
    yy, xx = np.mgrid[0:h:step, 0:w:step].astype(np.float32)
    d = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    region = cv2.resize(np.argmin(d, axis=2).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    out = canvas.copy()
    side = max(h, w)
    for k in range(n):
        if rng.random() < 0.3:
            continue  # a plain region: the muted canvas shows
        tex = texture(rng, int(rng.integers(1, styles + 1)), side)[:h, :w]
        inside = region == k
        out[inside] = tex[inside]
    return out


def outline_width(width: int, height: int) -> int:
    """Outline thickness in pixels: 2 at 512x288, scaled with the frame."""
    return max(1, round(min(width, height) / 144))


def draw_outline(frame: np.ndarray, alpha: np.ndarray, thickness: int, shade: float) -> None:
    """Darken the inner rim (``thickness`` px) of the sprite ``alpha`` inside ``frame`` (same box)."""
    if thickness <= 0 or not alpha.any():
        return
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    inner = cv2.erode(alpha.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    rim = alpha & ~inner
    frame[rim] = (frame[rim].astype(np.float32) * shade).astype(np.uint8)


def motion_blur(frame: np.ndarray, direction: np.ndarray, length: int) -> np.ndarray:
    """``frame`` blurred along ``direction`` (x, y) over ``length`` pixels (1: unchanged)."""
    if length <= 1:
        return frame
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2.0
    d = direction / max(float(np.hypot(*direction)), 1e-6)
    for s in np.linspace(-c, c, 2 * length):
        k[round(c + s * d[1]), round(c + s * d[0])] = 1.0
    return cv2.filter2D(frame, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)
