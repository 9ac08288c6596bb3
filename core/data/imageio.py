"""Decode image files to RGB uint8, whatever their mode: grey, grey+alpha, RGBA, 16-bit, float, palette, CMYK.

OpenCV decodes with ``IMREAD_UNCHANGED`` (it expands palettes and converts CMYK JPEG/TIFF itself), then
an explicit conversion makes ``[H, W, 3]`` RGB uint8: alpha is dropped, 16-bit is scaled by 255/65535
(rounded), float images are taken as 0..1. Files OpenCV cannot decode are retried with Pillow when it is
installed. EXIF orientation is not applied (frames are used in stored pixel order, as datasets are).
For a caller that needs only a smaller image (the model's input), :func:`decode_image_reduced` decodes a
JPEG at libjpeg's DCT reduction (1/2, 1/4 or 1/8) that still gives at least the size asked for.

Decoding is bounded: the width and height are read from the file's header first (PNG, JPEG, BMP, TIFF
and WebP are parsed here; other formats through Pillow's lazy open) and an image of more than
:data:`MAX_FRAME_PIXELS` pixels is refused before a pixel is decoded, as is data whose header gives no
size. :func:`read_image_bytes` reads a file only if it is a regular file of at most
:data:`MAX_IMAGE_FILE_BYTES` (never a device or a pipe). Pillow's own decompression-bomb warning is
silenced where this module calls Pillow (the check above replaces it) and its error becomes a refusal.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Largest image accepted, in pixels per frame (2**27 = 134,217,728, about 11585 x 11585; an 8K frame,
#: 7680 x 4320, is a quarter of it). Kept below Pillow's decompression-bomb error (2 x 89,478,485), so
#: Pillow never refuses an image this limit accepts. Read at call time: tests may lower it.
MAX_FRAME_PIXELS = 2**27
#: Largest image file read, in bytes (an uncompressed RGB frame at the pixel limit is 384 MiB).
MAX_IMAGE_FILE_BYTES = 2**30


class ImageDecodeError(ValueError):
    """Raised with a short reason; callers wrap it into a FrameReadError naming file and index."""


def check_image_size(width: int, height: int, *, max_pixels: int | None = None, what: str = "the image is") -> None:
    """Raise :class:`ImageDecodeError` naming both sizes when ``width * height`` exceeds the limit."""
    limit = MAX_FRAME_PIXELS if max_pixels is None else max_pixels
    pixels = int(width) * int(height)
    if pixels > limit:
        raise ImageDecodeError(f"{what} {width}x{height} ({pixels:,} pixels), more than the limit of "
                               f"{limit:,} pixels per frame; refused before decoding")


def read_image_bytes(path: str | Path) -> bytes:
    """The bytes of an image file; :class:`ImageDecodeError` for a device, pipe, socket or a file over
    :data:`MAX_IMAGE_FILE_BYTES`. ``FileNotFoundError`` passes through; other ``OSError`` become reasons."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ImageDecodeError(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ImageDecodeError("not a regular file (a device, pipe or socket); refused")
            if st.st_size > MAX_IMAGE_FILE_BYTES:
                raise ImageDecodeError(f"the file is {st.st_size:,} bytes, more than the limit of "
                                       f"{MAX_IMAGE_FILE_BYTES:,} bytes for one image")
            data = f.read(MAX_IMAGE_FILE_BYTES + 1)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_IMAGE_FILE_BYTES:
        raise ImageDecodeError(f"the file is more than the limit of {MAX_IMAGE_FILE_BYTES:,} bytes for one image")
    return data


# -- header sizes -------------------------------------------------------------------------------------

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i, n = 2, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            return None
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            continue
        if marker in (0xD9, 0xDA) or i + 2 > n:  # end of image / start of scan before any frame header
            return None
        (length,) = struct.unpack(">H", data[i:i + 2])
        if marker in _JPEG_SOF:
            if i + 7 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 3:i + 7])
            return (w, h) if h else None  # height 0: given later by a DNL marker (unsupported)
        if length < 2:
            return None
        i += length
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26 or data[:2] != b"BM":
        return None
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 8 or data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None  # (BigTIFF goes to Pillow)
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd + 2 > len(data):
        return None
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    found: dict[int, int] = {}
    for k in range(count):
        e = ifd + 2 + 12 * k
        if e + 12 > len(data):
            return None
        tag, typ = struct.unpack(order + "HH", data[e:e + 4])
        if tag in (256, 257):
            if typ == 3:
                (found[tag],) = struct.unpack(order + "H", data[e + 8:e + 10])
            elif typ == 4:
                (found[tag],) = struct.unpack(order + "I", data[e + 8:e + 12])
            else:
                return None
    return (found[256], found[257]) if len(found) == 2 else None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind, body = data[12:16], data[20:]
    if kind == b"VP8X":
        return int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
    if kind == b"VP8L" and body[:1] == b"\x2f":
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", body[6:10])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _pillow_size(data: bytes, limit: int) -> tuple[int, int] | None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with torchvision
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:  # lazy: reads the header only
                return im.size
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(f"the image is too large ({exc}); the limit is {limit:,} pixels per frame; "
                                   "refused before decoding") from None
        except Exception:  # Pillow raises many types for data it cannot identify
            return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of encoded image bytes, without decoding; None if not found."""
    for parse in (_png_size, _jpeg_size if data[:2] == b"\xff\xd8" else None, _bmp_size, _tiff_size, _webp_size):
        if parse is not None:
            size = parse(data)
            if size is not None:
                return int(size[0]), int(size[1])
    return _pillow_size(data, MAX_FRAME_PIXELS)


# -- decoding -----------------------------------------------------------------------------------------


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
    if bgr:  # OpenCV swaps the channels with the GIL released, many times faster than a strided NumPy copy
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB if img.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    return np.ascontiguousarray(img[..., :3])


def _checked_header(data: bytes, limit: int) -> tuple[int, int]:
    """The image's (width, height) from its header, refused when empty, unknown or over ``limit`` pixels."""
    if not data:
        raise ImageDecodeError("the file is empty")
    size = image_size(data)
    if size is None:
        raise ImageDecodeError("not a decodable image (no readable jpg, png, bmp, tif or webp header)")
    check_image_size(*size, max_pixels=limit)
    return size


def decode_image(data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """Encoded bytes -> ``HxWx3`` RGB uint8. Raises :class:`ImageDecodeError` with the reason, also for an
    image over ``max_pixels`` (default :data:`MAX_FRAME_PIXELS`), before decoding it."""
    limit = MAX_FRAME_PIXELS if max_pixels is None else max_pixels
    _checked_header(data, limit)
    img = None
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    if img is not None and img.size:
        check_image_size(img.shape[1], img.shape[0], max_pixels=limit)
        return to_rgb8(img)
    return _decode_with_pillow(data, limit)


#: OpenCV's reduced reads: libjpeg scales the DCT by 1/d while decoding, largest reduction first.
_JPEG_REDUCED_READS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                       (2, cv2.IMREAD_REDUCED_COLOR_2))


def jpeg_reduction(width: int, height: int, min_width: int, min_height: int) -> int:
    """The largest JPEG DCT reduction ``d`` (8, 4 or 2; 1 for none) that still scales a ``width x height`` JPEG
    to at least ``min_width x min_height`` (``width / d >= min_width`` and ``height / d >= min_height``)."""
    for d, _ in _JPEG_REDUCED_READS:
        if width >= d * min_width and height >= d * min_height:
            return d
    return 1


def decode_image_reduced(data: bytes, min_size: tuple[int, int], *,
                         max_pixels: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded bytes -> (``hxwx3`` RGB uint8, the image's full ``(width, height)``), decoded no larger than needed
    for a consumer that resizes it to ``min_size`` ``(width, height)``: a JPEG at the largest DCT reduction
    (:func:`jpeg_reduction`) that still gives at least ``min_size``, any other image (or a JPEG with no such
    reduction) whole, as :func:`decode_image` does. The size limit applies to the full size, from the header.
    EXIF orientation is not applied, as in :func:`decode_image`. A reduced decode is not the full decode
    shrunk: libjpeg averages each 8x8 block's frequencies, so pixels differ slightly from those of
    ``cv2.resize(full, ..., INTER_AREA)``. libjpeg makes ``ceil(width / d)`` columns, the last one standing for
    the part of a block left at the edge; the image comes back cropped to ``round(width / d) x round(height /
    d)`` so its scale is the frame's (within half a reduced pixel at the right and bottom edges when a side is
    not a multiple of ``d``; 3840x2160 and 1920x1080 are multiples of 8)."""
    limit = MAX_FRAME_PIXELS if max_pixels is None else max_pixels
    size = _checked_header(data, limit)
    d = jpeg_reduction(size[0], size[1], *min_size) if data[:2] == b"\xff\xd8" else 1
    if d > 1:
        flag = dict(_JPEG_REDUCED_READS)[d] | cv2.IMREAD_IGNORE_ORIENTATION
        try:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        except cv2.error:
            img = None
        w, h = round(size[0] / d), round(size[1] / d)
        if img is not None and img.ndim == 3 and img.shape[1] >= w >= min_size[0] and img.shape[0] >= h >= min_size[1]:
            return to_rgb8(img[:h, :w]), size
    img = decode_image(data, max_pixels=limit)
    return img, (int(img.shape[1]), int(img.shape[0]))


def _decode_with_pillow(data: bytes, limit: int) -> np.ndarray:
    try:
        from PIL import Image  # optional fallback (installed with torchvision)
    except ImportError:  # pragma: no cover - Pillow ships with torchvision
        raise ImageDecodeError("not a decodable image (OpenCV could not read it)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                check_image_size(*im.size, max_pixels=limit)
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    return to_rgb8(np.asarray(im).astype(np.uint16), bgr=False)
                return to_rgb8(np.asarray(im.convert("RGB")), bgr=False)
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many types for bad data
        raise ImageDecodeError(f"not a decodable image ({type(exc).__name__}: {exc})") from None
