"""DAVIS indexed PNG masks: palette writing, reading palette/grey/RGB PNGs, label maps from tracks.

Folder exports (one PNG per frame, all or nothing) are core.export's; see tests/test_export.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from core.data.davis import (
    davis_palette,
    labels_to_masks,
    read_davis_folder,
    read_davis_png,
    tracks_to_labels,
    write_davis_png,
)
from core.data.rle import decode_rle, encode_mask
from core.errors import DataError


def test_palette_png_round_trip(tmp_path):
    labels = np.random.default_rng(0).integers(0, 6, (20, 30)).astype(np.uint8)
    write_davis_png(tmp_path / "m.png", labels)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "P"
        pal = np.array(im.getpalette()[:18]).reshape(6, 3)
    assert pal[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    np.testing.assert_array_equal(pal, davis_palette()[:6])
    np.testing.assert_array_equal(read_davis_png(tmp_path / "m.png"), labels)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]  # no temporary file left


def test_fixture_pngs_match_the_ytvis_masks(shared_data):
    gt = json.loads((shared_data / "davis_car_shadow/gt_ytvis.json").read_text())["annotations"][0]
    pred = json.loads((shared_data / "davis_car_shadow/pred_ytvis_results.json").read_text())[0]
    names, gt_labels = read_davis_folder(shared_data / "davis_car_shadow/masks")  # grey 0/255
    _, pred_labels = read_davis_folder(shared_data / "davis_car_shadow/pred_masks")  # palette 0/1
    assert names[:3] == ["00000.png", "00001.png", "00002.png"] and gt_labels.shape == (40, 480, 854)
    assert set(np.unique(gt_labels)) == {0, 1} and set(np.unique(pred_labels)) == {0, 1}
    for t in (0, 17, 39):
        np.testing.assert_array_equal(gt_labels[t] == 1, decode_rle(gt["segmentations"][t]))
        np.testing.assert_array_equal(pred_labels[t] == 1, decode_rle(pred["segmentations"][t]))


def test_label_maps_from_tracks_earlier_objects_win_overlaps(tmp_path):
    h, w = 10, 12
    a = np.zeros((h, w), bool)
    a[2:6, 2:6] = True
    b = np.zeros((h, w), bool)
    b[4:8, 4:8] = True
    tracks = [[encode_mask(a), None, a], [b, b, None]]  # RLEs, bool masks and absent frames mixed
    for t in range(3):
        write_davis_png(tmp_path / f"{t:05d}.png", tracks_to_labels([tr[t] for tr in tracks], h, w))
    names, labels = read_davis_folder(tmp_path)
    assert names == ["00000.png", "00001.png", "00002.png"]
    assert labels[0][5, 5] == 1 and labels[0][7, 7] == 2 and labels[0][2, 2] == 1
    np.testing.assert_array_equal(labels[1] == 2, b)
    np.testing.assert_array_equal(labels[2] == 1, a)
    masks = labels_to_masks(labels)
    assert masks.shape == (2, 3, h, w)
    with pytest.raises(ValueError, match="not 12x10"):
        tracks_to_labels([np.zeros((3, 3), bool)], h, w)
    with pytest.raises(ValueError, match="at most 255 objects"):
        tracks_to_labels([None] * 256, h, w)


def test_rgb_and_bad_pngs(tmp_path):
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    Image.fromarray(davis_palette()[labels]).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_davis_png(tmp_path / "rgb.png"), labels)
    Image.fromarray(np.full((2, 2, 3), 77, np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(DataError, match=r"odd\.png: colour \(77, 77, 77\) is not in the DAVIS palette"):
        read_davis_png(tmp_path / "odd.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"bad\.png: not a readable PNG mask"):
        read_davis_png(tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"gone\.png: mask file does not exist"):
        read_davis_png(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"nope/m\.png: cannot write the mask"):
        write_davis_png(tmp_path / "nope" / "m.png", labels)
