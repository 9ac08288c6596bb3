"""Decode image files to RGB uint8, whatever their mode: grey, grey+alpha, RGBA, 16-bit, float, palette, CMYK.

OpenCV decodes with ``IMREAD_UNCHANGED`` (it expands palettes and converts CMYK JPEG/TIFF itself), then
an explicit conversion makes ``[H, W, 3]`` RGB uint8: alpha is dropped, 16-bit is scaled by 255/65535
(rounded), float images are taken as 0..1. Files OpenCV cannot decode are retried with Pillow when it is
installed. EXIF orientation is not applied (frames are used in stored pixel order, as datasets are).
"""

from __future__ import annotations

import io

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageDecodeError(ValueError):
    """Raised with a short reason; callers wrap it into a FrameReadError naming file and index."""


def to_rgb8(img: np.ndarray, *, bgr: bool = True) -> np.ndarray:
    """Any decoded array (``HxW``, ``HxWx1/2/3/4``; uint8/uint16/float) -> contiguous ``HxWx3`` RGB uint8."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = np.clip(np.nan_to_num(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
    if img.ndim != 3 or img.shape[2] not in (2, 3, 4):
        raise ImageDecodeError(f"unsupported image shape {img.shape}")
    if img.shape[2] == 2:  # grey + alpha
        return np.ascontiguousarray(np.repeat(img[..., :1], 3, axis=2))
    rgb = img[..., 2::-1] if bgr else img[..., :3]
    return np.ascontiguousarray(rgb)


def decode_image(data: bytes) -> np.ndarray:
    """Encoded bytes -> ``HxWx3`` RGB uint8. Raises :class:`ImageDecodeError` with the reason."""
    if not data:
        raise ImageDecodeError("the file is empty")
    img = None
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is not None and img.size:
        return to_rgb8(img)
    return _decode_with_pillow(data)


def _decode_with_pillow(data: bytes) -> np.ndarray:
    try:
        from PIL import Image  # optional fallback (installed with torchvision)
    except ImportError:  # pragma: no cover - Pillow ships with torchvision
        raise ImageDecodeError("not a decodable image (OpenCV could not read it)") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return to_rgb8(np.asarray(im).astype(np.uint16), bgr=False)
            return to_rgb8(np.asarray(im.convert("RGB")), bgr=False)
    except Exception as exc:  # Pillow raises many types for bad data
        raise ImageDecodeError(f"not a decodable image ({type(exc).__name__}: {exc})") from None
