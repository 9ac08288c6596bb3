"""Hostile project files: values and sizes a project reader must refuse or bound, and what is saved
opening again.

Each check builds one hostile project under its temp folder and runs the project's code on it: in this
process where nothing can hang, else in a subprocess with a timeout and RLIMIT_AS for memory. The rules
checked are the README's "Projects and recovery" and "Output rules": track ids at the limit still save
a project that opens, numbers finite, values of the right type, run records without NaN or a foreign
file's hash, sizes bounded (tracks, frames, instances drawn). Builders and verdicts: ``_project_helpers``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the runner loads this file by path: its helpers lie beside it
    sys.path.insert(0, str(HERE))

import _project_helpers as ph  # noqa: E402
import numpy as np  # noqa: E402

from core.app.document import ClipInfo, Document  # noqa: E402
from core.data.rle import encode_mask  # noqa: E402
from core.errors import DataError  # noqa: E402


# -- 5. what is saved opens again ----------------------------------------------------------------------
def ids_at_the_limit(tmp: Path) -> str | None:
    for declared in (2**31 - 1, 2**31, 2**40):
        project = ph.project(tmp, f"ids{declared}.vppproj")
        data = json.loads(project.read_text())
        data["next_track_id"] = declared
        project.write_text(json.dumps(data))
        try:
            doc = Document.load(project)
        except DataError:
            continue  # refused at load with a clear error: fine
        doc.create_track(0, ph.rect(0, 0, 3, 3), 1)
        doc.create_track(1, ph.rect(0, 0, 3, 3), 1)
        doc.split(1, 2)
        doc.save()
        try:
            Document.load(project)
        except DataError as exc:
            return f"next_track_id {declared}: the saved project does not open again: {exc}"
    return None


# -- 7, 12, 14: values a reader must refuse ------------------------------------------------------------
def non_finite_anywhere(tmp: Path) -> str | None:
    cases = {
        "extra": (lambda d: d.update(extra_key={"deep": [1, "NAN_HERE"]}), "extra_key.deep[1]"),
        "run": (lambda d: d.update(run={"model": "m", "pkr": "NAN_HERE"}), "run.pkr"),
        "score": (lambda d: d["tracks"][0]["frames"]["0"].__setitem__(1, "NAN_HERE"), "tracks[0].frames.0[1]"),
        "category": (lambda d: d["categories"][0].__setitem__(0, "NAN_HERE"), "categories[0][0]"),
    }
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        for name, (change, key) in cases.items():
            project = ph.edited_project(tmp, change, f"{name}.vppproj",
                                          lambda t, x=token: t.replace('"NAN_HERE"', x))
            problem = ph.refused(ph.loader(project), project.name, key)
            if problem:
                return f"{token} in {name}: {problem}"
    return None


def view_of_the_wrong_type(tmp: Path) -> str | None:
    for i, view in enumerate([{"hidden": 5}, {"hidden": "12"}, {"hidden": {"1": 2}}, {"hidden": [[1]]},
                              {"solo": [1]}, {"solo": {"a": 1}}, {"solo": "1"}, {"solo": 1.5}, [1, 2], "x"]):
        project = ph.edited_project(tmp, lambda d, v=view: d.update(view=v), f"v{i}.vppproj")
        problem = ph.refused(ph.loader(project), project.name, "view")
        if problem:
            return f"view {view!r}: {problem}"
        if i < 2:
            problem = ph.clean_error(ph.vpp("export", str(project), "--out", str(tmp / f"v{i}.json")), "view")
        if problem:
            return f"export of view {view!r}: {problem}"
    return None


# -- 12: many tracks on the frame shown ----------------------------------------------------------------
def many_instances_on_one_frame(tmp: Path) -> str | None:
    from vpp_gui import overlay

    h, w = 60, 75
    doc = Document(ClipInfo("/clips/many", 1, h, w, ("0.jpg",)), categories={1: "a"})
    tracks = []
    for k in range(300):  # 300 small squares side by side, none overlapping
        m = np.zeros((h, w), bool)
        m[3 * (k // 25):3 * (k // 25) + 2, 3 * (k % 25):3 * (k % 25) + 2] = True
        tracks.append((1, (k % 97) / 97, {0: encode_mask(m)}))
    doc.add_tracks(tracks)
    frame = doc.view_frame(0)
    layers = overlay.render_layers(frame, heatmap=False)
    if layers.masks is None or layers.contours is None:
        return "no masks drawn"
    shown = {tuple(c) for c in layers.masks.reshape(-1, 4)[:, :3].tolist()}
    return None if len(shown) > 200 else f"only {len(shown)} colours drawn for 300 tracks"


# -- 14: run values, version, run records ---------------------------------------------------------------
def run_values_and_scores(tmp: Path) -> str | None:
    bad = [("run", {"model_sha256": 42}), ("run", {"pkr": "0.4"}), ("run", {"model": ["x"]}), ("run", [1]),
           ("run", {"threshold": 7}), ("version", True)]
    for i, (key, value) in enumerate(bad):
        project = ph.edited_project(tmp, lambda d, k=key, v=value: d.update({k: v}), f"r{i}.vppproj")
        problem = ph.refused(ph.loader(project), project.name)
        if problem:
            return f"{key}: {value!r}: {problem}"
    for i, score in enumerate((-5, 1e308, 1.5)):
        project = ph.edited_project(tmp, lambda d, s=score: d["tracks"][0]["frames"]["0"].__setitem__(1, s),
                                      f"s{i}.vppproj")
        problem = ph.refused(ph.loader(project), project.name, "score")
        if problem:
            return f"score {score}: {problem}"
    return None


def version_true(tmp: Path) -> str | None:
    project = ph.edited_project(tmp, lambda d: d.update(version=True), "v.vppproj")
    return ph.refused(ph.loader(project), "version")


def run_record_never_nan_nor_a_foreign_hash(tmp: Path) -> str | None:
    """A NaN PKR in memory is written as null; settings / run naming /etc/shadow, a pipe or a plain file
    are recorded without being read (a subprocess: reading the pipe would hang)."""
    secret = tmp / "secret.txt"
    secret.write_text("not a model")
    fifo = tmp / "model.safetensors"
    os.mkfifo(fifo)
    for i, model in enumerate(["/etc/shadow", str(secret), str(fifo)]):
        out = tmp / f"o{i}.json"
        code = f"""
import sys; sys.path.insert(0, {str(ph.ROOT)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
import _project_helpers
doc = _project_helpers.make_doc()
doc.settings = doc.settings.replace(model_kind="file", model_path={model!r})
doc.run = {{"model": {model!r}, "pkr": float("nan")}} if {i} else None
doc.export({{"ytvis": {str(out)!r}}})
"""
        proc = ph.run(code, timeout=30)
        if isinstance(proc, str):
            return f"export with model {model}: {proc}"
        if proc.returncode != 0:
            return f"export with model {model} failed: {proc.stderr[-800:]}"
        text = (tmp / f"o{i}.run.json").read_text()
        if "NaN" in text:
            return "a bare NaN was written into the run record"
        if json.loads(text).get("model_sha256"):
            return f"the export hashed {model} into its run record"
    return None


# -- 11, 13: hangs and memory --------------------------------------------------------------------------
def a_million_empty_tracks(tmp: Path) -> str | None:
    project = ph.project(tmp)
    data = json.loads(project.read_text())
    tracks = ",".join(f'{{"id":{i},"category_id":1,"frames":{{}}}}' for i in range(1, 10**6 + 1))
    text = json.dumps({**data, "tracks": []}).replace('"tracks": []', f'"tracks": [{tracks}]')
    project.write_text(text)
    code = f"""
import sys; sys.path.insert(0, {str(ph.ROOT)!r})
from core.app.document import Document
from core.errors import DataError
try:
    Document.load({str(project)!r})
    print("ACCEPTED")
except DataError as exc:
    print("refused", exc)
"""
    proc = ph.run(code, timeout=60, mem_gb=1.5)
    if isinstance(proc, str):
        return proc
    return None if proc.stdout.startswith("refused") and "tracks" in proc.stdout else \
        f"not refused: {proc.stdout[-300:]} {proc.stderr[-600:]}"


def tiny_project_declaring_a_million_frames(tmp: Path) -> str | None:
    for n in (2**20 - 1,):
        project = tmp / f"big{n}.vppproj"
        clip = {"path": "/nonexistent/clip", "num_frames": n, "height": 480, "width": 854}
        project.write_text(json.dumps({"format": "vpp-studio-project", "version": 1, "clip": clip, "settings": {},
                                       "categories": [[1, "a"]], "tracks": []}))
        # the export command maps 0.4 GB; the code before issue 25 needed 2 GB more for this file
        proc = ph.vpp("export", str(project), "--out", str(tmp / f"o{n}.json"), timeout=60, mem_gb=1.0)
        problem = ph.clean_error(proc, project.name, "frame")
        if problem:
            return f"{project.stat().st_size}-byte project declaring {n} frames: {problem}"
    return None


def cases() -> list[tuple[str, Callable[[Path], str | None]]]:
    return [
        ('5 track ids at 2**31-1', ids_at_the_limit),
        ('7 NaN / Infinity anywhere in a project', non_finite_anywhere),
        ('12 view of the wrong type', view_of_the_wrong_type),
        ('12 300 tracks on one frame draw', many_instances_on_one_frame),
        ('14 run values and scores checked', run_values_and_scores),
        ('14 version true', version_true),
        ('14 run record: no NaN, no foreign hash', run_record_never_nan_nor_a_foreign_hash),
        ('11 a million empty tracks', a_million_empty_tracks),
        ('13 a tiny project declaring 2**20 frames', tiny_project_declaring_a_million_frames),
    ]
