"""The released checkpoints' state dicts -> :class:`~core.model.release.model.ReleaseVPPModel`'s. The only module
that knows the release's key names.

Keys are read with or without the leading ``detector.`` (ROVIS / VPP checkpoints have it, plain mmdet Mask2Former
checkpoints do not). Backbone (``[detector.]backbone.``), after the prefix:

- ``patch_embed.proj.*`` -> ``backbone.vit.patch_embed.proj.*``
- ``pos_embed`` ``[1, 1 + 14 * 14, C]`` (cls row first) -> ``backbone.vit.pos_embed.weight`` ``[1, C, 14, 14]``
- VPP blocks, ``blocks.i.TransformerEncoderLayer.`` + ``self_attn.in_proj_weight / in_proj_bias`` ->
  ``backbone.vit.blocks.i.attn.qkv.weight / bias``; ``self_attn.out_proj.*`` -> ``attn.proj.*``;
  ``linear1.* / linear2.*`` -> ``mlp.fc1.* / mlp.fc2.*``; ``norm1.* / norm2.*`` -> the same (LayerNorm eps 1e-5)
- timm blocks (the dense models), ``blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*`` -> the same
  names under ``backbone.vit.blocks.i.`` (eps 1e-6)
- ``selective_modules.{0,1,2}.norm.* / mlp.fc1.* / mlp.fc2.*`` -> ``backbone.selective.{3,6,9}.norm / fc1 / fc2``
- ``interactions.j.matching_module.norm_selector.*`` -> ``backbone.map_sm.norm.*``;
  ``...matching_module.selector.fc1.* / fc2.*`` -> ``backbone.map_sm.fc1.* / fc2.*``
- ``interactions.j.matching_module.init_mlp.weight`` and ``norm_input.*``: never read by the release's forward,
  dropped (listed as known-unused); likewise ``cls_token`` if a file has one (the adapter sets it to None)
- ``level_embed``, ``spm.*``, ``interactions.i.{injector, extractor, extra_extractors}.*``, ``up.*``,
  ``norm1..4.*`` -> the same name under ``adapter.``

All our backbone keys above are under ``adapter.``.

Head (``[detector.]panoptic_head.``): ``head.`` + :func:`core.model.m2f_head.rename_release_key` (mmcv's
positional ``attentions.0 / 1`` and ``ffns.0`` -> mmdet >= 3.0 names; those come through unchanged).

The variant and the widths come from the tensors: ViT width from ``patch_embed.proj.weight`` (192 Tiny, 384
Small; the heads, 3 / 6, are the variant's), depth and MLP width from the blocks, position grid from
``pos_embed``, Map-SM hidden width from ``selector.fc1.weight``, selective hidden width from ``mlp.fc1.weight``
(the release's Small configs set 192 // 2 and 192 // 4 there; whatever the file holds is used), SPM and ConvFFN
widths, class / query counts and the head's layer counts and FFN widths from theirs.

Refused with a :class:`~core.errors.CheckpointError` naming the keys: a tensor no rule maps, a key of ours the
file does not fill (except the dense case below), a shape that does not fit, a Map-SM / selective module whose
input width is not the ViT's, mixed block namings, a ``--variant`` the tensors contradict. A checkpoint with
neither Map-SM nor selective modules (a dense ViT-Adapter model) converts with freshly initialised ones
(seed 0), reported as such, and ``pruning_trained=False`` in its config.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from core.errors import CheckpointError
from core.model.m2f_head import rename_release_key
from core.model.map_sm import MapSM
from core.model.release.builder import build_release_model
from core.model.release.config import SELECTIVE_BLOCKS, VARIANTS, ReleaseConfig, release_config
from core.model.selective import SelectiveModule

BACKBONE = "backbone."
HEAD = "panoptic_head."
DETECTOR = "detector."

#: The ViT width of each released variant.
WIDTH_TO_VARIANT = {int(v["embed_dim"]): name for name, v in VARIANTS.items()}

_VPP_BLOCK = {
    "self_attn.in_proj_weight": "attn.qkv.weight",
    "self_attn.in_proj_bias": "attn.qkv.bias",
    "self_attn.out_proj.weight": "attn.proj.weight",
    "self_attn.out_proj.bias": "attn.proj.bias",
    "linear1.weight": "mlp.fc1.weight",
    "linear1.bias": "mlp.fc1.bias",
    "linear2.weight": "mlp.fc2.weight",
    "linear2.bias": "mlp.fc2.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}
_TIMM_BLOCK = {name: name for name in _VPP_BLOCK.values()}
_SELECTIVE = {"norm.weight": "norm.weight", "norm.bias": "norm.bias", "mlp.fc1.weight": "fc1.weight",
              "mlp.fc1.bias": "fc1.bias", "mlp.fc2.weight": "fc2.weight", "mlp.fc2.bias": "fc2.bias"}
_MAP_SM = {"norm_selector.weight": "norm.weight", "norm_selector.bias": "norm.bias",
           "selector.fc1.weight": "fc1.weight", "selector.fc1.bias": "fc1.bias",
           "selector.fc2.weight": "fc2.weight", "selector.fc2.bias": "fc2.bias"}
#: Release tensors its forward never reads (Map-SM's ``init_mlp`` / ``norm_input``; a cls token, if saved).
_MAP_SM_UNUSED = ("init_mlp.weight", "init_mlp.bias", "norm_input.weight", "norm_input.bias")
_ADAPTER_ROOTS = ("level_embed", "spm.", "up.", "norm1.", "norm2.", "norm3.", "norm4.")

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_SELECTIVE_RE = re.compile(r"^selective_modules\.(\d+)\.(.+)$")
_MATCHING_RE = re.compile(r"^interactions\.(\d+)\.matching_module\.(.+)$")
_INTERACTION_RE = re.compile(r"^interactions\.(\d+)\.(injector|extractor|extra_extractors)\.")

_PREFIX_MAP_SM = "adapter.backbone.map_sm."
_PREFIX_SELECTIVE = "adapter.backbone.selective."


@dataclass
class ConversionReport:
    """What :func:`convert_release_state_dict` did (``lines()`` for printing)."""

    variant: str
    block_naming: str  # "vpp" (TransformerEncoderLayer) or "timm"
    widths: dict[str, Any]  # the config fields read from the tensors
    mapped: int = 0  # release tensors that became ours
    unused: list[str] = field(default_factory=list)  # release keys known to be unused, dropped
    missing: list[str] = field(default_factory=list)  # our keys the file does not fill (dense case only)
    unexpected: list[str] = field(default_factory=list)  # always empty on success (they raise)
    pruning_trained: bool = True
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        w = ", ".join(f"{k}={v}" for k, v in self.widths.items())
        out = [f"variant: {self.variant} ({self.block_naming} block names)", f"widths read from the tensors: {w}",
               f"mapped tensors: {self.mapped}",
               f"known-unused release tensors dropped: {len(self.unused)}" + _some(self.unused, 6),
               f"missing keys: {len(self.missing)}" + _some(self.missing, 4),
               f"unexpected keys: {len(self.unexpected)}"]
        return out + [f"note: {n}" for n in self.notes]

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "block_naming": self.block_naming, "widths": dict(self.widths),
                "mapped": self.mapped, "unused": list(self.unused), "missing": list(self.missing),
                "unexpected": list(self.unexpected), "pruning_trained": self.pruning_trained,
                "notes": list(self.notes)}


def _some(keys: list[str], n: int) -> str:
    return f" ({', '.join(keys[:n])}{', ...' if len(keys) > n else ''})" if keys else ""


def _listing(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def split_release_keys(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(backbone, head)`` tensors with their prefixes stripped; any other key raises, naming it."""
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    other: list[str] = []
    for key, value in sd.items():
        k = key[len(DETECTOR):] if key.startswith(DETECTOR) else key
        if k.startswith(BACKBONE):
            backbone[k[len(BACKBONE):]] = value
        elif k.startswith(HEAD):
            head[k[len(HEAD):]] = value
        else:
            other.append(key)
    if other:
        raise CheckpointError(f"{len(other)} tensor(s) of the checkpoint are neither backbone nor head tensors of the "
                              f"released model and no rule maps them: {_listing(other)}")
    if not backbone or not head:
        raise CheckpointError("not a released VPP / ViT-Adapter Mask2Former checkpoint: it has no "
                              f"{'detector.backbone.*' if not backbone else 'detector.panoptic_head.*'} tensors")
    return backbone, head


def _shape(sd: Mapping[str, torch.Tensor], key: str, full: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"the checkpoint has no {full}{key}, which every released model has")
    return tuple(sd[key].shape)


def infer_widths(backbone: Mapping[str, torch.Tensor], head: Mapping[str, torch.Tensor],
                 variant: str | None = None) -> tuple[str, str, dict[str, Any]]:
    """``(variant, block naming, config fields)`` read from the tensors' shapes (prefixes stripped)."""
    bb, hd = DETECTOR + BACKBONE, DETECTOR + HEAD
    proj = _shape(backbone, "patch_embed.proj.weight", bb)
    if len(proj) != 4 or proj[2] != proj[3]:
        raise CheckpointError(f"{bb}patch_embed.proj.weight has shape {proj}; expected [C, 3, 16, 16]")
    dim, patch = proj[0], proj[2]
    found = WIDTH_TO_VARIANT.get(dim)
    if variant is not None and variant not in VARIANTS:
        raise CheckpointError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if variant is not None and found is not None and variant != found:
        raise CheckpointError(f"{bb}patch_embed.proj.weight is {dim} wide, a {found.title()} model; "
                              f"--variant {variant} does not fit it")
    if variant is None and found is None:
        raise CheckpointError(f"{bb}patch_embed.proj.weight is {dim} wide; the released variants are "
                              + ", ".join(f"{k} ({v['embed_dim']})" for k, v in VARIANTS.items()))
    variant = variant or found
    assert variant is not None

    naming = _block_naming(backbone)
    blocks = sorted({int(m.group(1)) for k in backbone if (m := _BLOCK_RE.match(k))})
    depth = len(blocks)
    if blocks != list(range(depth)):
        raise CheckpointError(f"{bb}blocks.* are numbered {blocks[:4]}...; expected 0..{depth - 1}")
    fc1 = "blocks.0.TransformerEncoderLayer.linear1.weight" if naming == "vpp" else "blocks.0.mlp.fc1.weight"
    mlp_hidden = _shape(backbone, fc1, bb)[0]

    pos = _shape(backbone, "pos_embed", bb)
    grid = _pos_grid(pos, dim)

    widths: dict[str, Any] = dict(
        embed_dim=dim, patch=patch, depth=depth, mlp_hidden=mlp_hidden, pos_grid=(grid, grid),
        block_norm_eps=1e-5 if naming == "vpp" else 1e-6,
        conv_inplane=_shape(backbone, "spm.stem.0.weight", bb)[0],
        cffn_hidden=_shape(backbone, "interactions.0.extractor.ffn.fc1.weight", bb)[0],
    )
    inter = sorted({int(m.group(1)) for k in backbone if (m := _INTERACTION_RE.match(k))})
    extra = {k.split(".")[3] for k in backbone if k.startswith(f"interactions.{inter[-1]}.extra_extractors.")} \
        if inter else set()
    widths["num_extra_extractors"] = len(extra)
    if len(inter) != 4:
        raise CheckpointError(f"{bb}interactions.* has {len(inter)} interaction blocks; the released models have 4")

    matching = {m.group(2): v for k, v in backbone.items() if (m := _MATCHING_RE.match(k))}
    if matching:
        w = matching.get("selector.fc1.weight")
        if w is None:
            raise CheckpointError(f"{bb}interactions.*.matching_module has no selector.fc1.weight")
        _check_input_width(matching, ("norm_selector.weight", "selector.fc1.weight"), dim,
                           f"{bb}interactions.*.matching_module (Map-SM)")
        widths["map_sm_hidden"] = int(w.shape[0])
    selective = {k: v for k, v in backbone.items() if _SELECTIVE_RE.match(k)}
    if selective:
        hidden = {int(v.shape[0]) for k, v in selective.items() if k.endswith(".mlp.fc1.weight")}
        if len(hidden) != 1:
            raise CheckpointError(f"{bb}selective_modules.*.mlp.fc1.weight: expected one hidden width for all, got "
                                  f"{sorted(hidden) or 'none'}")
        for j in range(len(SELECTIVE_BLOCKS)):
            sub = {k.split(".", 2)[2]: v for k, v in selective.items() if k.startswith(f"selective_modules.{j}.")}
            _check_input_width(sub, ("norm.weight", "mlp.fc1.weight"), dim, f"{bb}selective_modules.{j}")
        widths["selective_hidden"] = hidden.pop()

    cls = _shape(head, "cls_embed.weight", hd)
    query = _shape(head, "query_feat.weight", hd)
    renamed = {rename_release_key(k): v for k, v in head.items()}
    enc = sorted({int(k.split(".")[3]) for k in renamed if k.startswith("pixel_decoder.encoder.layers.")})
    dec = sorted({int(k.split(".")[2]) for k in renamed if k.startswith("transformer_decoder.layers.")})
    widths.update(
        num_classes=cls[0] - 1, num_queries=query[0], feat_channels=query[1],
        out_channels=_shape(head, "mask_embed.4.weight", hd)[0],
        encoder_layers=len(enc), decoder_layers=len(dec),
        encoder_ffn=_shape(renamed, "pixel_decoder.encoder.layers.0.ffn.layers.0.0.weight", hd)[0],
        decoder_ffn=_shape(renamed, "transformer_decoder.layers.0.ffn.layers.0.0.weight", hd)[0],
    )
    return variant, naming, widths


def _check_input_width(sub: Mapping[str, torch.Tensor], keys: tuple[str, str], dim: int, what: str) -> None:
    norm, fc1 = keys
    got = {int(sub[norm].shape[0])} if norm in sub else set()
    if fc1 in sub:
        got.add(int(sub[fc1].shape[-1]))
    if got and got != {dim}:
        raise CheckpointError(
            f"{what} reads {sorted(got)[0]}-wide tokens but the ViT is {dim} wide; such a module cannot run on this "
            "backbone (the release's Small configs set the width 192: a checkpoint trained with them would not run in "
            "the release either)")


def _block_naming(backbone: Mapping[str, torch.Tensor]) -> str:
    vpp = any(".TransformerEncoderLayer." in k for k in backbone if k.startswith("blocks."))
    timm = any(_BLOCK_RE.match(k) and ".TransformerEncoderLayer." not in k for k in backbone)
    if vpp and timm:
        sample = next(k for k in backbone if _BLOCK_RE.match(k) and ".TransformerEncoderLayer." not in k)
        raise CheckpointError(f"the checkpoint mixes VPP (TransformerEncoderLayer) and timm block names, e.g. "
                              f"{DETECTOR}{BACKBONE}{sample}")
    if not vpp and not timm:
        raise CheckpointError(f"the checkpoint has no {DETECTOR}{BACKBONE}blocks.* tensors")
    return "vpp" if vpp else "timm"


def _pos_grid(shape: tuple[int, ...], dim: int) -> int:
    if len(shape) != 3 or shape[0] != 1 or shape[2] != dim:
        raise CheckpointError(f"{DETECTOR}{BACKBONE}pos_embed has shape {shape}; expected [1, 1 + g * g, {dim}]")
    n = shape[1]
    for tokens in (n - 1, n):  # with the cls row (the release) or without
        g = math.isqrt(max(tokens, 0))
        if g > 0 and g * g == tokens:
            return g
    raise CheckpointError(f"{DETECTOR}{BACKBONE}pos_embed has {n} rows: not a square grid (with or without a cls row)")


def _convert_pos_embed(value: torch.Tensor, grid: int) -> torch.Tensor:
    dim = value.shape[-1]
    table = value[:, -grid * grid:]  # drop the cls row if there is one
    return table.reshape(1, grid, grid, dim).permute(0, 3, 1, 2).contiguous()


def _map_backbone_key(k: str, naming: str) -> str | None:
    """Our key for a release backbone key (prefix stripped); "" for known-unused; None when no rule maps it."""
    if k == "patch_embed.proj.weight" or k == "patch_embed.proj.bias":
        return "adapter.backbone.vit." + k
    if k == "pos_embed":
        return "adapter.backbone.vit.pos_embed.weight"
    if k == "cls_token":
        return ""
    if m := _BLOCK_RE.match(k):
        i, rest = m.groups()
        table = _VPP_BLOCK if naming == "vpp" else _TIMM_BLOCK
        if naming == "vpp":
            if not rest.startswith("TransformerEncoderLayer."):
                return None
            rest = rest[len("TransformerEncoderLayer."):]
        ours = table.get(rest)
        return None if ours is None else f"adapter.backbone.vit.blocks.{i}.{ours}"
    if m := _SELECTIVE_RE.match(k):
        j, rest = int(m.group(1)), m.group(2)
        if j >= len(SELECTIVE_BLOCKS) or rest not in _SELECTIVE:
            return None
        return f"{_PREFIX_SELECTIVE}{SELECTIVE_BLOCKS[j]}.{_SELECTIVE[rest]}"
    if m := _MATCHING_RE.match(k):
        rest = m.group(2)
        if rest in _MAP_SM_UNUSED:
            return ""
        return None if rest not in _MAP_SM else _PREFIX_MAP_SM + _MAP_SM[rest]
    if _INTERACTION_RE.match(k) or k.startswith(_ADAPTER_ROOTS):
        return "adapter." + k
    return None


def convert_release_state_dict(
    sd: Mapping[str, torch.Tensor], *, variant: str | None = None
) -> tuple[OrderedDict[str, torch.Tensor], ConversionReport]:
    """A released checkpoint's ``state_dict`` -> ``(our state dict, report)``; see the module docstring.

    The result fits ``build_release_model(report.variant, **report.widths)`` exactly (every key, every shape):
    checked here against a model built on the meta device. Raises :class:`CheckpointError`.
    """
    backbone, head = split_release_keys(sd)
    variant, naming, widths = infer_widths(backbone, head, variant)
    grid = widths["pos_grid"][0]
    report = ConversionReport(variant=variant, block_naming=naming, widths=dict(widths))
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    origin: dict[str, str] = {}
    unmapped: list[str] = []
    for k, v in backbone.items():
        ours = _map_backbone_key(k, naming)
        full = DETECTOR + BACKBONE + k
        if ours is None:
            unmapped.append(full)
        elif ours == "":
            report.unused.append(full)
        else:
            if ours in out:
                raise CheckpointError(f"{full} and {origin[ours]} both map to {ours}")
            out[ours] = _convert_pos_embed(v, grid) if k == "pos_embed" else v
            origin[ours] = full
    for k, v in head.items():
        ours = "head." + rename_release_key(k)
        full = DETECTOR + HEAD + k
        if ours in out:
            raise CheckpointError(f"{full} and {origin[ours]} both map to {ours}")
        out[ours] = v
        origin[ours] = full
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} tensor(s) of the checkpoint are not part of the released model and no "
                              f"rule maps them: {_listing(unmapped)}")

    try:
        cfg = release_config(variant, **widths)
    except ValueError as exc:
        raise CheckpointError(f"the widths read from the checkpoint do not make a usable model: {exc}") from None
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_release_model(cfg).state_dict().items()}
    unexpected = [origin[k] for k in out if k not in expected]
    if unexpected:  # a rule produced a key our model does not have (e.g. a 4th selective module)
        raise CheckpointError(f"{len(unexpected)} tensor(s) of the checkpoint have no place in the model: "
                              f"{_listing(unexpected)}")
    missing = [k for k in expected if k not in out]
    pruning = [k for k in expected if k.startswith((_PREFIX_MAP_SM, _PREFIX_SELECTIVE))]
    if missing and set(missing) == set(pruning):  # a dense ViT-Adapter model: no Map-SM, no selective modules
        out.update(_initial_pruning_weights(cfg))
        report.missing = missing
        report.pruning_trained = False
        report.notes.append("a dense checkpoint (no Map-SM / selective modules): those are freshly initialised "
                            "(seed 0) and untrained; use it at PKR 1.0 or in random mode, or train the sparse stage")
    elif missing:
        names = {k: _release_name(k, naming) for k in missing}
        raise CheckpointError(f"{len(missing)} tensor(s) of the model are not in the checkpoint: "
                              f"{_listing([names[k] for k in missing])}")
    bad = [f"{origin[k]}: checkpoint {tuple(v.shape)} vs model {expected[k]}" for k, v in out.items()
           if k in origin and tuple(v.shape) != expected[k]]
    if bad:
        raise CheckpointError(f"{len(bad)} tensor(s) of the checkpoint do not fit the {variant} model read from its "
                              f"shapes: {_listing(bad, 6)}")
    report.mapped = len(origin)
    if widths.get("map_sm_hidden") is not None and widths["map_sm_hidden"] != widths["embed_dim"] // 2:
        report.notes.append(f"Map-SM hidden width {widths['map_sm_hidden']} (not C/2 = {widths['embed_dim'] // 2}), "
                            "as read from the checkpoint")
    if widths.get("selective_hidden") is not None and widths["selective_hidden"] != widths["embed_dim"] // 4:
        report.notes.append(f"selective-module hidden width {widths['selective_hidden']} (not C/4 = "
                            f"{widths['embed_dim'] // 4}), as read from the checkpoint")
    ordered = OrderedDict((k, out[k]) for k in expected)
    return ordered, report


def _release_name(ours: str, naming: str) -> str:
    """The release's key for one of ours (for messages)."""
    k = ours.removeprefix("adapter.")
    if ours.startswith("head."):
        return DETECTOR + HEAD + ours.removeprefix("head.") + " (or its mmcv name)"
    k = k.removeprefix("backbone.vit.")
    if m := re.match(r"^blocks\.(\d+)\.(.+)$", k):
        if naming == "vpp":
            inverse = {v: kk for kk, v in _VPP_BLOCK.items()}
            k = f"blocks.{m.group(1)}.TransformerEncoderLayer.{inverse.get(m.group(2), m.group(2))}"
    elif k == "pos_embed.weight":
        k = "pos_embed"
    elif k.startswith("backbone.selective."):
        _, _, b, rest = k.split(".", 3)
        inverse = {v: kk for kk, v in _SELECTIVE.items()}
        k = f"selective_modules.{SELECTIVE_BLOCKS.index(int(b))}.{inverse.get(rest, rest)}"
    elif k.startswith("backbone.map_sm."):
        inverse = {v: kk for kk, v in _MAP_SM.items()}
        rest = k.removeprefix("backbone.map_sm.")
        k = f"interactions.0.matching_module.{inverse.get(rest, rest)}"
    return DETECTOR + BACKBONE + k


def _initial_pruning_weights(cfg: ReleaseConfig) -> dict[str, torch.Tensor]:
    """Freshly initialised (seed 0) Map-SM and selective modules for a dense checkpoint."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        dim = cfg.embed_dim
        map_sm = MapSM(dim, hidden_ratio=(cfg.map_sm_hidden + 0.5) / dim)
        out = {_PREFIX_MAP_SM + k: v for k, v in map_sm.state_dict().items()}
        for b in SELECTIVE_BLOCKS:
            sm = SelectiveModule(dim, hidden=cfg.selective_hidden)
            out.update({f"{_PREFIX_SELECTIVE}{b}.{k}": v for k, v in sm.state_dict().items()})
        return out
    finally:
        torch.random.set_rng_state(gen_state)
