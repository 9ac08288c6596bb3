#!/usr/bin/env python
"""Record what ``vpp infer``, ``vpp export``, ``vpp sweep`` and ``vpp eval`` write on the shared fixtures,
and compare two such records file by file: the proof that a refactor changed no output.

    python scripts/compare_outputs.py record /tmp/before      # on the old commit
    python scripts/compare_outputs.py record /tmp/after       # on the new one
    python scripts/compare_outputs.py compare /tmp/before /tmp/after

``record`` runs every command with ``--threads 1`` on the CPU (so the floating-point sums are the same
from run to run) into ``DIR/out`` and writes ``DIR/manifest.json``: one SHA-256 per file written. Values
that differ from run to run by nature are blanked before hashing, and only those: timestamps, elapsed and
per-frame times, the package version and absolute paths of this run's temporary folder. Everything else
(masks, scores, track ids, AP figures, PNG bytes, zip members) must be byte-identical. ``compare`` prints
each file that differs or is missing and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DAVIS = SHARED / "davis_car_shadow"
DEMO = ROOT / "resources" / "demo_clip"
DEMO_GT = ROOT / "resources" / "demo_clip_gt.json"
MMT = SHARED / "mmtracking_demo_vis"

# keys whose values are times, dates, versions or machine facts: blanked before hashing
VOLATILE = re.compile(
    r"(^|_)(time|times|created|date|when|elapsed|seconds|ms|ms_per_frame|fps|version|host|hostname|pid|"
    r"threads|cpu|device_name|wall|started|finished|duration|load|platform|python|torch)(_|$)|"
    r"ms_per_frame|per_frame_ms|^t_|_ms$|_s$|_sec$|_seconds$",
    re.I,
)


def _vpp(*args: str | os.PathLike, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "core.cli", *map(str, args)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _scrub(obj, tmp: str):
    if isinstance(obj, dict):
        return {k: ("<volatile>" if VOLATILE.search(str(k)) else _scrub(v, tmp)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, tmp) for v in obj]
    if isinstance(obj, str):
        return obj.replace(tmp, "<tmp>").replace(str(ROOT), "<root>")
    return obj


def _digest(path: Path, tmp: str) -> str:
    data = path.read_bytes()
    if path.suffix == ".json":
        try:
            obj = json.loads(data)
        except ValueError:
            pass
        else:
            data = json.dumps(_scrub(obj, tmp), sort_keys=True).encode()
    elif path.suffix == ".zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:  # members by content: a zip stamps dates
            parts = []
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                body = zf.read(info)
                if info.filename.endswith(".json"):
                    body = json.dumps(_scrub(json.loads(body), tmp), sort_keys=True).encode()
                parts.append(info.filename.encode() + b"\0" + hashlib.sha256(body).digest())
            data = b"\n".join(parts)
    elif path.suffix in (".txt", ".log", ".csv"):
        text = data.decode("utf-8", "replace").replace(tmp, "<tmp>").replace(str(ROOT), "<root>")
        data = text.encode()
    return hashlib.sha256(data).hexdigest()


def _stdout_table(text: str) -> str:
    """The figures ``vpp eval`` prints, without lines that carry times."""
    return "\n".join(line for line in text.splitlines() if not re.search(r"\b(s|ms|seconds?)\b", line)) + "\n"


def _make_project(out: Path, results: Path, frames: Path) -> Path:
    """A project of the DAVIS clip holding the inferred tracks plus one edit, built through the document."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from core.app.document import Document

    doc = Document.open_clip(frames)
    doc.import_file(results)
    first = doc.rows()[0].id if doc.rows() else None
    info = doc.clip
    mask = np.zeros((info.height, info.width), bool)
    mask[info.height // 4: info.height // 2, info.width // 4: info.width // 2] = True
    new_id = doc.create_track(0, mask, doc.add_category("object"))
    doc.paint(new_id, frame=1, mask=mask)
    if first is not None:
        doc.accept([first])
    project = out / "edited.vppproj"
    doc.save(project)
    return project


def record(folder: Path) -> int:
    out = folder / "out"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    frames = DAVIS / "frames"
    for clip, name in ((frames, "davis"), (DEMO, "demo")):
        for pkr in ("0.4", "1.0"):
            tag = f"{name}-{pkr}"
            _vpp("infer", clip, "--out", out / f"{tag}.json", "--pkr", pkr, "--threads", "1", "--device", "cpu",
                 "--zip", "--davis-png", out / f"{tag}-davis", "--coco", out / f"{tag}-coco.json", cwd=ROOT)
    _vpp("infer", DAVIS / "frames", "--out", out / "davis-dense.json", "--mode", "dense", "--threads", "1",
         "--device", "cpu", cwd=ROOT)
    for tag, gt, res in (("mmt", MMT / "gt_ytvis.json", MMT / "results.json"),
                         ("davis-pred", DAVIS / "gt_ytvis.json", DAVIS / "pred_ytvis_results.json"),
                         ("demo-0.4", DEMO_GT, out / "demo-0.4.json")):
        proc = _vpp("eval", "--gt", gt, "--results", res, "--json", out / f"eval-{tag}.json", cwd=ROOT)
        (out / f"eval-{tag}.txt").write_text(_stdout_table(proc.stdout))
    _vpp("sweep", DEMO, "--gt", DEMO_GT, "--pkr", "1.0", "0.4", "--json", out / "sweep-demo.json",
         "--csv", out / "sweep-demo.csv", "--threads", "1", "--device", "cpu", cwd=ROOT)
    try:
        project = _make_project(out, out / "davis-0.4.json", frames)
    except Exception as exc:  # the document's API is part of what is compared: say so, don't hide it
        raise SystemExit(f"could not build the export project: {exc!r}") from exc
    _vpp("export", project, "--out", out / "export.json", "--zip", out / "export.zip",
         "--davis-png", out / "export-davis", "--coco", out / "export-coco.json", cwd=ROOT)
    tmp = str(folder)
    manifest = {str(p.relative_to(out)): _digest(p, tmp) for p in sorted(out.rglob("*"))
                if p.is_file() and p.suffix not in (".csv",) and p.name != "edited.vppproj"}
    # the sweep CSV holds times in columns: keep its AP columns only
    csv = out / "sweep-demo.csv"
    if csv.exists():
        rows = [r.split(",") for r in csv.read_text().splitlines()]
        keep = [i for i, h in enumerate(rows[0]) if not VOLATILE.search(h) and "ms" not in h and "speed" not in h]
        manifest["sweep-demo.csv"] = hashlib.sha256(
            "\n".join(",".join(r[i] for i in keep) for r in rows).encode()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    print(f"{len(manifest)} files recorded in {folder / 'manifest.json'}")
    return 0


def compare(a: Path, b: Path) -> int:
    ma = json.loads((a / "manifest.json").read_text())
    mb = json.loads((b / "manifest.json").read_text())
    bad = 0
    for name in sorted(set(ma) | set(mb)):
        if name not in ma or name not in mb:
            print(f"only in {'the first' if name in ma else 'the second'}: {name}")
            bad += 1
        elif ma[name] != mb[name]:
            print(f"differs: {name}")
            bad += 1
    print(f"{len(set(ma) & set(mb)) - (bad if bad else 0)} of {len(set(ma) | set(mb))} files identical")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("folder", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"error: {SHARED} is missing; the fixtures live in ../shared beside the clone")
    return record(args.folder) if args.cmd == "record" else compare(args.first, args.second)


if __name__ == "__main__":
    raise SystemExit(main())
