"""The authors' released architecture as one module: normalisation + ViT-Adapter (pruned ViT inside) + Mask2Former.

``ReleaseVPPModel`` is composition only. :class:`ReleaseConfig` and :func:`build_release_model` hold every number
of the release (PatGlan/Video-Patch-Pruning, configs ``vpp_vit{Tiny,Small}_4xb2_6e_*PKR_ytvis21.py`` and their
bases), so the importer (``core.model.convert``) can pass the widths it read from a checkpoint's tensors.

What the release fixes and this module reproduces:

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
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from core.model.adapter import INPUT_MULTIPLE, AdapterOutput, ViTAdapter
from core.model.backbone import SELECTIONS, BackboneOutput, PrunedViT, PruneMode, PruneState, Selection
from core.model.m2f_head import Mask2FormerHead, Mask2FormerOutput
from core.model.map_sm import MapSM
from core.model.selective import SelectiveModule
from core.model.vit import VisionTransformer

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
    if not 0.0 < pkr <= 1.0:
        raise ValueError(f"PKR must be in (0, 1], got {pkr}")
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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate(cfg: ReleaseConfig) -> None:
    """Types and ranges of every field; ``ValueError`` naming the first bad one."""
    if cfg.variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {cfg.variant!r}")
    for name, (lo, hi) in _INT_BOUNDS.items():
        v = getattr(cfg, name)
        if not _is_int(v) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")
    if cfg.embed_dim % cfg.num_heads or cfg.embed_dim % cfg.deform_num_heads:
        raise ValueError(f"embed_dim {cfg.embed_dim} must be divisible by num_heads {cfg.num_heads} and "
                         f"deform_num_heads {cfg.deform_num_heads}")
    if cfg.deep_block >= cfg.depth:
        raise ValueError(f"deep_block {cfg.deep_block} must be below depth {cfg.depth}")
    for name, lo, hi in (("block_norm_eps", 0.0, 1e-2), ("background_share", 0.0, 1.0), ("drop_path", 0.0, 1.0)):
        v = getattr(cfg, name)
        if not _is_number(v) or not lo <= v < hi or (name == "block_norm_eps" and v <= 0):
            raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}), got {v!r}")
    grid = cfg.pos_grid
    if not (isinstance(grid, tuple) and len(grid) == 2 and all(_is_int(g) and 1 <= g <= 256 for g in grid)):
        raise ValueError(f"pos_grid must be two integers in 1..256, got {grid!r}")
    pairs = cfg.interaction_indexes
    if not (isinstance(pairs, tuple) and 1 <= len(pairs) <= cfg.depth
            and all(isinstance(p, tuple) and len(p) == 2 and all(_is_int(i) for i in p) for p in pairs)):
        raise ValueError(f"interaction_indexes must be [start, end] integer pairs, got {pairs!r}")
    for name in ("pixel_mean", "pixel_std"):
        v = getattr(cfg, name)
        if not (isinstance(v, tuple) and len(v) == 3 and all(_is_number(x) for x in v)):
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


@dataclass
class ReleaseOutput:
    """One frame of :class:`ReleaseVPPModel`.

    ``input_size``: the padded model input ``(H, W)``; ``valid_size``: the unpadded part ``(h, w)`` (top-left).
    ``flops``: the pruned ViT's (patch embedding, blocks, Map-SM / selective scoring); the adapter's SPM,
    injectors / extractors and the head are not counted.
    """

    adapter: AdapterOutput
    head: Mask2FormerOutput
    input_size: tuple[int, int]
    valid_size: tuple[int, int]

    @property
    def backbone(self) -> BackboneOutput:
        return self.adapter.backbone

    @property
    def kept_masks(self) -> list[torch.Tensor]:
        return self.adapter.kept_masks

    @property
    def keep_ratio(self) -> float:
        return self.adapter.keep_ratio

    @property
    def state(self) -> PruneState | None:
        return self.adapter.state

    @property
    def class_logits(self) -> torch.Tensor:
        return self.head.class_logits

    @property
    def mask_logits(self) -> torch.Tensor:
        return self.head.mask_logits

    @property
    def embeddings(self) -> torch.Tensor:
        return self.head.embeddings

    @property
    def num_queries(self) -> int:
        return self.head.num_queries

    @property
    def flops(self) -> int:
        return self.adapter.backbone.flops


TrackQueries = tuple[torch.Tensor | None, torch.Tensor | None]


class ReleaseVPPModel(nn.Module):
    """The released VIS model, one frame at a time: ``forward(images, state, *, keep, mode, track_queries, selection)``.

    Args:
        adapter: the ViT-Adapter around the pruned ViT (strides 4, 8, 16, 32).
        head: the Mask2Former head.
        config: the numbers it was built from (saved with the weights).
    """

    def __init__(self, adapter: ViTAdapter, head: Mask2FormerHead, config: ReleaseConfig) -> None:
        super().__init__()
        self.adapter = adapter
        self.head = head
        self.config = config
        self.input_multiple = int(config.input_multiple)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_queries(self) -> int:
        return self.head.num_queries

    def forward(
        self,
        images: torch.Tensor,
        state: PruneState | None = None,
        *,
        keep: tuple[float, ...] | None = None,
        mode: PruneMode = "vpp",
        track_queries: TrackQueries | torch.Tensor | None = None,
        return_aux: bool = False,
        selection: Selection | None = None,
    ) -> ReleaseOutput:
        """``images`` ``[B, 3, H, W]`` float RGB in 0..255, any size (padded here to a multiple of 32).

        ``state``: the previous frame's :attr:`ReleaseOutput.state` (None: first frame of a clip). ``keep``
        (keep fraction per prune point: Map-SM, blocks 3, 6, 9; None: dense budget) and ``mode`` ("vpp",
        "random", "dense") are this call's run settings. ``track_queries``: ``(features, position embeddings)``
        of tracked objects, ``[T, 256]`` or ``[B, T, 256]`` (embeddings None: zeros, as the release), e.g.
        :meth:`core.model.rovis_tracker.RovisTracker.track_queries`. ``selection``: "topk" / "release" for this
        call (None: ``config.selection``, the model file's).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        b, _, h, w = images.shape
        x = (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        m = self.input_multiple
        ph, pw = math.ceil(h / m) * m, math.ceil(w / m) * m
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h))  # zeros in normalised units, as mmdet's preprocessor
        feats, embeds = _split_track_queries(track_queries, b)
        adapted = self.adapter(x, state, keep=keep, mode=mode,
                               selection=self.config.selection if selection is None else selection)
        out = self.head(adapted.features, feats, embeds, return_aux=return_aux)
        return ReleaseOutput(adapted, out, (ph, pw), (h, w))


def _split_track_queries(track_queries, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if track_queries is None:
        return None, None
    if isinstance(track_queries, torch.Tensor):
        feats, embeds = track_queries, None
    else:
        feats, embeds = track_queries
    if feats is None or feats.numel() == 0:
        return None, None
    if feats.ndim == 2:
        feats = feats[None].expand(batch, -1, -1)
        if embeds is not None:
            embeds = embeds[None].expand(batch, -1, -1)
    return feats, embeds


def build_release_model(variant: Variant | str | ReleaseConfig = "tiny", *, num_classes: int = 40,
                        **widths: Any) -> ReleaseVPPModel:
    """A freshly initialised :class:`ReleaseVPPModel` of ``variant`` (or of a full :class:`ReleaseConfig`).

    ``widths``: any :class:`ReleaseConfig` field (``embed_dim``, ``num_heads``, ``mlp_hidden``, ``map_sm_hidden``,
    ``selective_hidden``, ``cffn_hidden``, ``conv_inplane``, ``pos_grid``, ``block_norm_eps``, ``num_queries``,
    ...), e.g. the values the importer read from a checkpoint. Call it under ``torch.device("meta")`` for shapes
    without memory.
    """
    if isinstance(variant, ReleaseConfig):
        if widths:
            raise ValueError("pass either a ReleaseConfig or a variant with widths, not both")
        cfg = variant
    else:
        cfg = release_config(variant, num_classes=num_classes, **widths)
    dim = cfg.embed_dim
    vit = VisionTransformer(patch=cfg.patch, embed_dim=dim, depth=cfg.depth, num_heads=cfg.num_heads,
                            mlp_ratio=_ratio(cfg.mlp_hidden, dim), pos_grid=tuple(cfg.pos_grid))
    for blk in vit.blocks:
        blk.norm1.eps = blk.norm2.eps = float(cfg.block_norm_eps)
    map_sm = MapSM(dim, hidden_ratio=_ratio(cfg.map_sm_hidden, dim))
    selective = {b: SelectiveModule(dim, hidden=cfg.selective_hidden) for b in SELECTIVE_BLOCKS}
    last = cfg.interaction_indexes[-1][1]
    backbone = PrunedViT(vit, map_sm, selective, map_block=MAP_BLOCK, deep_block=cfg.deep_block,
                         out_indices=(last,), background_share=cfg.background_share)
    adapter = ViTAdapter(
        backbone, interaction_indexes=cfg.interaction_indexes, conv_inplane=cfg.conv_inplane,
        deform_num_heads=cfg.deform_num_heads, n_points=cfg.n_points, cffn_ratio=_ratio(cfg.cffn_hidden, dim),
        drop_path=cfg.drop_path, use_extra_extractor=cfg.num_extra_extractors > 0,
        num_extra_extractors=max(cfg.num_extra_extractors, 0),
    )
    head = Mask2FormerHead(
        [dim] * 4, feat_channels=cfg.feat_channels, out_channels=cfg.out_channels, num_queries=cfg.num_queries,
        num_classes=cfg.num_classes, encoder_layers=cfg.encoder_layers, encoder_ffn=cfg.encoder_ffn,
        decoder_layers=cfg.decoder_layers, decoder_ffn=cfg.decoder_ffn,
    )
    model = ReleaseVPPModel(adapter, head, cfg)
    _check_widths(model, cfg)
    return model


def _ratio(hidden: int, dim: int) -> float:
    """A ratio r with ``int(dim * r) == hidden`` exactly (the modules take ratios, checkpoints store widths)."""
    return (int(hidden) + 0.5) / dim


def _check_widths(model: ReleaseVPPModel, cfg: ReleaseConfig) -> None:
    bb = model.adapter.backbone
    got = {
        "mlp_hidden": bb.vit.blocks[0].mlp.fc1.out_features,
        "map_sm_hidden": bb.map_sm.fc1.out_features,
        "selective_hidden": bb.selective[str(SELECTIVE_BLOCKS[0])].fc1.out_features,
        "cffn_hidden": model.adapter.interactions[0].extractor.ffn.fc1.out_features,
    }
    wrong = {k: v for k, v in got.items() if v != getattr(cfg, k)}
    if wrong:  # a programming error: the ratios above are meant to be exact
        raise AssertionError(f"built widths {wrong} differ from the config {cfg}")
