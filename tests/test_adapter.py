"""ViT-Adapter around the pruned ViT: release key names/shapes, strides, dense/VPP equivalences, gradients.

Reference computations here are written from the release's definitions (PatGlan/Video-Patch-Pruning,
``custom_mmdet/models/backbones/adapter_modules.py`` and ``selective_vit_adapter.py``), not from
``core.model.adapter``: functional re-computations of the SPM and ConvFFN, and a token-by-token
re-run of the pruned forward from the kept masks.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.model.adapter import ViTAdapter
from core.model.adapter_modules import ConvFFN, Injector, SpatialPriorModule, deform_inputs
from core.model.backbone import PrunedViT
from core.model.map_sm import MapSM
from core.model.selective import SelectiveModule
from core.model.vit import VisionTransformer

LOW_KEEP = (0.5, 0.4, 0.3, 0.2)  # absolute keep fractions at blocks 1, 3, 6, 9


def make_adapter(*, dim=32, heads=2, depth=12, deform_heads=4, inplanes=8, masked_training=True,
                 background_share=0.0, **adapter) -> ViTAdapter:
    vit = VisionTransformer(embed_dim=dim, depth=depth, num_heads=heads, pos_grid=(14, 14))
    backbone = PrunedViT(vit, MapSM(dim), {b: SelectiveModule(dim, hidden=dim // 4) for b in (3, 6, 9)},
                         masked_training=masked_training, background_share=background_share)
    adapter.setdefault("interaction_indexes", ((0, 2), (3, 5), (6, 8), (9, 11)))
    return ViTAdapter(backbone, conv_inplane=inplanes, deform_num_heads=deform_heads, **adapter)


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so eval-mode BatchNorm is checked too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def model() -> ViTAdapter:
    torch.manual_seed(0)
    m = make_adapter(init_values=0.5)  # gamma != 0 so the injectors change the ViT tokens
    randomise_bn(m)
    return m.eval()


def frames(b=1, h=64, w=96, n=2, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 3, h, w, generator=g) for _ in range(n)]


# --- the release's state-dict layout --------------------------------------------------------------


def release_adapter_keys(dim: int, *, inplanes=64, heads=6, points=4, cffn_ratio=0.25, interactions=4,
                         extra=2) -> dict[str, tuple[int, ...]]:
    """The release's ``detector.backbone.*`` adapter keys (prefix stripped) and shapes, from its modules.

    SPM: Conv-SyncBN-ReLU x3 + MaxPool in ``stem`` (indices 0..9), Conv-SyncBN-ReLU in conv2/3/4, 1x1
    ``fc1..4``; mmcv MultiScaleDeformableAttention(embed_dims, num_levels, num_heads, num_points,
    value_proj_ratio=1.0); Injector on 3 levels, Extractor (+ ConvFFN, ``dwconv.dwconv``) on 1 level;
    the last interaction holds ``extra_extractors`` (an nn.Sequential of 2); ``up`` ConvTranspose2d(2, 2).
    """
    keys: dict[str, tuple[int, ...]] = {"level_embed": (3, dim)}

    def bn(prefix, c):
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                     f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    def ln(prefix):
        keys.update({f"{prefix}.weight": (dim,), f"{prefix}.bias": (dim,)})

    def linear(prefix, cout, cin):
        keys.update({f"{prefix}.weight": (cout, cin), f"{prefix}.bias": (cout,)})

    for i, (cin, cout) in zip((0, 3, 6), ((3, inplanes), (inplanes, inplanes), (inplanes, inplanes))):
        keys[f"spm.stem.{i}.weight"] = (cout, cin, 3, 3)
        bn(f"spm.stem.{i + 1}", cout)
    for name, cin, cout in (("conv2", inplanes, 2 * inplanes), ("conv3", 2 * inplanes, 4 * inplanes),
                            ("conv4", 4 * inplanes, 4 * inplanes)):
        keys[f"spm.{name}.0.weight"] = (cout, cin, 3, 3)
        bn(f"spm.{name}.1", cout)
    for name, cin in (("fc1", inplanes), ("fc2", 2 * inplanes), ("fc3", 4 * inplanes), ("fc4", 4 * inplanes)):
        keys[f"spm.{name}.weight"] = (dim, cin, 1, 1)
        keys[f"spm.{name}.bias"] = (dim,)

    def msda(prefix, levels):
        linear(f"{prefix}.sampling_offsets", heads * levels * points * 2, dim)
        linear(f"{prefix}.attention_weights", heads * levels * points, dim)
        linear(f"{prefix}.value_proj", dim, dim)
        linear(f"{prefix}.output_proj", dim, dim)

    def extractor(prefix):
        hidden = int(dim * cffn_ratio)
        ln(f"{prefix}.query_norm")
        ln(f"{prefix}.feat_norm")
        msda(f"{prefix}.attn", 1)
        linear(f"{prefix}.ffn.fc1", hidden, dim)
        keys[f"{prefix}.ffn.dwconv.dwconv.weight"] = (hidden, 1, 3, 3)
        keys[f"{prefix}.ffn.dwconv.dwconv.bias"] = (hidden,)
        linear(f"{prefix}.ffn.fc2", dim, hidden)
        ln(f"{prefix}.ffn_norm")

    for i in range(interactions):
        keys[f"interactions.{i}.injector.gamma"] = (dim,)
        ln(f"interactions.{i}.injector.query_norm")
        ln(f"interactions.{i}.injector.feat_norm")
        msda(f"interactions.{i}.injector.attn", 3)
        extractor(f"interactions.{i}.extractor")
    for j in range(extra):
        extractor(f"interactions.{interactions - 1}.extra_extractors.{j}")
    keys["up.weight"] = (dim, dim, 2, 2)
    keys["up.bias"] = (dim,)
    for j in range(1, 5):
        bn(f"norm{j}", dim)
    return keys


@pytest.mark.parametrize("dim,heads", [(192, 3), (384, 6)])
def test_state_dict_matches_the_release_adapter_keys_for_tiny_and_small(dim, heads):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        vit = VisionTransformer(embed_dim=dim, num_heads=heads, depth=12, pos_grid=(14, 14))
        backbone = PrunedViT(vit, MapSM(dim), {b: SelectiveModule(dim, hidden=dim // 4) for b in (3, 6, 9)})
        adapter = ViTAdapter(backbone)  # defaults = the release configs' adapter settings
    ours = {k: tuple(v.shape) for k, v in adapter.state_dict().items() if not k.startswith("backbone.")}
    expected = release_adapter_keys(dim)
    assert sorted(set(ours) ^ set(expected)) == []
    assert {k: s for k, s in ours.items() if expected[k] != s} == {}


# --- shapes, strides, validation ------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(64, 96), (96, 64)])
def test_four_outputs_at_strides_4_8_16_32(model, hw):
    h, w = hw
    with torch.no_grad():
        out = model(frames(b=2, h=h, w=w, n=1)[0], keep=LOW_KEEP)
    assert [tuple(f.shape) for f in out.features] == [(2, 32, h // s, w // s) for s in (4, 8, 16, 32)]
    assert tuple(out.tokens.shape) == (2, (h // 16) * (w // 16), 32)
    assert [tuple(m.shape) for m in out.kept_masks] == [(2, (h // 16) * (w // 16))] * 4
    assert all(torch.isfinite(f).all() for f in out.features)


def test_bad_inputs_and_options_raise(model):
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.zeros(1, 3, 64, 80))
    with pytest.raises(ValueError, match="B, 3, H, W"):
        model(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="contiguous"):
        make_adapter(interaction_indexes=((0, 2), (4, 11)))
    with pytest.raises(ValueError, match="contiguous"):
        make_adapter(interaction_indexes=((0, 2), (3, 10)))
    with pytest.raises(ValueError, match="hook positions"):
        model.backbone(torch.zeros(1, 3, 64, 64), hooks={13: lambda x: x})


def test_deform_inputs_follow_the_release_layout():
    inj, ext = deform_inputs((4, 6))
    assert inj.spatial_shapes == ((8, 12), (4, 6), (2, 3))
    assert inj.level_start_index.tolist() == [0, 96, 120]
    assert ext.spatial_shapes == ((4, 6),) and ext.level_start_index.tolist() == [0]
    # the release: linspace(0.5, H - 0.5, H) / H per axis, (x, y), row-major, levels concatenated
    ref = []
    for h, w in ((8, 12), (4, 6), (2, 3)):
        yy, xx = torch.meshgrid(torch.linspace(0.5, h - 0.5, h) / h, torch.linspace(0.5, w - 0.5, w) / w, indexing="ij")
        ref.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], -1))
    torch.testing.assert_close(ext.reference_points[0], torch.cat(ref))
    assert tuple(inj.reference_points.shape) == (1, 24, 2)
    assert tuple(inj.references(2).shape) == (2, 24, 3, 2)


# --- independent numerical checks of the parts ----------------------------------------------------


def test_spatial_prior_module_equals_a_functional_recomputation():
    torch.manual_seed(1)
    spm = SpatialPriorModule(inplanes=8, embed_dim=16)
    randomise_bn(spm, seed=1)
    spm.eval()
    x = torch.randn(2, 3, 64, 96)

    def cbr(t, conv, bn, stride):
        t = F.conv2d(t, conv.weight, None, stride=stride, padding=1)
        t = F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps)
        return F.relu(t)

    s = spm.stem
    t = cbr(cbr(cbr(x, s[0], s[1], 2), s[3], s[4], 1), s[6], s[7], 1)
    c1 = F.max_pool2d(t, 3, 2, 1)
    c2 = cbr(c1, spm.conv2[0], spm.conv2[1], 2)
    c3 = cbr(c2, spm.conv3[0], spm.conv3[1], 2)
    c4 = cbr(c3, spm.conv4[0], spm.conv4[1], 2)
    proj = [F.conv2d(c, fc.weight, fc.bias) for c, fc in zip((c1, c2, c3, c4), (spm.fc1, spm.fc2, spm.fc3, spm.fc4))]
    with torch.no_grad():
        o1, o2, o3, o4 = spm(x)
    assert tuple(o1.shape) == (2, 16, 16, 24)
    torch.testing.assert_close(o1, proj[0])
    for ours, ref, (h, w) in zip((o2, o3, o4), proj[1:], ((8, 12), (4, 6), (2, 3))):
        assert tuple(ref.shape[-2:]) == (h, w)
        torch.testing.assert_close(ours, ref.flatten(2).transpose(1, 2))


def test_conv_ffn_equals_the_release_split_recomputation():
    torch.manual_seed(2)
    ffn = ConvFFN(16, 4).eval()
    grid = (4, 6)
    n = 4 * 24 + 24 + 6  # strides 8, 16, 32 of a 64x96 image
    x = torch.randn(2, n, 16)
    h = x @ ffn.fc1.weight.T + ffn.fc1.bias
    # the release splits by N // 21: 16 n at (2H, 2W), 4 n at (H, W), n at (H/2, W/2)
    k = n // 21
    parts = [(h[:, : 16 * k], (8, 12)), (h[:, 16 * k: 20 * k], (4, 6)), (h[:, 20 * k:], (2, 3))]
    conv = ffn.dwconv.dwconv
    out = [F.conv2d(p.transpose(1, 2).reshape(2, 4, *hw), conv.weight, conv.bias, padding=1, groups=4)
           .flatten(2).transpose(1, 2) for p, hw in parts]
    ref = F.gelu(torch.cat(out, 1)) @ ffn.fc2.weight.T + ffn.fc2.bias
    with torch.no_grad():
        torch.testing.assert_close(ffn(x, grid), ref)


def test_injector_adds_the_normed_query_back_as_mmcv_does():
    torch.manual_seed(3)
    inj = Injector(16, num_heads=4, init_values=0.7).eval()
    with torch.no_grad():
        inj.gamma.uniform_(0.2, 1.0)
        for p in inj.attn.parameters():
            p.normal_(0, 0.1)
    inputs, _ = deform_inputs((4, 6))
    x, c = torch.randn(2, 24, 16), torch.randn(2, 126, 16)
    with torch.no_grad():
        out = inj(x, c, inputs)
        q = F.layer_norm(x, (16,), inj.query_norm.weight, inj.query_norm.bias, 1e-6)
        v = F.layer_norm(c, (16,), inj.feat_norm.weight, inj.feat_norm.bias, 1e-6)
        inj.attn.add_identity = False
        core = inj.attn(q, inputs.references(2), v, inputs.spatial_shapes, inputs.level_start_index)
        inj.attn.add_identity = True
    torch.testing.assert_close(out, x + inj.gamma * (core + q))


# --- the composed forward -------------------------------------------------------------------------


def reference_forward(model: ViTAdapter, images: torch.Tensor, masks: list[torch.Tensor] | None) -> list[torch.Tensor]:
    """The release's order, token by token: inject on all tokens, blocks on the kept ones (``masks``
    per prune point 1/3/6/9, batch 1; None = dense), extract from the dense map, then the output tail."""
    vit = model.backbone.vit
    b, _, h, w = images.shape
    grid = (h // 16, w // 16)
    inj, ext = deform_inputs(grid)
    c1, c2, c3, c4 = model.spm(images)
    c = torch.cat([c2 + model.level_embed[0], c3 + model.level_embed[1], c4 + model.level_embed[2]], 1)
    x, _ = vit.embed(images)
    stage_mask = None
    for (start, end), inter in zip(model.interaction_indexes, model.interactions):
        x = inter.injector(x, c, inj)
        for i in range(start, end + 1):
            if masks is not None and i in (1, 3, 6, 9):
                stage_mask = masks[(1, 3, 6, 9).index(i)][0]
            if stage_mask is None:
                x = vit.blocks[i](x)
            else:
                x = x.clone()
                x[:, stage_mask] = vit.blocks[i](x[:, stage_mask])
        c = inter.extractor(c, x, ext, grid)
        for extra in inter.extra_extractors or ():
            c = extra(c, x, ext, grid)
    n2, n3 = 4 * grid[0] * grid[1], grid[0] * grid[1]
    m2 = c[:, :n2].transpose(1, 2).reshape(b, -1, 2 * grid[0], 2 * grid[1])
    m3 = c[:, n2: n2 + n3].transpose(1, 2).reshape(b, -1, *grid)
    m4 = c[:, n2 + n3:].transpose(1, 2).reshape(b, -1, grid[0] // 2, grid[1] // 2)
    m1 = model.up(m2) + c1
    x3 = x.transpose(1, 2).reshape(b, -1, *grid)
    maps = [m1 + F.interpolate(x3, scale_factor=4, mode="bilinear"),
            m2 + F.interpolate(x3, scale_factor=2, mode="bilinear"),
            m3 + x3,
            m4 + F.interpolate(x3, scale_factor=0.5, mode="bilinear")]
    return [norm(m) for norm, m in zip((model.norm1, model.norm2, model.norm3, model.norm4), maps)]


def test_dense_mode_equals_keep_all_ones_and_the_dense_reference(model):
    f1, f2 = frames()
    with torch.no_grad():
        state = model(f1, keep=LOW_KEEP).state
        dense = model(f2, state, mode="dense")
        ones = model(f2, state, keep=(1.0, 1.0, 1.0, 1.0), mode="vpp")
        ref = reference_forward(model, f2, None)
    assert dense.keep_ratio == ones.keep_ratio == 1.0
    for a, b, r in zip(dense.features, ones.features, ref):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def test_vpp_at_low_pkr_keeps_shapes_measures_pkr_and_matches_the_token_reference(model):
    f1, f2 = frames(seed=1)
    with torch.no_grad():
        first = model(f1, keep=LOW_KEEP)
        second = model(f2, first.state, keep=LOW_KEEP)
        again = model(f2, first.state, keep=LOW_KEEP)
        dense = model(f2, first.state, mode="dense")
    n = 4 * 6
    per_stage = [int(n * k) for k, blocks in zip(LOW_KEEP, (2, 3, 3, 3)) for _ in range(blocks)]
    assert second.backbone.tokens_per_block == [n, *per_stage]
    assert first.backbone.tokens_per_block == [n, n, n, *per_stage[2:]]
    assert 0.2 < second.keep_ratio < first.keep_ratio < 1.0
    assert [tuple(f.shape) for f in second.features] == [tuple(f.shape) for f in dense.features]
    assert all(torch.equal(a, b) for a, b in zip(second.features, again.features))  # deterministic
    assert not torch.allclose(second.features[0], dense.features[0])
    for out, image in ((first, f1), (second, f2)):
        with torch.no_grad():
            ref = reference_forward(model, image, out.kept_masks)
        for a, r in zip(out.features, ref):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def test_identity_hooks_leave_the_backbone_unchanged(model):
    bb = model.backbone
    f1, f2 = frames(seed=2)
    with torch.no_grad():
        state = bb(f1, keep=LOW_KEEP).state
        plain = bb(f2, state, keep=LOW_KEEP)
        hooked = bb(f2, state, keep=LOW_KEEP, hooks={i: (lambda x: x) for i in range(13)})
        bb.train()  # the masked training path, same noise for both runs
        try:
            torch.manual_seed(0)
            masked_plain = bb(f2, state, keep=LOW_KEEP)
            torch.manual_seed(0)
            masked_hooked = bb(f2, state, keep=LOW_KEEP, hooks={i: (lambda x: x) for i in range(13)})
        finally:
            bb.eval()
    assert plain.tokens_per_block == hooked.tokens_per_block
    assert all(torch.equal(a, b) for a, b in zip(plain.features, hooked.features))
    assert all(torch.equal(a, b) for a, b in zip(plain.kept_masks, hooked.kept_masks))
    assert all(torch.equal(a, b) for a, b in zip(masked_plain.features, masked_hooked.features))


@pytest.mark.parametrize("masked_training", [True, False])
def test_gradients_reach_the_adapter_and_the_pruning_modules(masked_training):
    torch.manual_seed(4)
    m = make_adapter(init_values=0.5, masked_training=masked_training)
    f1, f2 = frames(seed=3)
    with torch.no_grad():
        state = m.eval()(f1, keep=LOW_KEEP).state
    m.train()
    out = m(f2, state, keep=LOW_KEEP)
    assert out.keep_ratio < 1.0
    g = torch.Generator().manual_seed(5)
    loss = sum((f * torch.randn(f.shape, generator=g)).sum() for f in out.features)
    loss.backward()
    missing = [k for k, p in m.named_parameters()
               if not k.startswith("backbone.") and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []
    for part in (m.backbone.map_sm, *m.backbone.selective.values()):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
