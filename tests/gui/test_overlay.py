"""vpp_gui.overlay: pure NumPy layers; the token grid maps back onto the frame like core.preprocess."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core.preprocess import prepare_frame
from core.results import CompactFrame
from vpp_gui import overlay


def frame_with(masks, track_ids, scores, kept=None, h=40, w=60):
    r = SimpleNamespace(index=0, track_ids=np.array(track_ids), category_ids=np.ones(len(track_ids), int),
                        scores=np.array(scores, np.float32), masks=np.array(masks, bool).reshape(-1, h, w),
                        kept=np.ones((4, 3, 4), bool) if kept is None else kept, stage_names=("a", "b", "c", "d"),
                        keep_ratio=1.0, gflops=1.0, ms=1.0)
    return CompactFrame.from_result(r)


def test_instance_map_puts_higher_scores_on_top_and_colours_are_stable():
    a = np.zeros((40, 60), bool)
    a[5:30, 5:40] = True
    b = np.zeros((40, 60), bool)
    b[20:35, 30:55] = True
    f = frame_with([a, b], [3, 11], [0.4, 0.9])
    ids = overlay.instance_map(f)
    assert ids[25, 35] == 2 and ids[10, 10] == 1 and ids[0, 0] == 0
    rgba = overlay.render_masks(ids, f)
    assert rgba.shape == (40, 60, 4) and tuple(rgba[10, 10, :3]) == overlay.track_color(3)
    assert rgba[0, 0, 3] == 0 and rgba[10, 10, 3] == 255
    assert overlay.track_color(3) == overlay.track_color(3) != overlay.track_color(4)
    edges = overlay.render_contours(ids, f, thickness=1)
    assert edges[5, 10, 3] == 255 and edges[15, 20, 3] == 0  # border pixel drawn, interior not


@pytest.mark.parametrize(("h", "w", "long_side", "patch"), [(40, 60, 48, 16), (480, 854, 256, 16), (50, 100, 72, 16),
                                                            (721, 1281, 640, 16), (100, 37, 64, 8)])
def test_heatmap_geometry_matches_the_model_input(h, w, long_side, patch):
    _, geom = prepare_frame(np.zeros((h, w, 3), np.uint8), long_side, patch)
    assert overlay.resized_size(h, w, long_side) == geom.resized_hw
    gh, gw = geom.padded_hw[0] // patch, geom.padded_hw[1] // patch
    rh, rw = geom.resized_hw
    rng = np.random.default_rng(0)
    kept = rng.random((4, gh, gw)) > 0.5
    heat = overlay.render_heatmap(kept, 1, h, w, long_side=long_side, patch=patch)
    assert heat.shape == (h, w, 4)
    lut = overlay.heat_lut(1)
    for y, x in [(0, 0), (h - 1, w - 1), (h // 2, w // 3), (h - 1, 0)]:
        ty, tx = int((y + 0.5) * rh / h) // patch, int((x + 0.5) * rw / w) // patch
        assert ty < gh and tx < gw
        assert tuple(heat[y, x]) == tuple(lut[int(kept[1, ty, tx])])
    depth = overlay.render_heatmap(kept, overlay.DEPTH_STAGE, h, w, long_side=long_side, patch=patch)
    assert depth.shape == (h, w, 4)


def test_pruned_tokens_are_darker_than_kept_ones():
    lut = overlay.heat_lut(4)
    assert lut[0, 3] > lut[4, 3]  # pruned first = most opaque
    assert lut[0, :3].sum() < lut[4, :3].sum()


def test_labels_and_layers_and_composite():
    a = np.zeros((40, 200), bool)
    a[10:20, 10:20] = True
    b = a.copy()
    f = frame_with([a, b], [1, 2], [0.9, 0.5], w=200)
    labs = overlay.labels(f, {1: "car"})
    assert labs[0].text == "car #1 0.90" and (labs[0].x, labs[0].y) == (10.0, 10.0)  # no room above: on the top
    assert labs[1].y > labs[0].y  # same place: moved down a line
    layers = overlay.render_layers(f, stage=overlay.DEPTH_STAGE, long_side=48, patch=16, names={1: "car"})
    assert layers.masks is not None and layers.contours is not None and layers.heatmap is not None
    off = overlay.render_layers(f, masks=False, contours=False, heatmap=False, labels_on=False)
    assert off.masks is None and off.heatmap is None and off.labels is None
    rgb = np.full((40, 200, 3), 100, np.uint8)
    out = overlay.composite(rgb, layers)
    assert out.shape == rgb.shape and not np.array_equal(out[15, 15], rgb[15, 15])


def test_empty_frame_renders_heatmap_only():
    f = frame_with(np.zeros((0, 40, 60)), [], [])
    layers = overlay.render_layers(f, long_side=48, patch=16)
    assert layers.masks is None and layers.heatmap is not None and layers.labels == []


def test_rle_runs_match_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (7, 5), (40, 60), (97, 131)]:
        for density in (0.0, 0.05, 0.5, 0.97, 1.0):
            m = rng.random((h, w)) < density
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            runs = overlay.rle_runs(rle["counts"])
            flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool)
            assert np.array_equal(flat, m.ravel(order="F"))
            assert np.array_equal(overlay.rle_runs(rle["counts"].decode("ascii")), runs)


def _box_distance(lab, line, box):
    """Distance between a label's rectangle (x, y, its width, one line) and a box x, y, w, h."""
    bx, by, bw, bh = box
    dx = max(bx - (lab.x + lab.width), 0.0, lab.x - (bx + bw))
    dy = max(by - (lab.y + line), 0.0, lab.y - (by + bh))
    return float(np.hypot(dx, dy))


@pytest.mark.parametrize("where", ["top-left", "bottom", "right edge", "scattered"])
def test_labels_stay_next_to_their_masks(where):
    """Each label within 4 label lines of its own mask's box, inside the frame (issue 12: labels were drawn far
    from their masks and stacked at the frame edge)."""
    h, w = 300, 400
    rng = np.random.default_rng(3)
    masks = []
    for i in range(10):
        m = np.zeros((h, w), bool)
        if where == "top-left":  # ten instances sharing a corner: stacked ten lines down before
            m[10:30 + i, 10:30 + i] = True
        elif where == "bottom":
            m[h - 20:h, 40 * i:40 * i + 30] = True
        elif where == "right edge":
            m[20 * i:20 * i + 15, w - 12:w] = True
        else:
            y, x = rng.integers(0, h - 30), rng.integers(0, w - 30)
            m[y:y + 30, x:x + 30] = True
        masks.append(m)
    f = frame_with(masks, list(range(1, 11)), np.linspace(0.9, 0.3, 10), h=h, w=w)
    labs = overlay.labels(f)
    line = overlay.label_line(h)
    boxes = f.bboxes()
    assert len(labs) == 10
    by_track = {int(t): k for k, t in enumerate(f.track_ids)}
    for lab in labs:
        k = by_track[int(lab.text.split("#")[1].split()[0])]
        assert _box_distance(lab, line, boxes[k]) <= 3 * line, (lab, boxes[k])
        assert lab.x >= 0 and lab.x + lab.width <= w and 0 <= lab.y <= h - line
        assert 0 < lab.width < w
    spots = {(round(lab.x), round(lab.y)) for lab in labs}
    # stacked near their masks, not piled at one place (ten boxes sharing a corner fill the four places near it)
    assert len(spots) >= (4 if where == "top-left" else 8)


def test_label_sits_on_the_mask_top_not_on_its_box_corner():
    ring = np.zeros((80, 400), bool)
    ring[20:70, 30:80] = True
    ring[30:60, 40:70] = False
    diagonal = np.zeros((80, 400), bool)
    for i in range(40):
        diagonal[30 + i, 250 - 2 * i: 252 - 2 * i] = True  # top-most pixel at the right, box corner empty
    f = frame_with([ring, diagonal], [1, 2], [0.9, 0.8], h=80, w=400)
    labs = {lab.text.split()[2]: lab for lab in overlay.labels(f)}
    line = overlay.label_line(80)
    assert (labs["#1"].x, labs["#1"].y) == (30.0, 20.0 - line)  # just above the ring's top row
    assert (labs["#2"].x, labs["#2"].y) == (250.0, 30.0 - line)  # above its top pixel, not at the box's x 172
    assert overlay.mask_top(f.rles[1]["counts"], 80) == (250, 30)
