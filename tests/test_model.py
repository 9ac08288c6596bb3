"""The VPP model: shapes, exact top-k, determinism, restore rule, first frame, gradients, FLOPs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

from core.model.map_sm import background_positions, distance_prior
from core.model.vit import Attention
from core.model.vpp.builder import build_vpp, keep_for, keep_schedule
from core.model.vpp.config import VPPConfig
from core.session import InferenceSession

# torch's FLOP counter has no formula for the CPU flash-attention kernel SDPA dispatches to; give it the
# same one it uses for the CUDA kernels (2 matmuls of n x n x d per head).
try:

    @register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
    def _cpu_flash_flops(q, k, v, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(q, k, v)

except RuntimeError:  # already registered (e.g. a newer torch)
    pass


def small_config(**kw) -> VPPConfig:
    base = dict(input_long_side=160, decoder_dim=64, num_queries=10, decoder_layers=3, decoder_ffn=128)
    return VPPConfig.for_variant("tiny", **{**base, **kw})


@pytest.fixture(scope="module")
def model_and_config():
    torch.manual_seed(0)
    cfg = small_config(pkr=0.4)
    return build_vpp(cfg).eval(), cfg


def images(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g) * 255


@pytest.mark.parametrize("hw", [(97, 203), (333, 17), (1, 1), (480, 854)])
def test_session_handles_odd_frame_sizes(model_and_config, hw):
    model, cfg = model_and_config
    session = InferenceSession(model, cfg, pkr=0.4, score_threshold=0.0)
    frame = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    for _ in range(2):
        r = session.step(frame)
        assert r.masks.shape[1:] == hw
        assert r.masks.shape[0] == r.track_ids.shape[0] == r.scores.shape[0] == r.category_ids.shape[0]
        assert r.kept.shape[0] == 4 and r.kept.ndim == 3


def test_exact_topk_count_and_pkr(model_and_config):
    model, cfg = model_and_config
    x = images(160, 96)
    keep40 = keep_for(cfg, 0.4)
    with torch.no_grad():
        first = model(x, keep=keep40)
        out = model(x, first.backbone.state, keep=keep40)
    bb = out.backbone
    n = bb.grid[0] * bb.grid[1]
    keep = keep_schedule(0.4)
    expected = [n] + [int(n * keep[0])] * 2 + [int(n * keep[1])] * 3 + [int(n * keep[2])] * 3 + [int(n * keep[3])] * 3
    assert bb.tokens_per_block == expected
    assert [int(m.sum()) for m in bb.kept_masks] == [int(n * k) for k in keep]
    assert bb.keep_ratio == pytest.approx(0.4, abs=0.02)
    # each stage only drops more
    for a, b in zip(bb.kept_masks, bb.kept_masks[1:]):
        assert not (b & ~a).any()


def test_first_frame_runs_blocks_0_to_2_dense_and_still_prunes(model_and_config):
    model, cfg = model_and_config
    with torch.no_grad():
        bb = model(images(160, 96), keep=keep_for(cfg, 0.4)).backbone
    n = bb.grid[0] * bb.grid[1]
    assert bb.tokens_per_block[:3] == [n, n, n]
    assert bb.tokens_per_block[3] < n
    assert bool(bb.kept_masks[0].all())


def test_pruned_tokens_keep_their_last_features(model_and_config):
    model, cfg = model_and_config
    x = images(160, 96)
    keep40 = keep_for(cfg, 0.4)
    with torch.no_grad():
        out = model(x, model(x, keep=keep40).backbone.state, keep=keep40).backbone
    f2, f5, _f8, f11 = (f[0] for f in out.features)
    kept3, kept6 = (m[0] for m in out.kept_masks[1:3])
    dropped_at_3 = ~kept3
    assert dropped_at_3.any()
    assert torch.equal(f5[dropped_at_3], f2[dropped_at_3])
    assert torch.equal(f11[~kept3], f2[~kept3])
    assert torch.equal(f11[kept3 & ~kept6], f5[kept3 & ~kept6])
    assert not torch.equal(f5[kept3], f2[kept3])  # kept tokens did change


def test_inference_is_deterministic_bit_for_bit(model_and_config):
    model, cfg = model_and_config
    frames = [np.random.default_rng(i).integers(0, 256, (120, 200, 3), dtype=np.uint8) for i in range(3)]

    def run():
        s = InferenceSession(model, cfg, pkr=0.4, score_threshold=0.0)
        outs = []
        with torch.no_grad():
            state = None
            for f in frames:
                x = torch.from_numpy(f).permute(2, 0, 1)[None].float()
                x = torch.nn.functional.pad(x, (0, 208 - 200, 0, 128 - 120))
                o = model(x, state, keep=keep_for(cfg, 0.4))
                state = o.backbone.state
                outs.append((o.decoder.mask_logits.clone(), o.decoder.class_logits.clone(), o.backbone.kept_masks))
        return outs, [s.step(f) for f in frames]

    (a, ra), (b, rb) = run(), run()
    for (ma, ca, ka), (mb, cb, kb) in zip(a, b):
        assert torch.equal(ma, mb) and torch.equal(ca, cb)
        assert all(torch.equal(x, y) for x, y in zip(ka, kb))
    for x, y in zip(ra, rb):
        assert np.array_equal(x.masks, y.masks) and np.array_equal(x.kept, y.kept)
        assert np.array_equal(x.track_ids, y.track_ids)


def test_gradients_reach_map_sm_and_gates_in_training():
    torch.manual_seed(0)
    cfg = small_config(pkr=0.5)
    model = build_vpp(cfg).train()
    state = None
    loss = 0.0
    for i in range(3):  # a chained 3-frame clip, as in training
        out = model(images(96, 96, seed=i), state, keep=keep_for(cfg, 0.5))
        state = out.backbone.state
        loss = loss + out.decoder.mask_logits.sigmoid().mean() + out.decoder.class_logits.softmax(-1)[..., 0].mean()
        loss = loss + sum(p.mean() for p in out.backbone.keep_probs)
    loss.backward()
    map_sm = model.backbone.map_sm
    for p in (map_sm.fc1.weight, map_sm.fc2.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    for gate in model.backbone.selective.values():
        assert gate.fc1.weight.grad is not None and gate.fc1.weight.grad.abs().sum() > 0


def test_masked_training_path_matches_the_gather_path(model_and_config):
    """Same selection, same outputs: masks over the full sequence == gather -> blocks -> scatter."""
    model, cfg = model_and_config
    bb = model.backbone
    keep40 = keep_for(cfg, 0.4)
    state_g = state_m = None
    with torch.no_grad():
        for i in range(3):  # first frame (no Map-SM), then chained frames
            x = images(128, 176, seed=10 + i)
            g, m = bb(x, state_g, keep=keep40), bb.forward_masked(x, state_m, keep=keep40)
            assert g.tokens_per_block == m.tokens_per_block and g.flops == m.flops
            assert all(torch.equal(a, b) for a, b in zip(g.kept_masks, m.kept_masks))
            for a, b in zip(g.features, m.features):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
            assert torch.equal(g.state.kept, m.state.kept)
            state_g, state_m = g.state, m.state


def test_masked_training_gives_gates_a_task_gradient_for_dropped_tokens():
    """With only the task loss (no sparsity term), the gates learn from what keeping a token changes."""
    torch.manual_seed(0)
    cfg = small_config(pkr=0.4)
    model = build_vpp(cfg).train()
    bb = model.backbone
    state, loss = None, 0.0
    for i in range(2):
        out = model(images(96, 128, seed=i), state, keep=keep_for(cfg, 0.4))
        state = out.backbone.state
        loss = loss + out.decoder.mask_logits.sigmoid().mean() + sum(f.square().mean() for f in out.backbone.features)
    assert len(out.backbone.keep_probs) == len(bb.prune_points)
    loss.backward()
    for gate in (bb.map_sm, *bb.selective.values()):
        assert gate.fc2.weight.grad is not None and gate.fc2.weight.grad.abs().sum() > 0
    # the estimator: a dropped token's gate gradient is <dL/dx, block(x) - x>; check it on one block
    blk = bb.vit.blocks[3]
    x = torch.randn(1, 6, bb.embed_dim)
    alive = torch.tensor([[True, True, False, True, False, True]])
    m = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0, 1.0]], requires_grad=True)
    y = blk(x, alive)
    out = x + m.unsqueeze(-1) * (y - x)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    torch.testing.assert_close(m.grad, ((y - x) * w).sum(-1).detach())
    assert m.grad[0, 2].abs() > 0 and m.grad[0, 4].abs() > 0


def test_analytic_flops_match_torch_flop_counter():
    torch.manual_seed(0)
    cfg = small_config(pkr=0.4)
    model = build_vpp(cfg).eval().requires_grad_(False)
    x = images(160, 224)
    keep40 = keep_for(cfg, 0.4)
    with torch.no_grad():
        state = model(x, keep=keep40).backbone.state
        for st in (None, state):  # first frame (no Map-SM) and a steady-state frame
            with FlopCounterMode(display=False) as counter:
                out = model(x, st, keep=keep40)
            assert out.flops == counter.get_total_flops()
    dense = model.backbone.flops_dense(out.backbone.grid[0] * out.backbone.grid[1])
    assert dense > out.backbone.flops * 1.5


def test_fused_and_reference_attention_agree():
    torch.manual_seed(0)
    fused = Attention(64, 4, fused_attn=True)
    ref = Attention(64, 4, fused_attn=False)
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(2, 37, 64)
    torch.testing.assert_close(fused(x), ref(x), rtol=1e-5, atol=1e-5)
    keys = torch.rand(2, 37) > 0.5
    keys[:, 0] = True
    torch.testing.assert_close(fused(x, keys), ref(x, keys), rtol=1e-5, atol=1e-5)
    # a masked key changes nothing: same as attending over the kept tokens only
    kept = keys[0].nonzero()[:, 0]
    torch.testing.assert_close(fused(x[:1], keys[:1])[:, kept], fused(x[:1, kept]), rtol=1e-5, atol=1e-5)


def test_keep_schedule_hits_the_target_pkr():
    for pkr in (0.2, 0.3, 0.4, 0.55, 0.7, 0.9, 1.0):
        keep = keep_schedule(pkr)
        blocks = [2, 3, 3, 3]
        realised = (1 + sum(b * k for b, k in zip(blocks, keep))) / 12
        assert realised == pytest.approx(pkr, abs=1e-4)
        assert all(a >= b for a, b in itertools.pairwise(keep))
    with pytest.raises(ValueError):
        keep_schedule(0.0)


def test_pkr_can_change_between_frames(model_and_config):
    model, cfg = model_and_config
    x = images(160, 96)
    with torch.no_grad():
        st = model(x, keep=keep_for(cfg, 0.4)).backbone.state
        ratios = [model(x, st, keep=keep_for(cfg, p)).backbone.keep_ratio for p in (0.9, 0.4)]
    assert ratios[0] == pytest.approx(0.9, abs=0.03) and ratios[1] == pytest.approx(0.4, abs=0.03)


def test_distance_prior_values():
    prior = distance_prior((3, 5))
    assert prior.shape == (15, 15)
    assert torch.allclose(prior.diagonal(), torch.ones(15))
    assert prior[0, 14].item() == pytest.approx(np.log10(1e-6), abs=1e-3)  # opposite corners, d = 2
    assert torch.equal(prior, prior.T)


def test_background_positions_cover_the_grid_over_frames():
    grid = (12, 20)
    seen = set()
    for f in range(16):
        pos = background_positions(grid, 15, f)
        assert pos.numel() == 15 and pos.unique().numel() == 15
        assert int(pos.max()) < 240
        seen.update(pos.tolist())
    assert len(seen) > 15 * 5  # the lattice moves from frame to frame
    assert torch.equal(background_positions(grid, 15, 3), background_positions(grid, 15, 3))


def test_keep_and_mode_are_validated_per_call(model_and_config):
    model, _ = model_and_config
    x = images(64, 64)
    with torch.no_grad(), pytest.raises(ValueError, match="need 4 keep fractions"):
        model(x, keep=(0.5, 0.5))
    with torch.no_grad(), pytest.raises(ValueError, match=r"keep fractions must be in \(0, 1\]"):
        model(x, keep=(0.5, 0.5, 0.0, 0.5))
    with torch.no_grad(), pytest.raises(ValueError, match="unknown prune mode 'sparse'"):
        model(x, mode="sparse")


def test_keep_none_is_the_dense_budget(model_and_config):
    model, _ = model_and_config
    x = images(160, 96)
    with torch.no_grad():
        st = model(x).backbone.state
        bb = model(x, st).backbone
    n = bb.grid[0] * bb.grid[1]
    assert bb.tokens_per_block == [n] * len(model.backbone.vit.blocks) and bb.keep_ratio == 1.0
