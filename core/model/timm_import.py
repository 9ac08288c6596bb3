"""A timm ViT checkpoint (DeiT, AugReg, ...) -> our :class:`~core.model.vit.VisionTransformer`'s state dict. The only
module that knows timm's ViT key names.

timm keys (``timm.models.vision_transformer.VisionTransformer``) -> ours:

- ``patch_embed.proj.weight / bias`` -> the same (``[C, 3, p, p]``; C and p checked against ours)
- ``pos_embed`` ``[1, P + g * g, C]`` -> ``pos_embed.weight`` ``[1, C, g, g]``: the P prefix rows (cls token, a
  distillation token, register tokens; P counted from ``cls_token`` / ``dist_token`` / ``reg_token``) are dropped.
  With ``no_embed_class=True`` (DeiT III, the ``*_reg*`` models) the table has no prefix rows; a table with one more
  row than a square and no ``cls_token`` saved (ViT-Adapter files) has its first row dropped too. Only square grids.
- ``blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.{weight, bias}`` -> the same names. A file
  without ``attn.qkv.bias`` in any block (timm's ``qkv_bias=False``) gets zero biases, which computes the same.
- timm-only keys, listed as unused: ``cls_token``, ``reg_token``, ``dist_token``, ``norm.*`` (the final norm),
  ``fc_norm.*``, ``head.*``, ``head_dist.*``, ``attn_pool.*`` (all after the last block or only on the prefix tokens).

Our ViT has no cls token: its tokens are the patch tokens only, as in ViT-Adapter (which the paper's backbone is
and which drops the cls token of its DeiT initialisation too). So after the import our ViT computes timm's
``patch_embed`` -> ``+ pos_embed`` (patch rows) -> ``blocks``, on the patch tokens alone; a timm model with a cls
token lets the patch tokens attend to it, which ours cannot, and a timm model built with ``class_token=False``
computes exactly ours. LayerNorm eps: timm's ViT uses 1e-6 (``LayerNorm`` default in ``timm.layers``), as ours do.
Position tables resized to another grid differ slightly: timm resamples with antialiased bicubic
(``resample_abs_pos_embed(..., antialias=True)``), ours with plain bicubic (``align_corners=False``); at the table's
own grid (224 x 224 for a ``*_224`` model) neither resamples.

Refused with a :class:`~core.errors.CheckpointError` naming the key: a width (``patch_embed.proj.weight``), patch
size, MLP width (``blocks.i.mlp.fc1.weight``) or depth (``blocks.*``) other than ours; a missing key; a key no rule
maps (layer scale ``blocks.i.ls1.gamma``, ``attn.q_norm``, ``norm_pre``, ``patch_embed.norm``, SwiGLU MLPs, ...:
parts our ViT does not have, so dropping them would change what it computes); non-float or NaN / Inf tensors.

Files (:func:`read_backbone_file`): ``.safetensors`` through safetensors; ``.pth`` / ``.pt`` / ``.bin`` through
:func:`core.safe_pickle.load_mmengine_checkpoint` (no pickled code runs), bare state dicts or wrapped in
``{"model": ...}`` (DeiT releases) or ``{"state_dict": ...}``. A file in the release / mmdet layout (keys
``[detector.]backbone.*``: the authors' VPP models and the COCO-pretrained ViT-Adapter Mask2Former, which has no
``detector.`` prefix and an 80-class head) is read with :mod:`core.model.convert`'s backbone rules; only its ViT
part initialises our ViT (the adapter, Map-SM, selective modules and the Mask2Former head have no place in our
model and are listed as unused; use ``vpp import-checkpoint`` for the authors' full model).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from core.errors import CheckpointError
from core.model import convert
from core.model.vit import VisionTransformer

#: timm's block tensors; our ViT's blocks have the same names.
BLOCK_KEYS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
              "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")
_TOP_KEYS = ("patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed")
#: timm-only tensors: prefix tokens and what runs after the last block.
UNUSED_KEYS = ("cls_token", "reg_token", "dist_token")
UNUSED_PREFIXES = ("norm.", "fc_norm.", "head.", "head_dist.", "attn_pool.")
#: what a key no rule maps usually is (for the message)
_KNOWN_PARTS = {".ls1.": "layer scale", ".ls2.": "layer scale", ".q_norm.": "qk-norm", ".k_norm.": "qk-norm",
                "norm_pre.": "a pre-norm (CLIP)", "patch_embed.norm.": "a patch-embedding norm",
                ".norm.": "a norm inside the attention or MLP", "fc1_g.": "a gated (SwiGLU) MLP",
                "fc1_x.": "a gated (SwiGLU) MLP", "rope": "rotary position embedding"}
TIMM_LAYERNORM_EPS = 1e-6  # timm.layers.LayerNorm's default, what timm's ViT builds its norms with
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_VIT = "adapter.backbone.vit."  # convert.py's prefix of the release model's ViT


@dataclass
class TimmImportReport:
    """What :func:`convert_timm_vit` / :func:`read_backbone_file` did (``lines()`` for printing)."""

    layout: str = "timm"  # "timm" or "release" (the authors' / mmdet ViT-Adapter layout)
    mapped: int = 0  # file tensors that became ours
    unused: list[str] = field(default_factory=list)  # file tensors dropped as timm-only / not part of our ViT
    filled: list[str] = field(default_factory=list)  # our tensors the file has no counterpart for (zero qkv biases)
    prefix_rows: int = 0  # rows of the file's pos_embed dropped (cls / dist / reg tokens)
    source_grid: tuple[int, int] = (0, 0)  # the file's position grid
    pos_grid: tuple[int, int] = (0, 0)  # the grid of the returned pos_embed.weight
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        grid = f"{self.source_grid[0]}x{self.source_grid[1]}"
        if self.pos_grid != self.source_grid:
            grid += f", resized to {self.pos_grid[0]}x{self.pos_grid[1]}"
        out = [f"layout: {self.layout}; mapped tensors: {self.mapped}; position grid {grid} "
               f"({self.prefix_rows} prefix row(s) dropped)",
               f"unused file tensors: {len(self.unused)}" + convert._some(self.unused, 6)]
        if self.filled:
            out.append(f"filled with zeros: {len(self.filled)}" + convert._some(self.filled, 3))
        return out + [f"note: {n}" for n in self.notes]


def _shape(v: torch.Tensor) -> tuple[int, ...]:
    return tuple(v.shape)


def _square(n: int) -> int | None:
    g = math.isqrt(max(n, 0))
    return g if g > 0 and g * g == n else None


def _prefix_tokens(sd: Mapping[str, torch.Tensor]) -> int:
    n = 0
    for key in ("cls_token", "dist_token"):
        if key in sd:
            n += 1
    reg = sd.get("reg_token")
    if reg is not None:
        if reg.ndim != 3:
            raise CheckpointError(f"reg_token has shape {_shape(reg)}; expected [1, R, C]")
        n += int(reg.shape[1])
    return n


def _pos_table(value: torch.Tensor, dim: int, prefix: int) -> tuple[torch.Tensor, int, int]:
    """``(table [1, C, g, g], g, prefix rows dropped)`` of a timm ``pos_embed``."""
    if value.ndim != 3 or value.shape[0] != 1 or value.shape[2] != dim:
        raise CheckpointError(f"pos_embed has shape {_shape(value)}; expected [1, prefix + g * g, {dim}] "
                              f"(the model's ViT is {dim} wide)")
    n = int(value.shape[1])
    # the usual layout (prefix rows first), then no_embed_class (no prefix rows), then a cls row with no
    # cls_token saved (ViT-Adapter / the release)
    for rows in dict.fromkeys((prefix, 0, 1)):
        g = _square(n - rows)
        if g is not None:
            table = value[:, rows:].reshape(1, g, g, dim).permute(0, 3, 1, 2).contiguous()
            return table, g, rows
    raise CheckpointError(f"pos_embed has {n} rows: not a square grid after {prefix} prefix row(s) (cls / dist / "
                          "register tokens), nor without them; non-square position grids are not supported")


def _why(key: str) -> str:
    for part, what in _KNOWN_PARTS.items():
        if part in key:
            return f"{key} ({what})"
    return key


def convert_timm_vit(
    state_dict: Mapping[str, torch.Tensor],
    *,
    embed_dim: int,
    depth: int,
    num_heads: int,
    patch: int = 16,
    mlp_ratio: float = 4.0,
    pos_grid: tuple[int, int] | None = None,
) -> tuple[OrderedDict[str, torch.Tensor], TimmImportReport]:
    """A timm ViT state dict -> ``(state dict of our VisionTransformer, report)``; see the module docstring.

    The widths are ours (``VisionTransformer(patch=, embed_dim=, depth=, num_heads=, mlp_ratio=, pos_grid=)``); the
    result fits that model exactly (every key and shape; float32). ``pos_grid``: the grid of our position table;
    None keeps the file's grid (then our ViT computes what timm's does at every input size where neither resizes);
    another grid resizes the file's table to it (plain bicubic, as ours resizes). ``num_heads`` is not stored in
    the weights and cannot be checked: timm's Tiny / Small / Base use 3 / 6 / 12 (64 channels per head).
    Raises :class:`CheckpointError` naming the key.
    """
    sd = dict(state_dict)
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DistributedDataParallel wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    bad = [str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"not a state dict of named tensors: {convert._listing(bad)}")
    report = TimmImportReport()
    proj = sd.get("patch_embed.proj.weight")
    if proj is None:
        raise CheckpointError("the file has no patch_embed.proj.weight, which every timm ViT has "
                              f"(its keys start {convert._listing(sorted(sd), 6)})")
    if proj.ndim != 4 or proj.shape[1] != 3 or proj.shape[2] != proj.shape[3]:
        raise CheckpointError(f"patch_embed.proj.weight has shape {_shape(proj)}; expected [C, 3, p, p]")
    if proj.shape[0] != embed_dim:
        raise CheckpointError(f"patch_embed.proj.weight is {proj.shape[0]} wide, the model's ViT {embed_dim} "
                              "(ViT-Tiny is 192 wide, ViT-Small 384: choose the variant that fits the file)")
    if proj.shape[2] != patch:
        raise CheckpointError(f"patch_embed.proj.weight has {proj.shape[2]}x{proj.shape[3]} patches, the model's "
                              f"ViT {patch}x{patch}")
    blocks = sorted({int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k))})
    if blocks != list(range(len(blocks))):
        raise CheckpointError(f"blocks.* are numbered {blocks[:6]}...; expected blocks.0 .. blocks.{len(blocks) - 1}")
    if len(blocks) != depth:
        have = f"blocks.0 .. blocks.{len(blocks) - 1}" if blocks else "no blocks.*"
        raise CheckpointError(f"the file has {len(blocks)} blocks ({have}), the model's ViT {depth} (depth)")
    if "pos_embed" not in sd:
        raise CheckpointError("the file has no pos_embed (an absolute position table), which our ViT needs")

    table, g, rows = _pos_table(sd["pos_embed"], embed_dim, _prefix_tokens(sd))
    report.prefix_rows, report.source_grid = rows, (g, g)
    grid = (g, g) if pos_grid is None else (int(pos_grid[0]), int(pos_grid[1]))
    report.pos_grid = grid
    if grid != (g, g):
        table = F.interpolate(table.float(), size=grid, mode="bicubic", align_corners=False)
        report.notes.append(f"the file's {g}x{g} position table was resized to the model's {grid[0]}x{grid[1]} "
                            "(bicubic): at inputs of the file's grid the ViT no longer computes exactly the file's")

    out: dict[str, torch.Tensor] = {"patch_embed.proj.weight": proj}
    unmapped: list[str] = []
    for k, v in sd.items():
        if k in ("patch_embed.proj.weight", "pos_embed"):
            continue
        if k == "patch_embed.proj.bias":
            out[k] = v
        elif m := _BLOCK_RE.match(k):
            if m.group(2) in BLOCK_KEYS:
                out[k] = v
            else:
                unmapped.append(k)
        elif k in UNUSED_KEYS or k.startswith(UNUSED_PREFIXES):
            report.unused.append(k)
        else:
            unmapped.append(k)
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} tensor(s) of the file are parts our ViT does not have (dropping "
                              f"them would change what it computes): {convert._listing([_why(k) for k in unmapped])}")
    out["pos_embed.weight"] = table

    with torch.device("meta"):
        expected = {k: _shape(v) for k, v in VisionTransformer(
            patch=patch, embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
            pos_grid=grid).state_dict().items()}
    qkv_bias = [f"blocks.{i}.attn.qkv.bias" for i in range(depth)]
    if not any(k in out for k in qkv_bias):  # timm's qkv_bias=False: a zero bias computes the same
        for k in qkv_bias:
            out[k] = torch.zeros(expected[k])
        report.filled = qkv_bias
        report.notes.append("the file's attention has no qkv bias (timm qkv_bias=False): zero biases, the same result")
    missing = [("pos_embed" if k == "pos_embed.weight" else k) for k in expected if k not in out]
    if missing:
        raise CheckpointError(f"{len(missing)} tensor(s) of the model's ViT are not in the file: "
                              f"{convert._listing(missing)}")
    shapes = [f"{k}: file {_shape(v)} vs model {expected[k]}" for k, v in out.items()
              if k != "pos_embed.weight" and _shape(v) != expected[k]]
    if shapes:
        raise CheckpointError(f"{len(shapes)} tensor(s) of the file do not fit the model's ViT (embed_dim "
                              f"{embed_dim}, depth {depth}, MLP {int(embed_dim * mlp_ratio)} wide): "
                              f"{convert._listing(shapes, 4)}")
    notfloat = [f"{k} ({str(v.dtype).removeprefix('torch.')})" for k, v in out.items()
                if v.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64)]
    if notfloat:
        raise CheckpointError(f"{len(notfloat)} tensor(s) of the file are not float tensors: "
                              f"{convert._listing(notfloat)}")
    ordered = OrderedDict((k, out[k].detach().to(torch.float32).contiguous()) for k in expected)
    nonfinite = [("pos_embed" if k == "pos_embed.weight" else k) for k, v in ordered.items()
                 if not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointError(f"{len(nonfinite)} tensor(s) of the file hold NaN or Inf values: "
                              f"{convert._listing(nonfinite)}; the file is damaged or from a diverged run")
    report.mapped = len(ordered) - len(report.filled)
    if embed_dim % num_heads == 0 and embed_dim // num_heads != 64:
        report.notes.append(f"{num_heads} heads of {embed_dim // num_heads} channels: timm's ViTs have 64 per head; "
                            "the head count is not stored in the weights, check it")
    return ordered, report


# --- the release / mmdet ViT-Adapter layout ------------------------------------------------------------------------

def is_release_layout(sd: Mapping[str, Any]) -> bool:
    """True for the authors' / mmdet layout: ``[detector.]backbone.*`` keys (not timm's)."""
    return any(isinstance(k, str) and k.removeprefix(convert.DETECTOR).startswith(convert.BACKBONE) for k in sd)


def release_vit_state_dict(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """The ViT part of a release / COCO Mask2Former file under timm's names, ``(tensors, unused keys, notes)``.

    Uses :mod:`core.model.convert`'s backbone rules (both block namings); everything that is not the ViT (the
    adapter, Map-SM, selective modules, ``panoptic_head.*``, other top-level keys) is unused.
    """
    backbone: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    notes: list[str] = []
    head_classes = None
    for key, value in sd.items():
        k = key.removeprefix(convert.DETECTOR)
        if k.startswith(convert.BACKBONE):
            backbone[k[len(convert.BACKBONE):]] = value
        else:
            unused.append(key)
            if k == convert.HEAD + "cls_embed.weight" and isinstance(value, torch.Tensor) and value.ndim == 2:
                head_classes = int(value.shape[0]) - 1
    prefix = convert.DETECTOR + convert.BACKBONE if any(k.startswith(convert.DETECTOR) for k in sd) \
        else convert.BACKBONE
    naming = convert._block_naming(backbone)
    vit: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for k, v in backbone.items():
        ours = convert._map_backbone_key(k, naming)
        if ours is not None and ours.startswith(_VIT):
            name = ours[len(_VIT):]
            vit["pos_embed" if name == "pos_embed.weight" else name] = v
        elif ours is None and _BLOCK_RE.match(k):
            unmapped.append(prefix + k)  # a block tensor no rule maps: it would change the ViT
        else:
            unused.append(prefix + k)
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} block tensor(s) of the file are parts our ViT does not have: "
                              f"{convert._listing(unmapped)}")
    notes.append("a release / mmdet ViT-Adapter Mask2Former file: only its ViT initialises ours; its adapter, "
                 "Map-SM, selective modules and Mask2Former head are not used (our model has no adapter and another "
                 "head; `vpp import-checkpoint` imports the authors' full model)"
                 + (f"; its head has {head_classes} classes" if head_classes is not None else ""))
    if naming == "vpp":
        notes.append("its blocks are nn.TransformerEncoderLayer with LayerNorm eps 1e-5; ours use 1e-6, so the "
                     "imported ViT computes very slightly differently (fine as an initialisation)")
    return vit, unused, notes


# --- files -----------------------------------------------------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or ``.pth`` / ``.pt`` / ``.bin`` file (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: backbone checkpoint not found" if not path.exists() else f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if suffix in TORCH_SUFFIXES:
        from core.safe_pickle import load_mmengine_checkpoint

        return dict(load_mmengine_checkpoint(path)["state_dict"])
    raise CheckpointError(f"{path}: unknown backbone file type {suffix or '(no suffix)'!r}; give a .safetensors, "
                          ".pth, .pt or .bin file (timm / DeiT / AugReg state dicts, or a release / COCO "
                          "Mask2Former checkpoint)")


def read_backbone_file(
    path: str | Path, *, embed_dim: int, depth: int, num_heads: int, patch: int = 16, mlp_ratio: float = 4.0,
    pos_grid: tuple[int, int] | None = None,
) -> tuple[OrderedDict[str, torch.Tensor], TimmImportReport]:
    """Read ``path`` (timm layout, or the release / COCO Mask2Former layout) and convert its ViT to ours.

    Arguments as :func:`convert_timm_vit`; every error names the file.
    """
    sd = read_state_dict(path)
    layout, unused, notes = "timm", [], []
    try:
        if is_release_layout(sd):
            layout = "release"
            sd, unused, notes = release_vit_state_dict(sd)
        state, report = convert_timm_vit(sd, embed_dim=embed_dim, depth=depth, num_heads=num_heads, patch=patch,
                                         mlp_ratio=mlp_ratio, pos_grid=pos_grid)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    report.layout = layout
    report.unused = unused + report.unused
    report.notes = notes + report.notes
    return state, report
