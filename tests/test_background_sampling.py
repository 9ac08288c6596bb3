"""An object entering a pruned region is found by the sparse background sampling within a few frames.

The model is built by hand so the outcome does not depend on training: identity blocks, a patch
embedding whose channel 0 is the patch brightness (channel 1 a constant, channel 2 the darkness), and
gates (Map-SM MLP and
selective modules) that keep bright tokens. The background is a faint left-to-right gradient (2 % of full scale), so
without background sampling the kept tokens sit on the left and an object appearing on the right is
aligned to left-side keys and never kept.
"""

from __future__ import annotations

import torch

from core.model.backbone import PrunedViT
from core.model.map_sm import MapSM
from core.model.selective import SelectiveModule
from core.model.vit import VisionTransformer

GRID = 16
PATCH = 16
APPEAR = 4  # the object enters at this frame
OBJECT_CELLS = [(r, c) for r in range(6, 9) for c in range(11, 14)]  # 3x3 patches on the right
KEEP = (0.3, 0.2, 0.15, 0.1)  # keep fraction per prune point, passed on every call


def _bright_gate(norm: torch.nn.LayerNorm, fc1: torch.nn.Linear, fc2: torch.nn.Linear) -> None:
    """keep logit = 4 * normalised channel 0 - 2, drop logit = 0: bright tokens are kept."""
    torch.nn.init.ones_(norm.weight)
    torch.nn.init.zeros_(norm.bias)
    torch.nn.init.zeros_(fc1.weight)
    torch.nn.init.zeros_(fc1.bias)
    fc1.weight.data[0, 0] = 1.0
    torch.nn.init.zeros_(fc2.weight)
    torch.nn.init.zeros_(fc2.bias)
    fc2.weight.data[0, 0] = 4.0
    fc2.bias.data[0] = -2.0


def build_probe_model(background_share: float) -> PrunedViT:
    dim = 48
    vit = VisionTransformer(patch=PATCH, embed_dim=dim, depth=12, num_heads=3, pos_grid=(GRID, GRID))
    with torch.no_grad():
        for blk in vit.blocks:  # identity blocks: residual branches output zero
            for lin in (blk.attn.proj, blk.mlp.fc2):
                lin.weight.zero_()
                lin.bias.zero_()
        vit.pos_embed.weight.zero_()
        w = vit.patch_embed.proj.weight
        w.zero_()
        w[0] = 1.0 / (3 * PATCH * PATCH)  # channel 0 = mean brightness in [0, 1]
        vit.patch_embed.proj.bias.zero_()
        vit.patch_embed.proj.bias[1] = 1.0  # channel 1 = constant
        w[2] = -1.0 / (3 * PATCH * PATCH)  # channel 2 = darkness, so keys match by content
        vit.patch_embed.proj.bias[2] = 1.0
        map_sm = MapSM(dim, qk_scale=10.0)
        _bright_gate(map_sm.norm, map_sm.fc1, map_sm.fc2)
        gates = {b: SelectiveModule(dim) for b in (3, 6, 9)}
        for g in gates.values():
            _bright_gate(g.norm, g.fc1, g.fc2)
    model = PrunedViT(vit, map_sm, gates, background_share=background_share)
    return model.eval()


def frame(t: int) -> torch.Tensor:
    side = GRID * PATCH
    ramp = torch.linspace(0.02, 0.0, side).expand(side, side)  # faint gradient, brightest on the left
    img = ramp.clone()
    if t >= APPEAR:
        for r, c in OBJECT_CELLS:
            img[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = 1.0
    return img.expand(1, 3, side, side).clone()


def object_kept_by_map_sm(model: PrunedViT, frames: int = 10) -> list[bool]:
    state = None
    kept = []
    cells = torch.tensor([r * GRID + c for r, c in OBJECT_CELLS])
    with torch.no_grad():
        for t in range(frames):
            out = model(frame(t), state, keep=KEEP)
            state = out.state
            kept.append(bool(out.kept_masks[0][0, cells].all()))
    return kept


def test_object_entering_is_kept_within_a_few_frames():
    kept = object_kept_by_map_sm(build_probe_model(background_share=0.25))
    assert not any(kept[1:APPEAR])  # before it appears, its (dark) cells are not all kept
    first = next(t for t in range(APPEAR, len(kept)) if kept[t])
    assert first - APPEAR <= 2, kept
    assert all(kept[first:])  # once found, it stays kept


def test_without_background_sampling_the_object_is_missed():
    kept = object_kept_by_map_sm(build_probe_model(background_share=0.0))
    assert not any(kept[APPEAR:]), kept
