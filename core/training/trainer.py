"""Training: a dense stage, then a sparse fine-tune with Map-SM and the selective modules on.

Clips of ``clip_len`` consecutive frames are chained through the pruning state (frame t-1's state
feeds frame t), as in the paper. The sparse stage samples a PKR per step from ``sparse_pkrs`` so one
model serves the app's PKR slider (the paper trains one model per PKR; a deliberate difference).

Data parallel: under ``torchrun`` (WORLD_SIZE > 1) every process draws its own clips and gradients
are averaged with one all-reduce of the flattened gradients per step (gloo on CPU, NCCL on CUDA).
We do not wrap the model in DistributedDataParallel because each step runs several chained forward
passes before one backward, and which parameters are used varies by frame (no Map-SM on a clip's
first frame), which DDP's reducer does not allow. Only rank 0 writes checkpoints and logs.

Resumable: ``<out>/last.safetensors`` (+ JSON config) and ``<out>/last_state.safetensors`` (optimizer
tensors, step, RNG states, history; plain tensors and JSON metadata) are written atomically every
``checkpoint_every`` steps, and a run into the same ``out_dir`` continues from them. No pickle is ever
loaded: a ``last_state.pt`` (the pickled state of earlier versions, or any file from elsewhere) or a
state file that is not a vpp-studio safetensors state is refused with a message saying what to do,
before anything in the folder is overwritten.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from tqdm import tqdm

from core.atomic import atomic_write_bytes, atomic_write_text
from core.cpu_threads import ThreadGovernor
from core.errors import CheckpointError, ConfigError, DataError
from core.model.backbone import PruneMode
from core.model.vpp.builder import build_vpp, keep_for
from core.model.vpp.checkpoint import load_checkpoint, save_checkpoint
from core.model.vpp.config import VARIANTS, VPPConfig
from core.pkr import is_pkr
from core.session_base import resolve_device
from core.training.dataset import YtvisClips, collate
from core.training.losses import (
    LossWeights,
    hungarian_match,
    object_token_targets,
    objectness_loss,
    set_loss,
    sparsity_loss,
    tracking_loss,
)
from core.values import is_int


def reinitialise(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Reset the parameters of the named submodules (a fresh start for them on top of ``init``)."""
    for name in names:
        try:
            sub = model.get_submodule(name)
        except AttributeError as exc:
            raise ConfigError(f"reinit: the model has no submodule {name!r}") from exc
        for m in sub.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()


@dataclass(frozen=True)
class TrainConfig:
    train_ann: str
    train_images: str
    out_dir: str
    variant: str = "tiny"
    model: dict = field(default_factory=dict)  # VPPConfig overrides (input_long_side, decoder sizes, ...)
    init: str | None = None  # start from this checkpoint
    # start the ViT from a timm ViT file (DeiT / AugReg; .safetensors / .pth / .bin) or from the ViT part of a release
    # / COCO-pretrained Mask2Former checkpoint (core.model.timm_import); the rest of the model starts fresh
    init_backbone: str | None = None
    masked_training: bool = True  # prune decisions as masks over all tokens (False: the older gather path)
    objectness: float = 0.0  # weight of the objectness loss on the prune decisions (0: the paper's losses)
    objectness_dilate: int = 1  # the objectness target: object tokens grown by this many tokens of context
    reinit: tuple[str, ...] = ()  # submodules to re-initialise after loading init, e.g. "backbone.selective"
    dense_steps: int = 1000
    sparse_steps: int = 500
    batch_size: int = 4  # clips per process
    clip_len: int = 3
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    sparse_pkrs: tuple[float, ...] = (0.4, 0.55, 0.7)
    num_points: int = 1024
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    val_every: int = 0  # 0: no validation during training
    val_ann: str | None = None
    val_images: str | None = None
    # "bf16": the forward pass and losses under torch.autocast(bfloat16) (CUDA, or a CPU with AVX512-BF16 / AMX:
    # about 1.5-2x faster on this project's CPU); weights, gradients and the optimizer stay float32
    amp: str = "off"
    device: str = "auto"

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "training config") -> TrainConfig:
        """A validated config from a JSON object; errors are :class:`ConfigError` lines naming ``source``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the training config must be a JSON object, got {type(data).__name__}")
        names = set(cls.__dataclass_fields__)
        unknown = sorted(str(k) for k in set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown training config keys {unknown}; valid keys are {sorted(names)}")
        missing = [k for k in ("train_ann", "train_images", "out_dir") if k not in data]
        if missing:
            raise ConfigError(f"{source}: missing {', '.join(missing)}")
        fixed = {}
        for k, v in data.items():
            if k in ("sparse_pkrs", "reinit") and isinstance(v, list):
                v = tuple(v)
            elif k in _TRAIN_FLOATS and type(v) is int:
                v = float(v)
            fixed[k] = v
        return cls(**fixed).validate(source=source)

    def validate(self, *, source: str = "training config") -> TrainConfig:
        """Check every key's type and range; returns ``self`` or raises one :class:`ConfigError` line."""
        problems = _train_problems(self)
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        return self


# allowed ranges (inclusive) of the training config's numbers
_TRAIN_INTS: dict[str, tuple[int, int]] = {
    "dense_steps": (0, 10**9), "sparse_steps": (0, 10**9), "batch_size": (1, 4096), "clip_len": (1, 1000),
    "warmup_steps": (0, 10**9), "num_points": (1, 10**6), "seed": (0, 2**32 - 1), "checkpoint_every": (1, 10**9),
    "log_every": (1, 10**9), "val_every": (0, 10**9), "objectness_dilate": (0, 64),
}
# (low, high, low included)
_TRAIN_FLOATS: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, 10.0, False), "weight_decay": (0.0, 10.0, True), "grad_clip": (0.0, 1e6, False),
    "objectness": (0.0, 1e3, True),
}


def _train_problems(c: TrainConfig) -> list[str]:
    def show(v) -> str:
        text = json.dumps(v) if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
        return text if len(text) <= 60 else text[:57] + "..."

    out = []
    for key in ("train_ann", "train_images", "out_dir", "device"):
        v = getattr(c, key)
        if not isinstance(v, str) or not v:
            out.append(f"{key} = {show(v)}: must be a non-empty string")
    for key in ("init", "init_backbone", "val_ann", "val_images"):
        v = getattr(c, key)
        if v is not None and (not isinstance(v, str) or not v):
            out.append(f"{key} = {show(v)}: must be a non-empty string or null")
    if c.init is not None and c.init_backbone is not None:
        out.append("init and init_backbone are both given: init starts the whole model from a vpp checkpoint, "
                   "init_backbone only its ViT from a timm / release file; give one of them")
    if not isinstance(c.variant, str) or c.variant not in VARIANTS:
        out.append(f"variant = {show(c.variant)}: must be one of {', '.join(sorted(VARIANTS))}")
    if not isinstance(c.model, dict):
        out.append(f"model = {show(c.model)}: must be an object of model config keys")
    if c.amp not in ("off", "bf16"):
        out.append(f"amp = {show(c.amp)}: must be \"off\" or \"bf16\"")
    if not isinstance(c.masked_training, bool):
        out.append(f"masked_training = {show(c.masked_training)}: must be true or false")
    for key, (lo, hi) in _TRAIN_INTS.items():
        v = getattr(c, key)
        if not is_int(v) or not lo <= v <= hi:
            out.append(f"{key} = {show(v)}: must be an integer in {lo}..{hi}")
    for key, (lo, hi, lo_in) in _TRAIN_FLOATS.items():
        v = getattr(c, key)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not (lo <= v if lo_in else lo < v) or v > hi:
            out.append(f"{key} = {show(v)}: must be a number in {'[' if lo_in else '('}{lo:g}, {hi:g}]")
    pkrs = c.sparse_pkrs
    if not isinstance(pkrs, (list, tuple)) or not 1 <= len(pkrs) <= 100 or not all(is_pkr(p) for p in pkrs):
        out.append(f"sparse_pkrs = {show(pkrs)}: must be a list of 1 to 100 numbers in (0, 1]")
    if not isinstance(c.reinit, (list, tuple)) or any(not isinstance(n, str) or not n for n in c.reinit):
        out.append(f"reinit = {show(c.reinit)}: must be a list of submodule names")
    if not out and c.dense_steps + c.sparse_steps < 1:
        out.append("dense_steps + sparse_steps must be at least 1")
    return out


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes (no-op for a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _dist_info()


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    if world == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    total = cfg.dense_steps + cfg.sparse_steps
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    # cosine within each stage, so the sparse fine-tune starts with a fresh (lower) learning rate
    if step < cfg.dense_steps:
        s, n, peak = step, cfg.dense_steps, 1.0
    else:
        s, n, peak = step - cfg.dense_steps, max(1, total - cfg.dense_steps), 0.3
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / n)))


def clip_loss(
    model,
    frames: torch.Tensor,
    targets: list[list],
    cfg: TrainConfig,
    w: LossWeights,
    *,
    keep: tuple[float, ...] | None = None,
    mode: PruneMode = "vpp",
) -> dict:
    """Loss of a batch of clips ``[B, T, 3, H, W]``, frames chained through the pruning state.

    ``keep`` / ``mode``: the run settings of every forward call of this step (see ``PrunedViT.forward``).
    """
    bsz, t_len = frames.shape[:2]
    state = None
    terms = {"mask": 0.0, "track": 0.0, "sparsity": 0.0, "objectness": 0.0}
    prev = [None] * bsz
    bb = model.backbone
    target = keep if keep is not None else (1.0,) * len(bb.prune_points)  # the sparsity loss's rates
    for t in range(t_len):
        out = model(frames[:, t], state, keep=keep, mode=mode)
        state = out.backbone.state
        dec = out.decoder
        for b in range(bsz):
            tgt = targets[b][t]
            match = hungarian_match(dec.class_logits[b], dec.mask_logits[b], tgt, num_points=cfg.num_points, w=w)
            terms["mask"] = terms["mask"] + set_loss(
                dec.class_logits[b], dec.mask_logits[b], tgt, match, num_points=cfg.num_points, w=w
            )
            for aux_cls, aux_masks in dec.aux:
                aux_match = hungarian_match(aux_cls[b], aux_masks[b], tgt, num_points=cfg.num_points, w=w)
                terms["mask"] = terms["mask"] + set_loss(
                    aux_cls[b], aux_masks[b], tgt, aux_match, num_points=cfg.num_points, w=w
                )
            ids = {int(tgt.instance_ids[j]): int(q) for q, j in zip(match[0].tolist(), match[1].tolist())}
            if prev[b] is not None:
                tl = tracking_loss(prev[b][0], dec.embeddings[b], prev[b][1], ids)
                if tl is not None:
                    terms["track"] = terms["track"] + w.track * tl
            prev[b] = (dec.embeddings[b], ids)
        if mode == "vpp":
            sl = sparsity_loss(out.backbone.keep_probs, out.backbone.tokens_per_block, target, bb.prune_points)
            if sl is not None:
                terms["sparsity"] = terms["sparsity"] + w.sparsity * sl
            if w.objectness > 0 and out.backbone.keep_logp_full:
                grid = out.backbone.grid
                ring = cfg.objectness_dilate
                tok = torch.stack([object_token_targets(targets[b][t].masks, grid, dilate=ring) for b in range(bsz)])
                ol = objectness_loss(out.backbone.keep_logp_full, out.backbone.entering, tok)
                terms["objectness"] = terms["objectness"] + w.objectness * ol * bsz  # norm divides by B*T
    norm = bsz * t_len
    terms = {k: v / norm if torch.is_tensor(v) else torch.tensor(0.0) for k, v in terms.items()}
    terms["total"] = terms["mask"] + terms["track"] + terms["sparsity"] + terms["objectness"]
    return terms


class Trainer:
    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.out = Path(cfg.out_dir)
        # the model keys and any saved state are checked before the data is read or a file is written
        source = "training config 'model'"
        classless = {k: v for k, v in cfg.model.items() if k not in ("num_classes", "categories", "category_ids")}
        probe = VPPConfig.for_variant(cfg.variant, source=source, **classless)
        refuse_unsafe_state(self.out)
        backbone = _read_init_backbone(cfg, probe)  # a bad backbone file is refused before anything is written
        self.rank, self.world = setup_distributed(self.device)
        self.log = (log or _print_flush) if self.rank == 0 else (lambda m: None)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        try:
            self.data = YtvisClips(cfg.train_ann, cfg.train_images, clip_len=cfg.clip_len,
                                   long_side=int(cfg.model.get("input_long_side", 384)), patch=probe.patch)
            names = _category_names(cfg.train_ann)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:  # a malformed annotation file
            raise DataError(f"{cfg.train_ann}: not a usable YTVIS annotation file ({type(exc).__name__}: {exc})") \
                from exc
        self.model_cfg = VPPConfig.for_variant(
            cfg.variant,
            source=source,
            **{
                "num_classes": self.data.num_classes,
                "categories": names,
                "category_ids": tuple(self.data.category_ids),
                **({} if backbone is None else {"pos_grid": backbone[1].pos_grid}),
                **cfg.model,
            },
        )
        torch.manual_seed(cfg.seed)
        if cfg.init:
            self.model, _ = load_checkpoint(cfg.init, device="cpu", config=self.model_cfg)
        else:
            self.model = build_vpp(self.model_cfg)
        if backbone is not None:
            self.model.backbone.vit.load_state_dict(backbone[0], strict=True)
            self.log(f"init_backbone {cfg.init_backbone}: " + "; ".join(backbone[1].lines()))
        reinitialise(self.model, cfg.reinit)
        self.model.backbone.masked_training = cfg.masked_training
        self.model.to(self.device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0
        self.rng = random.Random(cfg.seed * 1000 + self.rank)
        self.history: list[dict] = []
        self._resume()

    # -- checkpoints -------------------------------------------------------------------------
    def _resume(self) -> None:
        weights, state_file = self.out / "last.safetensors", self.out / STATE_FILE
        if not (weights.is_file() and state_file.is_file()):
            return
        state = read_train_state(state_file)
        model, _ = load_checkpoint(weights, device="cpu", config=self.model_cfg)
        self.model.load_state_dict(model.state_dict())
        opt = state["optimizer"]
        for pid, entries in opt["state"].items():
            if not 0 <= pid < len(self.params):
                raise CheckpointError(f"{state_file}: optimizer state for parameter {pid}, but the model has "
                                      f"{len(self.params)}; {_start_over(self.out)}")
            want = tuple(self.params[pid].shape)
            for name, value in entries.items():
                if torch.is_tensor(value) and value.ndim and tuple(value.shape) != want:
                    raise CheckpointError(f"{state_file}: optimizer tensor {name} of parameter {pid} has shape "
                                          f"{tuple(value.shape)}, the parameter {want}; it belongs to another "
                                          f"model. {_start_over(self.out)}")
        try:
            self.opt.load_state_dict(opt)
            self.rng.setstate(_tuple_state(state["rng"]))
            torch.set_rng_state(state["torch_rng"])
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
            raise CheckpointError(f"{state_file}: the training state does not fit this run ({exc}). "
                                  f"{_start_over(self.out)}") from exc
        self.step = state["step"]
        self.history = state["history"]
        self.log(f"resumed from {weights} at step {self.step}")

    def save(self) -> None:
        if self.rank != 0:
            return
        save_checkpoint(self.model, self.model_cfg, self.out / "last.safetensors", metadata={"step": self.step})
        rng_state = self.rng.getstate()
        data = train_state_bytes(self.opt.state_dict(), step=self.step,
                                 rng=[rng_state[0], list(rng_state[1]), rng_state[2]],
                                 torch_rng=torch.get_rng_state(), history=self.history)
        atomic_write_bytes(self.out / STATE_FILE, data)
        atomic_write_text(self.out / "train_config.json", json.dumps(asdict(self.cfg), indent=2) + "\n")

    # -- the loop ----------------------------------------------------------------------------
    def train(self, validate: Callable[[object, VPPConfig, int], dict] | None = None) -> list[dict]:
        cfg = self.cfg
        total = cfg.dense_steps + cfg.sparse_steps
        w = LossWeights(objectness=cfg.objectness)
        bar = tqdm(total=total, initial=self.step, disable=self.rank != 0, dynamic_ncols=True, desc="train")
        t0 = time.perf_counter()
        governor = ThreadGovernor.for_run(self.device)  # fewer torch threads while other processes keep cores busy
        while self.step < total:
            if governor is not None:
                governor.tick()
            sparse = self.step >= cfg.dense_steps
            # this step's run settings, passed to every forward call (the model stores none)
            mode: PruneMode = "vpp" if sparse else "dense"
            keep = keep_for(self.model_cfg, self.rng.choice(cfg.sparse_pkrs)) if sparse else None
            items = [self.data.load(self.rng.randrange(len(self.data)), flip=self.rng.random() < 0.5)
                     for _ in range(cfg.batch_size)]
            frames, targets = collate(items)
            frames = frames.to(self.device)
            targets = [[_to(t, self.device) for t in clip] for clip in targets]
            for g in self.opt.param_groups:
                g["lr"] = cfg.lr * _lr_factor(self.step, cfg)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16"):
                terms = clip_loss(self.model, frames, targets, cfg, w, keep=keep, mode=mode)
            self.opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            _average_gradients(self.params, self.world)
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.opt.step()
            self.step += 1
            row = {k: round(float(v.detach()), 4) for k, v in terms.items()}
            row.update(step=self.step, stage="sparse" if sparse else "dense")
            bar.update(1)
            bar.set_postfix(loss=f"{row['total']:.3f}", stage=row["stage"])
            if self.step % cfg.log_every == 0 or self.step == total:
                row["elapsed_s"] = round(time.perf_counter() - t0, 1)
                self.history.append(row)
                self.log(json.dumps(row))
            if self.step % cfg.checkpoint_every == 0 or self.step == total:
                self.save()
            if validate and cfg.val_every and (self.step % cfg.val_every == 0 or self.step == total) and self.rank == 0:
                self.model.eval()
                figures = validate(self.model, self.model_cfg, self.step)
                self.model.train()
                self.history.append({"step": self.step, "val": figures})
                self.log(json.dumps({"step": self.step, "val": figures}))
        bar.close()
        if governor is not None:
            governor.restore()
        self.model.eval()
        return self.history


def _read_init_backbone(cfg: TrainConfig, probe: VPPConfig):
    """``(our ViT's state dict, report)`` from ``cfg.init_backbone``, or None. The position table keeps the file's
    grid unless the training config's ``model`` sets ``pos_grid`` (then it is resized to it)."""
    if cfg.init_backbone is None:
        return None
    from core.model.timm_import import read_backbone_file

    return read_backbone_file(cfg.init_backbone, embed_dim=probe.embed_dim, depth=probe.depth,
                              num_heads=probe.num_heads, patch=probe.patch, mlp_ratio=probe.mlp_ratio,
                              pos_grid=probe.pos_grid if "pos_grid" in cfg.model else None)


def _print_flush(message: str) -> None:
    """Log lines reach a redirected log file at once (``tail -f`` shows progress)."""
    print(message, flush=True)


def _to(t, device):
    return type(t)(t.labels.to(device), t.masks.to(device), t.instance_ids.to(device))


def _tuple_state(s):
    return (s[0], tuple(s[1]), s[2])


# -- the resume state: safetensors (tensors) + JSON metadata; never a pickle ---------------------------
STATE_FILE = "last_state.safetensors"
LEGACY_STATE_FILE = "last_state.pt"  # the pickled state of earlier versions: refused, never loaded
STATE_FORMAT = "vpp-train-state/1"


def _start_over(out: Path) -> str:
    """What to do when ``out``'s resume state cannot be used."""
    weights = out / "last.safetensors"
    if not weights.is_file():
        return "To start this run over, delete it, or train into another --out folder."
    return (f"To start this run over, delete it and {weights.name} in {out}, or train into another --out folder "
            f"(with --init {weights} to start from its weights).")


def _pickle_kind(path: Path) -> str | None:
    """What pickle ``path`` is ("a PyTorch pickle archive (torch.save)", "a Python pickle"), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head.startswith(b"PK\x03\x04"):
        return "a PyTorch pickle archive (torch.save)"
    if head[:1] == b"\x80":
        return "a Python pickle"
    return None


def _pickle_refusal(path: Path, what: str, out: Path) -> str:
    return (f"{path}: this is {what}, not a vpp-studio training state; pickles are never loaded, for safety "
            f"(unpickling a file can run any code its author put in it), so this run cannot resume from it. "
            + _start_over(out))


def refuse_unsafe_state(out: Path) -> None:
    """Refuse an ``out`` folder whose resume state is a pickle (``last_state.pt``) before it is touched.

    Training over it would silently start again from step 0 and overwrite the folder's
    ``last.safetensors``; the message says how to start over or where to train instead.
    """
    legacy = out / LEGACY_STATE_FILE
    if (legacy.exists() or legacy.is_symlink()) and not (out / STATE_FILE).exists():
        what = _pickle_kind(legacy) or "a file in the old pickled format's place"
        raise CheckpointError(_pickle_refusal(legacy, what, out))


def train_state_bytes(optimizer: dict, *, step: int, rng: list, torch_rng: torch.Tensor, history: list) -> bytes:
    """The resume state as safetensors bytes: optimizer tensors, the torch RNG, and JSON metadata."""
    tensors = {"torch_rng": torch_rng.detach().cpu().contiguous()}
    scalars: dict[str, dict] = {}
    for pid, entries in optimizer["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{int(pid)}.{name}"] = value.detach().cpu().contiguous()
            elif value is None or isinstance(value, (bool, int, float)):
                scalars.setdefault(str(int(pid)), {})[name] = value
            else:
                raise TypeError(f"optimizer state {name!r} of type {type(value).__name__} cannot be saved")
    meta = {"format": STATE_FORMAT, "step": str(int(step)), "param_groups": json.dumps(optimizer["param_groups"]),
            "optimizer_scalars": json.dumps(scalars), "rng": json.dumps(rng), "history": json.dumps(history)}
    return save_safetensors(tensors, metadata=meta)


_OPT_KEY = re.compile(r"optimizer\.(\d+)\.(\w+)")


def read_train_state(path: Path) -> dict:
    """The resume state written by :func:`train_state_bytes`, checked; a :class:`CheckpointError` otherwise.

    Returns ``{"optimizer": state dict, "step": int, "rng": list, "torch_rng": uint8 tensor, "history": list}``.
    """
    out = path.parent
    what = _pickle_kind(path)
    if what:
        raise CheckpointError(_pickle_refusal(path, what, out))

    def bad(reason: str) -> CheckpointError:
        return CheckpointError(f"{path}: not a usable vpp-studio training state ({reason}). "
                               + _start_over(out))

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise bad(f"not a readable safetensors file: {exc}") from exc
    if meta.get("format") != STATE_FORMAT:
        raise bad(f"its format is {meta.get('format')!r}, expected {STATE_FORMAT!r}")
    try:
        step = int(meta["step"])
        groups = json.loads(meta["param_groups"])
        scalars = json.loads(meta["optimizer_scalars"])
        rng = json.loads(meta["rng"])
        history = json.loads(meta["history"])
    except (KeyError, ValueError, RecursionError) as exc:
        raise bad(f"its metadata is damaged: {type(exc).__name__} {exc}") from None
    if step < 0 or not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                                           for g in groups):
        raise bad("its step or parameter groups are damaged")
    if not isinstance(scalars, dict) or not isinstance(history, list) or not isinstance(rng, list) or len(rng) != 3:
        raise bad("its RNG state, history or optimizer scalars are damaged")
    torch_rng = tensors.pop("torch_rng", None)
    if torch_rng is None or torch_rng.dtype != torch.uint8 or torch_rng.ndim != 1:
        raise bad("its torch RNG state is missing or damaged")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        m = _OPT_KEY.fullmatch(key)
        if not m:
            raise bad(f"unexpected tensor {key!r}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise bad(f"tensor {key} holds NaN or Inf values (the run diverged)")
        state.setdefault(int(m.group(1)), {})[m.group(2)] = value
    for pid, entries in scalars.items():
        if not str(pid).isdigit() or not isinstance(entries, dict):
            raise bad("its optimizer scalars are damaged")
        state.setdefault(int(pid), {}).update(entries)
    for g in groups:  # JSON gave lists where the optimizer had tuples (betas)
        for k, v in list(g.items()):
            if k != "params" and isinstance(v, list):
                g[k] = tuple(v)
    return {"optimizer": {"state": state, "param_groups": groups}, "step": step, "rng": rng,
            "torch_rng": torch_rng, "history": history}


def _category_names(ann_file: str) -> tuple[str, ...]:
    data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    return tuple(c["name"] for c in sorted(data["categories"], key=lambda c: c["id"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
