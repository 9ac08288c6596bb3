"""The authors' Mask2Former head: shapes, an independent reference, masked attention, track queries, the
release's key names, gradients, and the top-k postprocessing against a brute-force NumPy re-computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.model.m2f_decoder import Mask2FormerDecoder, QueryAttention, attention_mask_from_logits
from core.model.m2f_head import RELEASE_PREFIX, Mask2FormerHead, rename_release_key
from core.model.m2f_pixel_decoder import sine_position_encoding
from core.model.m2f_postprocess import topk_instances
from core.model.postprocess import Detections

IN_CHANNELS = (16, 24, 32, 40)
TINY = dict(
    feat_channels=32, out_channels=32, num_queries=8, num_classes=3, encoder_layers=2, encoder_heads=4,
    encoder_ffn=64, decoder_layers=2, decoder_heads=4, decoder_ffn=64,
)  # fmt: skip
IMAGE = (64, 96)  # H, W of the model input: levels 16x24, 8x12, 4x6, 2x3


def _features(gen, b=2, channels=IN_CHANNELS, image=IMAGE):
    return [torch.randn(b, c, image[0] // s, image[1] // s, generator=gen) for c, s in zip(channels, (4, 8, 16, 32))]


def _randomise(module, gen, scale=0.3):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("norms.0.weight", "norms.1.weight", "norms.2.weight", "gn.weight", "post_norm.weight")):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


def _tiny_head(gen, **kw):
    head = Mask2FormerHead(IN_CHANNELS, **{**TINY, **kw}).eval()
    _randomise(head, gen)
    return head


# --------------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------------


def test_output_shapes_with_and_without_track_queries():
    gen = torch.Generator().manual_seed(0)
    head = Mask2FormerHead(IN_CHANNELS, **TINY).eval()
    feats = _features(gen)
    out = head(feats)
    assert out.class_logits.shape == (2, 8, 4)
    assert out.mask_logits.shape == (2, 8, 16, 24)
    assert out.embeddings.shape == (2, 8, 32)
    assert out.num_queries == 8
    assert len(out.aux) == 2  # the initial queries' prediction and the one after layer 1
    for cls, masks in out.aux:
        assert cls.shape == (2, 8, 4) and masks.shape == (2, 8, 16, 24)
    out = head(feats, torch.randn(2, 3, 32, generator=gen))
    assert out.class_logits.shape == (2, 11, 4) and out.mask_logits.shape == (2, 11, 16, 24)
    assert out.embeddings.shape == (2, 11, 32)
    assert head(feats, return_aux=False).aux == []
    mask_features, levels = head.pixel_decoder(feats)
    assert mask_features.shape == (2, 32, 16, 24)
    assert [tuple(x.shape) for x in levels] == [(2, 32, 2, 3), (2, 32, 4, 6), (2, 32, 8, 12)]


def test_bad_inputs_raise():
    gen = torch.Generator().manual_seed(1)
    head = Mask2FormerHead(IN_CHANNELS, **TINY)
    feats = _features(gen, b=1)
    with pytest.raises(ValueError, match="4 feature maps"):
        head(feats[:3])
    with pytest.raises(ValueError, match="feature 1"):
        head([feats[0], feats[2], feats[2], feats[3]])
    with pytest.raises(ValueError, match="extra_queries"):
        head(feats, torch.zeros(1, 2, 31))
    with pytest.raises(ValueError, match="extra_query_embed"):
        head(feats, torch.zeros(1, 2, 32), torch.zeros(1, 3, 32))
    with pytest.raises(ValueError, match="GroupNorm"):
        Mask2FormerHead(IN_CHANNELS, **{**TINY, "feat_channels": 40})


# --------------------------------------------------------------------------------------------------
# an independent implementation: transformers' Mask2Former (pixel decoder + transformer module)
# --------------------------------------------------------------------------------------------------


def _to_transformers(state: dict[str, torch.Tensor], dim: int) -> tuple[dict, dict]:
    """Our head's state dict -> (transformers' Mask2FormerPixelDecoder, Mask2FormerTransformerModule) dicts."""
    layer_names = {"norms.0": "self_attn_layer_norm", "norms.1": "final_layer_norm"}
    ffn_names = {"ffn.layers.0.0": "fc1", "ffn.layers.1": "fc2"}
    pixel, module = {}, {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("pixel_decoder."):
            k = key[len("pixel_decoder.") :]
            k = k.replace(".conv.", ".0.").replace(".gn.", ".1.")
            k = k.replace("input_convs.", "input_projections.").replace("lateral_convs.0.", "adapter_1.")
            k = k.replace("output_convs.0.", "layer_1.").replace("mask_feature.", "mask_projection.")
            if k == "level_encoding.weight":
                k = "level_embed"
            for ours, theirs in {**layer_names, **ffn_names}.items():
                k = k.replace(f".{ours}.", f".{theirs}.")
            pixel[k] = value
        elif key.startswith("transformer_decoder.layers."):
            i, rest = parts[2], ".".join(parts[3:])
            p = f"decoder.layers.{i}."
            if rest.startswith("cross_attn.attn."):
                module[p + "cross_attn." + rest[len("cross_attn.attn.") :]] = value
            elif rest.startswith("self_attn.attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]  # weight / bias
                for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.split(dim, dim=0)):
                    module[f"{p}self_attn.{name}.{kind}"] = chunk
            elif rest.startswith("self_attn.attn.out_proj."):
                module[p + "self_attn.out_proj." + parts[-1]] = value
            else:
                names = {"norms.0": "cross_attn_layer_norm", "norms.1": "self_attn_layer_norm"}
                names.update({"norms.2": "final_layer_norm", **ffn_names})
                stem = rest.rsplit(".", 1)[0]
                module[p + names[stem] + "." + parts[-1]] = value
        elif key.startswith("transformer_decoder.post_norm."):
            module["decoder.layernorm." + parts[-1]] = value
        elif key.startswith("mask_embed."):
            module[f"decoder.mask_predictor.mask_embedder.{int(parts[1]) // 2}.0.{parts[2]}"] = value
        elif parts[0] in ("query_embed", "query_feat", "level_embed"):
            name = {"query_embed": "queries_embedder", "query_feat": "queries_features"}.get(parts[0], parts[0])
            module[f"{name}.weight"] = value
        elif parts[0] != "cls_embed":
            raise AssertionError(f"unmapped key {key}")
    return pixel, module


def test_matches_transformers_mask2former():
    from transformers import Mask2FormerConfig
    from transformers.models.mask2former.modeling_mask2former import (
        Mask2FormerPixelDecoder,
        Mask2FormerTransformerModule,
    )

    gen = torch.Generator().manual_seed(2)
    head = _tiny_head(gen)
    # transformers builds decoder_layers - 1 layers (it counts the prediction from the initial queries).
    config = Mask2FormerConfig(
        feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64, encoder_layers=2,
        decoder_layers=3, num_attention_heads=4, dim_feedforward=64, num_queries=8, common_stride=4,
    )  # fmt: skip
    pixel = Mask2FormerPixelDecoder(config, feature_channels=list(IN_CHANNELS)).eval()
    module = Mask2FormerTransformerModule(in_features=32, config=config).eval()
    pixel_state, module_state = _to_transformers(head.state_dict(), 32)
    pixel.load_state_dict(pixel_state)  # strict: every parameter named and shaped alike
    module.load_state_dict(module_state)

    feats = _features(gen)
    with torch.no_grad():
        out = head(feats)
        ours_mask_features, ours_levels = head.pixel_decoder(feats)
        ref_pixel = pixel(feats)
        ref = module(list(ref_pixel.multi_scale_features), ref_pixel.mask_features)
    torch.testing.assert_close(ours_mask_features, ref_pixel.mask_features, atol=2e-5, rtol=1e-4)
    for ours, theirs in zip(ours_levels, ref_pixel.multi_scale_features):
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)
    predictions = [*out.aux, (out.class_logits, out.mask_logits)]
    assert len(predictions) == len(ref.masks_queries_logits) == 3
    for (cls, masks), hidden, ref_masks in zip(predictions, ref.intermediate_hidden_states, ref.masks_queries_logits):
        torch.testing.assert_close(masks, ref_masks, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(cls, head.cls_embed(hidden.transpose(0, 1)), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.embeddings, ref.last_hidden_state, atol=1e-4, rtol=1e-4)
    # The comparison covers masking: some queries' previous masks are partial (keys really masked) and some are
    # empty on their level (the attend-everywhere fallback).
    shares = []
    for (_, masks), size in zip(out.aux, [(2, 3), (4, 6)]):
        small = torch.nn.functional.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        shares.append((small.flatten(2).sigmoid() < 0.5).float().mean(-1).flatten())
    shares = torch.cat(shares)
    assert ((shares > 0) & (shares < 1)).sum() >= 4 and (shares == 1).any()


def test_sine_position_encoding_formula():
    table = sine_position_encoding(3, 5, 4)  # [15, 8]: y half (4) then x half (4)
    assert table.shape == (15, 8)
    for i, j in [(0, 0), (2, 4), (1, 3)]:
        y, x = 2 * math.pi * (i + 1) / (3 + 1e-6), 2 * math.pi * (j + 1) / (5 + 1e-6)
        want = []
        for coord in (y, x):
            for k in range(4):
                t = 10000 ** (2 * (k // 2) / 4)
                want.append(math.sin(coord / t) if k % 2 == 0 else math.cos(coord / t))
        torch.testing.assert_close(table[i * 5 + j], torch.tensor(want), atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# masked attention
# --------------------------------------------------------------------------------------------------


def test_attention_mask_threshold_layout_and_fallback():
    logits = torch.tensor([[[[1.0, -1.0], [-2.0, 0.5]], [[-1.0, -3.0], [-0.1, -2.0]]]])  # [1, 2, 2, 2]
    mask = attention_mask_from_logits(logits, (2, 2), num_heads=3)
    assert mask.shape == (3, 2, 4) and mask.dtype == torch.bool
    for h in range(3):
        assert mask[h, 0].tolist() == [False, True, True, False]  # True = may not attend
        assert mask[h, 1].tolist() == [False] * 4  # an empty mask attends everywhere
    # Resized bilinearly first (downsampled here), batch-major then head.
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 8, 12, generator=gen)
    mask = attention_mask_from_logits(logits, (4, 6), num_heads=2)
    small = torch.nn.functional.interpolate(logits, size=(4, 6), mode="bilinear", align_corners=False)
    want = small.flatten(2).sigmoid() < 0.5
    want = want & ~want.all(-1, keepdim=True)
    assert torch.equal(mask.reshape(2, 2, 3, 24)[:, 1], want) and torch.equal(mask.reshape(2, 2, 3, 24)[:, 0], want)


def test_cross_attention_ignores_masked_keys_per_query():
    gen = torch.Generator().manual_seed(4)
    attn = QueryAttention(16, 2).eval()
    _randomise(attn, gen)
    query, pos = torch.randn(1, 3, 16, generator=gen), torch.randn(1, 3, 16, generator=gen)
    memory, memory_pos = torch.randn(1, 10, 16, generator=gen), torch.randn(1, 10, 16, generator=gen)
    blocked = torch.zeros(3, 10, dtype=torch.bool)
    blocked[0, 4:] = True  # query 0 may only look at keys 0..3; queries 1, 2 see everything
    mask = blocked.repeat(2, 1, 1)  # [B * heads, Q, S]
    out = attn(query, memory, memory, pos, memory_pos, mask)
    changed = memory.clone()
    changed[:, 4:] += 5 * torch.randn(1, 6, 16, generator=gen)
    out2 = attn(query, changed, changed, pos, memory_pos, mask)
    torch.testing.assert_close(out2[:, 0], out[:, 0], atol=1e-6, rtol=0)
    assert (out2[:, 1:] - out[:, 1:]).abs().amax() > 1e-2


def _decoder_run(decoder, memory, mask_logits):
    b, q = mask_logits.shape[:2]
    queries = torch.linspace(-1, 1, b * q * 16).reshape(b, q, 16).sin()
    pos = torch.linspace(-2, 2, b * q * 16).reshape(b, q, 16).cos()
    memory_pos = torch.linspace(0, 3, 12 * 16).reshape(1, 12, 16).sin()

    def predict(x):  # a fixed mask per query (the size of the level: resizing is the identity)
        return x[..., :2], mask_logits

    return decoder(queries, pos, [memory], [memory_pos], [(3, 4)], predict)


def test_decoder_layer_ignores_keys_outside_the_previous_masks():
    gen = torch.Generator().manual_seed(5)
    decoder = Mask2FormerDecoder(16, num_layers=1, num_heads=2, ffn_channels=32).eval()
    _randomise(decoder, gen)
    memory = torch.randn(2, 12, 16, generator=gen)
    logits = torch.ones(2, 4, 3, 4)
    logits[:, :, 1:, 2:] = -1.0  # every query's previous mask is empty on the bottom-right 2x2 cells
    region = torch.zeros(3, 4, dtype=torch.bool)
    region[1:, 2:] = True
    region = region.flatten()
    base = _decoder_run(decoder, memory, logits).queries
    changed = memory.clone()
    changed[:, region] += 3 * torch.randn(2, int(region.sum()), 16, generator=gen)
    torch.testing.assert_close(_decoder_run(decoder, changed, logits).queries, base, atol=1e-6, rtol=0)
    # The same change where the masks are on does change the queries (the test can fail).
    elsewhere = memory.clone()
    elsewhere[:, ~region] += 3 * torch.randn(2, int((~region).sum()), 16, generator=gen)
    assert (_decoder_run(decoder, elsewhere, logits).queries - base).abs().amax() > 1e-2


def test_decoder_empty_mask_attends_everywhere():
    gen = torch.Generator().manual_seed(6)
    decoder = Mask2FormerDecoder(16, num_layers=2, num_heads=2, ffn_channels=32).eval()
    _randomise(decoder, gen)
    memory = torch.randn(1, 12, 16, generator=gen)
    pattern = torch.randn(1, 4, 3, 4, generator=gen)
    empty, full, partial = pattern.clone(), pattern.clone(), pattern.clone()
    empty[:, 0] = -1.0  # query 0: nothing of its mask on this level -> mmdet attends to all keys
    full[:, 0] = 1.0
    partial[:, 0, :, :2] = -1.0
    partial[:, 0, :, 2:] = 1.0
    got = _decoder_run(decoder, memory, empty)
    assert torch.isfinite(got.queries).all()
    torch.testing.assert_close(got.queries, _decoder_run(decoder, memory, full).queries, atol=1e-6, rtol=0)
    assert (got.queries - _decoder_run(decoder, memory, partial).queries).abs().amax() > 1e-3
    assert len(got.predictions) == 3


# --------------------------------------------------------------------------------------------------
# track queries
# --------------------------------------------------------------------------------------------------


def test_track_queries_leave_first_prediction_and_cross_attention_alone():
    gen = torch.Generator().manual_seed(7)
    head = _tiny_head(gen)
    feats = _features(gen)
    extra = torch.randn(2, 3, 32, generator=gen)
    captured: dict[str, list[torch.Tensor]] = {"cross": [], "self": []}
    layer0 = head.transformer_decoder.layers[0]
    hooks = [
        layer0.cross_attn.register_forward_hook(lambda m, a, o: captured["cross"].append(o)),
        layer0.self_attn.register_forward_hook(lambda m, a, o: captured["self"].append(o)),
    ]
    try:
        with torch.no_grad():
            plain = head(feats)
            tracked = head(feats, extra)
            zeros = head(feats, extra, torch.zeros_like(extra))
            none_appended = head(feats, extra[:, :0])
    finally:
        for h in hooks:
            h.remove()
    q = head.num_queries
    # Per-query stages: the initial prediction and layer 0's cross-attention of the learned queries.
    torch.testing.assert_close(tracked.aux[0][0][:, :q], plain.aux[0][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(tracked.aux[0][1][:, :q], plain.aux[0][1], atol=1e-6, rtol=0)
    torch.testing.assert_close(captured["cross"][1][:, :q], captured["cross"][0], atol=1e-6, rtol=0)
    # From the first self-attention on the queries see each other: the learned queries' outputs change.
    assert (captured["self"][1][:, :q] - captured["self"][0]).abs().amax() > 1e-3
    assert (tracked.class_logits[:, :q] - plain.class_logits).abs().amax() > 1e-3
    # The default track-query position is zero; no appended queries is the plain forward.
    torch.testing.assert_close(zeros.class_logits, tracked.class_logits, atol=0, rtol=0)
    torch.testing.assert_close(none_appended.class_logits, plain.class_logits, atol=1e-6, rtol=0)
    # An appended copy of a learned query (with its position) predicts what that query predicts, first.
    with torch.no_grad():
        feat2 = head.query_feat.weight[None, 2:3].repeat(2, 1, 1)
        copy = head(feats, feat2, head.query_embed.weight[None, 2:3].repeat(2, 1, 1))
    torch.testing.assert_close(copy.aux[0][0][:, q], plain.aux[0][0][:, 2], atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------------


def test_gradients_reach_every_parameter():
    gen = torch.Generator().manual_seed(8)
    head = _tiny_head(gen).train()
    out = head(_features(gen), torch.randn(2, 2, 32, generator=gen, requires_grad=True))
    loss = sum(c.square().mean() + m.sigmoid().mean() for c, m in [*out.aux, (out.class_logits, out.mask_logits)])
    loss = loss + out.embeddings.square().mean()
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------------------------------
# the release's checkpoint keys
# --------------------------------------------------------------------------------------------------


def _release_keys(in_channels, *, c=256, q=100, k=40, enc=6, dec=9, enc_ffn=1024, dec_ffn=2048, heads=8, points=4):
    """The head's keys in the released checkpoints (mmdet 3.0.0rc5 modules), written out from their definitions."""
    keys: dict[str, tuple[int, ...]] = {}

    def linear(name, cout, cin):
        keys[name + ".weight"], keys[name + ".bias"] = (cout, cin), (cout,)

    def norm(name, n=c):
        keys[name + ".weight"], keys[name + ".bias"] = (n,), (n,)

    pd = "pixel_decoder."
    for i in range(3):  # input_convs[i] takes the (3 - i)-th input: strides 32, 16, 8
        keys[f"{pd}input_convs.{i}.conv.weight"] = (c, in_channels[3 - i], 1, 1)
        keys[f"{pd}input_convs.{i}.conv.bias"] = (c,)
        norm(f"{pd}input_convs.{i}.gn")
    for i in range(enc):
        p = f"{pd}encoder.layers.{i}."
        linear(p + "attentions.0.sampling_offsets", heads * 3 * points * 2, c)
        linear(p + "attentions.0.attention_weights", heads * 3 * points, c)
        linear(p + "attentions.0.value_proj", c, c)
        linear(p + "attentions.0.output_proj", c, c)
        linear(p + "ffns.0.layers.0.0", enc_ffn, c)
        linear(p + "ffns.0.layers.1", c, enc_ffn)
        norm(p + "norms.0")
        norm(p + "norms.1")
    keys[pd + "level_encoding.weight"] = (3, c)
    keys[pd + "lateral_convs.0.conv.weight"] = (c, in_channels[0], 1, 1)
    norm(pd + "lateral_convs.0.gn")
    keys[pd + "output_convs.0.conv.weight"] = (c, c, 3, 3)
    norm(pd + "output_convs.0.gn")
    keys[pd + "mask_feature.weight"], keys[pd + "mask_feature.bias"] = (c, c, 1, 1), (c,)
    for i in range(dec):
        p = f"transformer_decoder.layers.{i}."
        for a in (0, 1):  # 0: cross-attention, 1: self-attention
            keys[f"{p}attentions.{a}.attn.in_proj_weight"] = (3 * c, c)
            keys[f"{p}attentions.{a}.attn.in_proj_bias"] = (3 * c,)
            linear(f"{p}attentions.{a}.attn.out_proj", c, c)
        linear(p + "ffns.0.layers.0.0", dec_ffn, c)
        linear(p + "ffns.0.layers.1", c, dec_ffn)
        for n in range(3):
            norm(f"{p}norms.{n}")
    norm("transformer_decoder.post_norm")
    keys["query_embed.weight"], keys["query_feat.weight"], keys["level_embed.weight"] = (q, c), (q, c), (3, c)
    linear("cls_embed", k + 1, c)
    for n in (0, 2, 4):
        linear(f"mask_embed.{n}", c, c)
    return {RELEASE_PREFIX + key: shape for key, shape in keys.items()}


@pytest.mark.parametrize("width", [192, 384])  # Tiny, Small
def test_release_state_dict_maps_one_to_one(width):
    expected = _release_keys([width] * 4)
    head = Mask2FormerHead([width] * 4)  # every other number is the release default
    ours = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    mapped = {rename_release_key(k): shape for k, shape in expected.items()}
    assert len(mapped) == len(expected)  # the renaming is injective
    assert set(mapped) == set(ours), (sorted(set(mapped) - set(ours))[:5], sorted(set(ours) - set(mapped))[:5])
    assert mapped == ours
    gen = torch.Generator().manual_seed(9)
    state = {rename_release_key(k): torch.randn(shape, generator=gen) for k, shape in expected.items()}
    head.load_state_dict(state, strict=True)
    # mmdet >= 3.0 names are ours already.
    assert rename_release_key("transformer_decoder.layers.3.cross_attn.attn.in_proj_weight") == (
        "transformer_decoder.layers.3.cross_attn.attn.in_proj_weight"
    )
    assert rename_release_key(RELEASE_PREFIX + "pixel_decoder.encoder.layers.5.ffns.0.layers.1.bias") == (
        "pixel_decoder.encoder.layers.5.ffn.layers.1.bias"
    )


# --------------------------------------------------------------------------------------------------
# postprocessing
# --------------------------------------------------------------------------------------------------


def _numpy_topk(cls, masks, emb, k):
    """The definition, pair by pair, in float64 NumPy."""
    cls, masks = cls.astype(np.float64), masks.astype(np.float64)
    e = np.exp(cls - cls.max(1, keepdims=True))
    probs = (e / e.sum(1, keepdims=True))[:, :-1]
    pairs = sorted(((probs[q, c], q, c) for q in range(probs.shape[0]) for c in range(probs.shape[1])), reverse=True)
    rows = []
    for p, q, c in pairs[:k]:
        binary = masks[q] > 0
        sig = 1.0 / (1.0 + np.exp(-masks[q]))
        rows.append((p * (sig * binary).sum() / (binary.sum() + 1e-6), q, c))
    rows.sort(key=lambda r: -r[0])
    scores = np.array([r[0] for r in rows])
    queries = np.array([r[1] for r in rows])
    labels = np.array([r[2] for r in rows])
    return scores, queries, labels, masks[queries], emb[queries]


@pytest.mark.parametrize("k", [None, 5, 100])
def test_topk_matches_numpy_brute_force(k):
    gen = torch.Generator().manual_seed(10)
    q, classes = 9, 4
    cls = torch.randn(q, classes + 1, generator=gen) * 2
    cls[2, 1], cls[2, 3] = 6.0, 5.5  # one query, two confident classes: it comes back twice
    masks = torch.randn(q, 6, 7, generator=gen) * 3
    masks[5] = -torch.rand(6, 7, generator=gen) - 0.1  # an empty mask: score 0
    emb = torch.randn(q, 5, generator=gen)
    det = topk_instances(cls, masks, emb, max_per_image=k)
    assert isinstance(det, Detections)
    scores, queries, labels, want_masks, want_emb = _numpy_topk(cls.numpy(), masks.numpy(), emb.numpy(), k or q)
    assert len(det.scores) == min(k or q, q * classes)
    np.testing.assert_allclose(det.scores.numpy(), scores, rtol=1e-5, atol=1e-7)
    assert det.queries.tolist() == queries.tolist() and det.labels.tolist() == labels.tolist()
    np.testing.assert_allclose(det.mask_logits.numpy(), want_masks, rtol=0, atol=1e-6)
    np.testing.assert_allclose(det.embeddings.numpy(), want_emb, rtol=0, atol=0)
    if k is None:  # both of query 2's confident classes are among the top Q pairs: it comes back twice
        assert det.queries.tolist().count(2) == 2
    # score_threshold keeps the prefix at or above it.
    cut = float(scores[len(scores) // 2])
    kept = topk_instances(cls, masks, emb, max_per_image=k, score_threshold=cut)
    assert kept.scores.tolist() == det.scores[det.scores >= cut].tolist()


def test_topk_resizes_like_the_release_before_scoring():
    gen = torch.Generator().manual_seed(11)
    cls = torch.randn(6, 3, generator=gen)
    masks = torch.randn(6, 5, 8, generator=gen) * 2
    det = topk_instances(cls, masks, input_size=(20, 32), valid_size=(18, 27), output_size=(9, 14))
    assert det.mask_logits.shape[1:] == (9, 14)
    up = torch.nn.functional.interpolate(masks[None], size=(20, 32), mode="bilinear", align_corners=False)[0]
    down = torch.nn.functional.interpolate(up[None, :, :18, :27], size=(9, 14), mode="bilinear", align_corners=False)[0]
    want = topk_instances(cls, down)
    torch.testing.assert_close(det.scores, want.scores)
    torch.testing.assert_close(det.mask_logits, want.mask_logits)
    assert det.embeddings.shape == (len(det.scores), 0)
    with pytest.raises(ValueError, match="class_logits"):
        topk_instances(cls[:, :1], masks)
    with pytest.raises(ValueError, match="mask_logits"):
        topk_instances(cls, masks[:5])
