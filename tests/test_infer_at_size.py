"""``vpp infer`` at any resolution: frames decoded at the model's size, masks brought to the frame's size as runs.

- the reduced decode picks the largest JPEG DCT reduction that still covers the model's input and hands the
  model an input of the same size (and, where no reduction applies, the same bytes) as the full decode;
- :meth:`core.preprocess.Resized.encoded_masks` gives the masks of the whole-frame upsampling
  (:meth:`~core.preprocess.Resized.unpad_masks`), pixel for pixel wherever the upsampled logit is not within
  ``SIGN_TOLERANCE`` of 0 (the documented tolerance: PyTorch rounds the same weighted sum in its own order), and
  exactly the masks of the same arithmetic done densely;
- the crop and run encoders give pycocotools' bytes, on random masks and on boxes at every edge.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from core.cli import main
from core.data.imageio import decode_image, decode_image_reduced, jpeg_reduction, read_image_bytes
from core.data.mask_runs import EncodedMasks, counts_to_rle, encode_box_mask, mask_runs
from core.data.rle import encode_mask
from core.data.sources import FolderSource, VideoSource
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import save_checkpoint
from core.model.vpp.config import VPPConfig
from core.preprocess import Resized, _linear_taps, resize_frame
from core.results import CompactFrame
from core.session import InferenceSession
from core.session_base import FrameResult

#: A pixel of encoded_masks may differ from unpad_masks only where F.interpolate's value is this close to 0.
SIGN_TOLERANCE = 1e-5


def _jpeg(path, img, quality=95):
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def _smooth(rng, h, w):
    """A smooth RGB image (JPEG-friendly), uint8."""
    small = rng.integers(0, 256, (max(2, h // 48), max(2, w // 48), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


# -- reduced decode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size, need, d", [
    ((3840, 2160), (512, 288), 4),  # 960x540 >= 512x288, 480x270 is not
    ((1920, 1080), (512, 288), 2),
    ((960, 540), (512, 288), 1),
    ((854, 480), (512, 288), 1),
    ((4096, 2304), (512, 288), 8),  # exactly 512x288 at 1/8
    ((4095, 2303), (512, 288), 4),  # 4095 / 8 < 512 (libjpeg's ceil would give 512 columns)
    ((4088, 2304), (512, 288), 4),  # 4088 / 8 = 511, one short
    ((7680, 4320), (512, 288), 8),
    ((3840, 2160), (1024, 576), 2),
    ((100, 100), (512, 288), 1),  # the model enlarges: no reduction
])
def test_the_largest_reduction_that_still_covers_the_model_input(size, need, d):
    assert jpeg_reduction(*size, *need) == d


@pytest.mark.parametrize("full, fit, close", [
    ((1280, 720), (512, 288), 2.0),
    ((2100, 1181), (512, 288), 4.0),  # 1181 / 4 = 295.25 rows, cropped to 295: a quarter-row shift at the bottom
    ((640, 360), (512, 288), 0.0),
])
def test_a_reduced_jpeg_decode_is_at_least_the_input_and_close_to_the_full_decode(tmp_path, full, fit, close):
    rng = np.random.default_rng(0)
    img = _smooth(rng, full[1], full[0])
    data = read_image_bytes(_jpeg(tmp_path / "f.jpg", img))
    small, size = decode_image_reduced(data, fit)
    assert size == full
    d = jpeg_reduction(*full, *fit)
    assert small.shape == (round(full[1] / d), round(full[0] / d), 3) and small.dtype == np.uint8
    assert small.shape[1] >= fit[0] and small.shape[0] >= fit[1]
    whole = decode_image(data)
    a = cv2.resize(small, fit, interpolation=cv2.INTER_AREA).astype(int)
    b = cv2.resize(whole, fit, interpolation=cv2.INTER_AREA).astype(int)
    if d == 1:
        assert np.array_equal(small, whole)
    else:  # libjpeg's DCT scaling is a smooth reduction too: the model sees nearly the same picture
        assert np.abs(a - b).mean() < close


def test_other_formats_decode_whole(tmp_path):
    img = _smooth(np.random.default_rng(1), 720, 1280)
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    small, size = decode_image_reduced(read_image_bytes(path), (512, 288))
    assert size == (1280, 720) and np.array_equal(small, img)


def _with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """The JPEG ``data`` with an EXIF block saying ``orientation`` (6: rotate 90 degrees) after SOI."""
    tiff = b"II*\x00" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little")
    tiff += (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    tiff += orientation.to_bytes(2, "little") + b"\x00\x00" + (0).to_bytes(4, "little")
    body = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + data[2:]


def test_exif_orientation_is_ignored_as_by_the_full_decode(tmp_path):
    img = _smooth(np.random.default_rng(2), 720, 1280)
    data = _with_exif_orientation(read_image_bytes(_jpeg(tmp_path / "f.jpg", img)), 6)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_2).shape[:2] == (640, 360)  # rotated
    small, size = decode_image_reduced(data, (512, 288))
    assert size == (1280, 720) and small.shape[:2] == (360, 640)
    assert decode_image(data).shape[:2] == (720, 1280)


def test_the_size_limit_applies_to_the_full_size(tmp_path, monkeypatch):
    from core.data import imageio

    data = read_image_bytes(_jpeg(tmp_path / "f.jpg", _smooth(np.random.default_rng(3), 720, 1280)))
    monkeypatch.setattr(imageio, "MAX_FRAME_PIXELS", 1280 * 720 - 1)
    with pytest.raises(imageio.ImageDecodeError, match="1280x720"):
        decode_image_reduced(data, (512, 288))


# -- sources: stream(fit=...) -------------------------------------------------------------------------


def _jpeg_folder(folder, n, w, h, seed=0):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        _jpeg(folder / f"{i:05d}.jpg", _smooth(rng, h, w))
    return folder


def _session(long_side=128):
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=long_side, decoder_dim=32, num_queries=6, decoder_layers=1,
                                decoder_ffn=64, pkr=0.4)
    return InferenceSession(build_vpp(cfg).eval(), cfg, score_threshold=0.0)


def test_a_fit_stream_gives_the_model_an_input_of_the_same_size_and_geometry(tmp_path):
    session = _session(128)
    folder = _jpeg_folder(tmp_path / "f", 3, 1280, 720)  # 1/4 (320x180) still covers 128x72
    with FolderSource(folder) as source:
        W, H = source.size
        fit = session.input_size(W, H)
        assert fit == (128, 72)
        small = list(source.stream(fit=fit))
        full = [source.frame(i) for i in range(len(source))]
        assert source.size == (1280, 720) and all(f.shape == (720, 1280, 3) for f in full)  # the app's frames
    for s, f in zip(small, full, strict=True):
        assert s.shape == (72, 128, 3) and not s.flags.writeable
        a, b = session.resize(s, frame_hw=(H, W)), session.resize(f)
        assert a.geometry == b.geometry == Resized((720, 1280), (72, 128), (80, 128))
        assert a.planes.shape == b.planes.shape
        assert np.abs(a.pixels.astype(int) - b.pixels.astype(int)).mean() < 3.0


def test_where_no_reduction_applies_the_fit_stream_gives_the_same_bytes(tmp_path, shared_data):
    """The shared 854x480 frames at a 512-px model: no DCT reduction; the input is the plain path's, bit for bit."""
    frames = shared_data / "davis_car_shadow" / "frames"
    with FolderSource(frames) as source:
        fit = (512, 288)
        for i, small in enumerate(source.stream(fit=fit)):
            if i == 5:
                break
            plain = resize_frame(source.frame(i), 512, 16, planes=True)
            ahead = resize_frame(small, 512, 16, planes=True, frame_hw=(480, 854))
            assert ahead.geometry == plain.geometry
            assert np.array_equal(ahead.pixels, plain.pixels) and np.array_equal(ahead.planes, plain.planes)


def test_a_video_fit_stream_is_the_full_frame_resized_once(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 180))
    rng = np.random.default_rng(4)
    for _ in range(3):
        writer.write(cv2.cvtColor(_smooth(rng, 180, 320), cv2.COLOR_RGB2BGR))
    writer.release()
    with VideoSource(path) as source:
        full = [source.frame(i) for i in range(len(source))]
        small = list(source.stream(fit=(128, 72)))
    assert len(small) == len(full) == 3
    for s, f in zip(small, full):
        assert np.array_equal(s, cv2.resize(f, (128, 72), interpolation=cv2.INTER_AREA))


def test_a_frame_read_at_a_fit_is_the_fit_streams_frame_and_leaves_the_cache_alone(tmp_path):
    """``frame(i, fit=...)`` (the app's passes, in any order) gives what ``stream(fit=...)`` gives (vpp infer)."""
    folder = _jpeg_folder(tmp_path / "f", 4, 1280, 720)
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 180))
    rng = np.random.default_rng(5)
    for _ in range(4):
        writer.write(cv2.cvtColor(_smooth(rng, 180, 320), cv2.COLOR_RGB2BGR))
    writer.release()
    for source in (FolderSource(folder), VideoSource(path)):
        with source:
            fit = (128, 72)
            streamed = list(source.stream(fit=fit))
            cached = len(source._cache)
            for i in (3, 0, 2, 1):
                img = source.frame(i, fit=fit)
                assert np.array_equal(img, streamed[i]) and not img.flags.writeable
            assert len(source._cache) == cached
            with pytest.raises(ValueError, match="fit must be a positive"):
                source.frame(0, fit=(0, 72))


def test_how_a_decode_is_brought_to_the_input_size():
    from core.data.sources import _fit_interpolation

    assert _fit_interpolation(854, 480, (854, 480), (512, 288)) == cv2.INTER_AREA  # whole: as resize_frame does
    assert _fit_interpolation(320, 180, (320, 180), (512, 288)) == cv2.INTER_LINEAR  # enlarged
    assert _fit_interpolation(960, 540, (3840, 2160), (512, 288)) == cv2.INTER_LINEAR  # reduced, under 2x
    assert _fit_interpolation(1920, 1080, (15360, 8640), (512, 288)) == cv2.INTER_AREA  # even 1/8 leaves 3.75x


def test_odd_sized_frames_are_noted_and_still_fit(tmp_path):
    folder = _jpeg_folder(tmp_path / "f", 3, 640, 360)
    _jpeg(folder / "00001.jpg", _smooth(np.random.default_rng(5), 480, 640))
    with FolderSource(folder) as source:
        got = list(source.stream(fit=(128, 72)))
        assert all(g.shape == (72, 128, 3) for g in got)
        assert source.resized == (1,) and "00001.jpg is 640x480, the clip is 640x360" in source.resized_note


def test_a_bad_frame_in_a_fit_stream_is_named(tmp_path):
    from core.data.errors import FrameReadError

    folder = _jpeg_folder(tmp_path / "f", 3, 640, 360)
    (folder / "00002.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with FolderSource(folder) as source, pytest.raises(FrameReadError, match=r"00002\.jpg"):
        list(source.stream(fit=(128, 72)))


# -- masks at the frame's size ------------------------------------------------------------------------


def _dense_reference(cells: np.ndarray, H: int, W: int) -> np.ndarray:
    """The arithmetic encoded_masks does, on every pixel: along the width, then between the two rows, float32."""
    a0, a1, h0, h1 = _linear_taps(cells.shape[0], H)
    b0, b1, w0, w1 = _linear_taps(cells.shape[1], W)
    t = cells[:, b0] * w0 + cells[:, b1] * w1
    return (t[a0] * h0[:, None] + t[a1] * h1[:, None]) > 0


def _logit_cases(rng, m, h, w):
    x = rng.normal(-1, 3, (m, h, w)).astype(np.float32)
    x[0] = -1  # empty
    x[1] = -5
    x[1, h // 3, w // 4] = 2  # one cell
    x[2] = 1  # the whole frame
    x[3] = np.cumsum(rng.normal(0, 3, (h, w)), 0).astype(np.float32) / 4  # smooth blobs
    x[4] = -3
    x[4, -2:, -3:] = 4  # the bottom-right corner
    x[5] = -3
    x[5, :, :2] = 4  # the left edge, every row
    x[6] = 0.0  # exactly 0 is not positive
    x[6, 0, 0] = 1e-35  # a tiny positive cell: its groups are evaluated, not assumed True
    return torch.from_numpy(x)


GEOMETRIES = [
    Resized((2160, 3840), (288, 512), (288, 512)),  # 4K, 60 rows per row group
    Resized((540, 960), (288, 512), (288, 512)),
    Resized((480, 854), (288, 512), (288, 512)),  # the shared fixture
    Resized((371, 639), (180, 311), (184, 320)),  # odd sizes, padding cropped
    Resized((100, 170), (288, 512), (288, 512)),  # the mask is shrunk
    Resized((288, 512), (288, 512), (288, 512)),  # same size
    Resized((1, 1), (1, 1), (16, 16)),
]


@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: "x".join(map(str, g.orig_hw)))
def test_masks_by_runs_are_the_whole_frame_masks(geom):
    rng = np.random.default_rng(sum(geom.orig_hw))
    h, w = geom.padded_hw[0] // 8 or 1, geom.padded_hw[1] // 8 or 1
    x = _logit_cases(rng, 9, max(h, 2), max(w, 2))
    got = geom.encoded_masks(x)
    assert isinstance(got, EncodedMasks) and got.shape == (9, *geom.orig_hw)
    dense = np.asarray(got)
    ref = geom.unpad_masks(x).numpy()
    ph, pw = geom.padded_hw
    ch, cw = max(1, round(x.shape[1] * geom.resized_hw[0] / ph)), max(1, round(x.shape[2] * geom.resized_hw[1] / pw))
    crop = x[:, :ch, :cw]
    values = F.interpolate(crop[None].float(), size=geom.orig_hw, mode="bilinear", align_corners=False)[0].numpy()
    differ = dense != ref
    assert np.all(np.abs(values[differ]) < SIGN_TOLERANCE), np.abs(values[differ]).max()
    assert differ.sum() <= 2  # in practice none: see the docstring of encoded_masks
    for k in range(len(crop)):  # exactly the dense evaluation of the same arithmetic
        assert np.array_equal(dense[k], _dense_reference(crop[k].numpy(), *geom.orig_hw)), k
    assert not dense[0].any() and dense[2].all() and dense[6].any()  # 1e-35 is above 0: a few pixels
    for k, rle in enumerate(got.rles()):  # pycocotools' bytes for those masks
        assert rle == encode_mask(dense[k])


def test_no_instances_give_no_masks():
    geom = GEOMETRIES[0]
    got = geom.encoded_masks(torch.zeros(0, 36, 64))
    assert got.shape == (0, 2160, 3840) and got.rles() == () and np.asarray(got).shape == (0, 2160, 3840)


def test_a_compact_frame_takes_encoded_masks_as_they_are():
    rng = np.random.default_rng(7)
    masks = rng.random((3, 40, 60)) > 0.5
    encoded = EncodedMasks(40, 60, [encode_mask(m) for m in masks])

    def result(m):
        return FrameResult(index=0, track_ids=np.arange(3), category_ids=np.ones(3, np.int64),
                           scores=np.ones(3, np.float32), masks=m, kept=np.ones((1, 2, 3), bool),
                           stage_names=("Map-SM",), keep_ratio=1.0, gflops=0.0, ms=0.0)

    a, b = CompactFrame.from_result(result(encoded)), CompactFrame.from_result(result(masks))
    assert a.rles == b.rles and np.array_equal(a.areas, b.areas) and (a.height, a.width) == (40, 60)
    assert np.array_equal(encoded[1], masks[1]) and np.array_equal(np.asarray(encoded), masks)


# -- the crop encoder ---------------------------------------------------------------------------------


def _boxes(rng, n):
    for i in range(n):
        H, W = (int(v) for v in rng.integers(1, 48, 2))
        bh, bw = int(rng.integers(0, H + 1)), int(rng.integers(0, W + 1))
        top, left = int(rng.integers(0, H - bh + 1)), int(rng.integers(0, W - bw + 1))
        edge = i % 6
        if edge == 1:
            top, bh = 0, H  # the whole height: runs go on into the next column
        elif edge == 2:
            top, left, bh, bw = 0, 0, H, W  # the whole frame
        elif edge == 3:
            left, top = W - bw, H - bh  # the bottom-right corner
        elif edge == 4:
            top, left = 0, 0  # the top-left corner
        p = [0.0, 0.03, 0.5, 0.97, 1.0][i % 5]
        yield H, W, top, left, rng.random((bh, bw)) < p


def test_the_crop_encoder_gives_pycocotools_bytes():
    rng = np.random.default_rng(8)
    for H, W, top, left, crop in _boxes(rng, 3000):
        full = np.zeros((H, W), bool)
        full[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
        want = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))
        got = encode_box_mask(crop, top, left, H, W)
        assert got["counts"].encode("ascii") == want["counts"] and got["size"] == [H, W] == list(want["size"])
        counts = mask_runs(crop, top, left, H, W)
        assert counts.sum() == H * W and (counts[1:] > 0).all()


def test_the_crop_encoder_refuses_a_crop_outside_the_frame():
    with pytest.raises(ValueError, match="does not fit"):
        mask_runs(np.ones((3, 3), bool), 2, 0, 4, 4)


def test_run_lengths_round_trip_through_pycocotools():
    counts = np.array([0, 5, 3, 12], np.uint32)  # starts with ones
    rle = counts_to_rle(counts, 4, 5)
    m = mask_utils.decode({"size": [4, 5], "counts": rle["counts"].encode()})
    assert m.T.ravel().tolist() == [1] * 5 + [0] * 3 + [1] * 12
    assert rle == encode_mask(m.astype(bool))


# -- the command ---------------------------------------------------------------------------------------


def test_vpp_infer_reads_at_the_models_size_and_writes_full_size_masks(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=64, num_queries=4, decoder_layers=1, num_classes=2,
                                categories=("a", "b"))
    model = tmp_path / "m.safetensors"
    save_checkpoint(build_vpp(cfg).eval(), cfg, model)
    folder = _jpeg_folder(tmp_path / "f", 3, 320, 180)  # 1/2 (160x90) covers the 64x36 input
    outs = []
    for extra in ([], ["--prefetch", "0"], ["--prefetch", "2"]):
        out = tmp_path / f"r{len(outs)}.json"
        code = main(["infer", str(folder), "--model", str(model), "--out", str(out), "--threads", "2", *extra])
        assert code == 0, capsys.readouterr().err
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]  # reading ahead on a thread or not changes nothing
    results = json.loads(outs[0])
    segs = [s for r in results for s in r["segmentations"] if s]
    assert segs and all(s["size"] == [180, 320] for s in segs)
