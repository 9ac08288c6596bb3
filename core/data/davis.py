"""DAVIS-style indexed PNG masks: one palette PNG per frame, 0 = background, k = the k-th object.

Writing uses the DAVIS palette (the PASCAL VOC colour map: 1 = dark red, 2 = dark green, ...), one
file at a time, atomically; whole folders of masks are exported by :func:`core.export.export_results`
(one PNG per frame named like the frame, ``00017.jpg`` -> ``00017.png``). In :func:`tracks_to_labels`,
where objects overlap, the earlier object (lower index) keeps the pixel, so pass tracks in priority order.
Reading accepts palette PNGs (indices as stored), greyscale PNGs (0/255 -> 0/1, other grey values
taken as indices) and RGB PNGs drawn in the DAVIS palette.

More than 255 objects: a palette PNG holds labels 0..255 only, so a label map with a label above 255
is written as a 16-bit greyscale PNG (labels 0..65535, as stored; :data:`MAX_OBJECTS_16`), marked
with the text chunk ``vpp-davis: labels`` so that a reader never takes it for a 0/255 binary mask.
:func:`read_davis_png` returns such maps as uint16 (uint8 otherwise). More than 65535 objects is an
error, never a silent cut.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from core.atomic import atomic_write_bytes
from core.data.imageio import ImageDecodeError, check_image_size, image_size, read_image_bytes
from core.data.rle import RLE, decode_rle
from core.data.sources import natural_key
from core.errors import DataError

MAX_OBJECTS = 255  # a palette PNG
MAX_OBJECTS_16 = 65535  # a 16-bit greyscale PNG (written only when a label map needs it)
_LABELS_TEXT = ("vpp-davis", "labels")  # the text chunk that marks a 16-bit PNG of labels (not a binary mask)


def davis_palette() -> np.ndarray:
    """``[256, 3]`` uint8: colour k spreads the bits of k over R, G, B from the most significant bit down."""
    pal = np.zeros((256, 3), np.uint8)
    for k in range(256):
        c, rgb = k, [0, 0, 0]
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        pal[k] = rgb
    return pal


def encode_davis_png(labels: np.ndarray, *, sixteen_bit: bool | None = None) -> bytes:
    """Label map ``[H, W]`` -> PNG bytes: a palette PNG for labels 0..255, a 16-bit greyscale PNG (marked as
    labels) for labels up to 65535. ``sixteen_bit``: None: 16-bit for a uint16 map (so that every frame of a
    clip shares one format) or a label above 255; False with a label above 255 is an error."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"a DAVIS mask must be H x W, got shape {lab.shape}")
    top = int(lab.max()) if lab.size else 0
    if lab.size and (int(lab.min()) < 0 or top > MAX_OBJECTS_16):
        raise ValueError(f"DAVIS labels must be 0..{MAX_OBJECTS_16}, got {lab.min()}..{top}")
    if sixteen_bit is None:
        sixteen_bit = lab.dtype == np.uint16 or top > MAX_OBJECTS
    if not sixteen_bit and top > MAX_OBJECTS:
        raise ValueError(f"a palette DAVIS mask holds labels 0..{MAX_OBJECTS}, got {top}")
    buf = io.BytesIO()
    if sixteen_bit:
        info = PngImagePlugin.PngInfo()
        info.add_text(*_LABELS_TEXT)
        Image.fromarray(np.ascontiguousarray(lab, dtype=np.uint16)).save(buf, format="PNG", pnginfo=info)
        return buf.getvalue()
    lab = np.ascontiguousarray(lab, dtype=np.uint8)
    im = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
    im.putpalette(davis_palette().tobytes())
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_davis_png(path: str | Path, labels: np.ndarray, *, sixteen_bit: bool | None = None) -> None:
    """Write one label map as a PNG (see :func:`encode_davis_png`), atomically."""
    path = Path(path)
    try:
        atomic_write_bytes(path, encode_davis_png(labels, sixteen_bit=sixteen_bit))
    except OSError as exc:
        raise DataError(f"{path}: cannot write the mask ({exc.strerror or exc}); check the folder") from exc


def read_davis_png(path: str | Path) -> np.ndarray:
    """A DAVIS mask PNG -> label map ``[H, W]`` uint8 (0 = background); uint16 for our 16-bit label PNGs.

    Bounded like frames (:mod:`core.data.imageio`): a mask whose header claims more than
    ``MAX_FRAME_PIXELS`` pixels is refused before it is decoded, and only a regular file is read."""
    path = Path(path)
    try:
        data = read_image_bytes(path)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file does not exist") from None
    except ImageDecodeError as exc:
        raise DataError(f"{path}: cannot read the mask ({exc})") from None
    try:
        size = image_size(data)
        if size is not None:
            check_image_size(*size, what="the mask is")
    except ImageDecodeError as exc:
        raise DataError(f"{path}: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check above replaces it
            with Image.open(io.BytesIO(data)) as im:
                check_image_size(*im.size, what="the mask is")
                im.load()
                mode = im.mode
                ours_16 = im.info.get(_LABELS_TEXT[0]) == _LABELS_TEXT[1]
                arr = np.asarray(im)
    except ImageDecodeError as exc:
        raise DataError(f"{path}: {exc}") from None
    except Exception as exc:  # Pillow raises many types for bad files
        raise DataError(f"{path}: not a readable PNG mask ({type(exc).__name__}: {exc})") from None
    if mode == "P":
        return arr.astype(np.uint8)
    if mode == "1":
        return arr.astype(np.uint8)
    if mode in ("I", "I;16") and ours_16:  # our 16-bit labels: as stored
        if int(arr.min(initial=0)) < 0 or int(arr.max(initial=0)) > MAX_OBJECTS_16:
            raise DataError(f"{path}: 16-bit mask labels outside 0..{MAX_OBJECTS_16}")
        return arr.astype(np.uint16)
    if mode in ("L", "I", "I;16"):
        if arr.dtype == np.uint8:
            if not np.any((arr != 0) & (arr != 255)):  # 0/255 masks, without a copy as int64
                return (arr > 0).astype(np.uint8)
            return arr.copy()
        if not np.any((arr != 0) & (arr != 255)):
            return (arr > 0).astype(np.uint8)
        top = int(arr.max(initial=0))
        if top > MAX_OBJECTS or int(arr.min(initial=0)) < 0:
            raise DataError(f"{path}: greyscale mask values go up to {top}, more than {MAX_OBJECTS} objects")
        return arr.astype(np.uint8)
    if mode in ("RGB", "RGBA"):
        return _rgb_to_labels(path, arr[..., :3])
    raise DataError(f"{path}: unsupported PNG mode {mode} for a DAVIS mask (use palette or greyscale)")


def _rgb_to_labels(path: Path, rgb: np.ndarray) -> np.ndarray:
    pal = davis_palette().astype(np.int64)
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal_codes = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    lookup = {int(c): k for k, c in enumerate(pal_codes)}
    uniq, inv = np.unique(codes, return_inverse=True)
    missing = [int(u) for u in uniq if int(u) not in lookup]
    if missing:
        c = missing[0]
        raise DataError(f"{path}: colour ({c >> 16}, {(c >> 8) & 255}, {c & 255}) is not in the DAVIS palette")
    return np.array([lookup[int(u)] for u in uniq], np.uint8)[inv].reshape(codes.shape)


def tracks_to_labels(frame_masks: Sequence[np.ndarray | RLE | None], height: int, width: int) -> np.ndarray:
    """Per-object masks of one frame (bool arrays, RLEs or None) -> label map; earlier objects win overlaps."""
    if len(frame_masks) > MAX_OBJECTS:
        raise ValueError(f"a DAVIS mask holds at most {MAX_OBJECTS} objects, got {len(frame_masks)}")
    labels = np.zeros((height, width), np.uint8)
    for k in range(len(frame_masks) - 1, -1, -1):  # paint from the last object so the first ends on top
        m = frame_masks[k]
        if m is None:
            continue
        mask = decode_rle(m) if isinstance(m, dict) else np.asarray(m, bool)
        if mask.shape != (height, width):
            raise ValueError(f"object {k + 1}'s mask is {mask.shape[1]}x{mask.shape[0]}, not {width}x{height}")
        labels[mask] = k + 1
    return labels


def read_davis_folder(folder: str | Path) -> tuple[list[str], np.ndarray]:
    """All ``*.png`` of a folder in natural order -> (names, label maps ``[T, H, W]`` uint8)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: mask folder does not exist")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise DataError(f"{folder}: no PNG masks found")
    labels = [read_davis_png(p) for p in files]
    shapes = {lab.shape for lab in labels}
    if len(shapes) > 1:
        raise DataError(f"{folder}: masks differ in size ({', '.join(f'{w}x{h}' for h, w in sorted(shapes))})")
    return [p.name for p in files], np.stack(labels)


def labels_to_masks(labels: np.ndarray, num_objects: int | None = None) -> np.ndarray:
    """Label maps ``[..., H, W]`` -> bool masks ``[K, ..., H, W]`` for objects 1..K (K = max label by default)."""
    k = int(labels.max(initial=0)) if num_objects is None else num_objects
    return np.stack([labels == i for i in range(1, k + 1)]) if k else np.zeros((0, *labels.shape), bool)
