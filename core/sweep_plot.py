"""The sweep plot as a PNG, drawn with OpenCV (no display, no matplotlib).

    plot_sweep(result, "sweep.png")            # a core.sweep.SweepResult

Two panels side by side: AP_track against ms/frame (left) and against GFLOPs/frame (right). One point per
configuration, labelled with its PKR; VPP points are blue circles joined in PKR order, the dense point a
black diamond (labelled "dense"), random-drop points orange triangles. Axes have ticks and labels; the title
names the device the speed was measured on and the model file. An undefined AP (-1) is drawn at 0 with a
hollow marker. The file is written atomically (:func:`core.atomic.atomic_write_bytes`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from core.atomic import atomic_write_bytes
from core.errors import DataError

WIDTH, HEIGHT = 1400, 620
_BG = (255, 255, 255)
_AXIS = (40, 40, 40)
_GRID = (225, 225, 225)
_VPP = (200, 110, 30)  # BGR: blue
_RANDOM = (20, 140, 240)  # orange
_DENSE = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo <= 1e-12:
        lo, hi = lo - 0.5 if lo else 0.0, hi + 0.5 if hi else 1.0
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _text(img, s, org, scale=0.45, color=_AXIS, thick=1, anchor="left"):
    (w, _h), _ = cv2.getTextSize(s, _FONT, scale, thick)
    x, y = org
    if anchor == "center":
        x -= w // 2
    elif anchor == "right":
        x -= w
    cv2.putText(img, s, (int(x), int(y)), _FONT, scale, color, thick, cv2.LINE_AA)


def _marker(img, p, kind, color, filled=True):
    x, y = p
    if kind == "circle":
        cv2.circle(img, (x, y), 6, color, -1 if filled else 2, cv2.LINE_AA)
        return
    if kind == "diamond":
        pts = np.array([[x, y - 9], [x + 9, y], [x, y + 9], [x - 9, y]], np.int32)
    else:  # triangle
        pts = np.array([[x, y - 8], [x + 8, y + 6], [x - 8, y + 6]], np.int32)
    if filled:
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    else:
        cv2.polylines(img, [pts], True, color, 2, cv2.LINE_AA)


def _panel(img, box, rows, xkey, xlabel):
    x0, y0, x1, y1 = box
    xs = [getattr(r, xkey) for r in rows if math.isfinite(getattr(r, xkey))]
    ys = [max(r.AP_track, 0.0) for r in rows]
    xt = nice_ticks(min(xs, default=0.0), max(xs, default=1.0))
    yt = nice_ticks(0.0, max(max(ys, default=0.0), 0.05))
    xlo, xhi, ylo, yhi = xt[0], xt[-1], yt[0], yt[-1]
    # margins so the extreme points are not on the frame
    xpad = (xhi - xlo) * 0.04 or 1.0
    xlo, xhi = xlo - xpad, xhi + xpad
    yhi += (yhi - ylo) * 0.04

    def px(x, y):
        return (round(x0 + (x - xlo) / (xhi - xlo) * (x1 - x0)),
                round(y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)))

    for v in xt:
        if xlo <= v <= xhi:
            X = px(v, ylo)[0]
            cv2.line(img, (X, y0), (X, y1), _GRID, 1)
            cv2.line(img, (X, y1), (X, y1 + 5), _AXIS, 1)
            _text(img, _fmt(v), (X, y1 + 20), anchor="center")
    for v in yt:
        if ylo <= v <= yhi:
            Y = px(xlo, v)[1]
            cv2.line(img, (x0, Y), (x1, Y), _GRID, 1)
            cv2.line(img, (x0 - 5, Y), (x0, Y), _AXIS, 1)
            _text(img, _fmt(v), (x0 - 8, Y + 5), anchor="right")
    cv2.rectangle(img, (x0, y0), (x1, y1), _AXIS, 1)
    _text(img, xlabel, ((x0 + x1) // 2, y1 + 45), scale=0.55, anchor="center")
    # the y label, rotated: draw on a strip and rotate it
    label = "AP_track (video AP)"
    (w, h), _ = cv2.getTextSize(label, _FONT, 0.55, 1)
    strip = np.full((h + 10, w + 10, 3), 255, np.uint8)
    cv2.putText(strip, label, (5, h + 3), _FONT, 0.55, _AXIS, 1, cv2.LINE_AA)
    strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    sy = (y0 + y1) // 2 - strip.shape[0] // 2
    sx = x0 - 65
    if sx >= 0 and sy >= 0 and sy + strip.shape[0] <= img.shape[0]:
        img[sy:sy + strip.shape[0], sx:sx + strip.shape[1]] = np.minimum(
            img[sy:sy + strip.shape[0], sx:sx + strip.shape[1]], strip)

    def pos(r):
        return px(getattr(r, xkey), max(r.AP_track, 0.0))

    drawable = [r for r in rows if math.isfinite(getattr(r, xkey))]
    line = [pos(r) for r in drawable if r.mode in ("dense", "vpp")]
    if len(line) > 1:
        cv2.polylines(img, [np.array(line, np.int32)], False, _VPP, 1, cv2.LINE_AA)
    rnd = [pos(r) for r in drawable if r.mode == "random"]
    if len(rnd) > 1:
        cv2.polylines(img, [np.array(rnd, np.int32)], False, _RANDOM, 1, cv2.LINE_AA)
    for r in drawable:
        p = pos(r)
        defined = r.AP_track >= 0
        if r.mode == "dense":
            _marker(img, p, "diamond", _DENSE, defined)
            _text(img, "dense", (p[0] + 11, p[1] - 8), color=_DENSE)
        elif r.mode == "random":
            _marker(img, p, "triangle", _RANDOM, defined)
            _text(img, f"{r.pkr:g}", (p[0] + 10, p[1] + 16), color=_RANDOM)
        else:
            _marker(img, p, "circle", _VPP, defined)
            _text(img, f"{r.pkr:g}", (p[0] + 9, p[1] - 8), color=_VPP)


def render_sweep(result, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """The plot as a ``[height, width, 3]`` BGR uint8 image."""
    img = np.full((height, width, 3), _BG, np.uint8)
    title = f"PKR sweep on {result.device}"
    model = os.path.basename(str(result.model_file)) or str(result.model_file)
    _text(img, title, (width // 2, 30), scale=0.7, thick=2, anchor="center")
    _text(img, f"model {model}; {result.frames} frames, {result.videos} video(s); "
               "median ms/frame, mean GFLOPs/frame, measured in one interleaved run",
          (width // 2, 55), scale=0.45, anchor="center")
    top, bottom = 80, height - 110
    gap = 110
    left = 95
    panel_w = (width - left - gap - 30) // 2
    rows = list(result.rows)
    _panel(img, (left, top, left + panel_w, bottom), rows, "ms_per_frame", "ms / frame (median)")
    lx = left + panel_w + gap
    _panel(img, (lx, top, lx + panel_w, bottom), rows, "gflops_per_frame", "GFLOPs / frame (mean)")
    # legend
    y = height - 25
    x = left
    _marker(img, (x, y - 5), "diamond", _DENSE)
    _text(img, "dense (PKR 1.0)", (x + 15, y))
    x += 170
    _marker(img, (x, y - 5), "circle", _VPP)
    _text(img, "VPP (label: PKR)", (x + 15, y))
    x += 180
    _marker(img, (x, y - 5), "triangle", _RANDOM)
    _text(img, "random drop (label: PKR)", (x + 15, y))
    x += 240
    _marker(img, (x, y - 5), "circle", _AXIS, filled=False)
    _text(img, "hollow: AP undefined (drawn at 0)", (x + 15, y))
    return img


def plot_sweep(result, path: str | os.PathLike, *, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """Write the plot of a :class:`core.sweep.SweepResult` to ``path`` (PNG, atomically); returns the path."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", render_sweep(result, width, height))
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise DataError(f"{path}: OpenCV could not encode the plot")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        raise DataError(f"{path}: cannot write the plot ({exc.strerror or exc}); check the folder") from exc
    return path
