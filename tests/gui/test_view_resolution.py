"""Issue 27, the app at 4K: frames at the view's resolution, overlays at the same resolution, read-ahead.

Small frames and a fake view size stand in for a 4K clip in a window (no timings): a frame is shown at the
view's pixel size until the view is zoomed in past it, then at full size; the overlay layers are sampled at
the same size and cover the same rectangle as the frame; frames are read ahead in the direction of stepping.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QRectF

from core.app import display_frames
from core.app.display_frames import DisplayFrames, display_size, fit_size, reduced_jpeg
from core.data.sources import FolderSource
from core.results import CompactFrame
from vpp_gui import overlay
from vpp_gui.frame_view import FrameView

FW, FH = 320, 180  # the "4K" frame of these tests
VIEW = (80.0, 45.0)  # the fake view, in device pixels: a quarter of the frame


def compact(masks: np.ndarray, kept: np.ndarray | None = None) -> CompactFrame:
    n = len(masks)
    r = SimpleNamespace(index=0, track_ids=np.arange(1, n + 1), category_ids=np.ones(n, int),
                        scores=np.linspace(0.9, 0.5, n).astype(np.float32), masks=masks,
                        kept=np.ones((2, 3, 4), bool) if kept is None else kept, stage_names=("a", "b"),
                        keep_ratio=1.0, gflops=1.0, ms=1.0)
    return CompactFrame.from_result(r)


def random_masks(rng, n, h, w) -> np.ndarray:
    masks = np.zeros((n, h, w), bool)
    for k in range(n):
        m = np.zeros((h, w), np.uint8)
        cv2.ellipse(m, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                    (int(rng.integers(1, w // 2)), int(rng.integers(1, h // 2))), float(rng.integers(0, 180)),
                    0, 360, 1, -1)
        masks[k] = m > 0
    return masks


# -- overlays at the view's resolution -----------------------------------------------------------------------
@pytest.mark.parametrize(("h", "w"), [(45, 80), (17, 33), (180, 320), (1, 1), (179, 5)])
def test_layers_at_a_display_size_are_the_full_layers_sampled(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    masks = random_masks(rng, 5, FH, FW)
    masks[2] = True  # one mask covering the frame (runs across every column)
    masks[3] = False  # and an empty one
    gh, gw = 3, 5
    f = compact(masks, kept=rng.random((2, gh, gw)) > 0.5)
    rows, cols = overlay.sample_index(FH, h), overlay.sample_index(FW, w)
    full = overlay.render_layers(f, stage=overlay.DEPTH_STAGE, long_side=72, patch=16)
    small = overlay.render_layers(f, stage=overlay.DEPTH_STAGE, long_side=72, patch=16, size=(h, w))
    assert np.array_equal(overlay.instance_map_at(f, h, w), overlay.instance_map(f)[rows][:, cols])
    assert small.masks.shape == small.heatmap.shape == (h, w, 4)
    assert np.array_equal(small.masks, full.masks[rows][:, cols])
    assert np.array_equal(small.heatmap, full.heatmap[rows][:, cols])
    assert small.labels == full.labels  # labels stay in frame pixels
    assert small.contours.shape == (h, w, 4)


def test_display_size_fits_the_view_and_goes_full_when_zoomed_in():
    assert fit_size(FW, FH, *VIEW) == (80, 45)
    assert fit_size(FW, FH, 81, 45) == (80, 45)  # a scale between steps rounds up, height is the limit here
    assert fit_size(FW, FH, 160, 90) == (160, 90)  # device pixel ratio 2: twice the pixels
    assert fit_size(FW, FH, 300, 170) == (FW, FH)  # nearly the frame's size: shown as it is
    assert fit_size(FW, FH, 0, 0) == (FW, FH)  # not laid out yet
    fitted = 80 / FW
    assert display_size(FW, FH, *VIEW, zoom=fitted) == (80, 45)
    assert display_size(FW, FH, *VIEW, zoom=fitted * 1.1) == (80, 45)  # a little slack
    assert display_size(FW, FH, *VIEW, zoom=fitted * 2) == (FW, FH)


def test_reduced_jpeg_decodes_at_the_smallest_scale_that_fits(tmp_path):
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (FH, FW, 3), dtype=np.uint8), (0, 0), 3)
    path = tmp_path / "f.jpg"
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    small = reduced_jpeg(path, FW, FH, 80, 45)
    assert small.shape == (45, 80, 3)  # 1/4: just enough
    assert reduced_jpeg(path, FW, FH, 81, 45).shape == (90, 160, 3)  # 1/2
    assert reduced_jpeg(path, FW, FH, 200, 100) is None  # no reduction is large enough: decode in full
    assert reduced_jpeg(path, FW + 2, FH, 80, 45) is None  # not the size the clip says: the source resizes it
    full = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    expect = cv2.resize(full, (80, 45), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(small.astype(int) - expect).mean() < 4  # the same picture, RGB order
    png = tmp_path / "f.png"
    cv2.imwrite(str(png), img)
    assert reduced_jpeg(png, FW, FH, 80, 45) is None


# -- read-ahead ------------------------------------------------------------------------------------------------
class GatedSource:
    """A source whose decodes wait for a gate and are recorded, in order."""

    def __init__(self, n=30):
        self.n, self.size, self.read = n, (FW, FH), []
        self.gate = threading.Event()
        self.gate.set()

    def __len__(self):
        return self.n

    def frame(self, i):
        assert self.gate.wait(10)
        self.read.append(i)
        img = np.full((FH, FW, 3), i, np.uint8)
        img.flags.writeable = False
        return img


def test_read_ahead_follows_the_direction_and_a_new_direction_replaces_the_plan():
    src = GatedSource()
    frames = DisplayFrames(src, ahead=4)
    size = (80, 45)
    try:
        assert frames.frame(10, size)[0, 0, 0] == 10 and frames.frame(10, size).shape == (45, 80, 3)
        frames.read_ahead(10, +1, size)
        assert frames.wait_idle()
        assert src.read == [10, 11, 12, 13, 14]
        assert all(frames.is_cached(i, size) for i in (11, 12, 13, 14)) and not frames.is_cached(9, size)
        src.read.clear()
        frames.frame(11, size)  # cached: no decode
        assert src.read == []

        src.gate.clear()  # the thread will hang in its next decode
        frames.read_ahead(20, +1, size)
        for _ in range(200):
            if frames.planned == (22, 23, 24):
                break
            threading.Event().wait(0.01)
        assert frames.planned == (22, 23, 24)  # 21 is being decoded
        frames.read_ahead(19, -1, size)  # the direction changes: the forward plan is dropped
        assert frames.planned == (18, 17, 16, 15)
        src.gate.set()
        assert frames.wait_idle()
        assert src.read == [21, 18, 17, 16, 15]  # the frame in hand finished, then the new direction only
        assert frames.loaded_ahead == 4 + 5

        frames.read_ahead(2, -1, size)
        assert frames.wait_idle()
        assert src.read[-2:] == [1, 0]  # stops at the clip's start
        frames.read_ahead(5, +1, (FW, FH))  # at full size: fewer frames ahead, they go to the source's cache
        assert frames.wait_idle() and src.read[-2:] == [6, 7]
    finally:
        frames.close()


def test_display_frames_memory_is_bounded():
    src = GatedSource(n=40)
    one = 80 * 45 * 3
    frames = DisplayFrames(src, cache_bytes=5 * one, ahead=8)
    try:
        for i in range(0, 40, 4):
            frames.frame(i, (80, 45))
            frames.read_ahead(i, +1, (80, 45))
        assert frames.wait_idle()
        assert frames._cache.nbytes <= 5 * one
    finally:
        frames.close()


def test_display_frames_of_a_jpeg_folder_match_the_full_decode(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(6):
        img = cv2.GaussianBlur(rng.integers(0, 255, (FH, FW, 3), dtype=np.uint8), (0, 0), 3)
        cv2.imwrite(str(tmp_path / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    with FolderSource(tmp_path, cache_bytes=0) as src:
        frames = DisplayFrames(src)
        try:
            small = frames.frame(3, (100, 56))
            expect = cv2.resize(src.frame(3), (100, 56), interpolation=cv2.INTER_AREA).astype(int)
            assert small.shape == (56, 100, 3) and not small.flags.writeable
            assert np.abs(small.astype(int) - expect).mean() < 4
            assert frames.frame(3, (FW, FH)) is not None and frames.frame(3, (FW, FH)).shape == (FH, FW, 3)
        finally:
            frames.close()


# -- the view ---------------------------------------------------------------------------------------------
def frame_rect(item) -> QRectF:
    return item.mapRectToParent(item.boundingRect())


def test_view_shows_the_display_image_over_the_frame_rectangle(qtbot, monkeypatch):
    view = FrameView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    monkeypatch.setattr(view, "viewport_pixels", lambda: VIEW)
    masks = random_masks(np.random.default_rng(3), 3, FH, FW)
    f = compact(masks)
    size = view.display_size(FW, FH)
    assert size == (80, 45)
    view.set_frame(np.zeros((45, 80, 3), np.uint8), frame_size=(FW, FH))
    view.set_layers(overlay.render_layers(f, size=(45, 80)))
    assert view.shown_size == (80, 45) and view.image.image.shape == (45, 80, 3)
    assert view.items["masks"].image.shape == (45, 80, 4)
    for item in (view.image, view.items["masks"], view.items["contours"]):
        assert frame_rect(item) == QRectF(0, 0, FW, FH)
    # a display pixel of the masks layer maps onto the frame pixel it was sampled from
    ids = overlay.instance_map(f)
    rows, cols = overlay.sample_index(FH, 45), overlay.sample_index(FW, 80)
    layer = view.items["masks"].image
    for j, i in [(10, 20), (30, 60), (44, 79), (0, 0)]:
        centre = view.items["masks"].mapToParent(i + 0.5, j + 0.5)
        y, x = int(centre.y()), int(centre.x())
        assert (y, x) == (rows[j], cols[i])
        assert (layer[j, i, 3] > 0) == (ids[rows[j], cols[i]] > 0)
    # at full size the same call covers the same rectangle
    view.set_frame(np.zeros((FH, FW, 3), np.uint8), frame_size=(FW, FH))
    view.set_layers(overlay.render_layers(f))
    for item in (view.image, view.items["masks"], view.items["contours"]):
        assert frame_rect(item) == QRectF(0, 0, FW, FH)


def test_view_asks_for_full_resolution_when_zoomed_in_and_back_when_fitted(qtbot, monkeypatch):
    view = FrameView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    zoom = [80 / FW]
    monkeypatch.setattr(view, "viewport_pixels", lambda: VIEW)
    monkeypatch.setattr(view, "zoom", lambda: zoom[0])
    view.set_frame(np.zeros((45, 80, 3), np.uint8), frame_size=(FW, FH))
    zoom[0] = 4 * 80 / FW
    with qtbot.waitSignal(view.resolutionChanged, timeout=2000):
        view.view.setRange(xRange=(0, 40), yRange=(0, 22), padding=0)
    assert view.display_size(FW, FH) == (FW, FH)
    view.set_frame(np.zeros((FH, FW, 3), np.uint8), frame_size=(FW, FH))
    zoom[0] = 80 / FW
    with qtbot.waitSignal(view.resolutionChanged, timeout=2000):
        view.fit()
    assert view.display_size(FW, FH) == (80, 45)


def test_pixel_ratio_counts_in_the_view_size(qtbot, monkeypatch):
    view = FrameView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    one = view.viewport_pixels()
    monkeypatch.setattr(view, "pixel_ratio", lambda: 2.0)
    two = view.viewport_pixels()
    assert two == (2 * one[0], 2 * one[1])


# -- the window ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_clip(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(12):
        img = cv2.GaussianBlur(rng.integers(0, 255, (FH, FW, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img)
    return folder


def test_window_shows_view_resolution_until_zoomed_in_and_reads_ahead(make_window, small_clip, wait_done, qtbot,
                                                                       monkeypatch):
    monkeypatch.setattr(FrameView, "viewport_pixels", lambda self: VIEW)  # the fake view size
    zoom = [0.0]
    monkeypatch.setattr(FrameView, "zoom", lambda self: zoom[0])
    monkeypatch.setattr(display_frames, "READ_AHEAD", 3)
    w = make_window(small_clip)
    wait_done(w)
    w.show_frame()
    view = w.view
    assert view.image.image.shape == (45, 80, 3)  # the view's pixel size, not the frame's
    layers = [view.items[n] for n in ("masks", "contours") if view.items[n].image is not None]
    for item in [view.image, *layers]:
        assert frame_rect(item) == QRectF(0, 0, FW, FH)
        assert item.image.shape[:2] == (45, 80)

    for i in (1, 2, 3):
        w.timeline.set_frame(i)
    assert w.frames.wait_idle()
    assert all(w.frames.is_cached(i, (80, 45)) for i in (4, 5))  # ahead, forward
    w.timeline.set_frame(10)
    w.timeline.set_frame(9)  # stepping back: read ahead backward
    assert w._direction == -1
    assert w.frames.wait_idle()
    assert w.frames.is_cached(8, (80, 45)) and w.frames.is_cached(7, (80, 45))

    zoom[0] = 4 * 80 / FW  # zoomed in: the full frame, layers at full size, same rectangle
    view.view.setRange(xRange=(0, 40), yRange=(0, 22), padding=0)
    qtbot.waitUntil(lambda: view.image.image.shape == (FH, FW, 3), timeout=3000)
    for item in [view.image] + [view.items[n] for n in ("masks", "contours") if view.items[n].image is not None]:
        assert frame_rect(item) == QRectF(0, 0, FW, FH)
        assert item.image.shape[:2] == (FH, FW)
    w.timeline.set_frame(8)  # stepping while zoomed in stays at full size
    assert view.image.image.shape == (FH, FW, 3)
    zoom[0] = 80 / FW
    view.fit()
    qtbot.waitUntil(lambda: view.image.image.shape == (45, 80, 3), timeout=3000)

