"""``core.sweep`` / ``vpp sweep``: figures equal ``vpp eval`` on the same files, schema, order, plot, GT errors.

A tiny untrained model on 5 real DAVIS frames (854x480, model input 128). Ground truth is the real
car-shadow GT cut to those frames, its DAVIS masks, or a GT made from the dense model's own output (so the
figures are not all 0: dense scores AP 1 against it, the pruned configurations less).
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from core import cli
from core.build import make_session
from core.data.sources import open_source
from core.errors import DataError
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import save_checkpoint
from core.model.vpp.config import VPPConfig
from core.resources import load_model
from core.results import ClipResults, CompactFrame
from core.sweep import CSV_COLUMNS, SCHEMA, Cancelled, sweep
from core.sweep_plot import HEIGHT, WIDTH, plot_sweep

N = 5
THR = 0.05  # a low score threshold so the untrained model keeps some instances


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=128, num_queries=8, decoder_layers=2, num_classes=6,
                                categories=("a", "b", "c", "d", "e", "f"))
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_checkpoint(build_vpp(cfg).eval(), cfg, path)
    return path


@pytest.fixture(scope="module")
def clip(shared_data, tmp_path_factory):
    """(frames folder, real GT cut to N frames, DAVIS masks folder of N frames)."""
    root = tmp_path_factory.mktemp("clip")
    frames, masks = root / "frames", root / "masks"
    frames.mkdir()
    masks.mkdir()
    src = shared_data / "davis_car_shadow"
    for f in sorted((src / "frames").iterdir())[:N]:
        shutil.copy(f, frames / f.name)
    for f in sorted((src / "masks").iterdir())[:N]:
        shutil.copy(f, masks / f.name)
    gt = json.loads((src / "gt_ytvis.json").read_text())
    for v in gt["videos"]:
        v["file_names"], v["length"] = v["file_names"][:N], N
    for a in gt["annotations"]:
        for k in ("segmentations", "areas", "bboxes"):
            a[k] = a[k][:N]
    gt_path = root / "gt.json"
    gt_path.write_text(json.dumps(gt))
    return frames, gt_path, masks


def _alone(model_path, frames, pkr, mode):
    """One config run by itself (its own session, no interleaving): the independent recomputation."""
    session = make_session(load_model(model_path), pkr=pkr, mode=mode, score_threshold=THR)
    with open_source(frames) as source:
        out = ClipResults(len(source), source.size[1], source.size[0])
        for i, res in enumerate(session.run_clip(source)):
            out.add(CompactFrame.from_result(res, i))
        return out, list(source.names)


def _self_gt(model_path, frames, path, none_frames=()):
    """A YTVIS GT JSON made of the dense run's own tracks; ``none_frames`` set to None on every track."""
    dense, names = _alone(model_path, frames, 1.0, "dense")
    entries = dense.to_ytvis(1)
    assert entries, "the untrained model found nothing; lower THR"
    anns = []
    for i, e in enumerate(entries):
        segs = [None if t in none_frames else s for t, s in enumerate(e["segmentations"])]
        anns.append({"id": i + 1, "video_id": 1, "category_id": e["category_id"], "iscrowd": 0,
                     "segmentations": segs, "height": dense.height, "width": dense.width, "length": 1})
    gt = {"videos": [{"id": 1, "width": dense.width, "height": dense.height, "length": len(names),
                      "file_names": names}],
          "annotations": anns, "categories": [{"id": k, "name": n} for k, n in enumerate("abcdef", 1)]}
    path.write_text(json.dumps(gt))
    return gt


def _vpp_eval(tmp_path, gt_path, entries, tag, capsys):
    res = tmp_path / f"res_{tag}.json"
    res.write_text(json.dumps(entries))
    out = tmp_path / f"eval_{tag}.json"
    assert cli.main(["eval", "--gt", str(gt_path), "--results", str(res), "--json", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())["figures"]


def _same_figures(row, figures):
    s = row.summary()
    for ours, theirs in (("AP_track", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("AR", "AR10"),
                         ("mAP_bbox", "bbox_AP"), ("mAP_segm", "segm_AP")):
        assert s[ours] == pytest.approx(figures[theirs], abs=1e-12), (row.name, ours)
    assert row.figures == pytest.approx(figures, abs=1e-12)


def test_figures_equal_vpp_eval_of_each_config_run_alone(small_model, clip, tmp_path, capsys):
    frames, _, _ = clip
    gt_path = tmp_path / "self_gt.json"
    _self_gt(small_model, frames, gt_path)
    result = sweep(frames, gt_path, model=load_model(small_model), pkrs=(1.0, 0.55, 0.3), random_baseline=True,
                   score_threshold=THR)
    assert [r.name for r in result.rows] == ["dense", "vpp@0.55", "random@0.55", "vpp@0.3", "random@0.3"]
    for row in result.rows:
        if row.mode == "random":  # random drop draws from torch's RNG: score the sweep's own results
            entries = row.results[1].to_ytvis(1)
        else:  # dense and VPP are deterministic: recompute them in a session of their own
            alone, _ = _alone(small_model, frames, row.pkr, row.mode)
            entries = alone.to_ytvis(1)
            assert entries == row.results[1].to_ytvis(1)
        _same_figures(row, _vpp_eval(tmp_path, gt_path, entries, row.name, capsys))
    dense = result.rows[0]
    assert dense.dense and dense.AP_track == pytest.approx(1.0)
    assert min(r.AP_track for r in result.rows[1:]) < 1.0  # pruning changes the output of the same model
    assert all(r.frames == N and r.ms_per_frame > 0 and r.gflops_per_frame > 0 for r in result.rows)
    assert dense.gflops_per_frame > result.rows[-2].gflops_per_frame  # vpp@0.3 is cheaper
    assert result.rows[-2].keep_ratio == pytest.approx(0.3, abs=0.05)


def test_json_schema_order_csv_and_plot(small_model, clip, tmp_path):
    frames, gt_path, _ = clip
    calls = []
    result = sweep(frames, gt_path, model=load_model(small_model), pkrs=(0.4, 1.0, 0.7), random_baseline=True,
                   progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (5 * N, 5 * N) and len(calls) == 5 * N
    doc = json.loads(result.to_json())
    assert doc["schema"] == SCHEMA == "vpp-sweep/1" and doc["complete"] is True
    assert doc["device"].startswith("cpu (") and "threads" in doc["device"]
    assert doc["model"]["file"] == str(small_model) and len(doc["model"]["sha256"]) == 64
    assert doc["input"] == {"path": str(frames), "kind": "clip", "videos": 1, "frames": N}
    assert doc["gt"]["format"] == "ytvis-gt" and doc["gt"]["annotated_frames"] == N
    rows = doc["rows"]
    assert [r["name"] for r in rows] == ["dense", "vpp@0.7", "random@0.7", "vpp@0.4", "random@0.4"]
    pkrs = [r["pkr"] for r in rows]
    assert pkrs == sorted(pkrs, reverse=True)
    assert [r["dense"] for r in rows] == [True, False, False, False, False]
    for r in rows:
        assert set(CSV_COLUMNS) <= set(r) and "AP" in r["figures"] and "segm_AP" in r["figures"]
        assert r["AP_track"] == r["figures"]["AP"] and r["AR"] == r["figures"]["AR10"]
    lines = result.to_csv().splitlines()
    assert lines[0].split(",") == list(CSV_COLUMNS) and len(lines) == 1 + len(rows)
    assert [ln.split(",")[0] for ln in lines[1:]] == [r["name"] for r in rows]

    png = plot_sweep(result, tmp_path / "sweep.png")
    img = cv2.imread(str(png))
    assert img is not None and img.shape == (HEIGHT, WIDTH, 3)
    assert (img < 250).any(axis=2).mean() > 0.01  # axes, points, labels drawn
    assert (img[..., 0].astype(int) - img[..., 2] > 100).any()  # blue VPP points
    assert (img[..., 2].astype(int) - img[..., 0] > 100).any()  # orange random-drop points
    assert not list(tmp_path.glob("*.tmp*"))


def test_cli_writes_json_csv_plot(small_model, clip, tmp_path, capsys, monkeypatch):
    if "sweep" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "sweep"))
    frames, _, masks = clip
    out = tmp_path / "out"
    out.mkdir()
    code = cli.main(["sweep", str(frames), "--gt", str(masks), "--pkr", "1.0", "0.4", "--no-random",
                     "--model", str(small_model), "--threads", "1", "--json", str(out / "s.json"),
                     "--csv", str(out / "s.csv"), "--plot", str(out / "s.png")])
    err = capsys.readouterr().err
    assert code == 0, err
    doc = json.loads((out / "s.json").read_text())
    assert [r["name"] for r in doc["rows"]] == ["dense", "vpp@0.4"]
    assert doc["gt"]["format"] == "davis" and doc["gt"]["class_agnostic"] is True
    assert doc["device"] == "cpu (1 threads)"
    assert len((out / "s.csv").read_text().splitlines()) == 3
    assert cv2.imread(str(out / "s.png")).shape == (HEIGHT, WIDTH, 3)
    assert f"{2 * N}/{2 * N}" in err  # the progress bar: configs x frames

    # an output onto an input is refused before anything runs, as one error line
    code = cli.main(["sweep", str(frames), "--gt", str(masks), "--json", str(masks / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    missing = tmp_path / "nope.json"
    code = cli.main(["sweep", str(frames), "--gt", str(missing), "--json", str(out / "t.json")])
    err = capsys.readouterr().err
    assert code == 2 and str(missing) in err and not (out / "t.json").exists()


def test_missing_or_mismatched_gt_is_a_data_error_naming_the_file(small_model, clip, shared_data, tmp_path):
    frames, _, _ = clip
    model = load_model(small_model)
    missing = tmp_path / "absent.json"
    with pytest.raises(DataError, match=str(missing)):
        sweep(frames, missing, model=model, pkrs=(1.0,))
    full = shared_data / "davis_car_shadow" / "gt_ytvis.json"  # 40 frames for a 5-frame clip
    with pytest.raises(DataError, match=rf"{full}.*40 frames"):
        sweep(frames, full, model=model, pkrs=(1.0,))
    all_masks = shared_data / "davis_car_shadow" / "masks"
    with pytest.raises(DataError, match=rf"{all_masks}.*40 PNG masks"):
        sweep(frames, all_masks, model=model, pkrs=(1.0,))
    with pytest.raises(DataError, match="ground truth"):
        sweep(frames, None, model=model, pkrs=(1.0,))


def test_sparse_gt_frames_are_not_annotated_not_empty(small_model, clip, tmp_path, capsys):
    frames, _, _ = clip
    gt_path = tmp_path / "sparse.json"
    gt = _self_gt(small_model, frames, gt_path, none_frames=(1, 3))
    result = sweep(frames, gt_path, model=load_model(small_model), pkrs=(1.0, 0.4), random_baseline=False,
                   score_threshold=THR)
    assert result.gt_info["annotated_frames"] == 3 and result.gt_info["not_annotated_frames"] == 2
    # the same figures as vpp eval on the GT and the results holding only the annotated frames 0, 2, 4
    keep = [0, 2, 4]
    cut = json.loads(json.dumps(gt))
    cut["videos"][0]["file_names"] = [cut["videos"][0]["file_names"][t] for t in keep]
    cut["videos"][0]["length"] = len(keep)
    for a in cut["annotations"]:
        a["segmentations"] = [a["segmentations"][t] for t in keep]
    cut["annotations"] = [a for a in cut["annotations"] if any(s is not None for s in a["segmentations"])]
    cut_path = tmp_path / "cut.json"
    cut_path.write_text(json.dumps(cut))
    for row in result.rows:
        alone, _ = _alone(small_model, frames, row.pkr, row.mode)
        entries = [{**e, "segmentations": [e["segmentations"][t] for t in keep]} for e in alone.to_ytvis(1)]
        entries = [e for e in entries if any(s is not None for s in e["segmentations"])]
        _same_figures(row, _vpp_eval(tmp_path, cut_path, entries, f"sparse_{row.name}", capsys))
    # not "empty": dense matches its own tracks exactly on the annotated frames; had frames 1 and 3 been
    # scored as empty, its masks there would count against it
    assert result.rows[0].AP_track == pytest.approx(1.0)
    dense_alone, _ = _alone(small_model, frames, 1.0, "dense")
    as_empty = _vpp_eval(tmp_path, gt_path, dense_alone.to_ytvis(1), "as_empty", capsys)
    assert as_empty["AP"] < 1.0


def test_stop_raises_cancelled(small_model, clip):
    frames, gt_path, _ = clip
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        sweep(frames, gt_path, model=load_model(small_model), pkrs=(1.0, 0.5), warmup=0, stop=stop)
    assert len(calls) == 4


def test_dense_annotation_of_davis_folder_counts_every_frame(small_model, clip):
    frames, _, masks = clip
    result = sweep(frames, masks, model=load_model(small_model), pkrs=(1.0,), random_baseline=False,
                   score_threshold=THR)
    assert result.gt_info["annotated_frames"] == N and result.gt_info["class_agnostic"] is True
    assert np.isfinite(result.rows[0].AP_track)
