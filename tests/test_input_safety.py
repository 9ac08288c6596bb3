"""Hostile input (issue 12): frame paths that escape the split, decompression bombs, many corrupt frames,
frames of mixed sizes. Every refusal is one DataError naming the file; nothing huge is ever decoded."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from core.cli import main
from core.data import imageio
from core.data.davis import read_davis_png
from core.data.errors import CorruptFramesError, FrameReadError
from core.data.imageio import ImageDecodeError, decode_image, image_size
from core.data.sources import FolderSource, VideoSource
from core.data.synthetic import write_synthetic_dataset
from core.data.ytvis import read_ytvis_gt
from core.data.ytvis_dataset import YtvisDatasetSource, load_ytvis_dataset
from core.errors import DataError
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import save_checkpoint
from core.model.vpp.config import VPPConfig

BIG = 32000
LIMIT = imageio.MAX_FRAME_PIXELS


# -- helpers ------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(w: int, h: int, mode: str = "1") -> bytes:
    """A small PNG whose IHDR is patched to claim w x h (CRC fixed): the data is far too short for it."""
    buf = io.BytesIO()
    Image.new(mode, (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture(scope="module")
def real_bomb() -> bytes:
    """A complete, valid 1-bit 32000x32000 PNG (about 125 kB; 1 GB as grey, 3 GB as RGB)."""
    row = b"\x00" * (1 + BIG // 8)
    co = zlib.compressobj(9)
    idat = b"".join(co.compress(row * 1000) for _ in range(BIG // 1000)) + co.flush()
    ihdr = struct.pack(">IIBBBBB", BIG, BIG, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _jpeg_claiming(w: int, h: int) -> bytes:
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def _bmp_claiming(w: int, h: int) -> bytes:
    data = bytearray(cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[18:26] = struct.pack("<ii", w, h)
    return bytes(data)


def _tiff_claiming(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    im = Image.open(io.BytesIO(buf.getvalue()))
    assert im.size == (8, 8)
    data = bytearray(buf.getvalue())
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (n,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    for k in range(n):
        e = ifd + 2 + 12 * k
        tag, typ = struct.unpack(order + "HH", data[e:e + 4])
        if tag in (256, 257):
            value = w if tag == 256 else h
            packed = struct.pack(order + "I", value) if typ == 4 else struct.pack(order + "HH", value, 0)
            data[e + 8:e + 12] = packed
    return bytes(data)


def _webp_claiming(w: int, h: int) -> bytes:
    """A VP8X WebP header claiming a w x h canvas."""
    body = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.fixture
def no_decoding(monkeypatch):
    """``no_decoding()``: from then on, fail the test if OpenCV or Pillow is asked to decode pixels."""
    def refuse(*args, **kwargs):
        raise AssertionError("a decoder was called")

    def arm():
        monkeypatch.setattr(imageio.cv2, "imdecode", refuse)
        monkeypatch.setattr(Image.Image, "load", refuse)

    return arm


def _write(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _split(tmp_path, frames=3):
    write_synthetic_dataset(tmp_path / "ds", train_videos=0, val_videos=2, width=32, height=24, frames=frames, seed=5)
    split = tmp_path / "ds" / "valid"
    shutil.copy(split / "JPEGImages" / "vid00000" / "00000.jpg", split / "outside.jpg")  # readable, outside
    return split


def _set_file_name(split, video_index, frame, name):
    ann = split / "instances.json"
    data = json.loads(ann.read_text())
    data["videos"][video_index]["file_names"][frame] = name
    ann.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=64, num_queries=4, decoder_layers=1, num_classes=2,
                                categories=("a", "b"))
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_checkpoint(build_vpp(cfg).eval(), cfg, path)
    return path


def _infer(capsys, *argv):
    code = main(["infer", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _errors(err: str) -> list[str]:
    """The ``error:`` messages on stderr (a progress bar may share the error's terminal line)."""
    return re.findall(r"error: .*", err)


# -- paths that escape the split's image folder --------------------------------------------------------


ESCAPING = ["../outside.jpg", "vid00000/../../outside.jpg", "/dev/zero", "/etc/passwd", "C:/Windows/win.ini",
            "c:outside.jpg", "..\\outside.jpg", "vid00000\\00000.jpg", "", "vid00000/"]


@pytest.mark.parametrize("bad", ESCAPING)
def test_ytvis_file_names_that_escape_are_refused_when_the_split_loads(tmp_path, bad):
    split = _split(tmp_path)
    _set_file_name(split, 1, 2, bad)
    pattern = rf"instances\.json: .*video 2 file_names\[2\] {re.escape(repr(bad))}"
    with pytest.raises(DataError, match=pattern):
        load_ytvis_dataset(split.parent, "valid")
    with pytest.raises(DataError, match=pattern):
        YtvisDatasetSource.find(split)
    with pytest.raises(DataError, match=pattern):  # the constructor used by core.training.validate.open_split
        YtvisDatasetSource(split.parent, "valid", split / "instances.json", split / "JPEGImages",
                           read_ytvis_gt(split / "instances.json"))


def test_every_escaping_name_is_listed_in_one_error(tmp_path):
    split = _split(tmp_path)
    _set_file_name(split, 0, 0, "../outside.jpg")
    _set_file_name(split, 1, 1, "/etc/passwd")
    with pytest.raises(DataError) as info:
        load_ytvis_dataset(split.parent, "valid")
    msg = str(info.value)
    assert "2 refused" in msg and "'../outside.jpg'" in msg and "'/etc/passwd'" in msg
    assert "video 1" in msg and "video 2" in msg


def test_symlinks_of_the_users_layout_are_followed(tmp_path):
    """Links are made by the user on their own disk (video folders on another drive), not by an annotation
    file: they are followed; only the names in the file are judged."""
    split = _split(tmp_path)
    folder = split / "JPEGImages" / "vid00001"  # a whole video folder linked elsewhere
    shutil.move(folder, tmp_path / "elsewhere")
    folder.symlink_to(tmp_path / "elsewhere")
    ds = load_ytvis_dataset(split.parent, "valid")
    with ds.video_source(2) as src:
        assert src.frame(0).shape == (24, 32, 3)
    assert all(p.is_relative_to((tmp_path / "elsewhere").resolve()) for p in ds.frame_paths(2))


def test_links_that_stay_inside_and_a_linked_image_root_are_fine(tmp_path):
    split = _split(tmp_path)
    link = split / "JPEGImages" / "vid00001" / "00001.jpg"
    link.unlink()
    link.symlink_to("../vid00000/00001.jpg")
    images = split / "JPEGImages"
    shutil.move(images, tmp_path / "real_images")
    images.symlink_to(tmp_path / "real_images")  # JPEGImages itself may live on another disk
    ds = load_ytvis_dataset(split.parent, "valid")
    with ds.video_source(2) as src:
        assert len(src) == 3 and src.frame(1).shape == (24, 32, 3)
    assert all(p.is_relative_to((tmp_path / "real_images").resolve()) for p in ds.frame_paths(2))


def test_a_link_to_a_device_is_never_read(tmp_path):
    split = _split(tmp_path)
    ds = load_ytvis_dataset(split.parent, "valid")
    src = ds.video_source(1)
    frame = split / "JPEGImages" / "vid00000" / "00002.jpg"
    frame.unlink()
    frame.symlink_to("/dev/zero")
    with pytest.raises(FrameReadError, match=r"00002\.jpg: frame 2 cannot be read \(.*not a regular file"):
        src.frame(2)


def test_devices_and_pipes_are_never_read_as_frames(tmp_path):
    (tmp_path / "0.png").write_bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    os.mkfifo(tmp_path / "pipe.png")  # opening a FIFO for reading would block forever
    src = FolderSource.from_files([tmp_path / "0.png", tmp_path / "pipe.png", "/dev/zero"], root=tmp_path)
    with pytest.raises(FrameReadError, match=r"pipe\.png: frame 1 cannot be read \(not a regular file"):
        src.frame(1)
    with pytest.raises(FrameReadError, match=r"/dev/zero: frame 2 cannot be read \(not a regular file"):
        src.frame(2)


def test_vpp_infer_refuses_a_split_with_an_escaping_name(tmp_path, small_model, capsys):
    split = _split(tmp_path, frames=2)
    _set_file_name(split, 0, 1, "../../../../../../etc/passwd")
    out = tmp_path / "r.json"
    code, _, err = _infer(capsys, split, "--model", small_model, "--out", out)
    assert code == 2 and "Traceback" not in err
    lines = _errors(err)
    assert len(lines) == 1 and "instances.json" in lines[0] and "video 1" in lines[0] and "etc/passwd" in lines[0]
    assert not out.exists()


# -- decompression bombs -------------------------------------------------------------------------------


def test_the_limit_is_a_module_constant():
    assert imageio.MAX_FRAME_PIXELS == 2**27  # 8K (7680x4320) fits four times over
    assert imageio.MAX_FRAME_PIXELS < 2 * Image.MAX_IMAGE_PIXELS  # Pillow never refuses what we accept


@pytest.mark.parametrize("make", [_png_claiming, _jpeg_claiming, _bmp_claiming, _tiff_claiming, _webp_claiming])
def test_headers_claiming_32000x32000_are_refused_before_decoding(make, no_decoding):
    data = make(BIG, BIG)
    no_decoding()
    assert image_size(data) == (BIG, BIG)
    with pytest.raises(ImageDecodeError, match=rf"{BIG}x{BIG} .*more than the limit of {LIMIT:,} pixels"):
        decode_image(data)


def test_a_real_1bit_bomb_png_is_refused_naming_file_size_and_limit(tmp_path, real_bomb, no_decoding):
    assert len(real_bomb) < 200_000
    _write(tmp_path / "00000.png", np.zeros((12, 16, 3), np.uint8))
    (tmp_path / "00001.png").write_bytes(real_bomb)
    src = FolderSource(tmp_path)
    no_decoding()
    with pytest.raises(FrameReadError, match=rf"00001\.png: frame 1 cannot be read \(the image is 32000x32000 "
                                             rf"\(1,024,000,000 pixels\), more than the limit of {LIMIT:,}"):
        src.frame(1)
    (tmp_path / "00000.png").write_bytes(real_bomb)  # as the first frame: refused when opening
    with pytest.raises(FrameReadError, match=r"00000\.png: frame 0 .*32000x32000"):
        FolderSource(tmp_path)


def test_a_lowered_limit_applies_to_every_frame(tmp_path, monkeypatch):
    _write(tmp_path / "0.png", np.zeros((12, 16, 3), np.uint8))
    monkeypatch.setattr(imageio, "MAX_FRAME_PIXELS", 100, raising=False)
    with pytest.raises(FrameReadError, match=r"0\.png: frame 0 .*16x12 \(192 pixels\), more than the limit of 100"):
        FolderSource(tmp_path)


def test_pillow_bomb_warnings_never_escape(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow warns above 50 pixels, refuses above 100
    gif = io.BytesIO()
    Image.new("P", (9, 9)).save(gif, format="GIF")  # a format only Pillow reads here (81 pixels: a warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_image(gif.getvalue()).shape == (9, 9, 3)
        with pytest.raises(ImageDecodeError, match=r"9x9"):
            decode_image(gif.getvalue(), max_pixels=80)


@pytest.mark.parametrize(("w", "h"), [(BIG, BIG), (12000, 12000)])
def test_davis_masks_claiming_a_huge_size_are_refused_before_decoding(tmp_path, w, h, no_decoding):
    path = tmp_path / "m.png"
    path.write_bytes(_png_claiming(w, h, "P"))
    no_decoding()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 12000x12000 is past Pillow's warning threshold
        with pytest.raises(DataError, match=rf"m\.png: the mask is {w}x{h} \(.* pixels\), more than the limit of "
                                            rf"{LIMIT:,} pixels"):
            read_davis_png(path)


def test_a_real_bomb_as_a_davis_mask(tmp_path, real_bomb, no_decoding):
    (tmp_path / "m.png").write_bytes(real_bomb)
    no_decoding()
    with pytest.raises(DataError, match=r"m\.png: the mask is 32000x32000"):
        read_davis_png(tmp_path / "m.png")


def test_video_frames_over_the_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(3):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    monkeypatch.setattr(imageio, "MAX_FRAME_PIXELS", 64 * 48 - 1, raising=False)

    def refuse(self, raw):
        raise AssertionError("decoded a frame")

    monkeypatch.setattr(VideoSource, "_decode", refuse)
    monkeypatch.setattr(VideoSource, "_count_by_decoding", refuse)
    for kwargs in ({}, {"count_frames": "decode"}):
        with pytest.raises(DataError, match=rf"v\.avi: video frames are 64x48 \(3,072 pixels\), more than the "
                                            rf"limit of {64 * 48 - 1:,} pixels"):
            VideoSource(path, **kwargs)


def test_vpp_infer_refuses_a_bomb_frame_in_one_line(tmp_path, real_bomb, small_model, capsys):
    frames = tmp_path / "f"
    frames.mkdir()
    _write(frames / "00000.png", np.zeros((48, 64, 3), np.uint8))
    (frames / "00001.png").write_bytes(real_bomb)
    code, _, err = _infer(capsys, frames, "--model", small_model, "--out", tmp_path / "r.json")
    assert code == 2 and "Traceback" not in err and "MemoryError" not in err
    (line,) = _errors(err)
    assert "00001.png" in line and "32000x32000" in line and f"{LIMIT:,}" in line
    assert not (tmp_path / "r.json").exists()


# -- several corrupt frames -----------------------------------------------------------------------------


def _folder_with_bad(tmp_path, n, bad):
    for i in range(n):
        _write(tmp_path / f"{i:05d}.png", np.full((12, 16, 3), i, np.uint8))
    for i in bad:
        (tmp_path / f"{i:05d}.png").write_bytes(b"not an image")
    return tmp_path


def test_scan_names_every_corrupt_frame(tmp_path):
    _folder_with_bad(tmp_path, 6, [2, 4])
    src = FolderSource(tmp_path)
    with pytest.raises(CorruptFramesError) as info:
        src.scan()
    exc = info.value
    assert isinstance(exc, FrameReadError) and isinstance(exc, DataError)
    assert [(i, name) for i, name, _ in exc.frames] == [(2, "00002.png"), (4, "00004.png")]
    assert exc.index == 2 and exc.path.name == "00002.png"  # the first, as a FrameReadError
    assert re.search(r": 2 frames cannot be read: 00002\.png \(frame 2: .*\); 00004\.png \(frame 4: ", str(exc))
    assert len(src) == 6  # raise mode drops nothing


def test_many_corrupt_frames_are_listed_first_few_plus_a_count(tmp_path):
    _folder_with_bad(tmp_path, 15, range(1, 15))
    with pytest.raises(CorruptFramesError, match=r"14 frames cannot be read: 00001\.png .*00008\.png \(frame 8: "
                                                 r"[^;]*\); \.\.\. and 6 more") as info:
        FolderSource(tmp_path).scan()
    assert "00009.png" not in str(info.value) and len(info.value.frames) == 14


def test_a_run_that_hits_corrupt_frames_names_all_of_them(tmp_path):
    _folder_with_bad(tmp_path, 6, [1, 3, 4])
    src = FolderSource(tmp_path)
    seen = []
    with pytest.raises(CorruptFramesError, match=r"3 frames cannot be read: 00001\.png.*00003\.png.*00004\.png"):
        for img in src:  # how InferenceSession.run_clip reads a source
            seen.append(img)
    assert len(seen) == 1
    assert src.frame(5).shape == (12, 16, 3)  # the good frames still read
    (tmp_path / "one").mkdir()
    one = _folder_with_bad(tmp_path / "one", 3, [])
    (one / "00001.png").write_bytes(b"")
    with pytest.raises(FrameReadError, match=r"00001\.png: frame 1 cannot be read \(the file is empty\)") as info:
        list(FolderSource(one))
    assert not isinstance(info.value, CorruptFramesError)  # one bad frame: the plain message


def test_vpp_infer_names_every_corrupt_frame(tmp_path, small_model, capsys):
    (tmp_path / "f").mkdir()
    frames = _folder_with_bad(tmp_path / "f", 5, [1, 3])
    code, _, err = _infer(capsys, frames, "--model", small_model, "--out", tmp_path / "r.json")
    assert code == 2 and "Traceback" not in err
    (line,) = _errors(err)
    assert "2 frames cannot be read" in line and "00001.png" in line and "00003.png" in line


# -- frames of mixed sizes ------------------------------------------------------------------------------


def test_the_first_odd_frame_and_both_sizes_are_recorded(tmp_path):
    _write(tmp_path / "00000.png", np.zeros((12, 16, 3), np.uint8))
    _write(tmp_path / "00001.png", np.zeros((12, 16, 3), np.uint8))
    _write(tmp_path / "00002.png", np.zeros((24, 32, 3), np.uint8))
    _write(tmp_path / "00003.png", np.zeros((6, 8, 3), np.uint8))
    src = FolderSource(tmp_path)
    assert src.resized_note is None
    src.frame(3)
    assert src.resized_note == "frame 00003.png is 8x6, the clip is 16x12: resized"
    src.frame(2)  # decoded later, but earlier in the clip: it is the first odd frame
    assert src.resized_note == "frame 00002.png is 32x24, the clip is 16x12: resized (and 1 more frame of another size)"
    assert src.resized == (2, 3)
    same = FolderSource(tmp_path, files=[tmp_path / "00000.png", tmp_path / "00001.png"])
    list(same)
    assert same.resized_note is None


def test_vpp_infer_warns_once_about_resized_frames(tmp_path, small_model, capsys):
    frames = tmp_path / "f"
    frames.mkdir()
    for i in range(4):
        _write(frames / f"{i:05d}.png", np.zeros((48, 64, 3) if i != 2 else (24, 32, 3), np.uint8))
    code, _, err = _infer(capsys, frames, "--model", small_model, "--out", tmp_path / "r.json")
    assert code == 0, err
    warns = [x for x in err.splitlines() if x.startswith("warning:") and "resized" in x]
    assert warns == ["warning: frame 00002.png is 32x24, the clip is 64x48: resized"]


def test_the_training_loader_refuses_escaping_names(tmp_path):
    from core.training.dataset import YtvisClips

    split = _split(tmp_path)
    _set_file_name(split, 0, 1, "../../outside.jpg")
    with pytest.raises(DataError, match=r"instances\.json: video 1 file_names\[1\] '\.\./\.\./outside\.jpg' goes up"):
        YtvisClips(split / "instances.json", split / "JPEGImages")
