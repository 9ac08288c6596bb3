"""The Python steps of ``scripts/device_check.sh`` (the prepared GPU check of issue 27); each usable alone.

    python scripts/device_check.py env
    python scripts/device_check.py bench-default --device cuda [--size 960x540] [--repeats 7] [--json rows.json]
    python scripts/device_check.py compare CPU.json CUDA.json [--min-iou 0.99] [--json verdict.json]
    python scripts/device_check.py fused --device cuda [--json fused.json]
    python scripts/device_check.py summary WORK_DIR OUT_DIR

``compare`` checks that two ``vpp infer`` results of the same clip (YTVIS results JSON, one video) hold the
same tracks: as many tracks, matched one to one by mask IoU over the whole clip (Hungarian matching), each
pair of the same category with a clip IoU (intersections over unions summed over frames) of at least
``--min-iou``; it also reports the lowest per-frame IoU, frames where only one of the pair has a mask and the
largest score difference. Exit status 0: same tracks; 1: not; 2: a file could not be read.

``fused`` runs the fused deformable-attention kernel (mmcv's op or Deformable DETR's extension, whichever
``core.model.deform_attn`` found) against the pure PyTorch path on CUDA at two sizes, forward outputs and
the gradients of the backward pass, and times both. Exit status 3 when no kernel is importable (skipped).

Exit status 3 means "skipped" for every subcommand (the shell script reports it as such).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SKIPPED = 3


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def _write_json(path: str | None, data) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=1))


# -- env ----------------------------------------------------------------------------------------------------
def cmd_env(args) -> int:
    import torch

    from core.model.deform_attn import FUSED_KERNEL_NAME

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads(),
            "fused_kernel": FUSED_KERNEL_NAME}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm=f"{p.major}.{p.minor}",
                    gpus=torch.cuda.device_count())
    for name in ("numpy", "cv2", "pycocotools", "safetensors", "scipy", "PIL"):
        try:
            mod = __import__(name)
            info[name] = getattr(mod, "__version__", "?")
        except Exception as exc:  # reported, not fatal: the steps that need it fail with their own error
            info[name] = f"MISSING ({type(exc).__name__}: {exc})"
    print(json.dumps(info, indent=1))
    _write_json(args.json, info)
    missing = [k for k, v in info.items() if str(v).startswith("MISSING")]
    print(f"{info.get('gpu', 'no GPU')}, torch {info['torch']}, Python {info['python']}, fused kernel "
          f"{info['fused_kernel'] or 'none'}" + (f"; missing: {', '.join(missing)}" if missing else ""))
    return 1 if missing else 0


# -- the default model's bench rows -------------------------------------------------------------------------
def cmd_bench_default(args) -> int:
    import torch

    from core.bench import bench_model, format_table, rows_to_json
    from core.resources import load_model
    from core.session_base import resolve_device

    resolve_device(args.device)
    torch.manual_seed(0)
    loaded = load_model(None, device="cpu")
    if getattr(loaded, "kind", "vpp") != "vpp":
        print(f"error: the default model {loaded.source} is not this project's model; nothing to bench",
              file=sys.stderr)
        return 1
    label = "default" + ("" if loaded.trained else " (untrained)")
    rows = bench_model(loaded.model.eval(), loaded.config, label, args.pkr, size=args.size, repeats=args.repeats,
                       warmup=args.warmup, device=args.device, random_baseline=False,
                       log=lambda m: print(m, file=sys.stderr))
    print(format_table(rows))
    _write_json(args.json, rows_to_json(rows, {"model": str(loaded.source), "device": args.device,
                                               "size": list(args.size), "repeats": args.repeats,
                                               "torch": torch.__version__}))
    return 0


# -- compare two results ------------------------------------------------------------------------------------
def _tracks(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "annotations" in data:  # a GT-style file: not what vpp infer writes
        raise ValueError(f"{path}: holds annotations, not a results list")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a YTVIS results list (vpp infer --out), got {type(data).__name__}")
    videos = {t.get("video_id") for t in data}
    if len(videos) > 1:
        raise ValueError(f"{path}: results of {len(videos)} videos; compare one clip's results")
    return data


def _as_rles(track: dict, n: int) -> list:
    from core.data.rle import as_coco, to_compressed

    segs = list(track.get("segmentations") or [])
    segs += [None] * (n - len(segs))
    return [as_coco([to_compressed(s)])[0] if s else None for s in segs]


def compare_results(a: list[dict], b: list[dict], *, min_iou: float = 0.99) -> dict:
    """Clip IoU matrix, one-to-one matching and the verdict (see the module docstring)."""
    import numpy as np
    from pycocotools import mask as mask_utils
    from scipy.optimize import linear_sum_assignment

    n = max([len(t.get("segmentations") or []) for t in a + b] + [0])
    ra, rb = [_as_rles(t, n) for t in a], [_as_rles(t, n) for t in b]
    inter = np.zeros((len(a), len(b)))
    union = np.zeros((len(a), len(b)))
    frame_min = np.ones((len(a), len(b)))
    only_one = np.zeros((len(a), len(b)), int)
    for f in range(n):
        for i in range(len(a)):
            ma = ra[i][f]
            area_a = float(mask_utils.area(ma)) if ma is not None else 0.0
            for j in range(len(b)):
                mb = rb[j][f]
                area_b = float(mask_utils.area(mb)) if mb is not None else 0.0
                if area_a == 0 and area_b == 0:
                    continue
                if area_a == 0 or area_b == 0:
                    inter_f = 0.0
                    only_one[i, j] += 1
                else:
                    iou = float(mask_utils.iou([ma], [mb], [0])[0, 0])
                    inter_f = iou * (area_a + area_b) / (1.0 + iou)
                u = area_a + area_b - inter_f
                inter[i, j] += inter_f
                union[i, j] += u
                frame_min[i, j] = min(frame_min[i, j], inter_f / u if u else 1.0)
    clip_iou = np.where(union > 0, inter / np.maximum(union, 1e-9), 1.0)
    pairs = []
    if len(a) and len(b):
        rows, cols = linear_sum_assignment(-clip_iou)
        for i, j in zip(rows.tolist(), cols.tolist()):
            pairs.append({"a": i, "b": j, "clip_iou": round(float(clip_iou[i, j]), 5),
                          "min_frame_iou": round(float(frame_min[i, j]), 5),
                          "frames_one_side_only": int(only_one[i, j]),
                          "category_a": a[i].get("category_id"), "category_b": b[j].get("category_id"),
                          "score_diff": round(abs(float(a[i].get("score", 0)) - float(b[j].get("score", 0))), 5)})
    problems = []
    if len(a) != len(b):
        problems.append(f"{len(a)} tracks against {len(b)}")
    for p in pairs:
        if p["clip_iou"] < min_iou:
            problems.append(f"track {p['a']} ~ {p['b']}: clip IoU {p['clip_iou']:.4f} < {min_iou}")
        if p["category_a"] != p["category_b"]:
            problems.append(f"track {p['a']} ~ {p['b']}: category {p['category_a']} against {p['category_b']}")
    return {"tracks_a": len(a), "tracks_b": len(b), "frames": n, "min_iou": min_iou, "pairs": pairs,
            "lowest_clip_iou": min([p["clip_iou"] for p in pairs], default=None),
            "lowest_frame_iou": min([p["min_frame_iou"] for p in pairs], default=None),
            "largest_score_diff": max([p["score_diff"] for p in pairs], default=None),
            "same_tracks": not problems, "problems": problems,
            "note": "no tracks on either side: nothing was compared" if not a and not b else ""}


def cmd_compare(args) -> int:
    try:
        a, b = _tracks(Path(args.a)), _tracks(Path(args.b))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdict = compare_results(a, b, min_iou=args.min_iou)
    verdict.update(a=str(args.a), b=str(args.b))
    _write_json(args.json, verdict)
    head = (f"{'SAME TRACKS' if verdict['same_tracks'] else 'DIFFERENT'}: {verdict['tracks_a']} vs "
            f"{verdict['tracks_b']} tracks over {verdict['frames']} frames; lowest clip IoU "
            f"{verdict['lowest_clip_iou']}, lowest frame IoU {verdict['lowest_frame_iou']}, largest score "
            f"difference {verdict['largest_score_diff']}")
    print(head + (f" ({verdict['note']})" if verdict["note"] else ""))
    for p in verdict["problems"]:
        print(f"  {p}")
    return 0 if verdict["same_tracks"] else 1


# -- the fused kernel ----------------------------------------------------------------------------------------
def _time(fn, sync, repeats=20) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def cmd_fused(args) -> int:
    import torch

    from core.model import deform_attn
    from core.model.deform_attn import FUSED_KERNEL_NAME, MSDeformAttn, fused_kernel_available

    if not fused_kernel_available():
        print("skipped: no fused deformable-attention kernel is importable (mmcv with compiled ops, or Deformable "
              "DETR's MultiScaleDeformableAttention extension); set DEFORM_OPS_SRC to a checkout of "
              "Deformable DETR's models/ops for device_check.sh to build it")
        _write_json(args.json, {"status": "skipped", "kernel": None})
        return SKIPPED
    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        print(f"skipped: the fused kernel {FUSED_KERNEL_NAME} runs on CUDA only (device {args.device})")
        _write_json(args.json, {"status": "skipped", "kernel": FUSED_KERNEL_NAME})
        return SKIPPED
    device = torch.device(args.device)
    results, ok = [], True
    # (dim, heads, levels, points, batch, queries, level sizes): a unit-sized case and a Mask2Former-sized one
    cases = [(32, 4, 3, 2, 2, 10, [(8, 8), (4, 4), (2, 2)]),
             (256, 8, 3, 4, 1, 2040, [(68, 120), (34, 60), (17, 30)])]
    for dim, heads, levels, points, batch, queries, shapes in cases:
        gen = torch.Generator().manual_seed(8)
        pure = MSDeformAttn(dim=dim, num_heads=heads, num_levels=levels, num_points=points, fused=False)
        with torch.no_grad():
            for p in pure.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        fused = MSDeformAttn(dim=dim, num_heads=heads, num_levels=levels, num_points=points, fused=True)
        fused.load_state_dict(pure.state_dict())
        pure, fused = pure.to(device), fused.to(device)
        s = sum(h * w for h, w in shapes)
        query = torch.randn(batch, queries, dim, generator=gen).to(device)
        ref = torch.rand(batch, queries, levels, 2, generator=gen).to(device)
        value = torch.randn(batch, s, dim, generator=gen).to(device)
        sh = torch.tensor(shapes, dtype=torch.long, device=device)
        starts = torch.cat([sh.new_zeros(1), (sh[:, 0] * sh[:, 1]).cumsum(0)[:-1]])
        outs, grads = [], []
        for m in (pure, fused):
            q, v = query.clone().requires_grad_(True), value.clone().requires_grad_(True)
            out = m(q, ref, v, sh, starts)
            out.square().sum().backward()
            outs.append(out.detach())
            grads.append((q.grad, v.grad))
        err = (outs[0] - outs[1]).abs().max().item()
        gerr = max((g0 - g1).abs().max().item() for g0, g1 in zip(grads[0], grads[1]))
        scale = outs[0].abs().max().item() or 1.0
        gscale = max(g.abs().max().item() for g in grads[0]) or 1.0
        case_ok = err <= 1e-4 * max(1.0, scale) and gerr <= 1e-3 * max(1.0, gscale)
        ok &= case_ok

        def sync():
            torch.cuda.synchronize(device)

        inputs = (query, ref, value, sh, starts)
        with torch.no_grad():
            t_pure = _time(lambda m=pure, x=inputs: m(*x), sync)
            t_fused = _time(lambda m=fused, x=inputs: m(*x), sync)
        results.append({"dim": dim, "heads": heads, "levels": levels, "points": points, "queries": queries,
                        "value_tokens": s, "max_abs_diff": err, "max_abs_grad_diff": gerr, "ok": case_ok,
                        "pure_ms": round(t_pure, 3), "fused_ms": round(t_fused, 3)})
        print(f"{'ok' if case_ok else 'MISMATCH'}: {queries} queries x {s} tokens, dim {dim}: max |diff| {err:.2e} "
              f"(grad {gerr:.2e}); pure {t_pure:.2f} ms, fused {t_fused:.2f} ms")
    _write_json(args.json, {"status": "ok" if ok else "mismatch", "kernel": FUSED_KERNEL_NAME,
                            "module": deform_attn.__name__, "cases": results})
    return 0 if ok else 1


# -- summary -------------------------------------------------------------------------------------------------
def cmd_summary(args) -> int:
    """Merge the steps' JSON (WORK) into OUT/bench.json and OUT/infer_compare.json, and write OUT/summary.md
    (the steps table from WORK/steps.tsv, the bench tables, the comparisons); print it."""
    from core.bench import BenchRow, format_table

    work, out = Path(args.work), Path(args.out)
    lines = ["# VPP Studio device check", ""]
    env = work / "env.json"
    if env.is_file():
        e = json.loads(env.read_text())
        lines += [f"{e.get('gpu', 'no GPU')} ({e.get('gpu_memory_gib', '-')} GiB), torch {e.get('torch')} "
                  f"(CUDA {e.get('cuda_build')}), Python {e.get('python')}, fused kernel: "
                  f"{e.get('fused_kernel') or 'none'}", ""]
    lines += ["| step | status | seconds | note |", "|---|---|---|---|"]
    steps = work / "steps.tsv"
    failed = 0
    if steps.is_file():
        for row in steps.read_text().splitlines():
            name, status, secs, note = [*row.split("\t"), "", "", "", ""][:4]
            failed += status.startswith("FAILED") or status.startswith("timed out")
            lines.append(f"| {name} | {status} | {secs} | {note} |")
    bench = {"runs": []}
    tables = []
    for path in sorted(work.glob("bench_*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        bench["runs"].append({"file": path.name, **data})
        rows = [BenchRow(**r) for r in data.get("rows", [])]
        if rows:
            tables.append(format_table(rows))
    if bench["runs"]:
        (out / "bench.json").write_text(json.dumps(bench, indent=1))
        meta = bench["runs"][0].get("meta", {})
        lines += ["", f"## `vpp bench` ({meta.get('device', '?')}, {meta.get('size', '?')})", ""]
        lines += ["\n\n".join(tables)]
    compares = []
    for path in sorted(work.glob("compare_*.json")):
        try:
            compares.append({"file": path.name, **json.loads(path.read_text())})
        except (OSError, ValueError):
            continue
    timings = {}
    timing_file = work / "infer_times.tsv"
    if timing_file.is_file():
        for row in timing_file.read_text().splitlines():
            clip, device, secs, frames = [*row.split("\t"), "", "", "", ""][:4]
            timings.setdefault(clip, {})[device] = (secs, frames)
    if compares:
        (out / "infer_compare.json").write_text(json.dumps({"comparisons": compares, "timings": timings},
                                                           indent=1))
        lines += ["", "## `vpp infer`: device against CPU", "",
                  "| clip | tracks (CPU / device) | lowest clip IoU | lowest frame IoU | largest score diff | "
                  "whole process s (CPU / device) | verdict |", "|---|---|---|---|---|---|---|"]
        for c in compares:
            clip = c["file"][len("compare_"):-len(".json")]
            t = timings.get(clip, {})
            secs = " / ".join(t.get(d, ("-",))[0] for d in ("cpu", "device"))
            verdict = "same tracks" if c["same_tracks"] else "DIFFERENT: " + "; ".join(c["problems"][:3])
            lines.append(f"| {clip} | {c['tracks_a']} / {c['tracks_b']} | {c['lowest_clip_iou']} | "
                         f"{c['lowest_frame_iou']} | {c['largest_score_diff']} | {secs} | {verdict}"
                         f"{' (' + c['note'] + ')' if c.get('note') else ''} |")
    fused = work / "fused.json"
    if fused.is_file():
        f = json.loads(fused.read_text())
        lines += ["", f"## Fused deformable attention: {f.get('status')} ({f.get('kernel') or 'no kernel'})", ""]
        for case in f.get("cases", []):
            lines.append(f"- {case['queries']} queries x {case['value_tokens']} tokens, dim {case['dim']}: max |diff| "
                         f"{case['max_abs_diff']:.2e}, grad {case['max_abs_grad_diff']:.2e}; pure "
                         f"{case['pure_ms']} ms, fused {case['fused_ms']} ms")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print(text)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("env", help="Python, torch, GPU, fused kernel and dependency versions")
    p.add_argument("--json")
    p.set_defaults(func=cmd_env)
    p = sub.add_parser("bench-default", help="vpp bench's rows for the embedded default model")
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", type=_size, default=(960, 540))
    p.add_argument("--pkr", type=float, nargs="+", default=[0.7, 0.55, 0.4])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json")
    p.set_defaults(func=cmd_bench_default)
    p = sub.add_parser("compare", help="same tracks and masks in two vpp infer results of one clip?")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--min-iou", type=float, default=0.99)
    p.add_argument("--json")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("fused", help="the fused deformable-attention kernel against the PyTorch path")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json")
    p.set_defaults(func=cmd_fused)
    p = sub.add_parser("summary", help="merge the steps' JSON and write summary.md")
    p.add_argument("work")
    p.add_argument("out")
    p.set_defaults(func=cmd_summary)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
