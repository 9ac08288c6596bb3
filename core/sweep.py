"""The PKR sweep: accuracy and speed of dense, VPP at several PKRs and a random-drop baseline on labelled clips.

One code path for ``vpp sweep`` and the app's sweep panel::

    from core.sweep import sweep
    result = sweep("clip/frames", "clip/gt_ytvis.json", model=load_model("m.safetensors"))
    result.rows            # SweepRow per configuration, PKR descending (dense first)
    text = result.to_json(); table = result.to_csv()
    core.sweep_plot.plot_sweep(result, "sweep.png")

Configurations: "dense" (PKR 1.0, mode dense, ``dense=True``), "vpp@p" for every PKR p < 1 and, with
``random_baseline``, "random@p" (random token drop at the same keep fractions). A PKR of 1.0 in ``pkrs`` is
the dense row (VPP at 1.0 keeps every token). Rows are ordered by PKR, descending; at one PKR vpp comes
before random.

How it runs. Every configuration has its own session over the one model (``make_session``: its own PKR, mode
and clip state); each clip runs from its first frame (sessions reset), and the configurations are interleaved
frame by frame (each frame goes through every configuration before the next frame is read, the order rotated
by one per frame), so all speed figures come from the same run on the same machine and device (``device``
label, e.g. "cpu (8 threads)" or the CUDA device name). ``warmup`` untimed frames per configuration run first
(the clip's first frame; the sessions are then reset). Speed: ``ms_per_frame`` = median of the sessions'
per-frame wall-clock ``FrameResult.ms`` (model and post-processing), ``gflops_per_frame`` = mean analytic
GFLOPs, ``keep_ratio`` = mean measured PKR.

Accuracy: every configuration's :class:`~core.results.ClipResults` become YTVIS results
(``ClipResults.to_ytvis``) and are scored with :func:`core.evaluation.ytvis_eval.evaluate` (the code of
``vpp eval``, results parsed with the same :func:`core.data.ytvis.parse_ytvis_results`): ``AP_track`` (the
official YouTube-VIS video AP), ``AP50``, ``AP75``, ``AR`` (= AR10 of the video protocol; AR1/AR100 are in
``figures``), ``mAP_bbox`` / ``mAP_segm`` (per-frame COCO AP). -1 means undefined (as in ``vpp eval``).

Ground truth.

* One clip (a frame folder or a video file): ``gt`` is a YouTube-VIS ground-truth JSON (the video matching
  the clip: the one whose file names are the clip's, else the only one, else the one whose length and size
  match) or a folder of DAVIS palette PNGs (named after the frames, or one per frame), read by
  :func:`core.app.review.load_ground_truth`, the loader of the app's evaluation panel. DAVIS masks carry no
  classes: every object is category 1, the only class, and the predictions are scored class-agnostically
  (every result track gets category 1; ``gt_info["class_agnostic"]`` is True).
* A YouTube-VIS split (a folder holding ``instances.json`` and ``JPEGImages/``): its own ``instances.json``,
  or ``gt`` (a YTVIS GT JSON holding the split's videos by id).

A missing GT, a GT of another format, or one whose video has another frame count or size raises
:class:`~core.errors.DataError` naming the file.

Sparse ground truth ("not annotated", not "empty"). In a YouTube-VIS GT, ``None`` in a track's
``segmentations`` means that object is absent in that frame; :mod:`core.evaluation` counts a prediction there
against the match (video AP: it adds to the union; per-frame mAP: a false positive). That meaning is kept
for every *annotated* frame. A frame where **no** track of the video has a segmentation is *not annotated*
(a sparse GT, e.g. every 5th frame labelled): the model still runs on it (tracking needs every frame), but it
is left out of the scoring, for the GT and every configuration's results alike (a GT or result track left with
no segmentation is dropped) - exactly as if the GT and results files held only the annotated frames, which
is how YouTube-VIS's own files list sparse labels (:mod:`core.evaluation.ground_truth` restricts both). So the
figures equal ``vpp eval`` on the GT and results restricted to the annotated frames (and on the files as they
are when every frame is annotated). A DAVIS PNG folder annotates the frames that have a PNG (an
all-background PNG is an annotated, empty frame; a frame without a PNG is not annotated). ``gt_info`` gives
the annotated and not-annotated frame counts.

Cancelling: ``stop()`` is polled before every frame of every configuration; when it returns True the sweep
raises :class:`Cancelled` (nothing partial is returned; no file is written by this module).
``progress(done, total)`` is called after every (configuration, frame) step; ``total`` = configurations x
frames (warm-up not counted).

This module imports no Qt.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.build import make_session
from core.clip_loop import Lockstep, run_clip
from core.data.ytvis import YtvisGroundTruth, read_ytvis_gt
from core.errors import DataError, VPPError
from core.evaluation.ground_truth import (  # the one code path of GT restriction and scoring (also core.app.review's)
    ClipGroundTruth,
    annotated_frames,
    from_ytvis,
    load_ground_truth,
    restricted_gt_json,
    restricted_results,
    score,
)
from core.export import package_version
from core.formats.ytvis import tracks_from_gt
from core.pkr import check_pkr
from core.regular_files import file_sha256
from core.results import ClipResults, CompactFrame
from core.session_base import resolve_device

__all__ = ["CSV_COLUMNS", "DEFAULT_PKRS", "SCHEMA", "Cancelled", "SweepResult", "SweepRow", "annotated_frames",
           "configurations", "device_label", "restricted_results", "score", "sweep"]

SCHEMA = "vpp-sweep/1"
DEFAULT_PKRS = (1.0, 0.7, 0.55, 0.4, 0.3)
#: The columns of :meth:`SweepResult.to_csv` (and the keys of every row in the JSON besides ``figures``).
CSV_COLUMNS = ("name", "mode", "pkr", "dense", "keep_ratio", "ms_per_frame", "gflops_per_frame", "frames",
               "AP_track", "AP50", "AP75", "AR", "mAP_bbox", "mAP_segm")


class Cancelled(VPPError):
    """``stop()`` returned True: the sweep ended early and returned nothing."""


@dataclass
class SweepRow:
    """One configuration's figures; ``results``: video id -> its :class:`ClipResults` (not serialised)."""

    name: str  # "dense", "vpp@0.4", "random@0.4"
    mode: str  # "dense", "vpp" or "random"
    pkr: float  # target PKR (1.0 for dense)
    dense: bool
    keep_ratio: float  # measured, mean over frames
    ms_per_frame: float  # median
    gflops_per_frame: float  # mean
    frames: int  # frames run (all clips)
    figures: dict[str, float]  # everything core.evaluation.ytvis_eval.evaluate returned
    results: dict[int, ClipResults] = field(default_factory=dict, repr=False)

    @property
    def AP_track(self) -> float:
        return self.figures["AP"]

    def summary(self) -> dict[str, Any]:
        f = self.figures
        return {"name": self.name, "mode": self.mode, "pkr": self.pkr, "dense": self.dense,
                "keep_ratio": self.keep_ratio, "ms_per_frame": self.ms_per_frame,
                "gflops_per_frame": self.gflops_per_frame, "frames": self.frames,
                "AP_track": f["AP"], "AP50": f["AP50"], "AP75": f["AP75"], "AR": f["AR10"],
                "mAP_bbox": f.get("bbox_AP", -1.0), "mAP_segm": f.get("segm_AP", -1.0)}


@dataclass
class SweepResult:
    """The sweep: rows by PKR descending, and what they were measured on.

    JSON (:meth:`to_json`, schema ``"vpp-sweep/1"``)::

        {"schema": "vpp-sweep/1", "complete": true, "created": "<UTC ISO time>", "vpp_studio": "<version>",
         "device": "cpu (8 threads)",
         "model": {"file": "<path or description>", "sha256": "<hex>" | null, "kind": "vpp", "trained": true},
         "input": {"path": "<clip or split>", "kind": "clip" | "ytvis-split", "videos": 1, "frames": 40},
         "gt": {"path": "<file or folder>", "format": "ytvis-gt" | "davis", "class_agnostic": false,
                "annotated_frames": 40, "not_annotated_frames": 0, "note": "<how sparse GT is scored>"},
         "warmup": 1,
         "rows": [{"name": "dense", "mode": "dense", "pkr": 1.0, "dense": true, "keep_ratio": 1.0,
                   "ms_per_frame": 41.2, "gflops_per_frame": 12.3, "frames": 40,
                   "AP_track": 0.61, "AP50": 0.8, "AP75": 0.6, "AR": 0.65, "mAP_bbox": 0.5, "mAP_segm": 0.48,
                   "figures": {"AP": ..., "AR1": ..., "bbox_AP": ..., "segm_AP": ..., ...}}, ...]}

    Figures are in [0, 1]; -1 means undefined (no ground truth for any category). ms are milliseconds.
    """

    rows: list[SweepRow]
    device: str
    model_file: str
    model_sha256: str | None
    model_kind: str
    model_trained: bool
    input_path: str
    input_kind: str
    videos: int
    frames: int
    gt_info: dict[str, Any]
    warmup: int
    complete: bool = True
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "complete": self.complete, "created": self.created, "vpp_studio": package_version(),
                "device": self.device,
                "model": {"file": self.model_file, "sha256": self.model_sha256, "kind": self.model_kind,
                          "trained": self.model_trained},
                "input": {"path": self.input_path, "kind": self.input_kind, "videos": self.videos,
                          "frames": self.frames},
                "gt": dict(self.gt_info), "warmup": self.warmup,
                "rows": [{**r.summary(), "figures": dict(r.figures)} for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_csv(self) -> str:
        """One header line (:data:`CSV_COLUMNS`) and one line per configuration, in row order."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in self.rows:
            s = r.summary()
            w.writerow([_cell(s[c]) for c in CSV_COLUMNS])
        return buf.getvalue()


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# -- configurations ----------------------------------------------------------------------------------
def configurations(pkrs: Sequence[float], random_baseline: bool) -> list[tuple[str, str, float]]:
    """(name, mode, pkr) in row order: PKR descending; dense for 1.0, then vpp, then random at each PKR < 1."""
    values = sorted({round(float(p), 6) for p in pkrs}, reverse=True)
    if not values:
        raise VPPError("the sweep needs at least one PKR")
    for p in values:
        check_pkr(p)
    out: list[tuple[str, str, float]] = []
    for p in values:
        if p >= 1.0:
            out.append(("dense", "dense", 1.0))
            continue
        out.append((f"vpp@{p:g}", "vpp", p))
        if random_baseline:
            out.append((f"random@{p:g}", "random", p))
    return out


def device_label(device: str | torch.device) -> str:
    """"cpu (N threads)" or the CUDA device's name (and index)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    return f"cpu ({torch.get_num_threads()} threads)"


# -- inputs and ground truth --------------------------------------------------------------------------
@dataclass
class _Clip:
    video_id: int
    name: str
    source: Any  # a FrameSource (len, size, names, iteration)
    gt: ClipGroundTruth  # its ground truth (tracks as YTVIS JSON over the clip's frames, annotated frames)


def _info(gt: ClipGroundTruth, path: Path) -> dict[str, Any]:
    return {"path": str(path), "format": gt.format, "class_agnostic": gt.class_agnostic}


def _clips(inputs, gt) -> tuple[list[_Clip], dict[str, Any], str, str]:
    """(clips, gt info, input path, input kind); every GT problem raises DataError naming the file."""
    from core.data.sources import FrameSource, open_source
    from core.data.ytvis_dataset import YtvisSplit

    split = inputs if isinstance(inputs, YtvisSplit) else None
    if split is None and not isinstance(inputs, FrameSource):
        path = Path(inputs)
        if not path.exists():
            raise DataError(f"{path}: input not found (expected a folder of frames, a video file or a YTVIS split)")
        split = YtvisSplit.find(path)
        if split is None:
            inputs = open_source(path)
    if split is not None:
        return _split_clips(split, gt)
    source = inputs
    if gt is None:
        raise DataError(f"{source.path}: a clip needs ground truth: a YouTube-VIS GT JSON or a DAVIS PNG folder")
    gt_path = Path(gt)
    w, h = source.size
    clip_gt = load_ground_truth(gt_path, num_frames=len(source), height=h, width=w, names=list(source.names))
    name = Path(str(source.path)).stem if Path(str(source.path)).is_file() else Path(str(source.path)).name
    return ([_Clip(clip_gt.video_id, name or "video", source, clip_gt)], _info(clip_gt, gt_path), str(source.path),
            "clip")


def _split_clips(split, gt) -> tuple[list[_Clip], dict[str, Any], str, str]:
    gt_path = Path(gt) if gt is not None else Path(split.annotation_path)
    if gt is None:
        ytvis: YtvisGroundTruth = split.gt
    else:
        if not gt_path.exists():
            raise DataError(f"{gt_path}: does not exist; check the path")
        if gt_path.is_dir():
            raise DataError(f"{gt_path}: is a folder; a split's ground truth is a YouTube-VIS GT JSON")
        ytvis = read_ytvis_gt(gt_path)
    clips = []
    for vid, name, source in split.sources():
        w, h = source.size
        # validates that the GT holds this video, with the split's frame count and size (naming the GT file)
        tracks_from_gt(gt_path, ytvis, num_frames=len(source), height=h, width=w, video_id=vid)
        clips.append(_Clip(vid, name, source, from_ytvis(gt_path, ytvis, vid, names=list(source.names))))
    info = {"path": str(gt_path), "format": "ytvis-gt", "class_agnostic": False}
    return clips, info, str(split.root / split.split), "ytvis-split"


# -- the sweep ------------------------------------------------------------------------------------------
def sweep(inputs, gt=None, *, model, pkrs: Sequence[float] = DEFAULT_PKRS, random_baseline: bool = True,
          device: str = "cpu", progress: Callable[[int, int], None] | None = None,
          stop: Callable[[], bool] | None = None, warmup: int = 1,
          score_threshold: float | None = None) -> SweepResult:
    """Run every configuration over the clip(s) and score them; see the module docstring.

    ``inputs``: a clip (folder of frames or video file, a path or an open ``FrameSource``), a YTVIS split folder
    or a ``YtvisSplit``. ``gt``: a YTVIS GT JSON or a DAVIS PNG folder (a clip; required), or a YTVIS GT JSON
    (a split; default its ``instances.json``). ``model``: a :class:`core.resources.LoadedModel`, or a model path
    (None: the default model). ``score_threshold``: the sessions' instance threshold (None: their default).
    Raises :class:`DataError` for bad input or GT, :class:`Cancelled` when ``stop()`` returns True.
    """
    from core.resources import LoadedModel, load_model

    configs = configurations(pkrs, random_baseline)
    label = device_label(device)
    clips, info, input_path, input_kind = _clips(inputs, gt)
    loaded = model if isinstance(model, LoadedModel) or hasattr(model, "model") else load_model(model)
    sessions = [make_session(loaded, device=device, pkr=p, mode=mode, score_threshold=score_threshold)
                for _, mode, p in configs]
    n_frames = sum(len(c.source) for c in clips)
    total = n_frames * len(configs)
    done = 0
    results: list[dict[int, ClipResults]] = [{} for _ in configs]
    stats: list[dict[str, list[float]]] = [{"ms": [], "gflops": [], "keep": []} for _ in configs]

    def check_stop() -> None:
        if stop is not None and stop():
            raise Cancelled(f"sweep cancelled after {done} of {total} frames")

    if warmup > 0 and clips and len(clips[0].source):
        first = clips[0].source.frame(0)
        for s in sessions:
            run_clip([first] * warmup, s, lambda t, res: None, before=lambda t: check_stop())

    def count(k: int, res) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    # each frame goes through every configuration, the order rotated so no configuration always runs first
    lockstep = Lockstep(sessions, rotate=True, before=lambda k: check_stop(), after=count)
    annotated = {clip.video_id: clip.gt.annotated for clip in clips}
    for clip in clips:
        source = clip.source
        w, h = source.size
        clip_results = [ClipResults(len(source), h, w) for _ in sessions]
        for k, r in enumerate(clip_results):
            results[k][clip.video_id] = r

        def add(t: int, frame_results: list, clip_results=clip_results) -> None:
            for k, res in enumerate(frame_results):
                clip_results[k].add(CompactFrame.from_result(res, t))
                stats[k]["ms"].append(res.ms)
                stats[k]["gflops"].append(res.gflops)
                stats[k]["keep"].append(res.keep_ratio)

        run_clip(source, lockstep, add)
    n_annotated = sum(len(v) for v in annotated.values())
    if n_annotated == 0:
        raise DataError(f"{info['path']}: no frame of the input is annotated (no track has a segmentation); "
                        "give ground truth with annotations")
    entries: list[list[dict]] = []
    for k in range(len(configs)):
        entries.append([])
        for clip in clips:
            idx = annotated[clip.video_id]
            if idx:
                entries[k] += restricted_results(results[k][clip.video_id].to_ytvis(clip.video_id), idx,
                                                 class_agnostic=info["class_agnostic"])
    gt_json = restricted_gt_json([c.gt for c in clips], {e["category_id"] for es in entries for e in es})
    rows = []
    for k, (name, mode, p) in enumerate(configs):
        figures = score(gt_json, entries[k], source=f"{name} results (against {info['path']})")
        st = stats[k]
        rows.append(SweepRow(name=name, mode=mode, pkr=float(p), dense=mode == "dense",
                             keep_ratio=float(np.mean(st["keep"])) if st["keep"] else float("nan"),
                             ms_per_frame=float(statistics.median(st["ms"])) if st["ms"] else float("nan"),
                             gflops_per_frame=float(np.mean(st["gflops"])) if st["gflops"] else float("nan"),
                             frames=len(st["ms"]), figures=figures, results=results[k]))
    source_file = Path(str(loaded.source))
    sha = file_sha256(source_file) if source_file.is_file() else None
    gt_out = dict(info)
    gt_out.update(annotated_frames=n_annotated, not_annotated_frames=n_frames - n_annotated,
                  note="frames where no ground-truth track has a segmentation are not annotated and not scored "
                       "(neither GT nor results); None in an annotated frame means the object is absent"
                       + ("; DAVIS masks: category 1 is the only class, results scored class-agnostically"
                          if info["class_agnostic"] else ""))
    return SweepResult(rows=rows, device=label, model_file=str(loaded.source), model_sha256=sha,
                       model_kind=str(getattr(loaded, "kind", "vpp")),
                       model_trained=bool(getattr(loaded, "trained", True)),
                       input_path=input_path, input_kind=input_kind, videos=len(clips), frames=n_frames,
                       gt_info=gt_out, warmup=int(warmup), complete=True,
                       created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
