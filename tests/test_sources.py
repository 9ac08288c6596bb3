"""Frame sources: folders and videos, every pixel format, lazy decoding, byte-bounded cache, bad input."""

from __future__ import annotations

import io
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from core.data import sources as sources_mod
from core.data.cache import ByteLRU
from core.data.errors import FrameReadError
from core.data.imageio import decode_image
from core.data.sources import FolderSource, VideoSource, natural_key, open_source
from core.data.synthetic import write_synthetic_dataset
from core.data.ytvis_dataset import YtvisDatasetSource, load_ytvis_dataset
from core.errors import DataError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)


def _write_rgb(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_natural_order_extensions_and_hidden_files(tmp_path):
    for name in ["10.jpg", "2.JPG", "1.png", "3.Jpeg", "11.bmp", "4.tif", "5.TIFF", "6.webp"]:
        _write_rgb(tmp_path / name, RGB)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".7.jpg").write_bytes(b"junk")
    (tmp_path / "sub.jpg").mkdir()
    with FolderSource(tmp_path) as src:
        assert src.names == ("1.png", "2.JPG", "3.Jpeg", "4.tif", "5.TIFF", "6.webp", "10.jpg", "11.bmp")
        assert len(src) == 8 and src.size == (16, 12) and src.fps == 25.0
        np.testing.assert_array_equal(src.frame(0), RGB)  # png: lossless
        np.testing.assert_array_equal(src.frame(-1), RGB)  # bmp
        assert src.frame(3).shape == (12, 16, 3) and src.frame(3).dtype == np.uint8
    assert FolderSource(tmp_path, fps=12.5).fps == 12.5
    assert sorted(["a10", "a2", "a1b"], key=natural_key) == ["a1b", "a2", "a10"]


def test_every_pixel_format_becomes_rgb8():
    grey = RGB[..., 0]
    cases = {}
    cases["grey"] = (cv2.imencode(".png", grey)[1].tobytes(), np.repeat(grey[..., None], 3, 2), 0)
    bgra = np.dstack([RGB[..., ::-1], np.full(grey.shape, 7, np.uint8)])
    cases["rgba"] = (cv2.imencode(".png", bgra)[1].tobytes(), RGB, 0)
    rgb16 = RGB.astype(np.uint16) * 257
    cases["rgb16"] = (cv2.imencode(".png", rgb16[..., ::-1].copy())[1].tobytes(), RGB, 0)
    cases["grey16"] = (cv2.imencode(".png", grey.astype(np.uint16) * 257)[1].tobytes(),
                       np.repeat(grey[..., None], 3, 2), 0)
    pal = Image.fromarray(RGB).quantize(16)
    cases["palette"] = (_pil_bytes(pal, "PNG"), np.asarray(pal.convert("RGB")), 0)
    la = Image.fromarray(grey).convert("LA")
    cases["grey+alpha"] = (_pil_bytes(la, "PNG"), np.repeat(grey[..., None], 3, 2), 0)
    cmyk = Image.fromarray(RGB).convert("CMYK")
    cases["cmyk-jpeg"] = (_pil_bytes(cmyk, "JPEG", quality=95), np.asarray(Image.open(io.BytesIO(
        _pil_bytes(cmyk, "JPEG", quality=95))).convert("RGB")), 4)
    cases["cmyk-tiff"] = (_pil_bytes(cmyk, "TIFF"), np.asarray(cmyk.convert("RGB")), 0)
    cases["float-tiff"] = (cv2.imencode(".tiff", grey.astype(np.float32) / 255)[1].tobytes(),
                           np.repeat(grey[..., None], 3, 2), 0)
    cases["webp-lossless"] = (cv2.imencode(".webp", RGB[..., ::-1].copy(), [cv2.IMWRITE_WEBP_QUALITY, 101])[1]
                              .tobytes(), RGB, 0)
    for name, (data, expected, tol) in cases.items():
        got = decode_image(data)
        assert got.shape == (12, 16, 3) and got.dtype == np.uint8 and got.flags.c_contiguous, name
        diff = np.abs(got.astype(int) - expected.astype(int)).mean()
        assert diff <= tol, (name, diff)


def test_sixteen_bit_scaling_is_exact_at_the_ends():
    ramp = np.array([[0, 257, 32896, 65535, 128]], np.uint16)
    got = decode_image(cv2.imencode(".png", ramp)[1].tobytes())
    assert got[0, :, 0].tolist() == [0, 1, 128, 255, 0]


def test_opening_a_long_folder_decodes_only_the_first_frame(tmp_path, monkeypatch):
    data = cv2.imencode(".png", RGB)[1].tobytes()
    for i in range(1000):
        (tmp_path / f"{i:05d}.png").write_bytes(data)
    calls = []
    real = sources_mod.decode_image
    monkeypatch.setattr(sources_mod, "decode_image", lambda b: calls.append(1) or real(b))
    start = time.perf_counter()
    src = FolderSource(tmp_path)
    assert time.perf_counter() - start < 1.0
    assert len(src) == 1000 and len(calls) == 1
    src.frame(500)
    src.frame(500)
    assert len(calls) == 2


def test_cache_is_bounded_in_bytes(tmp_path, monkeypatch):
    for i in range(10):
        _write_rgb(tmp_path / f"{i}.png", RGB)
    calls = []
    real = sources_mod.decode_image
    monkeypatch.setattr(sources_mod, "decode_image", lambda b: calls.append(1) or real(b))
    src = FolderSource(tmp_path, cache_bytes=3 * RGB.nbytes)
    for i in range(10):
        src.frame(i)
    assert src._cache.nbytes <= 3 * RGB.nbytes and len(src._cache) == 3
    n = len(calls)
    src.frame(9)  # recent: cached
    assert len(calls) == n
    src.frame(0)  # evicted: decoded again
    assert len(calls) == n + 1
    with pytest.raises(ValueError, match="read-only"):
        src.frame(9)[0, 0, 0] = 1
    lru = ByteLRU(100)
    lru.put("big", np.zeros(101, np.uint8))
    assert "big" not in lru and lru.nbytes == 0


def test_frames_of_another_size_are_resized_and_reported(tmp_path):
    _write_rgb(tmp_path / "0.png", RGB)
    _write_rgb(tmp_path / "1.png", cv2.resize(RGB, (32, 24)))
    _write_rgb(tmp_path / "2.png", RGB)
    src = FolderSource(tmp_path)
    assert src.frame(1).shape == (12, 16, 3) and src.frame(2).shape == (12, 16, 3)
    assert src.resized == (1,)
    assert src.resized_note == "frame 1.png is 32x24, the clip is 16x12: resized"


def test_corrupt_frame_raises_naming_file_and_index_or_is_skipped(tmp_path):
    for i in range(4):
        _write_rgb(tmp_path / f"{i}.png", RGB)
    good = (tmp_path / "2.png").read_bytes()
    (tmp_path / "2.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "3.png").write_bytes(b"")
    src = FolderSource(tmp_path)
    with pytest.raises(FrameReadError, match=r"2\.png: frame 2 cannot be read") as info:
        src.frame(2)
    assert info.value.index == 2 and info.value.path.name == "2.png" and isinstance(info.value, DataError)
    with pytest.raises(FrameReadError, match=r"3\.png: frame 3 cannot be read \(the file is empty\)"):
        src.frame(3)
    with pytest.raises(FrameReadError, match=r"2 frames cannot be read: 2\.png \(frame 2: .*\); 3\.png \(frame 3: "):
        src.scan()  # every bad frame is named, not only the first
    skip = FolderSource(tmp_path, on_corrupt="skip")
    assert skip.scan() == ("2.png", "3.png")
    assert len(skip) == 2 and skip.names == ("0.png", "1.png")
    assert [name for name, _ in skip.skipped] == ["2.png", "3.png"]
    (tmp_path / "0.png").write_bytes(b"not an image")
    first_bad = FolderSource(tmp_path, on_corrupt="skip")
    assert first_bad.names[0] == "1.png" and first_bad.skipped[0][0] == "0.png"
    with pytest.raises(FrameReadError, match=r"0\.png: frame 0"):
        FolderSource(tmp_path)


def test_a_frame_deleted_after_opening_is_a_frame_read_error(tmp_path):
    for i in range(2):
        _write_rgb(tmp_path / f"{i}.png", RGB)
    src = FolderSource(tmp_path)
    (tmp_path / "1.png").unlink()
    with pytest.raises(FrameReadError, match=r"1\.png: frame 1 cannot be read \(the file is missing\)"):
        src.frame(1)


def test_bad_paths_give_clear_data_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.mp4").write_text("hello, not a video " * 100)
    _write_rgb(tmp_path / "one.png", RGB)
    cases = [
        (lambda: FolderSource(tmp_path / "empty"), r"empty: no images found"),
        (lambda: open_source(tmp_path / "empty"), r"empty: no images found"),
        (lambda: open_source(tmp_path / "missing"), r"missing: does not exist"),
        (lambda: FolderSource(tmp_path / "missing"), r"missing: folder does not exist"),
        (lambda: FolderSource(tmp_path / "one.png"), r"one\.png: is not a folder"),
        (lambda: open_source(tmp_path / "one.png"), r"one\.png: is a single image; pass the folder"),
        (lambda: open_source(tmp_path / "text.mp4"), r"text\.mp4: not a video OpenCV can read"),
        (lambda: VideoSource(tmp_path / "nope.mp4"), r"nope\.mp4: video file does not exist"),
        (lambda: VideoSource(tmp_path / "empty"), r"empty: is not a file"),
    ]
    for make, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            make()


def _video(path, n=20, fourcc="MJPG", size=(64, 48)):
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
    assert writer.isOpened()
    for i in range(n):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[..., 0] = 200  # red in RGB
        rgb[:, : 2 + 3 * i % w, 2] = 120 + i  # frame-dependent blue stripe
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.mark.parametrize(("fourcc", "ext"), [("MJPG", "avi"), ("mp4v", "mp4")])
def test_video_random_access_matches_sequential_decoding(tmp_path, fourcc, ext):
    path = _video(tmp_path / f"v.{ext}", fourcc=fourcc)
    cap = cv2.VideoCapture(str(path))
    sequential = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        sequential.append(img[..., ::-1])
    cap.release()
    with open_source(path, cache_bytes=0) as src:
        assert isinstance(src, VideoSource)
        assert len(src) == len(sequential) == 20 and src.size == (64, 48) and src.fps == pytest.approx(10)
        assert src.names[:2] == ("00000.jpg", "00001.jpg")
        for i in [7, 3, 4, 5, 19, 0, 12, 13]:
            np.testing.assert_array_equal(src.frame(i), sequential[i])
        assert src.frame(0)[..., 0].mean() > 150  # RGB order: red channel first
    assert len(VideoSource(path, count_frames="decode")) == 20
    with pytest.raises(RuntimeError, match="closed"):
        src.frame(0)


def test_truncated_video_never_leaks_an_opencv_traceback(tmp_path):
    path = _video(tmp_path / "v.avi", n=30)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    read = 0
    with pytest.raises(DataError, match=r"cut\.avi"), VideoSource(cut) as src:  # at open or at a missing frame
        for i in range(len(src)):
            src.frame(i)
            read += 1
    assert read < 30


def test_ytvis_dataset_layouts(tmp_path):
    write_synthetic_dataset(tmp_path / "ds", train_videos=2, val_videos=1, width=48, height=32, frames=3, seed=1)
    ds = load_ytvis_dataset(tmp_path / "ds", "train")
    assert ds.video_ids == [1, 2] and ds.annotation_path.name == "instances.json"
    with ds.video_source(2) as src:
        assert src.names == ds.gt.video(2).file_names and src.size == (48, 32) and len(src) == 3
        expected = cv2.imread(str(ds.image_root / ds.gt.video(2).file_names[1]))[..., ::-1]
        np.testing.assert_array_equal(src.frame(1), expected)
    listed = [(vid, name, len(s)) for vid, name, s in ds.sources()]
    assert listed == [(1, "vid00000", 3), (2, "vid00001", 3)]
    assert YtvisDatasetSource.find(tmp_path / "ds" / "valid").split == "valid"
    assert YtvisDatasetSource.find(tmp_path / "ds") is None
    # YTVIS 2019 style: annotations/<name>.json beside <split>/JPEGImages
    (tmp_path / "ds" / "annotations").mkdir()
    (tmp_path / "ds" / "valid" / "instances.json").rename(tmp_path / "ds" / "annotations" / "instances_valid.json")
    assert load_ytvis_dataset(tmp_path / "ds", "valid").annotation_path.name == "instances_valid.json"
    with pytest.raises(DataError, match=r"no annotation file for split 'test'; looked for test/instances\.json"):
        load_ytvis_dataset(tmp_path / "ds", "test")
    with pytest.raises(DataError, match=r"nowhere: dataset folder does not exist"):
        load_ytvis_dataset(tmp_path / "nowhere", "train")
