"""Time ``vpp infer CLIP --pkr P --out r.json`` as whole processes (start to exit), PKRs interleaved, medians.

    .venv/bin/python scripts/bench_infer.py [CLIP] --model M.safetensors [--pkr 1.0 0.4] [--rounds 5]
        [--threads N] [--env OMP_WAIT_POLICY=PASSIVE] [--baseline "python -m core.cli" --baseline-cwd OLD_TREE]
        [--json bench.json] [--markdown bench.md]

Each round runs every configuration once as a subprocess, in order (1.0, 0.4, ...), the order reversed
every other round so a drift in the machine's load hits all alike; ``--warmup`` untimed runs come first
(page cache). The wall time of each process is measured from here. With ``--profile`` (the default) the
command under test is given ``vpp infer --profile``, and its stage split (start-up, model load, reading,
preprocessing, backbone, head, post-processing, RLE, writing) is reported as medians over the rounds;
the per-frame backbone speedup comes from the same runs. ``--baseline CMD`` adds the same runs of
another ``vpp`` command (an older tree, say: ``--baseline "/path/.venv/bin/python -m core.cli"
--baseline-cwd /tmp/old``, or the same one under another setting: ``--baseline "env OMP_WAIT_POLICY=PASSIVE
.venv/bin/vpp" --baseline-args=--profile``), interleaved with the others, without ``--profile`` unless given.

Every run's results JSON is hashed: the report says whether the rounds of a configuration gave the same
bytes, and whether the command under test and the baseline agree at each PKR (else: masks equal?
largest score difference). The machine's load average before each run is kept in the JSON; on a shared
machine read the spread (max - min over median) before the medians. Each run's CPU time (user + system, of
the process and its threads) is reported too: on a busy machine it moves less than the wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT / "data" / "bench_clip_960x540.mp4"
PROFILE_TAG = "vpp-profile: "


def _default_vpp() -> list[str]:
    exe = Path(sys.executable).with_name("vpp")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "core.cli"]


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], cwd: str | None, env: dict[str, str]) -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cpu = _children_cpu()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"error: {shlex.join(cmd)} exited with {proc.returncode}:\n{tail}")
    profile = None
    for line in proc.stderr.splitlines():
        if line.startswith(PROFILE_TAG):
            profile = json.loads(line[len(PROFILE_TAG):])
    return {"wall_s": wall, "cpu_s": cpu, "load_1min": load, "profile": profile}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare_results(a: Path, b: Path) -> dict:
    """Two YTVIS results files: identical bytes, else whether tracks and masks agree and the largest score gap."""
    if a.read_bytes() == b.read_bytes():
        return {"identical": True, "masks_equal": True, "max_score_diff": 0.0}
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    same_tracks = len(ra) == len(rb) and all(x["category_id"] == y["category_id"] for x, y in zip(ra, rb))
    masks = same_tracks and all(x["segmentations"] == y["segmentations"] for x, y in zip(ra, rb))
    diff = max((abs(x["score"] - y["score"]) for x, y in zip(ra, rb)), default=0.0) if same_tracks else None
    return {"identical": False, "masks_equal": bool(masks), "max_score_diff": diff}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: list[dict], pkrs: list[float], labels: list[str]) -> dict:
    """Medians, spreads, PKR-1.0-over-P ratios (of medians and per round) and stage medians per configuration."""
    out: dict = {"configs": {}, "ratios": {}}
    for label in labels:
        for pkr in pkrs:
            mine = [r for r in runs if r["label"] == label and r["pkr"] == pkr]
            walls = [r["wall_s"] for r in mine]
            med = _median(walls)
            stages: dict[str, float] = {}
            profiles = [r["profile"] for r in mine if r.get("profile")]
            if profiles:
                names = {k for p in profiles for k in {**p["seconds"], **p["beside"]}}
                stages = {k: _median([{**p["seconds"], **p["beside"]}.get(k, 0.0) for p in profiles]) for k in names}
            out["configs"][f"{label}@{pkr:g}"] = {
                "label": label, "pkr": pkr, "median_s": med, "min_s": min(walls), "max_s": max(walls),
                "spread": (max(walls) - min(walls)) / med if med else None, "walls_s": walls,
                "frames": profiles[0]["frames"] if profiles else None, "stages_s": stages,
                "cpu_median_s": _median([r["cpu_s"] for r in mine if r.get("cpu_s") is not None]),
                "same_output_every_round": len({r["sha256"] for r in mine}) == 1,
            }
        dense = out["configs"].get(f"{label}@1")
        for pkr in pkrs:
            if pkr == 1.0 or dense is None:
                continue
            cfg = out["configs"][f"{label}@{pkr:g}"]
            per_round = [d["wall_s"] / p["wall_s"] for d, p in _pairs(runs, label, pkr)]
            ratio = {"whole_process": dense["median_s"] / cfg["median_s"],
                     "cpu": (dense["cpu_median_s"] / cfg["cpu_median_s"]
                             if dense.get("cpu_median_s") and cfg.get("cpu_median_s") else None),
                     "per_round_median": _median(per_round),
                     "per_round_min": min(per_round, default=None), "per_round_max": max(per_round, default=None)}
            for stage in ("backbone", "head"):
                if dense["stages_s"].get(stage) and cfg["stages_s"].get(stage):
                    ratio[stage] = dense["stages_s"][stage] / cfg["stages_s"][stage]
            if dense["stages_s"].get("backbone") and cfg["stages_s"].get("backbone"):
                ratio["backbone+head"] = (sum(dense["stages_s"].get(k, 0.0) for k in ("backbone", "head"))
                                          / sum(cfg["stages_s"].get(k, 0.0) for k in ("backbone", "head")))
            out["ratios"][f"{label}@{pkr:g}"] = ratio
    return out


def _pairs(runs: list[dict], label: str, pkr: float):
    by_round: dict[int, dict] = {}
    for r in runs:
        if r["label"] == label and r["pkr"] in (1.0, pkr):
            by_round.setdefault(r["round"], {})[r["pkr"]] = r
    return [(d[1.0], d[pkr]) for d in by_round.values() if 1.0 in d and pkr in d]


def markdown(summary: dict, equal: dict) -> str:
    rows = ["| config | frames | median s | min–max s | spread | ratio 1.0/P (per-round range) | CPU s (ratio) | "
            "backbone ms/frame | head ms/frame | backbone speedup |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, c in summary["configs"].items():
        r = summary["ratios"].get(key, {})
        n = c["frames"] or 0
        bb, hd = c["stages_s"].get("backbone"), c["stages_s"].get("head")
        ratio = (f"**{r['whole_process']:.2f}×** ({r['per_round_min']:.2f}–{r['per_round_max']:.2f})"
                 if r else "—")
        cpu = "—" if c.get("cpu_median_s") is None else f"{c['cpu_median_s']:.1f}"
        if r.get("cpu"):
            cpu += f" ({r['cpu']:.2f}×)"
        rows.append(f"| {key} | {n or '?'} | {c['median_s']:.1f} | {c['min_s']:.1f}–{c['max_s']:.1f} | "
                    f"{100 * c['spread']:.0f}% | {ratio} | {cpu} | {1000 * bb / n if bb and n else float('nan'):.1f} | "
                    f"{1000 * hd / n if hd and n else float('nan'):.1f} | "
                    f"{(str(round(r['backbone'], 2)) + '×') if r.get('backbone') else '—'} |")
    stage_keys: list[str] = []
    for c in summary["configs"].values():
        stage_keys += [k for k in c["stages_s"] if k not in stage_keys]
    if stage_keys:
        profiled = [(k, c) for k, c in summary["configs"].items() if c["stages_s"]]
        rows += ["", "| stage (median s) | " + " | ".join(k for k, _ in profiled) + " |",
                 "| --- |" + " --- |" * len(profiled)]
        for s in stage_keys:
            rows.append(f"| {s} | " + " | ".join(f"{c['stages_s'].get(s, 0.0):.2f}" for _, c in profiled) + " |")
    if equal:
        rows += ["", "| output check | result |", "| --- | --- |"]
        for k, v in equal.items():
            text = ("identical bytes" if v["identical"] else
                    f"masks {'equal' if v['masks_equal'] else 'DIFFER'}, max score diff {v['max_score_diff']}")
            rows.append(f"| {k} | {text} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", nargs="?", default=str(DEFAULT_CLIP),
                    help=f"video or frame folder (default {DEFAULT_CLIP})")
    ap.add_argument("--model", required=True, help="checkpoint passed to vpp infer --model")
    ap.add_argument("--pkr", nargs="+", type=float, default=[1.0, 0.4], help="PKRs (1.0 is the reference)")
    ap.add_argument("--mode", default="vpp", choices=["vpp", "random", "dense"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before the rounds")
    ap.add_argument("--threads", type=int, default=None, help="vpp infer --threads for the command under test")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for every run")
    ap.add_argument("--vpp", default=None, help="the command under test (default: the venv's vpp)")
    ap.add_argument("--baseline", default=None, help="another vpp command to interleave (no --profile/--threads)")
    ap.add_argument("--baseline-cwd", default=None, help="working folder for the baseline command")
    ap.add_argument("--args", default="",
                    help="extra vpp infer options for the command under test, as one string: --args='--prefetch 0'")
    ap.add_argument("--baseline-args", default="", help="the same for the baseline: --baseline-args=--profile")
    ap.add_argument("--no-profile", dest="profile", action="store_false", help="don't pass --profile")
    ap.add_argument("--json", default=None, help="write every run and the summary here")
    ap.add_argument("--markdown", default=None, help="also write the tables here")
    args = ap.parse_args(argv)
    pkrs = [1.0, *sorted({p for p in args.pkr if p != 1.0}, reverse=True)]
    env = dict(os.environ)
    for item in args.env:
        name, _, value = item.partition("=")
        env[name] = value
    clip = str(Path(args.clip).resolve())
    model = str(Path(args.model).resolve())
    under_test = shlex.split(args.vpp) if args.vpp else _default_vpp()
    commands = {"new": (under_test, None, True, shlex.split(args.args))}
    if args.baseline:
        commands["baseline"] = (shlex.split(args.baseline), args.baseline_cwd, False, shlex.split(args.baseline_args))
    configs = [(label, pkr) for label in commands for pkr in pkrs]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_infer.") as tmp:
        def one(label: str, pkr: float, round_: int) -> dict:
            cmd, cwd, ours, extra = commands[label]
            out = Path(tmp) / f"{label}_{pkr:g}_{round_}.json"
            full = [*cmd, "infer", clip, "--model", model, "--pkr", f"{pkr:g}", "--mode", args.mode, "--out", str(out),
                    *extra]
            if ours and args.profile:
                full.append("--profile")
            if ours and args.threads:
                full += ["--threads", str(args.threads)]
            r = _run(full, cwd, env)
            r.update(label=label, pkr=pkr, round=round_, sha256=_digest(out), out=str(out))
            return r

        for w in range(args.warmup):
            one(*configs[w % len(configs)], -1 - w)
        for rnd in range(args.rounds):
            order = configs if rnd % 2 == 0 else configs[::-1]
            for label, pkr in order:
                r = one(label, pkr, rnd)
                runs.append(r)
                print(f"round {rnd + 1}/{args.rounds} {label}@{pkr:g}: {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s "
                      f"(load {r['load_1min']:.2f})", file=sys.stderr, flush=True)
        equal = {}
        if args.baseline:
            for pkr in pkrs:
                a = next(r for r in runs if r["label"] == "new" and r["pkr"] == pkr)
                b = next(r for r in runs if r["label"] == "baseline" and r["pkr"] == pkr)
                equal[f"new vs baseline @ {pkr:g}"] = compare_results(Path(a["out"]), Path(b["out"]))
    summary = summarize(runs, pkrs, list(commands))
    table = markdown(summary, equal)
    print(table)
    meta = {"clip": clip, "model": model, "rounds": args.rounds, "mode": args.mode, "threads": args.threads,
            "env": args.env, "command": under_test, "baseline": args.baseline, "cpus": os.cpu_count()}
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "summary": summary, "equal": equal,
                                               "runs": runs}, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
