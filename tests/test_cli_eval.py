"""``vpp eval``: figures on the real fixtures, zip input, JSON output, and one-line refusals of bad files."""

from __future__ import annotations

import json
import zipfile

import pytest

from core.cli import main

MM_GT = "mmtracking_demo_vis/gt_ytvis.json"
MM_RES = "mmtracking_demo_vis/results.json"


def _run(capsys, *argv):
    code = main(["eval", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_prints_the_table_and_writes_json(shared_data, tmp_path, capsys):
    code, out, err = _run(capsys, "--gt", shared_data / MM_GT, "--results", shared_data / MM_RES,
                          "--json", tmp_path / "figures.json")
    assert code == 0 and err == ""
    row = next(line for line in out.splitlines() if line.startswith("video AP"))
    assert row.split()[3:9] == ["0.650", "1.000", "1.000", "0.650", "-", "-"]
    doc = json.loads((tmp_path / "figures.json").read_text())
    assert doc["figures"]["AP"] == pytest.approx(0.650495, abs=1e-6)
    assert doc["figures"]["AR1"] == pytest.approx(0.35) and doc["area_ranges"] == "ytvis"
    assert "segm_AP" in doc["figures"] and "bbox_AP" in doc["figures"]


def test_eval_accepts_a_results_zip_and_davis_fixture(shared_data, tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "sub.zip", "w") as zf:
        zf.write(shared_data / "davis_car_shadow/pred_ytvis_results.json", "results.json")
    code, out, _ = _run(capsys, "--gt", shared_data / "davis_car_shadow/gt_ytvis.json", "--results",
                        tmp_path / "sub.zip", "--json", tmp_path / "f.json", "--no-frame-metrics",
                        "--area-ranges", "coco")
    assert code == 0 and "frame mAP_bbox" not in out
    figures = json.loads((tmp_path / "f.json").read_text())["figures"]
    assert figures["AP"] == pytest.approx(0.9, abs=5e-4) and figures["APl"] == pytest.approx(0.9, abs=5e-4)


def _bad_results(shared_data, tmp_path):
    good = json.loads((shared_data / MM_RES).read_text())
    text = (shared_data / MM_RES).read_text()
    cases = {}

    def put(name, data, expected):
        path = tmp_path / name
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data if isinstance(data, str) else json.dumps(data))
        cases[name] = (path, expected)

    put("truncated.json", text[: len(text) // 3], "not valid JSON")
    put("schema.json", {"results": good}, "top level: must be a list of results")
    short = json.loads(text)
    short[2]["segmentations"] = short[2]["segmentations"][:5]
    put("lengths.json", short, "[2].segmentations: has 5 entries but the video has 20 frames")
    nan = json.loads(text)
    nan[0]["score"] = float("nan")
    put("nan.json", json.dumps(nan), "[0].score: must be a finite number in [0, 1], got nan")
    unknown = json.loads(text)
    unknown[1]["video_id"] = 2
    put("unknown.json", unknown, "[1].video_id: unknown video id 2")
    huge = json.loads(text)
    huge[3]["category_id"] = 2**64
    put("huge.json", huge, "[3].category_id: id 18446744073709551616 is out of range")
    with zipfile.ZipFile(tmp_path / "noresults.zip", "w") as zf:
        zf.writestr("answer.json", text)
    cases["noresults.zip"] = (tmp_path / "noresults.zip", "the zip must hold exactly one results.json")
    put("empty.json", "", "not valid JSON")
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf, zf.open("results.json", "w") as fh:
        for _ in range(25):  # 100 MiB of spaces in about 100 KiB
            fh.write(b" " * 2**22)
    cases["bomb.zip"] = (tmp_path / "bomb.zip", "[results.json]: declares 100.0 MiB (104857600 bytes) uncompressed "
                         "from a ")
    put("deep.json", "[" * 100_000 + "]" * 100_000, "JSON nested more than 100 levels deep")
    return cases


def test_bad_results_are_refused_in_one_line(shared_data, tmp_path, capsys):
    for name, (path, expected) in _bad_results(shared_data, tmp_path).items():
        code, out, err = _run(capsys, "--gt", shared_data / MM_GT, "--results", path)
        assert code == 2, name
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, name
        assert str(path) in err and expected in err, (name, err)
        assert out == "", name


def test_bad_gt_and_output_paths(shared_data, tmp_path, capsys):
    code, _, err = _run(capsys, "--gt", tmp_path / "none.json", "--results", shared_data / MM_RES)
    assert code == 2 and "none.json: file does not exist" in err
    code, _, err = _run(capsys, "--gt", shared_data / MM_RES, "--results", shared_data / MM_RES)
    assert code == 2 and "results.json: invalid YouTube-VIS ground truth" in err and "top level" in err
    code, _, err = _run(capsys, "--gt", shared_data / MM_GT, "--results", shared_data / MM_RES,
                        "--json", tmp_path / "no" / "f.json")
    assert code == 2 and "f.json: cannot write the figures" in err


def test_oversized_results_and_gt_are_refused_in_one_line(shared_data, tmp_path, capsys, monkeypatch):
    import core.data.ytvis as ytvis

    monkeypatch.setattr(ytvis, "MAX_JSON_BYTES", 50_000)  # the mmtracking results are 60 kB, its GT 10 kB
    code, out, err = _run(capsys, "--gt", shared_data / MM_GT, "--results", shared_data / MM_RES)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert f"{shared_data / MM_RES}: the file is 59.0 KiB (60453 bytes), over the 48.8 KiB (50000 bytes) limit" in err
    monkeypatch.setattr(ytvis, "MAX_JSON_BYTES", 5_000)
    code, _, err = _run(capsys, "--gt", shared_data / MM_GT, "--results", shared_data / MM_RES)
    assert code == 2 and f"{shared_data / MM_GT}: the file is 9.5 KiB (9695 bytes), over the" in err


def test_result_categories_the_gt_lacks_are_ignored_with_one_warning(shared_data, tmp_path, capsys):
    """As the official YouTube-VIS evaluator: results of a category without ground truth change nothing."""
    raw = json.loads((shared_data / "davis_car_shadow/pred_ytvis_results.json").read_text())
    extra = [*raw, {**raw[0], "category_id": 77, "score": 0.5}, {**raw[0], "category_id": 3000, "score": 0.4},
             {**raw[0], "category_id": 77, "score": 0.3}]
    path = tmp_path / "extra.json"
    path.write_text(json.dumps(extra))
    code, out, err = _run(capsys, "--gt", shared_data / "davis_car_shadow/gt_ytvis.json", "--results", path,
                          "--json", tmp_path / "f.json", "--no-frame-metrics")
    assert code == 0 and "video AP" in out
    assert err.count("\n") == 1 and err.startswith("warning: ") and str(path) in err
    assert "3 result track(s) of category id(s) 77, 3000" in err
    assert json.loads((tmp_path / "f.json").read_text())["figures"]["AP"] == pytest.approx(0.9, abs=5e-4)
    # every other check stays: an unknown video still refuses the file
    extra[-1]["video_id"] = 2
    path.write_text(json.dumps(extra))
    code, _, err = _run(capsys, "--gt", shared_data / "davis_car_shadow/gt_ytvis.json", "--results", path)
    assert code == 2 and "unknown video id 2" in err
