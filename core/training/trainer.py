"""Training: a dense stage, then a sparse fine-tune with Map-SM and the selective modules on.

Clips of ``clip_len`` consecutive frames are chained through the pruning state (frame t-1's state
feeds frame t), as in the paper. The sparse stage samples a PKR per step from ``sparse_pkrs`` so one
model serves the app's PKR slider (the paper trains one model per PKR; a deliberate difference).

Data parallel: under ``torchrun`` (WORLD_SIZE > 1) every process draws its own clips and gradients
are averaged with one all-reduce of the flattened gradients per step (gloo on CPU, NCCL on CUDA).
We do not wrap the model in DistributedDataParallel because each step runs several chained forward
passes before one backward, and which parameters are used varies by frame (no Map-SM on a clip's
first frame), which DDP's reducer does not allow. Only rank 0 writes checkpoints and logs.

Resumable: ``<out>/last.safetensors`` (+ JSON config) and ``<out>/last_state.pt`` (optimizer, step,
RNG; loaded with ``weights_only=True``) are written atomically every ``checkpoint_every`` steps.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from core.atomic import atomic_write_bytes, atomic_write_text
from core.build import VPPConfig, build_vpp, keep_for
from core.checkpoint import load_checkpoint, save_checkpoint
from core.model.backbone import PruneMode
from core.session import resolve_device
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


def reinitialise(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Reset the parameters of the named submodules (a fresh start for them on top of ``init``)."""
    for name in names:
        try:
            sub = model.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"reinit: the model has no submodule {name!r}") from exc
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
    masked_training: bool = True  # prune decisions as masks over all tokens (False: the older gather path)
    objectness: float = 0.0  # weight of the objectness loss on the prune decisions (0: the paper's losses)
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
    device: str = "auto"

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; valid keys are {sorted(names)}")
        return cls(**{k: tuple(v) if k in ("sparse_pkrs", "reinit") else v for k, v in data.items()})


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
                tok = torch.stack([object_token_targets(targets[b][t].masks, grid) for b in range(bsz)])
                ol = objectness_loss(out.backbone.keep_logp_full, out.backbone.entering, tok)
                terms["objectness"] = terms["objectness"] + w.objectness * ol * bsz  # norm divides by B*T
    norm = bsz * t_len
    terms = {k: v / norm if torch.is_tensor(v) else torch.tensor(0.0) for k, v in terms.items()}
    terms["total"] = terms["mask"] + terms["track"] + terms["sparsity"] + terms["objectness"]
    return terms


class Trainer:
    def __init__(self, cfg: TrainConfig, *, log: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.rank, self.world = setup_distributed(self.device)
        self.log = (log or _print_flush) if self.rank == 0 else (lambda m: None)
        self.out = Path(cfg.out_dir)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self.data = YtvisClips(cfg.train_ann, cfg.train_images, clip_len=cfg.clip_len,
                               long_side=int(cfg.model.get("input_long_side", 384)))
        names = _category_names(cfg.train_ann)
        self.model_cfg = VPPConfig.for_variant(
            cfg.variant,
            **{
                "num_classes": self.data.num_classes,
                "categories": names,
                "category_ids": tuple(self.data.category_ids),
                **cfg.model,
            },
        )
        torch.manual_seed(cfg.seed)
        if cfg.init:
            self.model, _ = load_checkpoint(cfg.init, device="cpu", config=self.model_cfg)
        else:
            self.model = build_vpp(self.model_cfg)
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
        weights, state_file = self.out / "last.safetensors", self.out / "last_state.pt"
        if not (weights.is_file() and state_file.is_file()):
            return
        model, _ = load_checkpoint(weights, device="cpu", config=self.model_cfg)
        self.model.load_state_dict(model.state_dict())
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.rng.setstate(_tuple_state(state["rng"]))
        torch.set_rng_state(state["torch_rng"])
        self.history = json.loads(state.get("history", "[]"))
        self.log(f"resumed from {weights} at step {self.step}")

    def save(self) -> None:
        if self.rank != 0:
            return
        save_checkpoint(self.model, self.model_cfg, self.out / "last.safetensors", metadata={"step": self.step})
        buf = io.BytesIO()
        rng_state = self.rng.getstate()
        torch.save(
            {
                "optimizer": self.opt.state_dict(),
                "step": self.step,
                "rng": [rng_state[0], list(rng_state[1]), rng_state[2]],
                "torch_rng": torch.get_rng_state(),
                "history": json.dumps(self.history),
            },
            buf,
        )
        atomic_write_bytes(self.out / "last_state.pt", buf.getvalue())
        atomic_write_text(self.out / "train_config.json", json.dumps(asdict(self.cfg), indent=2) + "\n")

    # -- the loop ----------------------------------------------------------------------------
    def train(self, validate: Callable[[object, VPPConfig, int], dict] | None = None) -> list[dict]:
        cfg = self.cfg
        total = cfg.dense_steps + cfg.sparse_steps
        w = LossWeights(objectness=cfg.objectness)
        bar = tqdm(total=total, initial=self.step, disable=self.rank != 0, dynamic_ncols=True, desc="train")
        t0 = time.perf_counter()
        while self.step < total:
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
        self.model.eval()
        return self.history


def _print_flush(message: str) -> None:
    """Log lines reach a redirected log file at once (``tail -f`` shows progress)."""
    print(message, flush=True)


def _to(t, device):
    return type(t)(t.labels.to(device), t.masks.to(device), t.instance_ids.to(device))


def _tuple_state(s):
    return (s[0], tuple(s[1]), s[2])


def _category_names(ann_file: str) -> tuple[str, ...]:
    data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    return tuple(c["name"] for c in sorted(data["categories"], key=lambda c: c["id"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
