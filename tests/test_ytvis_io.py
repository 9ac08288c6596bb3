"""YouTube-VIS reading, validation and atomic writing (ground truth, results, zip, RLE helpers)."""

from __future__ import annotations

import copy
import json
import math
import zipfile

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from ytvis_factories import dump, gt_dict, results_list

from core.data.categories import category_names, ytvis_categories
from core.data.errors import YtvisReadError, YtvisValidationError, YtvisWriteError
from core.data.rle import counts_problems, decode_rle, encode_mask, encode_masks, to_compressed
from core.data.ytvis import (
    YtvisResult,
    gt_to_json,
    read_ytvis_gt,
    read_ytvis_results,
    results_to_json,
    write_results,
    write_ytvis_gt,
    write_ytvis_results,
)
from core.errors import DataError

FIXTURES = [("mmtracking_demo_vis/gt_ytvis.json", "mmtracking_demo_vis/results.json"),
            ("davis_car_shadow/gt_ytvis.json", "davis_car_shadow/pred_ytvis_results.json")]


@pytest.mark.parametrize(("gt_name", "res_name"), FIXTURES)
def test_fixture_round_trip_is_lossless(shared_data, tmp_path, gt_name, res_name):
    original = json.loads((shared_data / gt_name).read_text())
    gt = read_ytvis_gt(shared_data / gt_name)
    write_ytvis_gt(tmp_path / "gt.json", gt)
    assert json.loads((tmp_path / "gt.json").read_text()) == original
    assert read_ytvis_gt(tmp_path / "gt.json") == gt
    results = read_ytvis_results(shared_data / res_name, gt)
    write_ytvis_results(tmp_path / "res.json", results, gt=gt)
    assert json.loads((tmp_path / "res.json").read_text()) == json.loads((shared_data / res_name).read_text())


def test_unknown_keys_survive(tmp_path):
    data = gt_dict()
    data["custom_top"] = {"a": 1}
    data["videos"][0]["source"] = "camera 3"
    data["annotations"][0]["note"] = [1, 2]
    data["categories"][0]["color"] = [1, 2, 3]
    data["categories"][1]["supercategory"] = "thing"
    gt = read_ytvis_gt(dump(tmp_path / "in.json", data))
    assert gt.extra == {"custom_top": {"a": 1}} and gt.videos[0].extra == {"source": "camera 3"}
    write_ytvis_gt(tmp_path / "out.json", gt)
    assert json.loads((tmp_path / "out.json").read_text()) == data
    res = results_list(data)
    res[0]["tag"] = "x"
    results = read_ytvis_results(dump(tmp_path / "r.json", res), gt)
    assert results_to_json(results) == res


def test_uncompressed_rle_is_converted(tmp_path):
    rng = np.random.default_rng(1)
    mask = rng.random((20, 30)) > 0.6
    flat = mask.flatten(order="F").astype(int)
    change = np.flatnonzero(np.diff(np.concatenate(([0], flat, [1 - flat[-1]]))))
    counts = np.diff(np.concatenate(([0], change))).tolist()  # runs starting with zeros
    data = gt_dict()
    data["annotations"][0]["segmentations"][1] = {"size": [20, 30], "counts": counts}
    gt = read_ytvis_gt(dump(tmp_path / "u.json", data))
    seg = gt.annotations[0].segmentations[1]
    assert isinstance(seg["counts"], str)
    np.testing.assert_array_equal(decode_rle(seg), mask)


def test_rle_helpers_round_trip():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 13, 17)) > 0.5
    masks[0] = False
    rles = encode_masks(masks)
    assert all(r == encode_mask(m) for r, m in zip(rles, masks))
    for r, m in zip(rles, masks):
        assert isinstance(r["counts"], str) and r["size"] == [13, 17]
        np.testing.assert_array_equal(decode_rle(r), m)
    assert counts_problems(rles) == [None] * 5


def test_counts_check_finds_each_defect():
    rng = np.random.default_rng(2)
    good = encode_masks(rng.random((3, 11, 9)) > 0.5)
    short = dict(good[0], counts=good[0]["counts"][:-1])
    long_ = dict(good[1], counts=good[1]["counts"] + "1")
    wrong_size = dict(good[2], size=[11, 8])
    cut = {"size": [2, 2], "counts": "0"}  # "0" ends a number; "P" (bit 0x20 set) would continue it
    cut_mid = {"size": [2, 2], "counts": "P"}
    found = counts_problems([short, long_, wrong_size, *good, cut, cut_mid])
    assert "not height*width" in found[0] and "not height*width" in found[1] and "= 88" in found[2]
    assert found[3:6] == [None, None, None]
    assert "not height*width" in found[6]
    assert "middle of a number" in found[7]
    # the vectorised decoder agrees with pycocotools on the total of a valid RLE
    for r in good:
        assert mask_utils.decode({"size": r["size"], "counts": r["counts"].encode()}).shape == (11, 9)


def test_to_compressed_refuses_bad_forms():
    for bad in ({"size": [2, 2]}, {"size": [2], "counts": "0"}, {"size": [2, 2], "counts": 3},
                {"size": [2, 2], "counts": [1, 2]}, {"size": [2, 2], "counts": "ä"}, "rle"):
        with pytest.raises(ValueError):
            to_compressed(bad)


def _problem(tmp_path, data, *, gt=None, kind="results"):
    path = dump(tmp_path / "bad.json", data)
    with pytest.raises(YtvisValidationError) as info:
        if kind == "results":
            read_ytvis_results(path, gt)
        else:
            read_ytvis_gt(path)
    msg = str(info.value)
    assert str(path) in msg
    return msg


def _gt(tmp_path):
    return read_ytvis_gt(dump(tmp_path / "gt.json", gt_dict()))


@pytest.mark.parametrize("score", [math.nan, math.inf, -0.1, 1.5, "0.5", True, None])
def test_bad_scores_are_refused(tmp_path, score):
    gt = _gt(tmp_path)
    res = results_list(gt_dict())
    res[1]["score"] = score
    assert "[1].score" in _problem(tmp_path, res, gt=gt)


def test_result_problems_name_json_paths(tmp_path):
    gt = _gt(tmp_path)
    base = results_list(gt_dict())
    cases = []
    r = copy.deepcopy(base)
    r[0]["segmentations"] = r[0]["segmentations"][:2]
    cases.append((r, "[0].segmentations: has 2 entries but the video has 3 frames"))
    r = copy.deepcopy(base)
    r[1]["video_id"] = 7
    cases.append((r, "[1].video_id: unknown video id 7"))
    r = copy.deepcopy(base)
    r[0]["category_id"] = 9
    cases.append((r, "[0].category_id: unknown category id 9"))
    r = copy.deepcopy(base)
    r[0]["video_id"] = 10**20
    cases.append((r, "[0].video_id: id 100000000000000000000 is out of range"))
    r = copy.deepcopy(base)
    r[0]["video_id"] = "1"
    cases.append((r, "[0].video_id: must be an integer"))
    r = copy.deepcopy(base)
    r[0]["segmentations"][2] = encode_mask(np.ones((10, 30), bool))
    cases.append((r, "[0].segmentations[2]: RLE size [10, 30] differs from the video's [height, width] [20, 30]"))
    r = copy.deepcopy(base)
    r[0]["segmentations"][1] = dict(r[0]["segmentations"][1], counts=r[0]["segmentations"][1]["counts"][:-2])
    cases.append((r, "[0].segmentations[1]: undecodable RLE"))
    r = copy.deepcopy(base)
    r[1]["segmentations"] = "none"
    cases.append((r, "[1].segmentations: must be a list"))
    r = copy.deepcopy(base)
    del r[0]["category_id"]
    cases.append((r, "[0]: missing 'category_id'"))
    cases.append(({"annotations": []}, "top level: must be a list of results"))
    cases.append(([3], "[0]: must be an object"))
    for data, expected in cases:
        assert expected in _problem(tmp_path, data, gt=gt)


def test_gt_problems_name_json_paths(tmp_path):
    cases = []
    d = gt_dict()
    d["videos"].append(copy.deepcopy(d["videos"][0]))
    cases.append((d, "videos[1].id: duplicate video id 1"))
    d = gt_dict()
    d["annotations"][1]["id"] = 1
    cases.append((d, "annotations[1].id: duplicate annotation id 1"))
    d = gt_dict()
    d["categories"][1]["id"] = 1
    cases.append((d, "categories[1].id: duplicate category id 1"))
    d = gt_dict()
    d["annotations"][0]["segmentations"].append(None)
    cases.append((d, "annotations[0].segmentations: has 4 entries but the video has 3 frames"))
    d = gt_dict()
    d["annotations"][0]["category_id"] = 5
    cases.append((d, "annotations[0].category_id: unknown category id 5"))
    d = gt_dict()
    d["annotations"][1]["video_id"] = 2
    cases.append((d, "annotations[1].video_id: unknown video id 2"))
    d = gt_dict()
    d["videos"][0]["length"] = 5
    cases.append((d, "videos[0].length: is 5 but file_names lists 3 frames"))
    d = gt_dict()
    d["videos"][0]["height"] = 0
    cases.append((d, "videos[0].height: must be an integer"))
    d = gt_dict()
    d["annotations"][0]["areas"][0] = -3
    cases.append((d, "annotations[0].areas[0]: must be null or a number >= 0"))
    d = gt_dict()
    d["annotations"][0]["bboxes"][1] = [0, 0, 1]
    cases.append((d, "annotations[0].bboxes[1]: must be null or [x, y, w, h]"))
    d = gt_dict()
    d["annotations"][0]["iscrowd"] = 2
    cases.append((d, "annotations[0].iscrowd: must be 0 or 1"))
    d = gt_dict()
    d["categories"][0]["id"] = True
    cases.append((d, "categories[0].id: must be an integer"))
    d = gt_dict()
    del d["videos"]
    cases.append((d, "videos: missing"))
    cases.append(([], "top level: must be an object"))
    for data, expected in cases:
        assert expected in _problem(tmp_path, data, kind="gt")


def test_many_problems_are_summarised(tmp_path):
    gt = _gt(tmp_path)
    res = [dict(r, score=-1.0) for r in results_list(gt_dict()) * 6]
    with pytest.raises(YtvisValidationError) as info:
        read_ytvis_results(dump(tmp_path / "many.json", res), gt)
    assert len(info.value.problems) == 12 and "... and 4 more" in str(info.value)


def test_unreadable_files(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(YtvisReadError, match=r"nope\.json: file does not exist"):
        read_ytvis_gt(missing)
    text = json.dumps(gt_dict())
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(YtvisReadError, match=r"cut.json: not valid JSON .* truncated"):
        read_ytvis_gt(tmp_path / "cut.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(YtvisReadError, match=r"bin\.json"):
        read_ytvis_results(tmp_path / "bin.json")
    with pytest.raises(YtvisReadError, match="is a folder"):
        read_ytvis_gt(tmp_path)
    assert issubclass(YtvisReadError, DataError) and issubclass(YtvisValidationError, DataError)


def test_results_zip_round_trip_and_bad_zips(tmp_path):
    gt = _gt(tmp_path)
    results = read_ytvis_results(dump(tmp_path / "r.json", results_list(gt_dict())), gt)
    write_ytvis_results(tmp_path / "sub.zip", results, gt=gt)
    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        assert zf.namelist() == ["results.json"]
    assert read_ytvis_results(tmp_path / "sub.zip", gt) == results
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("preds.json", "[]")
    with pytest.raises(YtvisReadError, match=r"other.zip: the zip must hold exactly one results.json \(found none\)"):
        read_ytvis_results(tmp_path / "other.zip", gt)
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(YtvisReadError, match=r"junk\.zip: not a readable zip"):
        read_ytvis_results(tmp_path / "junk.zip", gt)
    with zipfile.ZipFile(tmp_path / "nested.zip", "w") as zf:
        zf.writestr("out/results.json", json.dumps([{"video_id": 1}]))
    with pytest.raises(YtvisValidationError, match=r"nested.zip \[out/results.json\].*\[0\]: missing 'category_id'"):
        read_ytvis_results(tmp_path / "nested.zip", gt)


def test_writes_are_atomic_and_validated(tmp_path):
    gt = _gt(tmp_path)
    target = tmp_path / "res.json"
    target.write_text("old")
    bad = [YtvisResult(1, 1, math.nan, gt.annotations[0].segmentations)]
    with pytest.raises(YtvisWriteError, match=r"res.json: refusing to write invalid results: \[0\].score"):
        write_ytvis_results(target, bad, gt=gt)
    with pytest.raises(YtvisWriteError, match=r"res\.json"):
        write_results(target, [{"video_id": 1, "category_id": 1, "score": 2.0,
                                "segmentations": [None, None, None]}])
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.json", "res.json"]
    with pytest.raises(YtvisWriteError, match=r"missing/r\.json: cannot write"):
        write_ytvis_results(tmp_path / "missing" / "r.json", [], gt=gt)
    good = [r.to_json() for r in read_ytvis_results(dump(tmp_path / "in.json", results_list(gt_dict())), gt)]
    write_results(target, good, zip_path=tmp_path / "res.zip", gt=gt)
    assert json.loads(target.read_text()) == good
    assert read_ytvis_results(tmp_path / "res.zip", gt) == read_ytvis_results(target, gt)


def test_gt_writer_refuses_inconsistent_data(tmp_path):
    gt = _gt(tmp_path)
    data = gt_to_json(gt)
    data["annotations"][0]["segmentations"] = data["annotations"][0]["segmentations"][:1]
    from core.data.ytvis import parse_ytvis_gt

    with pytest.raises(YtvisValidationError, match="<memory>"):
        parse_ytvis_gt(data)
    broken = type(gt)(gt.videos, (*gt.annotations, gt.annotations[0]), gt.categories)
    with pytest.raises(YtvisWriteError, match="duplicate annotation id"):
        write_ytvis_gt(tmp_path / "dup.json", broken)
    assert not (tmp_path / "dup.json").exists()


def test_categories(shared_data):
    c19, c21 = category_names(2019), category_names("2021")
    assert len(c19) == len(c21) == 40
    assert c19[6] == "sedan" and "car" not in c19.values() and c21[5] == "car"
    ann = json.loads((shared_data / "mmtracking_demo_vis/ann.json").read_text())
    assert {c["id"]: c["name"] for c in ann["categories"]} == c19
    shipped = json.loads((shared_data / "ytvis_categories.json").read_text())
    assert [(c.id, c.name) for c in ytvis_categories(2021)] == [(c["id"], c["name"]) for c in shipped["ytvis2021"]]
    with pytest.raises(ValueError, match="2019, 2021"):
        ytvis_categories("2020")


def test_readers_keep_parsed_rles_but_parse_copies_the_callers(tmp_path):
    """Reading keeps the RLE dicts it parsed (no second copy of every mask); the public parse_* functions
    copy theirs, so a caller's later change to its dicts cannot reach the frozen results."""
    from core.data.ytvis import parse_ytvis_gt, parse_ytvis_results

    gt = _gt(tmp_path)
    data = results_list(gt_dict())
    parsed = parse_ytvis_results(data, gt)
    data[0]["segmentations"][0]["counts"] = "0"
    assert parsed[0].segmentations[0]["counts"] != "0"
    gt_data = gt_dict()
    parsed_gt = parse_ytvis_gt(gt_data)
    gt_data["annotations"][0]["segmentations"][0]["size"][0] = 1
    assert parsed_gt.annotations[0].segmentations[0]["size"] == [20, 30]
    assert read_ytvis_results(dump(tmp_path / "r.json", results_list(gt_dict())), gt) == parse_ytvis_results(
        results_list(gt_dict()), gt)
    assert read_ytvis_gt(dump(tmp_path / "g.json", gt_dict())) == gt
