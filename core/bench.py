"""Speed benchmark: dense vs VPP at several PKRs (and a random-drop baseline), in one process.

All configurations run interleaved (one timed call of each per round) after warm-up, each in its own
session over the one model (its own PKR, mode and clip state), so every timed frame is a steady-state
frame with a previous frame; figures are medians over rounds. Ratios (speedup, FLOP ratio,
realization = speedup / FLOP ratio) compare runs measured in the same process and rounds, so a
shared, noisy machine shifts them far less than absolute times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from core.build import VPPConfig, build_vpp
from core.model.backbone import PruneMode
from core.model.vpp import VPPModel
from core.preprocess import prepare_frame
from core.session import InferenceSession


@dataclass
class BenchRow:
    variant: str
    name: str  # "dense", "vpp@0.4", "random@0.4"
    mode: str
    pkr_target: float
    keep_ratio: float  # measured
    backbone_gflops: float
    backbone_ms: float
    e2e_gflops: float
    e2e_ms: float
    backbone_speedup: float = 1.0
    backbone_flop_ratio: float = 1.0
    backbone_realization: float = 1.0
    e2e_speedup: float = 1.0
    e2e_flop_ratio: float = 1.0
    e2e_realization: float = 1.0


def _configs(pkrs: list[float], random_baseline: bool) -> list[tuple[str, PruneMode, float]]:
    out: list[tuple[str, PruneMode, float]] = [("dense", "dense", 1.0)]
    out += [(f"vpp@{p:g}", "vpp", p) for p in pkrs]
    if random_baseline and pkrs:
        out.append((f"random@{min(pkrs):g}", "random", min(pkrs)))
    return out


def run_bench(
    variants: list[str],
    pkrs: list[float],
    *,
    size: tuple[int, int] = (960, 540),
    repeats: int = 7,
    warmup: int = 2,
    device: str = "cpu",
    random_baseline: bool = True,
    log: Callable[[str], None] = print,
) -> list[BenchRow]:
    """Time every (variant, configuration) with seeded random weights at the frame's own size."""
    rows: list[BenchRow] = []
    for variant in variants:
        torch.manual_seed(0)
        config = VPPConfig.for_variant(variant, input_long_side=max(size))
        rows += bench_model(build_vpp(config).eval(), config, variant, pkrs, size=size, repeats=repeats,
                            warmup=warmup, device=device, random_baseline=random_baseline, log=log)
    return rows


def bench_model(
    model: VPPModel,
    config: VPPConfig,
    label: str,
    pkrs: list[float],
    *,
    size: tuple[int, int] = (960, 540),
    repeats: int = 7,
    warmup: int = 2,
    device: str = "cpu",
    random_baseline: bool = True,
    log: Callable[[str], None] = print,
) -> list[BenchRow]:
    """Time one model (at ``config.input_long_side``) dense and at each PKR; ratios against its dense row."""
    width, height = size
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)]
    configs = _configs(pkrs, random_baseline)
    # one session per configuration over the same model: each keeps its own clip state and run settings
    sessions = {
        name: InferenceSession(model, config, device=device, pkr=pkr, mode=mode) for name, mode, pkr in configs
    }
    log(f"[{label}] warming up {len(configs)} configurations at {width}x{height}")
    bb_times: dict[str, list[float]] = {n: [] for n, _, _ in configs}
    e2e_times: dict[str, list[float]] = {n: [] for n, _, _ in configs}
    info: dict[str, tuple[float, float, float]] = {}
    for rnd in range(warmup + repeats):
        for name, _mode, _pkr in configs:
            s = sessions[name]
            frame = frames[rnd % 2]
            bb_ms, bb_out = _time_backbone(s, frame)
            t0 = time.perf_counter()
            res = s.step(frame)
            e2e_ms = (time.perf_counter() - t0) * 1000
            if rnd >= warmup:
                bb_times[name].append(bb_ms)
                e2e_times[name].append(e2e_ms)
                info[name] = (res.keep_ratio, bb_out.flops / 1e9, res.gflops)
        if rnd >= warmup:
            log(f"[{label}] round {rnd - warmup + 1}/{repeats}")
    rows = []
    for name, mode, pkr in configs:
        keep, bb_gf, e2e_gf = info[name]
        rows.append(BenchRow(label, name, mode, pkr, keep, bb_gf, statistics.median(bb_times[name]), e2e_gf,
                             statistics.median(e2e_times[name])))
    dense = rows[0]
    for r in rows:
        r.backbone_speedup = dense.backbone_ms / r.backbone_ms
        r.backbone_flop_ratio = dense.backbone_gflops / r.backbone_gflops
        r.backbone_realization = r.backbone_speedup / r.backbone_flop_ratio
        r.e2e_speedup = dense.e2e_ms / r.e2e_ms
        r.e2e_flop_ratio = dense.e2e_gflops / r.e2e_gflops
        r.e2e_realization = r.e2e_speedup / r.e2e_flop_ratio
    return rows


@torch.inference_mode()
def _time_backbone(session: InferenceSession, frame: np.ndarray):
    """Backbone alone on this session's steady-state previous frame (its state is not advanced)."""
    cfg = session.config
    images, _ = prepare_frame(frame, cfg.input_long_side, cfg.patch)
    model = session.model
    x = ((images.to(session.device) - model.pixel_mean) / model.pixel_std).contiguous()
    state = session.state.prune
    _sync(session.device)
    t0 = time.perf_counter()
    with session.autocast():
        out = model.backbone(x, state, keep=session.keep, mode=session.mode)
    _sync(session.device)
    return (time.perf_counter() - t0) * 1000, out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def format_table(rows: list[BenchRow]) -> str:
    head = (
        "| variant | config | PKR | backbone GFLOPs | backbone ms | speedup | FLOP ratio | realization "
        "| e2e GFLOPs | e2e ms | e2e speedup |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r.variant} | {r.name} | {r.keep_ratio:.3f} | {r.backbone_gflops:.1f} | {r.backbone_ms:.1f} "
            f"| {r.backbone_speedup:.2f}x | {r.backbone_flop_ratio:.2f}x | {r.backbone_realization:.2f} "
            f"| {r.e2e_gflops:.1f} | {r.e2e_ms:.1f} | {r.e2e_speedup:.2f}x |"
        )
    return "\n".join(lines)


def rows_to_json(rows: list[BenchRow], meta: dict) -> dict:
    return {"meta": meta, "rows": [asdict(r) for r in rows]}
