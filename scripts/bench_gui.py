"""Benchmarks of the desktop app (not timed tests); prints a Markdown table for the README.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/bench_gui.py [--clip FOLDER] [--long-side 640]

1. overlay: ``vpp_gui.overlay.render_layers`` for a 1280x720 frame with 10 instances + heatmap
   (pure NumPy; target < 16 ms), and the same plus handing the layers to the view (Qt conversion);
2. stall: the longest gap between ticks of a 5 ms QTimer heartbeat on the UI thread while inference
   runs over the clip, once with the view idle and once while playing (target < 50 ms);
3. open: opening a 1000-frame folder (links to the clip's frames) until the first frame is shown
   (target < 1 s), and the resident memory after scrubbing through all 1000 frames (bounded by the
   frame cache, 256 MB).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_frame(h=720, w=1280, n=10, seed=0):
    import cv2

    from core.results import CompactFrame

    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), bool)
    for k in range(n):
        m = np.zeros((h, w), np.uint8)
        center = (int(rng.integers(100, w - 100)), int(rng.integers(100, h - 100)))
        axes = (int(rng.integers(40, 260)), int(rng.integers(40, 180)))
        cv2.ellipse(m, center, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
        masks[k] = m > 0
    gh, gw = 640 * h // w // 16 + 1, 640 // 16
    r = SimpleNamespace(index=0, track_ids=np.arange(1, n + 1), category_ids=rng.integers(1, 41, n),
                        scores=rng.random(n).astype(np.float32), masks=masks, kept=rng.random((4, gh, gw)) > 0.4,
                        stage_names=("Map-SM", "block 3", "block 6", "block 9"), keep_ratio=0.5, gflops=1.0, ms=1.0)
    return CompactFrame.from_result(r), rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def bench_overlay(window, app, repeats=40) -> dict:
    from vpp_gui import overlay

    frame, rgb = synthetic_frame()
    times, full = [], []
    for stage in (0, overlay.DEPTH_STAGE) * (repeats // 2):
        t0 = time.perf_counter()
        layers = overlay.render_layers(frame, stage=stage, long_side=640, patch=16)
        t1 = time.perf_counter()
        window.view.set_frame(rgb)
        window.view.set_layers(layers)
        window.view.graphics.viewport().repaint()
        t2 = time.perf_counter()
        times.append((t1 - t0) * 1000)
        full.append((t2 - t0) * 1000)
    return {"render_median": statistics.median(times), "render_p95": float(np.percentile(times, 95)),
            "view_median": statistics.median(full), "view_p95": float(np.percentile(full, 95))}


def run_with_heartbeat(app, window, *, play: bool, timeout=600.0) -> dict:
    from PySide6.QtCore import QEventLoop, QTimer

    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat():
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000)
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(beat)
    c = window.controller
    c.restart(force=True)
    window.timeline.set_frame(0)
    if play:
        window.timeline.toggle_play()
    last[0] = time.perf_counter()
    timer.start()
    t0 = time.perf_counter()
    while c.state == "running" and time.perf_counter() - t0 < timeout:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
    timer.stop()
    window.timeline.pause()
    took = time.perf_counter() - t0
    frames = c.results.count
    return {"max_gap": max(gaps[1:]) if len(gaps) > 1 else float("nan"), "p99_gap": float(np.percentile(gaps, 99)),
            "frames": frames, "seconds": took, "ms_per_frame": float(np.nanmean(c.results.series()["ms"]))}


def bench_open(app, make_window, clip: Path, n=1000) -> dict:
    frames = sorted(p for p in clip.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "long_clip"
        folder.mkdir()
        for i in range(n):
            os.symlink(frames[i % len(frames)], folder / f"{i:05d}{frames[0].suffix}")
        window = make_window(None)
        app.processEvents()
        before = rss_mb()
        t0 = time.perf_counter()
        window.open_path(folder)
        app.processEvents()
        first = (time.perf_counter() - t0) * 1000
        window.controller.cancel()
        t1 = time.perf_counter()
        for i in range(n):
            window.timeline.set_frame(i)
            if i % 25 == 0:
                app.processEvents()
        scrub = (time.perf_counter() - t1) * 1000 / n
        after = rss_mb()
        window.close()
    return {"first_frame_ms": first, "scrub_ms_per_frame": scrub, "rss_before": before, "rss_after": after}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=str(ROOT.parent / "shared/data/davis_car_shadow/frames"))
    parser.add_argument("--long-side", type=int, default=0,
                        help="run an untrained Tiny at this input size instead of the embedded default model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from core.build import VPPConfig, build_vpp
    from core.resources import LoadedModel, load_model
    from vpp_gui.app import create_window
    from vpp_gui.settings import Settings

    if args.threads:
        torch.set_num_threads(args.threads)
    app = QApplication.instance() or QApplication([])
    tmp = tempfile.mkdtemp()

    def factory(spec, device):
        if not args.long_side:
            return load_model(None, device=device)
        torch.manual_seed(0)
        cfg = VPPConfig.for_variant("tiny", input_long_side=args.long_side)
        return LoadedModel(build_vpp(cfg).to(device).eval(), cfg, f"untrained Tiny {args.long_side}", False)

    def make_window(path):
        s = Settings(QSettings(str(Path(tmp) / "bench.ini"), QSettings.Format.IniFormat))
        w = create_window(path, model_factory=factory, settings=s, demo=False)
        w.resize(1920, 1080)
        w.show()
        return w

    window = make_window(args.clip)
    model_label = (f"untrained Tiny at {args.long_side} px" if args.long_side
                   else f"model {Path(load_model(None).source).name}")
    while window.controller.state == "running":
        app.processEvents()
    ov = bench_overlay(window, app)
    idle = run_with_heartbeat(app, window, play=False)
    playing = run_with_heartbeat(app, window, play=True)
    window.close()
    op = bench_open(app, make_window, Path(args.clip))

    print(f"VPP Studio GUI benchmark — {torch.get_num_threads()} torch thread(s), "
          f"{os.cpu_count()} CPU(s), {model_label}, clip {Path(args.clip).parent.name}\n")
    print("| measure | result | target |")
    print("|---|---|---|")
    print(f"| overlay render 1280x720, 10 instances + heatmap (NumPy) | median {ov['render_median']:.1f} ms, "
          f"p95 {ov['render_p95']:.1f} ms | < 16 ms |")
    print(f"| same + frame and layers into the view, repainted | median {ov['view_median']:.1f} ms, "
          f"p95 {ov['view_p95']:.1f} ms | — |")
    for name, r in (("view idle", idle), ("playing", playing)):
        print(f"| longest UI stall while inference runs ({name}) | {r['max_gap']:.1f} ms (p99 {r['p99_gap']:.1f} ms; "
              f"{r['frames']} frames, {r['ms_per_frame']:.0f} ms/frame) | < 50 ms |")
    print(f"| open a 1000-frame folder until the first frame shows | {op['first_frame_ms']:.0f} ms | < 1 s |")
    print(f"| memory after scrubbing all 1000 frames (RSS) | {op['rss_before']:.0f} MB → {op['rss_after']:.0f} MB "
          f"({op['scrub_ms_per_frame']:.1f} ms/frame) | bounded (256 MB frame cache) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
