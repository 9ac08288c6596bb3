"""Benchmarks of the desktop app (not timed tests); prints a Markdown table for the README.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/bench_gui.py [--clip FOLDER] [--long-side 640]
        [--only overlay,stall,open,brush,4k,4k-stall] [--clip-4k FOLDER]

1. overlay: ``vpp_gui.overlay.render_layers`` for a 1280x720 frame with 10 instances + heatmap
   (pure NumPy; target < 16 ms), and the same plus handing the layers to the view (Qt conversion);
2. stall: the longest gap between ticks of a 5 ms QTimer heartbeat on the UI thread while inference
   runs over the clip, once with the view idle and once while playing (target < 50 ms);
3. open: opening a 1000-frame folder (links to the clip's frames) until the first frame is shown
   (target < 1 s), and the resident memory after scrubbing through all 1000 frames (bounded by the
   frame cache, 256 MB);
4. brush: a 200-move brush stroke on a 1280x720 frame with mask layers, through the tools overlay
   (``ToolOverlay.extend_stroke`` + events + a forced repaint per move; target < 16 ms), and the
   commit of a 40 px stroke (``brush_mask`` + ``Document.paint`` on a 1280x720 track mask);
5. 4k: stepping through a 3840x2160 clip (``--clip-4k``, 40 JPEG frames; made from the DAVIS clip by
   ``scripts/make_bench_clip.py --from-frames`` when missing) with the model's masks, contours and labels
   shown, in a 1920x1080 window: a step to a frame shown before (cached; target <= 50 ms), a jump to a frame
   not decoded yet (every frame cache dropped first; target <= 150 ms), and a held arrow key (a step every
   40 ms, what read-ahead is for). A step is ``Timeline.set_frame`` + events + a forced repaint;
6. 4k-stall: the longest UI stall (as 2.) while inference runs over the 4K clip (target <= 50 ms).
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


def bench_brush(app, moves=200, commits=20) -> dict:
    import pyqtgraph as pg

    from core.app.document import ClipInfo, Document
    from core.app.document.tracks import brush_mask
    from vpp_gui import overlay
    from vpp_gui.frame_view import FrameView

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)  # as vpp-gui sets them
    frame, rgb = synthetic_frame()
    view = FrameView()
    view.resize(1600, 900)  # about the view's share of a 1920x1080 window
    view.show()
    view.set_frame(rgb)
    view.set_layers(overlay.render_layers(frame, stage=0, long_side=640, patch=16))
    app.processEvents()
    tools = view.tools
    tools.set_tool("brush")
    tools.set_radius(20)
    t = np.linspace(0, 1, moves + 1)
    xs, ys = 80 + 1120 * t, 360 + 250 * np.sin(6 * np.pi * t)
    base = []  # the same repaint with no stroke: what the frame and its layers cost alone
    for _ in range(50):
        t0 = time.perf_counter()
        app.processEvents()
        view.graphics.viewport().repaint()
        base.append((time.perf_counter() - t0) * 1000)
    times = []
    tools.begin_stroke(xs[0], ys[0])
    for x, y in zip(xs[1:], ys[1:]):
        t0 = time.perf_counter()
        tools.extend_stroke(x, y)
        app.processEvents()
        view.graphics.viewport().repaint()
        times.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    tools.end_stroke()
    end = (time.perf_counter() - t0) * 1000
    view.close()

    h, w = rgb.shape[:2]
    doc = Document(ClipInfo("bench", 1, h, w))
    tid = doc.create_track(0, brush_mask([(640, 360)], 220, h, w), category_id=1)  # an existing mask to paint on
    commit, paint = [], []
    for k in range(commits):
        pts = list(zip(xs[::10] + 7 * k, ys[::10] - 5 * k))
        t0 = time.perf_counter()
        stroke = brush_mask(pts, 40, h, w)
        t1 = time.perf_counter()
        doc.paint(tid, 0, stroke, erase=bool(k % 2))
        t2 = time.perf_counter()
        commit.append((t2 - t0) * 1000)
        paint.append((t2 - t1) * 1000)
    return {"move_median": statistics.median(times), "move_p95": float(np.percentile(times, 95)),
            "move_max": max(times), "end_ms": end, "base_median": statistics.median(base),
            "commit_median": statistics.median(commit),
            "commit_p95": float(np.percentile(commit, 95)), "paint_median": statistics.median(paint)}


def make_4k_clip(folder: Path, source: Path) -> None:
    """The 4K bench clip: ``source``'s frames at 3840x2160, 40 JPEG files (scripts/make_bench_clip.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bench_clip", ROOT / "scripts" / "make_bench_clip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.main([str(folder), "--from-frames", str(source), "--size", "3840x2160", "--frames", "40"]) != 0:
        raise SystemExit(f"error: could not write the 4K clip {folder}")


def drop_frame_caches(window, app) -> None:
    """Forget every decoded frame of the window's clip (the source's cache and, where the app has one, the
    display frames after their read-ahead is done)."""
    frames = getattr(window, "frames", None)
    if frames is not None:
        frames.wait_idle()
        frames.clear()
    window.source._cache.clear()  # a benchmark forgetting what the app decoded (private: no API for it)
    app.processEvents()


def bench_4k_steps(app, window) -> dict:
    """Step times on the 4K clip once the pass is done (see the module docstring, 5.)."""
    from PySide6.QtCore import QEventLoop

    view, timeline = window.view, window.timeline

    def step_to(i: int) -> float:
        t0 = time.perf_counter()
        timeline.set_frame(i)
        app.processEvents()
        view.graphics.viewport().repaint()
        return (time.perf_counter() - t0) * 1000

    def settle(seconds=0.3):
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)

    for i in range(8):  # frames 0..7 shown once: cached from now on
        step_to(i)
        settle(0.1)
    frames = getattr(window, "frames", None)
    if frames is not None:
        frames.wait_idle()
    cached = [step_to(i) for i in (6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7) * 2]
    jumps = []
    for i in (20, 33, 12, 27, 38, 15, 24, 9, 30, 18):
        drop_frame_caches(window, app)
        settle(0.2)
        jumps.append(step_to(i))
    drop_frame_caches(window, app)
    step_to(10)
    held, late = [], []
    next_at = time.perf_counter()
    for i in range(11, 36):  # a held arrow key: a step every 40 ms (or as soon as the last one is done)
        next_at += 0.040
        while time.perf_counter() < next_at:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 2)
        late.append(bool(frames is not None and not frames.is_cached(i, view.display_size(*window.source.size))))
        held.append(step_to(i))
    shown = view.image.image.shape if view.image.image is not None else (0, 0)
    return {"cached_median": statistics.median(cached), "cached_p95": float(np.percentile(cached, 95)),
            "cached_max": max(cached), "jump_median": statistics.median(jumps), "jump_max": max(jumps),
            "held_median": statistics.median(held), "held_p95": float(np.percentile(held, 95)),
            "held_max": max(held), "held_missed": sum(late) if frames is not None else len(held),
            "held_steps": len(held), "shown": f"{shown[1]}x{shown[0]}"}


MEASURES = ("overlay", "stall", "open", "brush", "4k", "4k-stall")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=str(ROOT.parent / "shared/data/davis_car_shadow/frames"))
    parser.add_argument("--long-side", type=int, default=0,
                        help="run an untrained Tiny at this input size instead of the embedded default model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clip-4k", default=str(ROOT / "data" / "car_shadow_4k"),
                        help="a 3840x2160 frame folder for the 4k measures (made from the DAVIS clip if missing)")
    parser.add_argument("--only", default=",".join(MEASURES),
                        help=f"comma-separated measures to run (default: all of {', '.join(MEASURES)})")
    args = parser.parse_args(argv)
    only = {m.strip() for m in args.only.split(",") if m.strip()}
    if not only or only - set(MEASURES):
        parser.error(f"--only: unknown measure(s) {', '.join(sorted(only - set(MEASURES))) or '(none)'}; "
                     f"valid: {', '.join(MEASURES)}")

    import torch
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from core.model.vpp.builder import build_vpp
    from core.model.vpp.config import VPPConfig
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

    ov = op = br = None
    model_label = "no model loaded"
    if only & {"overlay", "stall"}:
        window = make_window(args.clip)
        model_label = (f"untrained Tiny at {args.long_side} px" if args.long_side
                       else f"model {Path(load_model(None).source).name}")
        while window.controller.state == "running":
            app.processEvents()
        ov = bench_overlay(window, app) if "overlay" in only else None
        if "stall" in only:
            idle = run_with_heartbeat(app, window, play=False)
            playing = run_with_heartbeat(app, window, play=True)
        window.close()
    op = bench_open(app, make_window, Path(args.clip)) if "open" in only else None
    br = bench_brush(app) if "brush" in only else None
    k4 = k4_idle = k4_playing = None
    if only & {"4k", "4k-stall"}:
        clip4k = Path(args.clip_4k)
        if not clip4k.is_dir():
            make_4k_clip(clip4k, Path(args.clip))
        window = make_window(clip4k)
        if model_label == "no model loaded":
            model_label = (f"untrained Tiny at {args.long_side} px" if args.long_side
                           else f"model {Path(load_model(None).source).name}")
        while window.controller.state == "running":
            app.processEvents()
        if "4k" in only:
            k4 = bench_4k_steps(app, window)
        if "4k-stall" in only:
            window.timeline.set_frame(0)
            k4_idle = run_with_heartbeat(app, window, play=False)
            k4_playing = run_with_heartbeat(app, window, play=True)
        window.close()

    print(f"VPP Studio GUI benchmark — {torch.get_num_threads()} torch thread(s), "
          f"{os.cpu_count()} CPU(s), {model_label}, clip {Path(args.clip).parent.name}\n")
    print("| measure | result | target |")
    print("|---|---|---|")
    if ov is not None:
        print(f"| overlay render 1280x720, 10 instances + heatmap (NumPy) | median {ov['render_median']:.1f} ms, "
              f"p95 {ov['render_p95']:.1f} ms | < 16 ms |")
        print(f"| same + frame and layers into the view, repainted | median {ov['view_median']:.1f} ms, "
              f"p95 {ov['view_p95']:.1f} ms | — |")
    if "stall" in only:
        for name, r in (("view idle", idle), ("playing", playing)):
            print(f"| longest UI stall while inference runs ({name}) | {r['max_gap']:.1f} ms "
                  f"(p99 {r['p99_gap']:.1f} ms; {r['frames']} frames, {r['ms_per_frame']:.0f} ms/frame) | < 50 ms |")
    if op is not None:
        print(f"| open a 1000-frame folder until the first frame shows | {op['first_frame_ms']:.0f} ms | < 1 s |")
        print(f"| memory after scrubbing all 1000 frames (RSS) | {op['rss_before']:.0f} MB → "
              f"{op['rss_after']:.0f} MB ({op['scrub_ms_per_frame']:.1f} ms/frame) | bounded (256 MB frame cache) |")
    if br is not None:
        print(f"| brush stroke on 1280x720 with mask layers, per move (200 moves, r 20 px; draw + events + "
              f"repaint) | median {br['move_median']:.1f} ms, p95 {br['move_p95']:.1f} ms (max {br['move_max']:.1f}; "
              f"release {br['end_ms']:.1f} ms; repaint with no stroke: median {br['base_median']:.1f} ms) | < 16 ms |")
        print(f"| brush commit, 40 px stroke on a 1280x720 track mask (brush_mask + Document.paint) | "
              f"median {br['commit_median']:.1f} ms, p95 {br['commit_p95']:.1f} ms "
              f"(paint alone {br['paint_median']:.1f} ms) | — |")
    if k4 is not None:
        print(f"| 4K clip (3840x2160 JPEG, shown at {k4['shown']}): step to a frame shown before (cached) | "
              f"median {k4['cached_median']:.1f} ms, p95 {k4['cached_p95']:.1f} ms (max {k4['cached_max']:.1f}) "
              "| ≤ 50 ms |")
        print(f"| 4K: jump to a frame not decoded yet (frame caches dropped) | median {k4['jump_median']:.0f} ms, "
              f"max {k4['jump_max']:.0f} ms | ≤ 150 ms |")
        print(f"| 4K: arrow key held (a step every 40 ms) | median {k4['held_median']:.1f} ms, p95 "
              f"{k4['held_p95']:.1f} ms (max {k4['held_max']:.1f}; {k4['held_missed']} of {k4['held_steps']} frames "
              "not read ahead in time) | — |")
    for name, r in (("view idle", k4_idle), ("playing", k4_playing)):
        if r is not None:
            print(f"| 4K: longest UI stall while inference runs ({name}) | {r['max_gap']:.1f} ms "
                  f"(p99 {r['p99_gap']:.1f} ms; {r['frames']} frames, {r['ms_per_frame']:.0f} ms/frame) | < 50 ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
