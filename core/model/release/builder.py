"""The builder of the authors' released architecture: a variant name or a :class:`ReleaseConfig` -> a freshly
initialised :class:`ReleaseVPPModel` (call it under ``torch.device("meta")`` for shapes without memory).

    model = build_release_model("small")                       # the release's numbers
    model = build_release_model(release_config("tiny", embed_dim=192, map_sm_hidden=96))   # widths read by the importer
"""

from __future__ import annotations

from typing import Any

from core.model.adapter import ViTAdapter
from core.model.backbone import PrunedViT
from core.model.m2f_head import Mask2FormerHead
from core.model.map_sm import MapSM
from core.model.release.config import MAP_BLOCK, SELECTIVE_BLOCKS, ReleaseConfig, Variant, release_config
from core.model.release.model import ReleaseVPPModel
from core.model.selective import SelectiveModule
from core.model.vit import VisionTransformer


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
