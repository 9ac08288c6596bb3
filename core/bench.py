"""Speed benchmark: dense vs VPP at several PKRs (and a random-drop baseline), in one process.

All configurations run interleaved (one timed call of each per round) after warm-up, each in its own
session over the one model (its own PKR, mode and clip state), so every timed frame is a steady-state
frame with a previous frame; figures are medians over rounds. Ratios (speedup, FLOP ratio,
realization = speedup / FLOP ratio) compare runs measured in the same process and rounds, so a
shared, noisy machine shifts them far less than absolute times.

Variants "adapter-tiny" / "adapter-small" time the authors' released architecture (ViT-Adapter + Mask2Former +
ROVIS tracking, :class:`core.release_session.ReleaseSession`) with seeded random weights, by default dense and at
the release's two keep schedules (``RELEASE_KEEP``: "vpp@0.55" and "vpp@0.4", nominal PKR 0.5415 / 0.4133).
Their "backbone" is the whole ViT-Adapter (spatial prior module, interactions, pruned ViT); its GFLOPs are the
pruned ViT's analytic count plus the adapter's other layers, and end to end adds the Mask2Former head, both counted
once on a dense frame by ``torch.utils.flop_counter`` (matmuls and convolutions; the deformable attention's
sampling is not counted). Only the ViT's share shrinks with the PKR, so the end-to-end FLOP ratio stays small.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from core.clip_loop import Lockstep, run_clip
from core.model.backbone import PruneMode
from core.model.release.builder import build_release_model
from core.model.release.config import RELEASE_KEEP, nominal_pkr
from core.model.release.model import ReleaseVPPModel
from core.model.vpp.builder import build_vpp
from core.model.vpp.config import VPPConfig
from core.model.vpp.model import VPPModel
from core.preprocess import prepare_frame
from core.release_session import ReleaseSession
from core.session import InferenceSession

#: ``vpp bench`` variants of the released architecture -> the release's variant.
ADAPTER_VARIANTS = {"adapter-tiny": "tiny", "adapter-small": "small"}


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
    adapter_pkrs: list[float] | None = None,
    log: Callable[[str], None] = print,
) -> list[BenchRow]:
    """Time every (variant, configuration) with seeded random weights at the frame's own size.

    ``pkrs`` apply to "tiny" / "small"; the :data:`ADAPTER_VARIANTS` run at ``adapter_pkrs`` (None: the
    release's schedules, see :func:`bench_release_model`).
    """
    rows: list[BenchRow] = []
    for variant in variants:
        torch.manual_seed(0)
        if variant in ADAPTER_VARIANTS:
            model = build_release_model(ADAPTER_VARIANTS[variant]).eval()
            rows += bench_release_model(model, variant, adapter_pkrs, size=size, repeats=repeats, warmup=warmup,
                                        device=device, random_baseline=random_baseline, log=log)
            continue
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
    configs = _configs(pkrs, random_baseline)
    # one session per configuration over the same model: each keeps its own clip state and run settings
    sessions = {
        name: InferenceSession(model, config, device=device, pkr=pkr, mode=mode) for name, mode, pkr in configs
    }
    return _interleaved(label, configs, sessions, _time_backbone, lambda bb, res: (bb.flops / 1e9, res.gflops),
                        size=size, repeats=repeats, warmup=warmup, log=log)


def _release_configs(pkrs: list[float] | None,
                     random_baseline: bool) -> list[tuple[str, PruneMode, float, tuple[float, ...] | None]]:
    """(name, mode, nominal PKR, keep schedule or None for ``release_keep(pkr)``) of the adapter rows."""
    if pkrs is None:
        points = [(f"vpp@{key}", nominal_pkr(keep), keep) for key, keep in RELEASE_KEEP.items()]
    else:
        points = [(f"vpp@{p:g}", float(p), None) for p in pkrs]
    out: list[tuple[str, PruneMode, float, tuple[float, ...] | None]] = [("dense", "dense", 1.0, None)]
    out += [(name, "vpp", p, keep) for name, p, keep in points]
    if random_baseline and points:
        name, p, keep = min(points, key=lambda t: t[1])
        out.append((name.replace("vpp@", "random@"), "random", p, keep))
    # the release's own selection (thresholded gates, kept count varying per frame) at the same Map-SM budget
    out += [(name.replace("vpp@", "release-sel@"), "vpp", p, keep) for name, p, keep in points]
    return out


def bench_release_model(
    model: ReleaseVPPModel,
    label: str,
    pkrs: list[float] | None = None,
    *,
    size: tuple[int, int] = (960, 540),
    repeats: int = 7,
    warmup: int = 2,
    device: str = "cpu",
    random_baseline: bool = True,
    log: Callable[[str], None] = print,
) -> list[BenchRow]:
    """Time the released architecture dense and at each PKR (None: the release's "0.55" and "0.4" schedules,
    exactly), interleaved, each configuration in its own :class:`ReleaseSession` (long side = the frame's).

    Backbone = the ViT-Adapter (SPM, interactions, pruned ViT); end to end = preprocessing, model, ROVIS tracking,
    mask resizing. GFLOPs: see the module docstring (with random weights no object passes the tracker's thresholds,
    so the end-to-end time has no per-track mask work).
    """
    configs = _release_configs(pkrs, random_baseline)
    sessions: dict[str, ReleaseSession] = {}
    for name, mode, pkr, keep in configs:
        s = ReleaseSession(model, device=device, pkr=1.0, mode=mode, input_long_side=max(size),
                           selection="release" if name.startswith("release-sel@") else "topk")
        if keep is not None:
            s.set_keep(keep)
        else:
            s.set_pkr(pkr)
        sessions[name] = s
    adapter_extra, head = _release_fixed_gflops(sessions["dense"], size, log)
    log(f"[{label}] GFLOPs: pruned ViT (analytic) + adapter outside the ViT {adapter_extra:.1f} (backbone), "
        f"+ Mask2Former head {head:.1f} (end to end); these two run dense at every PKR")
    return _interleaved(label, [c[:3] for c in configs], sessions, _time_release_backbone,
                        lambda bb, res: (bb.backbone.flops / 1e9 + adapter_extra,
                                         bb.backbone.flops / 1e9 + adapter_extra + head),
                        size=size, repeats=repeats, warmup=warmup, log=log)


def _interleaved(label: str, configs: list[tuple[str, PruneMode, float]], sessions: dict, time_backbone: Callable,
                 gflops: Callable, *, size: tuple[int, int], repeats: int, warmup: int,
                 log: Callable[[str], None]) -> list[BenchRow]:
    """One timed backbone call and one timed ``step`` of each configuration per round; medians, dense ratios.

    ``time_backbone(session, frame) -> (ms, output)``; ``gflops(output, frame_result) -> (backbone, end to end)``.
    """
    width, height = size
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)]
    log(f"[{label}] warming up {len(configs)} configurations at {width}x{height}")
    bb_times: dict[str, list[float]] = {n: [] for n, _, _ in configs}
    e2e_times: dict[str, list[float]] = {n: [] for n, _, _ in configs}
    info: dict[str, tuple[float, float, float]] = {}
    names = [name for name, _mode, _pkr in configs]

    def record(rnd: int, timed: list[_Timed]) -> None:
        if rnd < warmup:
            return
        for name, (bb_ms, bb_out, e2e_ms, res) in zip(names, timed):
            bb_times[name].append(bb_ms)
            e2e_times[name].append(e2e_ms)
            info[name] = (res.keep_ratio, *gflops(bb_out, res))
        log(f"[{label}] round {rnd - warmup + 1}/{repeats}")

    # one round = one frame through every configuration; the sessions keep their state from round to round
    rounds = (frames[rnd % 2] for rnd in range(warmup + repeats))
    run_clip(rounds, Lockstep([_TimedStep(sessions[name], time_backbone) for name in names]), record, reset=False)
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


_Timed = tuple[float, Any, float, Any]  # (backbone ms, backbone output, end-to-end ms, FrameResult)


class _TimedStep:
    """A session's frame, timed: its backbone alone on the steady-state previous frame (``time_backbone``), then
    its ``step`` end to end. Never reset: every timed frame has a previous frame."""

    def __init__(self, session, time_backbone: Callable) -> None:
        self.session = session
        self.time_backbone = time_backbone

    def reset(self) -> None:
        self.session.reset()

    def step(self, frame: np.ndarray) -> _Timed:
        bb_ms, bb_out = self.time_backbone(self.session, frame)
        t0 = time.perf_counter()
        res = self.session.step(frame)
        return bb_ms, bb_out, (time.perf_counter() - t0) * 1000, res


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


def _release_input(session: ReleaseSession, frame: np.ndarray) -> torch.Tensor:
    """The adapter's input for ``frame``: resized as the session does, normalised, zero-padded to 32."""
    images, _, _ = session.prepare(frame)
    model = session.model
    x = (images.to(session.device) - model.pixel_mean) / model.pixel_std
    m = model.input_multiple
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, -w % m, 0, -h % m)).contiguous()


@torch.inference_mode()
def _time_release_backbone(session: ReleaseSession, frame: np.ndarray):
    """The ViT-Adapter alone on this session's steady-state previous frame (its state is not advanced)."""
    x = _release_input(session, frame)
    state = session.state.prune
    _sync(session.device)
    t0 = time.perf_counter()
    with session.autocast():
        out = session.model.adapter(x, state, keep=session.keep, mode=session.mode,
                                    selection=session.selection or session.config.selection)
    _sync(session.device)
    return (time.perf_counter() - t0) * 1000, out


def _release_fixed_gflops(session: ReleaseSession, size: tuple[int, int],
                          log: Callable[[str], None]) -> tuple[float, float]:
    """GFLOPs of one dense frame that no PKR changes: (the adapter outside the ViT, the Mask2Former head).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions): the adapter minus the ViT run
    alone (both counted the same way), and the head. (0, 0), said in the log, if torch cannot count them.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = session.model
    x = _release_input(session, np.zeros((size[1], size[0], 3), dtype=np.uint8))
    grads = [p.requires_grad for p in model.parameters()]
    try:
        model.requires_grad_(False)  # the counter's module tracker needs tensors without autograd history
        with torch.no_grad(), session.autocast():
            with FlopCounterMode(display=False) as counter:
                adapted = model.adapter(x, None, keep=None, mode="dense")
            adapter = counter.get_total_flops()
            with FlopCounterMode(display=False) as counter:
                model.adapter.backbone(x, None, keep=None, mode="dense")
            vit = counter.get_total_flops()
            with FlopCounterMode(display=False) as counter:
                model.head(adapted.features, return_aux=False)
            head = counter.get_total_flops()
    except Exception as exc:  # an old or new torch whose counter refuses this model: report the ViT alone
        log(f"note: cannot count the adapter's and head's FLOPs ({type(exc).__name__}: {exc}); "
            "GFLOPs are the ViT's only")
        return 0.0, 0.0
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    return max(adapter - vit, 0) / 1e9, head / 1e9


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
