"""The one place that knows the numbers: variants, prune points, keep schedules, head sizes.

``build_vpp(config)`` turns a frozen :class:`VPPConfig` into a model; ``VPPConfig.for_variant(name)``
gives the defaults of "tiny" (192 d, 3 heads) or "small" (384 d, 6 heads). ``keep_for(config, pkr)``
gives the keep fractions a forward call takes for a PKR (``config.pkr`` is only the default PKR a
session starts at; the model itself stores no PKR).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from core.model.backbone import PrunedViT
from core.model.head import MaskHead
from core.model.map_sm import MapSM
from core.model.mask_decoder import MaskDecoder
from core.model.pixel_decoder import PixelDecoder
from core.model.selective import SelectiveModule
from core.model.vit import VisionTransformer
from core.model.vpp import VPPModel

VARIANTS: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 192, "num_heads": 3, "decoder_dim": 128},
    "small": {"embed_dim": 384, "num_heads": 6, "decoder_dim": 256},
}


@dataclass(frozen=True)
class VPPConfig:
    """Everything needed to rebuild a model; saved as JSON next to the weights."""

    variant: str = "tiny"
    embed_dim: int = 192
    num_heads: int = 3
    depth: int = 12
    patch: int = 16
    mlp_ratio: float = 4.0
    pos_grid: tuple[int, int] = (32, 32)
    map_block: int = 1
    selective_blocks: tuple[int, ...] = (3, 6, 9)
    deep_block: int = 5
    out_indices: tuple[int, ...] = (2, 5, 8, 11)
    selective_hidden: int = 48
    dilation: int = 9
    background_share: float = 0.1
    pkr: float = 1.0
    decoder_dim: int = 128
    num_queries: int = 50
    decoder_layers: int = 6
    decoder_heads: int = 4
    decoder_ffn: int = 512
    track_dim: int = 64
    num_classes: int = 40
    categories: tuple[str, ...] = ()  # names of the K classes, in class-index order
    category_ids: tuple[int, ...] = ()  # dataset ids of the K classes (default 1..K, the YTVIS convention)
    input_long_side: int = 960
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_variant(cls, variant: str, **overrides: Any) -> VPPConfig:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
        return cls.from_dict({"variant": variant, **VARIANTS[variant], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VPPConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys are {sorted(names)}")
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        cfg = cls(**fixed)
        if cfg.categories and len(cfg.categories) != cfg.num_classes:
            raise ValueError(f"{len(cfg.categories)} category names for num_classes={cfg.num_classes}")
        if cfg.category_ids and len(cfg.category_ids) != cfg.num_classes:
            raise ValueError(f"{len(cfg.category_ids)} category ids for num_classes={cfg.num_classes}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> VPPConfig:
        return dataclasses.replace(self, **changes)

    @property
    def category_names(self) -> tuple[str, ...]:
        return self.categories or tuple(f"class_{i + 1}" for i in range(self.num_classes))

    @property
    def class_to_category_id(self) -> tuple[int, ...]:
        return self.category_ids or tuple(range(1, self.num_classes + 1))


def keep_schedule(pkr: float, *, depth: int = 12, prune_points: tuple[int, ...] = (1, 3, 6, 9)) -> tuple[float, ...]:
    """Absolute keep fraction per prune point whose mean over all blocks equals ``pkr``.

    The fractions fall geometrically from stage to stage (the release: x0.8 per stage for its PKR 0.55
    models, x0.7 for PKR 0.4); the decay is interpolated from those two and the first fraction solved
    so that (1 + sum_s blocks_s * keep_s) / depth == pkr (block 0 is always dense). Values are clipped
    to (0, 1]; PKR 1.0 gives all ones.
    """
    if not 0.0 < pkr <= 1.0:
        raise ValueError(f"PKR must be in (0, 1], got {pkr}")
    if pkr >= 1.0:
        return (1.0,) * len(prune_points)
    blocks = [b - a for a, b in zip(prune_points, [*prune_points[1:], depth])]
    dense_blocks = prune_points[0]  # blocks before the first prune point run on all tokens
    decay = min(1.0, max(0.6, 0.7 + (pkr - 0.4) * (0.1 / 0.15)))
    weights = [n * decay**s for s, n in enumerate(blocks)]
    first = (pkr * depth - dense_blocks) / sum(weights)
    if first > 1.0:  # a high PKR: keep everything at Map-SM and spread the rest evenly
        first = 1.0
    keep = [min(1.0, max(1e-3, first * decay**s)) for s in range(len(blocks))]
    return tuple(round(k, 6) for k in keep)


def build_vpp(config: VPPConfig) -> VPPModel:
    """Build an (untrained) model from a config."""
    vit = VisionTransformer(
        patch=config.patch,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        pos_grid=tuple(config.pos_grid),
    )
    map_sm = MapSM(config.embed_dim, dilation=config.dilation)
    selective = {b: SelectiveModule(config.embed_dim, hidden=config.selective_hidden) for b in config.selective_blocks}
    backbone = PrunedViT(
        vit,
        map_sm,
        selective,
        map_block=config.map_block,
        deep_block=config.deep_block,
        out_indices=tuple(config.out_indices),
        background_share=config.background_share,
    )
    head = MaskHead(
        PixelDecoder(config.embed_dim, config.decoder_dim, num_inputs=len(config.out_indices)),
        MaskDecoder(
            config.decoder_dim,
            config.num_classes,
            num_queries=config.num_queries,
            num_layers=config.decoder_layers,
            heads=config.decoder_heads,
            ffn=config.decoder_ffn,
            embed_dim=config.track_dim,
        ),
    )
    return VPPModel(backbone, head)


def keep_for(config: VPPConfig, pkr: float) -> tuple[float, ...]:
    """The keep fractions (one per prune point) a model built from ``config`` runs with at ``pkr``.

    Pass them per call: ``model(images, state, keep=keep_for(config, pkr), mode="vpp")``.
    """
    return keep_schedule(pkr, depth=config.depth, prune_points=(config.map_block, *config.selective_blocks))
