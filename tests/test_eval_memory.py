"""Issue 25, item 13: ``vpp eval`` / ``vpp sweep`` memory follows the categories that occur, not the file's list.

A ground truth listing 10^5 categories (3 MB) with one annotated track made ``vpp eval`` allocate
precision arrays of 10 x 101 x 10^5 x 4 x 3 float64 (11 GB). Each check runs in a child process whose
address space is capped (RLIMIT_AS), so the old code fails with "not enough memory" instead of
swapping the machine.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data.rle import encode_mask

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1 << 30  # 1 GiB of address space: the old code needed 11 GB, the new one about 0.1 GB
CATEGORIES = 100_000


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def _files(tmp: Path) -> tuple[Path, Path]:
    m = np.zeros((8, 8), bool)
    m[2:5, 2:5] = True
    rle = encode_mask(m)
    gt = {"videos": [{"id": 1, "width": 8, "height": 8, "length": 2, "file_names": ["a/0.jpg", "a/1.jpg"]}],
          "categories": [{"id": i, "name": f"c{i}"} for i in range(1, CATEGORIES + 1)],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 77_777, "iscrowd": 0, "segmentations": [rle, rle],
                           "areas": [9, 9], "bboxes": [[2, 2, 3, 3]] * 2}]}
    res = [{"video_id": 1, "category_id": 77_777, "score": 0.9, "segmentations": [rle, rle]},
           {"video_id": 1, "category_id": 5, "score": 0.8, "segmentations": [rle, None]}]  # a false positive
    (tmp / "gt.json").write_text(json.dumps(gt))
    (tmp / "res.json").write_text(json.dumps(res))
    return tmp / "gt.json", tmp / "res.json"


def _child(code: str, *args: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, preexec_fn=_capped)


EVAL = """
import argparse, json, sys
from core.commands import eval as ev
code = ev.run(argparse.Namespace(gt=sys.argv[1], results=sys.argv[2], json_out=sys.argv[3], area_ranges="ytvis",
                                 no_frame_metrics=False))
sys.exit(code)
"""

SWEEP_SCORE = """
import json, sys
from core.evaluation.ground_truth import load_ground_truth, restricted_gt_json, restricted_results, score
gt = load_ground_truth(sys.argv[1], num_frames=2, height=8, width=8, names=["0.jpg", "1.jpg"])
entries = restricted_results(json.load(open(sys.argv[2])), gt.annotated)
figures = score(restricted_gt_json([gt], {e["category_id"] for e in entries}), entries)
print(json.dumps(figures))
"""


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS")
def test_vpp_eval_with_a_hundred_thousand_categories_stays_small(tmp_path):
    gt, res = _files(tmp_path)
    out = tmp_path / "figures.json"
    proc = _child(EVAL, gt, res, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())["figures"]
    # one category with ground truth, found perfectly; the false positive's category has none (left out)
    assert figures["AP"] == pytest.approx(1.0) and figures["segm_AP"] == pytest.approx(1.0)
    assert figures["APm"] == -1 and figures["bbox_APl"] == -1


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS")
def test_sweep_scoring_with_a_hundred_thousand_categories_stays_small(tmp_path):
    gt, res = _files(tmp_path)
    proc = _child(SWEEP_SCORE, gt, res)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["AP"] == pytest.approx(1.0) and figures["bbox_AP"] == pytest.approx(1.0)


def test_running_means_equal_the_full_array_means():
    """SummaryMeans gives np.mean over the valid entries of the stacked arrays (what summarize does)."""
    from core.evaluation.means import SummaryMeans

    rng = np.random.default_rng(3)
    cats = [rng.choice([-1.0, 0.0, 0.25, 0.5, 1.0], size=(10, 101, 4, 3)) for _ in range(5)]
    recs = [rng.choice([-1.0, 0.0, 0.5, 1.0], size=(10, 4, 3)) for _ in range(5)]
    means = SummaryMeans([0], [5])
    for p, r in zip(cats, recs):
        means.add(p, r)
    got = means.figures()
    precision, recall = np.stack(cats, axis=2), np.stack(recs, axis=1)

    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    assert got["AP"] == pytest.approx(mean(precision[..., 0, 2]), abs=1e-12)
    assert got["AP75"] == pytest.approx(mean(precision[5, ..., 0, 2]), abs=1e-12)
    assert got["APm"] == pytest.approx(mean(precision[..., 2, 2]), abs=1e-12)
    assert got["AR10"] == pytest.approx(mean(recall[..., 0, 1]), abs=1e-12)
    assert got["ARl"] == pytest.approx(mean(recall[..., 3, 2]), abs=1e-12)
    assert SummaryMeans([], []).figures()["AP"] == -1


def test_a_track_of_more_than_255_frames_is_evaluated():
    """pycocotools' ``area`` overflows on lists of more than 255 RLEs (NumPy 2); eval slices its calls."""
    from core.data.rle import rle_areas
    from core.data.ytvis import parse_ytvis_gt, parse_ytvis_results
    from core.evaluation.ytvis_eval import evaluate

    m = np.zeros((8, 8), bool)
    m[2:5, 2:5] = True
    rle, frames = encode_mask(m), 300
    gt = parse_ytvis_gt({"videos": [{"id": 1, "width": 8, "height": 8, "length": frames,
                                     "file_names": [f"a/{i}.jpg" for i in range(frames)]}],
                         "categories": [{"id": 1, "name": "x"}],
                         "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                                          "segmentations": [rle] * frames}]})
    res = parse_ytvis_results([{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [rle] * frames}], gt)
    figures = evaluate(gt, res)
    assert figures["AP"] == pytest.approx(1.0) and figures["segm_AP"] == pytest.approx(1.0)
    assert rle_areas([rle] * 600).tolist() == [9] * 600
