"""The numbers of the authors' released architecture: :class:`ReleaseConfig`, the variants, the keep schedules.

:class:`ReleaseConfig` and :func:`~core.model.release.builder.build_release_model` hold every number
of the release (PatGlan/Video-Patch-Pruning, configs ``vpp_vit{Tiny,Small}_4xb2_6e_*PKR_ytvis21.py`` and their
bases), so the importer (``core.model.convert``) can pass the widths it read from a checkpoint's tensors.

What the release fixes and this family reproduces:

- input: RGB in 0..255, normalised with the ImageNet mean / std, *then* padded with zeros at the bottom / right
  to a multiple of 32 (mmdet's ``DetDataPreprocessor(pad_size_divisor=32)`` pads the normalised image);
- ViT: patch 16, depth 12, MLP ratio 4, Tiny 192 d / 3 heads, Small 384 d / 6 heads; position embedding learned
  at 224 x 224 (14 x 14 tokens; the checkpoint's cls row is dropped) and resized bicubically to the grid;
  the VPP checkpoints' blocks are ``nn.TransformerEncoderLayer`` (LayerNorm eps 1e-5), the dense ones timm
  blocks (eps 1e-6): ``block_norm_eps`` records which;
- Map-SM before block 1 (values from block 5), image selective modules before blocks 3, 6, 9; their hidden
  widths are read from the checkpoint (the release's Small configs say 192 // 2 and 192 // 4);
- adapter: 4 interactions ``[0, 2], [3, 5], [6, 8], [9, 11]``, SPM width 64, 6 deformable heads, 4 points,
  ConvFFN ratio 0.25, 2 extra extractors;
- head: 100 queries, 256 d, 6 deformable encoder layers, 9 decoder layers, 40 classes (YouTube-VIS 2021).

Selection (``ReleaseConfig.selection``, recorded in the model file; a ``forward(selection=...)`` overrides it for
one call; see ``core.model.backbone``): "topk", the project's static top-k per stage (real speed, the keep fractions
set the PKR), or "release", the release's rule: Map-SM keeps ``int(N * keep[0])`` tokens ranked as released, the
selective modules are per-token thresholds (p(keep) >= 0.5) so the kept count varies per frame, no background
lattice. Both use argmax association and no Gumbel noise at inference (deterministic; the release samples noise at
test time); keep fractions are per-call arguments (:func:`release_keep` gives the release's schedules).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.model.adapter import INPUT_MULTIPLE
from core.model.backbone import SELECTIONS
from core.pkr import check_pkr
from core.values import is_finite_number, is_int

Variant = Literal["tiny", "small"]

#: The release's per-variant ViT numbers (embed dim, heads, stochastic depth of the adapter's ConvFFN).
VARIANTS: dict[str, dict[str, Any]] = {
    "tiny": dict(embed_dim=192, num_heads=3, drop_path=0.1),
    "small": dict(embed_dim=384, num_heads=6, drop_path=0.2),
}

#: Prune points of the release: Map-SM before block 1, selective modules before blocks 3, 6, 9.
MAP_BLOCK = 1
SELECTIVE_BLOCKS = (3, 6, 9)
#: Tokens per stage in the reported PKR: block 0 is always dense, then the stages after each prune point.
_STAGE_BLOCKS = (2, 3, 3, 3)

#: The release's keep schedules (Map-SM ``keep_ratio``, then ``selective_module_kr``), absolute fractions of N.
RELEASE_KEEP: dict[str, tuple[float, float, float, float]] = {
    "0.55": (0.7, 0.56, 0.448, 0.358),
    "0.4": (0.6, 0.42, 0.294, 0.206),
}


def nominal_pkr(keep: Sequence[float] | None, depth: int = 12) -> float:
    """The PKR a keep schedule gives: mean over the blocks of kept / total (block 0 counts as 1)."""
    if keep is None:
        return 1.0
    return (1.0 + sum(n * k for n, k in zip(_STAGE_BLOCKS, keep))) / depth


def release_keep(pkr: float) -> tuple[float, float, float, float] | None:
    """Keep fractions (Map-SM, blocks 3, 6, 9) for a target PKR in (0, 1], in the shape of the release's schedules.

    1.0 -> None (dense). Between 1.0, the 0.55 schedule (nominal PKR 0.5415) and the 0.4 schedule (0.4133) the
    fractions are interpolated linearly (the PKR is linear in them, so the target is met exactly up to the
    integer token counts); below, the 0.4 schedule is scaled down.
    """
    pkr = float(pkr)
    check_pkr(pkr, error=ValueError)
    if pkr >= 1.0:
        return None
    anchors = [((1.0,) * 4, 1.0)] + [(k, nominal_pkr(k)) for k in (RELEASE_KEEP["0.55"], RELEASE_KEEP["0.4"])]
    for (k_hi, p_hi), (k_lo, p_lo) in itertools.pairwise(anchors):
        if p_lo <= pkr <= p_hi:
            t = (p_hi - pkr) / (p_hi - p_lo)
            return tuple(hi + t * (lo - hi) for hi, lo in zip(k_hi, k_lo))  # type: ignore[return-value]
    low = RELEASE_KEEP["0.4"]
    scale = max(12 * pkr - 1.0, 1e-6) / sum(n * k for n, k in zip(_STAGE_BLOCKS, low))
    return tuple(max(1e-3, k * scale) for k in low)  # type: ignore[return-value]


@dataclass(frozen=True)
class ReleaseConfig:
    """Every number of a :class:`ReleaseVPPModel`; stored as the JSON beside the weights (``to_dict``)."""

    variant: str = "tiny"
    embed_dim: int = 192
    num_heads: int = 3
    depth: int = 12
    mlp_hidden: int = 768
    patch: int = 16
    pos_grid: tuple[int, int] = (14, 14)
    block_norm_eps: float = 1e-5  # 1e-5: VPP (nn.TransformerEncoderLayer) blocks; 1e-6: dense timm blocks
    map_sm_hidden: int = 96
    selective_hidden: int = 48
    deep_block: int = 5
    background_share: float = 0.0  # the release keeps no background lattice
    conv_inplane: int = 64
    deform_num_heads: int = 6
    n_points: int = 4
    cffn_hidden: int = 48
    interaction_indexes: tuple[tuple[int, int], ...] = ((0, 2), (3, 5), (6, 8), (9, 11))
    num_extra_extractors: int = 2
    drop_path: float = 0.1
    num_classes: int = 40
    num_queries: int = 100
    feat_channels: int = 256
    out_channels: int = 256
    encoder_layers: int = 6
    encoder_ffn: int = 1024
    decoder_layers: int = 9
    decoder_ffn: int = 2048
    input_multiple: int = INPUT_MULTIPLE
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    pruning_trained: bool = True  # False: imported from a dense checkpoint, Map-SM / selective weights untrained
    selection: str = "topk"  # "topk": static top-k per stage; "release": the release's thresholded gates
    extra: dict[str, Any] = field(default_factory=dict)  # free-form (provenance), not used to build

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pos_grid"] = list(self.pos_grid)
        d["interaction_indexes"] = [list(p) for p in self.interaction_indexes]
        d["pixel_mean"], d["pixel_std"] = list(self.pixel_mean), list(self.pixel_std)
        return d

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseConfig:
        """The inverse of :meth:`to_dict`; unknown keys, wrong types or out-of-range values raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"a release model config must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(data) - names)
        if unknown:
            raise ValueError(f"unknown release model config keys: {', '.join(unknown)}")
        d = dict(data)
        try:
            for key in ("pos_grid", "pixel_mean", "pixel_std"):
                if key in d:
                    d[key] = tuple(d[key])
            if "interaction_indexes" in d:
                d["interaction_indexes"] = tuple(tuple(p) for p in d["interaction_indexes"])
        except TypeError:
            raise ValueError("pos_grid, pixel_mean, pixel_std and interaction_indexes must be lists") from None
        return cls(**d)

    def replace(self, **changes: Any) -> ReleaseConfig:
        return dataclasses.replace(self, **changes)


#: Bounds of the integer fields (far beyond any released model; they keep a damaged config from allocating).
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "embed_dim": (8, 4096), "num_heads": (1, 64), "depth": (2, 64), "mlp_hidden": (1, 65536), "patch": (16, 16),
    "map_sm_hidden": (1, 65536), "selective_hidden": (1, 65536), "deep_block": (1, 63), "conv_inplane": (1, 1024),
    "deform_num_heads": (1, 64), "n_points": (1, 32), "cffn_hidden": (1, 65536), "num_extra_extractors": (0, 8),
    "num_classes": (1, 10000), "num_queries": (1, 10000), "feat_channels": (8, 4096), "out_channels": (1, 4096),
    "encoder_layers": (1, 32), "encoder_ffn": (1, 65536), "decoder_layers": (1, 32), "decoder_ffn": (1, 65536),
    "input_multiple": (INPUT_MULTIPLE, INPUT_MULTIPLE),
}


def _validate(cfg: ReleaseConfig) -> None:
    """Types and ranges of every field; ``ValueError`` naming the first bad one."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {cfg.variant!r}")
    for name, (lo, hi) in _INT_BOUNDS.items():
        v = getattr(cfg, name)
        if not is_int(v) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")
    if cfg.embed_dim % cfg.num_heads or cfg.embed_dim % cfg.deform_num_heads:
        raise ValueError(f"embed_dim {cfg.embed_dim} must be divisible by num_heads {cfg.num_heads} and "
                         f"deform_num_heads {cfg.deform_num_heads}")
    if cfg.deep_block >= cfg.depth:
        raise ValueError(f"deep_block {cfg.deep_block} must be below depth {cfg.depth}")
    for name, lo, hi in (("block_norm_eps", 0.0, 1e-2), ("background_share", 0.0, 1.0), ("drop_path", 0.0, 1.0)):
        v = getattr(cfg, name)
        if not is_finite_number(v) or not lo <= v < hi or (name == "block_norm_eps" and v <= 0):
            raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}), got {v!r}")
    grid = cfg.pos_grid
    if not (isinstance(grid, tuple) and len(grid) == 2 and all(is_int(g) and 1 <= g <= 256 for g in grid)):
        raise ValueError(f"pos_grid must be two integers in 1..256, got {grid!r}")
    pairs = cfg.interaction_indexes
    if not (isinstance(pairs, tuple) and 1 <= len(pairs) <= cfg.depth
            and all(isinstance(p, tuple) and len(p) == 2 and all(is_int(i) for i in p) for p in pairs)):
        raise ValueError(f"interaction_indexes must be [start, end] integer pairs, got {pairs!r}")
    for name in ("pixel_mean", "pixel_std"):
        v = getattr(cfg, name)
        if not (isinstance(v, tuple) and len(v) == 3 and all(is_finite_number(x) for x in v)):
            raise ValueError(f"{name} must be three numbers, got {v!r}")
    if any(x <= 0 for x in cfg.pixel_std):
        raise ValueError(f"pixel_std must be positive, got {cfg.pixel_std!r}")
    if cfg.selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {cfg.selection!r}")
    if not isinstance(cfg.pruning_trained, bool) or not isinstance(cfg.extra, dict):
        raise ValueError("pruning_trained must be true / false and extra an object")


def release_config(variant: Variant | str, **widths: Any) -> ReleaseConfig:
    """The release's config of ``variant`` ("tiny" / "small"), with any field overridden by ``widths``.

    Defaults of the widths the importer reads from a checkpoint: MLP 4 C, Map-SM hidden C / 2, selective hidden
    C / 4, ConvFFN hidden C / 4 (the release's configs; its Small configs say 192 // 2 and 192 // 4 instead).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown release variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    base = VARIANTS[variant]
    dim = int(widths.get("embed_dim", base["embed_dim"]))
    defaults = dict(
        variant=variant, embed_dim=dim, num_heads=base["num_heads"], drop_path=base["drop_path"],
        mlp_hidden=4 * dim, map_sm_hidden=dim // 2, selective_hidden=dim // 4, cffn_hidden=int(dim * 0.25),
    )
    unknown = sorted(set(widths) - {f.name for f in dataclasses.fields(ReleaseConfig)})
    if unknown:
        raise ValueError(f"unknown release model options: {', '.join(unknown)}")
    return ReleaseConfig(**{**defaults, **widths})
