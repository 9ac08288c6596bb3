"""ViT-Adapter around the pruned ViT: four feature maps at strides 4, 8, 16 and 32, with VPP inside.

Order of operations (the VPP release's ``SelectiveViTAdapter``, ``custom_mmdet/models/backbones/
selective_vit_adapter.py``, and ViT-Adapter's ``vit_adapter.py``):

1. the spatial prior module turns the image into ``c1`` (stride 4, a map) and ``c2, c3, c4``
   (strides 8/16/32, tokens); ``level_embed[l]`` is added to ``c2, c3, c4``, which are concatenated
   into the adapter tokens ``c``;
2. for each interaction ``(start, end)`` (the release: ``[0, 2], [3, 5], [6, 8], [9, 11]``): the
   injector updates the *dense* ViT token map from ``c`` before block ``start``, the backbone runs
   blocks ``start..end`` (pruned: gather -> blocks -> scatter), and the extractor (plus, after the
   last interaction, two extra extractors) updates ``c`` from the dense map restored after ``end``;
3. ``c`` is split back into its three maps, ``c1 = up(c2) + c1`` (2x2 transposed conv), the final ViT
   map is added bilinearly resized to each stride (``add_vit_feature``), and each stride has its
   own BatchNorm (``norm1..norm4``).

VPP is the backbone's (:class:`~core.model.backbone.PrunedViT`): Map-SM before block 1, image
selective modules before blocks 3, 6, 9, static top-k per stage. The interactions run through its
``hooks`` on the dense map, as in the release: pruned tokens get the injector's update too and keep it,
the selective modules score tokens after the injector, and Map-SM's values are the block-5 map before
the next injector. The selection itself is the backbone's, chosen per call with ``selection``: "topk" (static
top-k, the default) or "release" (the release's thresholded gates and Map-SM scoring, see
:mod:`core.model.backbone`); either way argmax association at inference and keys = block-0 tokens.

State-dict keys: ``spm.*``, ``level_embed``, ``interactions.{i}.injector.*``,
``interactions.{i}.extractor.*``, ``interactions.{last}.extra_extractors.{0,1}.*``, ``up.*`` and
``norm1..4.*`` are the release's backbone keys (``detector.backbone.`` stripped) one to one. The ViT,
Map-SM and selective modules live under ``backbone.`` with this project's names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.model.adapter_modules import (
    DeformInputs,
    InteractionBlock,
    SpatialPriorModule,
    deform_inputs,
    init_adapter_weights,
    level_shapes,
)
from core.model.backbone import BackboneOutput, PrunedViT, PruneMode, PruneState, Selection
from core.model.deform_attn import MSDeformAttn

TOKEN_STRIDE = 16  # the ViT's tokens are the adapter's middle level (c3)
INPUT_MULTIPLE = 32  # the coarsest level (c4) must divide the image exactly


@dataclass
class AdapterOutput:
    """One frame's adapter result.

    ``features``: ``[B, C, H/4, W/4]``, ``[B, C, H/8, W/8]``, ``[B, C, H/16, W/16]``, ``[B, C, H/32, W/32]``.
    ``tokens``: the dense ViT map after the last block, ``[B, N, C]``.
    ``backbone``: the pruned ViT's output (kept masks, tokens per block, PKR, the next frame's state).
    """

    features: list[torch.Tensor]
    tokens: torch.Tensor
    backbone: BackboneOutput

    @property
    def kept_masks(self) -> list[torch.Tensor]:
        return self.backbone.kept_masks

    @property
    def keep_ratio(self) -> float:
        """Measured PKR: mean over the ViT blocks of kept / total tokens."""
        return self.backbone.keep_ratio

    @property
    def state(self) -> PruneState | None:
        return self.backbone.state


class ViTAdapter(nn.Module):
    """ViT-Adapter (spatial prior module + injector/extractor interactions) around a :class:`PrunedViT`.

    The ViT's width and heads are those of ``backbone`` (``VisionTransformer(embed_dim=...,
    num_heads=...)``; the release: Tiny 192/3, Small 384/6, patch 16, depth 12). Options (the release's
    values for both Tiny and Small in brackets):

    Args:
        backbone: the pruned ViT (patch 16; its blocks, Map-SM and selective modules).
        interaction_indexes: ``(start, end)`` block ranges, contiguous from block 0 to the last
            [``((0, 2), (3, 5), (6, 8), (9, 11))``].
        conv_inplane: the spatial prior module's base width [64].
        deform_num_heads: heads of every deformable attention [6].
        n_points: sampling points per head and level [4].
        deform_ratio: value width / C of the deformable attentions [1.0].
        with_cffn: a ConvFFN after each extractor's attention [True].
        cffn_ratio: ConvFFN hidden width / C [0.25].
        init_values: initial injector ``gamma`` [0.0].
        drop: dropout inside the ConvFFN [0.0].
        drop_path: stochastic depth of the ConvFFN branch [Tiny 0.1, Small 0.2: the ViT's drop_path_rate].
        add_vit_feature: add the final ViT map, resized, to all four outputs [True].
        use_extra_extractor: extra extractors after the last interaction [True].
        num_extra_extractors: how many [2].
        norm_eps: epsilon of the adapter's LayerNorms [1e-6].
        attn_dropout: dropout on each deformable attention's output (mmcv's default) [0.1].
        attn_add_identity: add the normed query back onto the attention output, as mmcv's module does
            when called without ``identity`` [True].
        with_cp: gradient checkpointing of the injectors and extractors [False].
    """

    def __init__(
        self,
        backbone: PrunedViT,
        *,
        interaction_indexes: Sequence[tuple[int, int]] = ((0, 2), (3, 5), (6, 8), (9, 11)),
        conv_inplane: int = 64,
        deform_num_heads: int = 6,
        n_points: int = 4,
        deform_ratio: float = 1.0,
        with_cffn: bool = True,
        cffn_ratio: float = 0.25,
        init_values: float = 0.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        add_vit_feature: bool = True,
        use_extra_extractor: bool = True,
        num_extra_extractors: int = 2,
        norm_eps: float = 1e-6,
        attn_dropout: float = 0.1,
        attn_add_identity: bool = True,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        depth = len(backbone.vit.blocks)
        indexes = tuple((int(s), int(e)) for s, e in interaction_indexes)
        starts = [0] + [e + 1 for _, e in indexes[:-1]]
        if not indexes or [s for s, _ in indexes] != starts or indexes[-1][1] != depth - 1 or any(
            e < s for s, e in indexes
        ):
            raise ValueError(
                f"interaction_indexes {list(indexes)} must be contiguous (start, end) ranges covering blocks "
                f"0..{depth - 1}"
            )
        patch = backbone.vit.patch_embed.patch
        if patch != TOKEN_STRIDE:
            raise ValueError(f"the adapter needs stride-{TOKEN_STRIDE} ViT tokens, got patch {patch}")
        dim = backbone.embed_dim
        self.backbone = backbone
        self.interaction_indexes = indexes
        self.add_vit_feature = add_vit_feature
        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(inplanes=conv_inplane, embed_dim=dim)
        last = len(indexes) - 1
        self.interactions = nn.ModuleList(
            InteractionBlock(
                dim, num_heads=deform_num_heads, n_points=n_points, deform_ratio=deform_ratio,
                init_values=init_values, with_cffn=with_cffn, cffn_ratio=cffn_ratio, drop=drop,
                drop_path=drop_path, extra_extractors=num_extra_extractors if use_extra_extractor and i == last else 0,
                norm_eps=norm_eps, attn_dropout=attn_dropout, attn_add_identity=attn_add_identity, with_cp=with_cp,
            )
            for i in range(len(indexes))
        )
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.norm1 = nn.BatchNorm2d(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.norm3 = nn.BatchNorm2d(dim)
        self.norm4 = nn.BatchNorm2d(dim)
        self.reset_adapter_parameters(init_values)

    def reset_adapter_parameters(self, init_values: float = 0.0) -> None:
        """The release's initialisation of the adapter (the backbone is left as it is)."""
        for part in (self.up, self.spm, self.interactions, self.norm1, self.norm2, self.norm3, self.norm4):
            part.apply(init_adapter_weights)
        for m in self.interactions.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        with torch.no_grad():
            for block in self.interactions:
                block.injector.gamma.fill_(init_values)
        nn.init.normal_(self.level_embed)

    @property
    def embed_dim(self) -> int:
        return self.backbone.embed_dim

    def forward(
        self,
        images: torch.Tensor,
        state: PruneState | None = None,
        *,
        keep: tuple[float, ...] | None = None,
        mode: PruneMode = "vpp",
        selection: Selection = "topk",
    ) -> AdapterOutput:
        """One frame ``[B, 3, H, W]`` (H, W multiples of 32); ``state``, ``keep``, ``mode``, ``selection`` as
        :class:`PrunedViT`."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        b, _, h, w = images.shape
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise ValueError(f"input {h}x{w} is not a multiple of {INPUT_MULTIPLE}; pad it first")
        grid = (h // TOKEN_STRIDE, w // TOKEN_STRIDE)
        inject_inputs, extract_inputs = deform_inputs(grid, images.device)

        c1, c2, c3, c4 = self.spm(images)
        embed = self.level_embed.to(c2.dtype)
        c = torch.cat([c2 + embed[0], c3 + embed[1], c4 + embed[2]], dim=1)

        run = _InteractionRun(self.interactions, c, inject_inputs, extract_inputs, grid)
        out = self.backbone(images, state, keep=keep, mode=mode, hooks=run.hooks(self.interaction_indexes),
                            selection=selection)
        x, c = run.x, run.c

        dim = self.embed_dim
        maps = [
            part.transpose(1, 2).reshape(b, dim, lh, lw)
            for part, (lh, lw) in zip(c.split([lh * lw for lh, lw in level_shapes(grid)], dim=1), level_shapes(grid))
        ]
        c2, c3, c4 = maps
        c1 = self.up(c2) + c1
        if self.add_vit_feature:
            x3 = x.transpose(1, 2).reshape(b, dim, *grid)
            c1 = c1 + F.interpolate(x3, scale_factor=4, mode="bilinear", align_corners=False)
            c2 = c2 + F.interpolate(x3, scale_factor=2, mode="bilinear", align_corners=False)
            c3 = c3 + x3
            c4 = c4 + F.interpolate(x3, scale_factor=0.5, mode="bilinear", align_corners=False)
        features = [self.norm1(c1), self.norm2(c2), self.norm3(c3), self.norm4(c4)]
        return AdapterOutput(features=features, tokens=x, backbone=out)


class _InteractionRun:
    """The adapter tokens of one forward, updated by the hooks the backbone calls on its dense map."""

    def __init__(self, interactions: nn.ModuleList, c: torch.Tensor, inject_inputs: DeformInputs,
                 extract_inputs: DeformInputs, grid: tuple[int, int]) -> None:
        self.interactions = interactions
        self.c = c
        self.x: torch.Tensor | None = None
        self.inject_inputs = inject_inputs
        self.extract_inputs = extract_inputs
        self.grid = grid

    def hooks(self, indexes: Sequence[tuple[int, int]]) -> dict[int, Callable[[torch.Tensor], torch.Tensor]]:
        """Before block ``start`` of interaction i: extract (i - 1), inject i; after the last: extract."""
        hooks = {start: self._at(i - 1 if i else None, i) for i, (start, _) in enumerate(indexes)}
        hooks[indexes[-1][1] + 1] = self._at(len(indexes) - 1, None)
        return hooks

    def _at(self, extract: int | None, inject: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
        def hook(x: torch.Tensor) -> torch.Tensor:
            if extract is not None:
                self.c = self.interactions[extract].extract(self.c, x, self.extract_inputs, self.grid)
            if inject is None:
                self.x = x
                return x
            return self.interactions[inject].inject(x, self.c, self.inject_inputs)

        return hook
