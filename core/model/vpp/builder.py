"""The builder of the project's own model: a :class:`~core.model.vpp.config.VPPConfig` -> a :class:`VPPModel`,
and a PKR -> the keep fractions a forward call takes.

    model = build_vpp(VPPConfig.for_variant("tiny"))
    out = model(images, state, keep=keep_for(config, 0.4), mode="vpp")

The only place that knows the prune points and the keep schedules (the numbers of each variant are in
:mod:`core.model.vpp.config`).
"""

from __future__ import annotations

from core.model.backbone import PrunedViT
from core.model.head import MaskHead
from core.model.map_sm import MapSM
from core.model.mask_decoder import MaskDecoder
from core.model.pixel_decoder import PixelDecoder
from core.model.selective import SelectiveModule
from core.model.vit import VisionTransformer
from core.model.vpp.config import VPPConfig
from core.model.vpp.model import VPPModel
from core.pkr import check_pkr


def keep_schedule(pkr: float, *, depth: int = 12, prune_points: tuple[int, ...] = (1, 3, 6, 9)) -> tuple[float, ...]:
    """Absolute keep fraction per prune point whose mean over all blocks equals ``pkr``.

    The fractions fall geometrically from stage to stage (the release: x0.8 per stage for its PKR 0.55
    models, x0.7 for PKR 0.4); the decay is interpolated from those two and the first fraction solved
    so that (1 + sum_s blocks_s * keep_s) / depth == pkr (block 0 is always dense). Values are clipped
    to (0, 1]; PKR 1.0 gives all ones.
    """
    check_pkr(pkr, error=ValueError)
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
        selection_noise=config.selection_noise,
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
