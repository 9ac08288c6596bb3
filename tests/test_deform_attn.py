"""Multi-scale deformable attention: the sampling core against two independent references, the module."""

from __future__ import annotations

import math

import pytest
import torch

from core.model import deform_attn
from core.model.deform_attn import MSDeformAttn, fused_kernel_available, ms_deform_attn_sample

SHAPES = [(5, 7), (3, 3), (1, 3)]  # odd sizes, including a one-row level


def _level_start(shapes):
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    return torch.tensor(starts, dtype=torch.long)


def _random_inputs(gen, *, b, q, heads, d, shapes, points):
    s = sum(h * w for h, w in shapes)
    value = torch.randn(b, s, heads, d, generator=gen)
    # Locations in [-0.3, 1.3]: inside, on the zero-padded border band and fully outside the maps.
    locations = torch.rand(b, q, heads, len(shapes), points, 2, generator=gen) * 1.6 - 0.3
    weights = torch.rand(b, q, heads, len(shapes), points, generator=gen)
    return value, locations, weights


def _brute_force(value, shapes, locations, weights):
    """The definition, one sample at a time: bilinear interpolation of pixel centres, zeros outside.

    Location (x, y) in [0, 1] spans the map corner to corner, so pixel (i, j) has its centre at
    ((j + 0.5) / w, (i + 0.5) / h), i.e. continuous pixel coordinates are (x * w - 0.5, y * h - 0.5).
    """
    b, _, heads, d = value.shape
    q, points = locations.shape[1], locations.shape[4]
    val, loc, wts = value.tolist(), locations.tolist(), weights.tolist()
    starts = _level_start(shapes).tolist()
    out = torch.zeros(b, q, heads * d, dtype=torch.float64)
    for bi in range(b):
        for qi in range(q):
            for hi in range(heads):
                acc = [0.0] * d
                for li, (h, w) in enumerate(shapes):
                    for pi in range(points):
                        x, y = loc[bi][qi][hi][li][pi]
                        px, py = x * w - 0.5, y * h - 0.5
                        x0, y0 = math.floor(px), math.floor(py)
                        fx, fy = px - x0, py - y0
                        for yy, wy in ((y0, 1.0 - fy), (y0 + 1, fy)):
                            for xx, wx in ((x0, 1.0 - fx), (x0 + 1, fx)):
                                if not (0 <= yy < h and 0 <= xx < w):
                                    continue  # zero padding
                                token = val[bi][starts[li] + yy * w + xx][hi]
                                coef = wts[bi][qi][hi][li][pi] * wy * wx
                                for ci in range(d):
                                    acc[ci] += coef * token[ci]
                out[bi, qi, hi * d : (hi + 1) * d] = torch.tensor(acc, dtype=torch.float64)
    return out


# --------------------------------------------------------------------------------------------------
# (1) the pure-PyTorch core
# --------------------------------------------------------------------------------------------------


def test_sample_matches_transformers_reference():
    from transformers.models.deformable_detr.modeling_deformable_detr import MultiScaleDeformableAttention

    gen = torch.Generator().manual_seed(0)
    value, locations, weights = _random_inputs(gen, b=2, q=11, heads=4, d=8, shapes=SHAPES, points=3)
    shapes_t = torch.tensor(SHAPES, dtype=torch.long)
    ref = MultiScaleDeformableAttention()(value, shapes_t, SHAPES, _level_start(SHAPES), locations, weights, 64)
    ours = ms_deform_attn_sample(value, shapes_t, locations, weights)
    assert ours.shape == (2, 11, 4 * 8)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    # A list of (h, w) pairs is the same as the tensor.
    torch.testing.assert_close(ms_deform_attn_sample(value, SHAPES, locations, weights), ours, atol=0, rtol=0)


def test_sample_matches_brute_force_definition():
    gen = torch.Generator().manual_seed(1)
    shapes = [(3, 5), (2, 1)]
    value, locations, weights = _random_inputs(gen, b=2, q=3, heads=2, d=3, shapes=shapes, points=2)
    value, locations, weights = value.double(), locations.double(), weights.double()
    # Exact pixel centres, the map corners and points just outside, on purpose.
    locations[0, 0, 0, 0, 0] = torch.tensor([0.5 / 5, 0.5 / 3])  # centre of pixel (0, 0)
    locations[0, 0, 0, 0, 1] = torch.tensor([0.0, 1.0])  # bottom-left corner: a quarter of pixel (2, 0)
    locations[0, 1, 1, 1, 0] = torch.tensor([1.05, -0.05])  # outside, still blends the corner pixel
    locations[1, 2, 0, 1, 1] = torch.tensor([2.0, 0.5])  # far outside: zero
    ours = ms_deform_attn_sample(value, shapes, locations, weights)
    torch.testing.assert_close(ours, _brute_force(value, shapes, locations, weights), atol=1e-10, rtol=1e-10)


def test_sample_reads_pixel_centres_exactly():
    shapes = [(2, 3)]
    value = torch.arange(6, dtype=torch.float32).reshape(1, 6, 1, 1)  # token index = row * 3 + col
    centres = torch.tensor([[(j + 0.5) / 3, (i + 0.5) / 2] for i in range(2) for j in range(3)])
    locations = centres.reshape(1, 6, 1, 1, 1, 2)
    out = ms_deform_attn_sample(value, shapes, locations, torch.ones(1, 6, 1, 1, 1))
    torch.testing.assert_close(out.flatten(), torch.arange(6, dtype=torch.float32))


# --------------------------------------------------------------------------------------------------
# (2) the module
# --------------------------------------------------------------------------------------------------


def _module_inputs(gen, *, b=2, q=10, dim=32, shapes=SHAPES, box=False):
    s = sum(h * w for h, w in shapes)
    query = torch.randn(b, q, dim, generator=gen)
    value = torch.randn(b, s, dim, generator=gen)
    ref = torch.rand(b, q, len(shapes), 4 if box else 2, generator=gen)
    return query, ref, value, torch.tensor(shapes, dtype=torch.long), _level_start(shapes)


def _randomise(module, gen):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


@pytest.mark.parametrize("box", [False, True])
def test_module_matches_transformers_module(box):
    from transformers import DeformableDetrConfig
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrMultiscaleDeformableAttention,
    )

    gen = torch.Generator().manual_seed(2)
    ours = MSDeformAttn(dim=32, num_heads=4, num_levels=3, num_points=3, fused=False).eval()
    _randomise(ours, gen)
    config = DeformableDetrConfig(d_model=32, num_feature_levels=3, disable_custom_kernels=True)
    theirs = DeformableDetrMultiscaleDeformableAttention(config, num_heads=4, n_points=3).eval()
    theirs.load_state_dict(ours.state_dict())  # same parameter names and shapes, strict
    query, ref, value, shapes, starts = _module_inputs(gen, box=box)
    padding = torch.rand(value.shape[:2], generator=gen) < 0.2
    got = ours(query, ref, value, shapes, starts, padding)
    want, _ = theirs(
        query, attention_mask=~padding, encoder_hidden_states=value, reference_points=ref,
        spatial_shapes=shapes, spatial_shapes_list=SHAPES, level_start_index=starts,
    )  # fmt: skip
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_initialisation_is_deformable_detr_ring():
    attn = MSDeformAttn(dim=32, num_heads=8, num_levels=2, num_points=3)
    bias = attn.sampling_offsets.bias.detach().reshape(8, 2, 3, 2)
    ring = torch.tensor([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=torch.float32)
    for p in range(3):
        for level in range(2):
            torch.testing.assert_close(bias[:, level, p], ring * (p + 1), atol=1e-6, rtol=0)
    assert attn.sampling_offsets.weight.abs().sum() == 0
    assert attn.attention_weights.weight.abs().sum() == 0 and attn.attention_weights.bias.abs().sum() == 0
    assert attn.value_proj.bias.abs().sum() == 0 and attn.output_proj.bias.abs().sum() == 0
    bound = math.sqrt(6.0 / (32 + 32))  # xavier-uniform
    assert attn.value_proj.weight.abs().max() <= bound and attn.value_proj.weight.std() > bound / 4


def test_module_shapes_value_ratio_and_identity():
    gen = torch.Generator().manual_seed(3)
    query, ref, value, shapes, starts = _module_inputs(gen, q=7, dim=48)
    attn = MSDeformAttn(dim=48, num_heads=6, num_levels=3, num_points=2, value_ratio=0.25)
    assert attn.value_proj.weight.shape == (12, 48) and attn.output_proj.weight.shape == (48, 12)
    assert attn.sampling_offsets.weight.shape == (6 * 3 * 2 * 2, 48)
    assert attn.attention_weights.weight.shape == (6 * 3 * 2, 48)
    out = attn(query, ref, value, shapes, starts)
    assert out.shape == (2, 7, 48)
    assert MSDeformAttn(dim=48, num_heads=6, num_levels=3, value_dim=24).value_proj.out_features == 24
    # mmcv semantics: query added back.
    with_identity = MSDeformAttn(dim=48, num_heads=6, num_levels=3, num_points=2, value_ratio=0.25, add_identity=True)
    with_identity.load_state_dict(attn.state_dict())
    torch.testing.assert_close(with_identity(query, ref, value, SHAPES, starts), out + query)


def test_padding_mask_zeroes_masked_values():
    gen = torch.Generator().manual_seed(4)
    attn = MSDeformAttn(dim=16, num_heads=2, num_levels=3, num_points=4).eval()
    _randomise(attn, gen)
    query, ref, value, shapes, starts = _module_inputs(gen, dim=16)
    padding = torch.zeros(value.shape[:2], dtype=torch.bool)
    padding[0, :20] = True  # first rows of level 0 in sample 0
    padding[1, 35:] = True  # all of levels 1 and 2 in sample 1
    out = attn(query, ref, value, shapes, starts, padding)
    garbage = value.masked_fill(padding[..., None], 1e3)
    torch.testing.assert_close(attn(query, ref, garbage, shapes, starts, padding), out)
    # Equivalent to zeroing the projected values there; and the mask does change the result.
    projected = attn.value_proj(value).masked_fill(padding[..., None], 0.0)
    with torch.no_grad():
        inv = torch.linalg.pinv(attn.value_proj.weight.T)  # value such that value_proj(value) == projected
        zeroed = (projected - attn.value_proj.bias) @ inv
    torch.testing.assert_close(attn(query, ref, zeroed, shapes, starts), out, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(attn(query, ref, value, shapes, starts), out, atol=1e-3)


def test_gradients_reach_offsets_weights_and_projections():
    gen = torch.Generator().manual_seed(5)
    attn = MSDeformAttn(dim=16, num_heads=2, num_levels=3, num_points=2)  # standard init
    query, ref, value, shapes, starts = _module_inputs(gen, dim=16)
    value.requires_grad_(True)
    out = attn(query, ref, value, shapes, starts)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reached {name}"
    assert value.grad.abs().sum() > 0  # (the query's gradient is 0 at init: both query layers start at 0 weight)


def test_flops_counts_projections_and_samples():
    attn = MSDeformAttn(dim=8, num_heads=2, num_levels=2, num_points=3, value_dim=4)
    q, s = 5, 17
    projections = s * 8 * 4 + q * 8 * (2 * 2 * 3 * 2) + q * 8 * (2 * 2 * 3) + q * 4 * 8
    sampling = q * 2 * 2 * 3 * (4 // 2) * 5  # 4 multiply-adds per bilinear tap + 1 for the weighted sum
    assert attn.flops(q, s) == 2 * (projections + sampling)


# --------------------------------------------------------------------------------------------------
# (3) bad inputs
# --------------------------------------------------------------------------------------------------


def test_bad_shapes_raise_value_error():
    gen = torch.Generator().manual_seed(6)
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(dim=30, num_heads=8)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MSDeformAttn(dim=32, num_heads=8, value_ratio=0.1)
    with pytest.raises(ValueError, match="not both"):
        MSDeformAttn(dim=32, num_heads=8, value_dim=16, value_ratio=0.5)
    attn = MSDeformAttn(dim=32, num_heads=4, num_levels=3, num_points=2)
    query, ref, value, shapes, starts = _module_inputs(gen)
    with pytest.raises(ValueError, match="S=46"):
        attn(query, ref, value[:, :-1], shapes, starts)  # S does not match spatial_shapes
    with pytest.raises(ValueError, match="hold"):
        attn(query, ref, value, [(5, 7), (3, 3), (2, 3)], starts)
    with pytest.raises(ValueError, match="levels"):
        attn(query, ref, value[:, :44], shapes[:2], starts)
    with pytest.raises(ValueError, match="reference_points"):
        attn(query, torch.rand(2, 10, 3, 3), value, shapes, starts)
    with pytest.raises(ValueError, match="query"):
        attn(query[..., :16], ref, value, shapes, starts)
    with pytest.raises(ValueError, match="padding_mask"):
        attn(query, ref, value, shapes, starts, torch.zeros(2, 5, dtype=torch.bool))
    v, locations, weights = _random_inputs(gen, b=1, q=2, heads=2, d=4, shapes=SHAPES, points=2)
    with pytest.raises(ValueError, match="hold"):
        ms_deform_attn_sample(v[:, 1:], SHAPES, locations, weights)
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn_sample(v, SHAPES, locations, weights[..., :1])


# --------------------------------------------------------------------------------------------------
# the optional fused kernel
# --------------------------------------------------------------------------------------------------


def test_fused_choice_is_explicit(monkeypatch):
    monkeypatch.setattr(deform_attn, "_fused_kernel", None)
    with pytest.raises(RuntimeError, match="no fused kernel"):
        MSDeformAttn(dim=32, num_heads=4, num_levels=3, fused=True)

    calls = []
    monkeypatch.setattr(deform_attn, "_fused_kernel", lambda *args: calls.append(args))
    gen = torch.Generator().manual_seed(7)
    query, ref, value, shapes, starts = _module_inputs(gen)
    auto = MSDeformAttn(dim=32, num_heads=4, num_levels=3, num_points=2)  # fused=None
    assert auto(query, ref, value, shapes, starts).shape == (2, 10, 32) and not calls  # CPU: pure path
    forced = MSDeformAttn(dim=32, num_heads=4, num_levels=3, num_points=2, fused=True)
    with pytest.raises(RuntimeError, match="CUDA"):
        forced(query, ref, value, shapes, starts)
    assert not calls


@pytest.mark.skipif(
    not (torch.cuda.is_available() and fused_kernel_available()), reason="needs CUDA and a fused kernel"
)
def test_fused_kernel_matches_pure_path():
    gen = torch.Generator().manual_seed(8)
    pure = MSDeformAttn(dim=32, num_heads=4, num_levels=3, num_points=2, fused=False)
    _randomise(pure, gen)
    fused = MSDeformAttn(dim=32, num_heads=4, num_levels=3, num_points=2, fused=True)
    fused.load_state_dict(pure.state_dict())
    inputs = [t.cuda() for t in _module_inputs(gen)]
    torch.testing.assert_close(fused.cuda()(*inputs), pure.cuda()(*inputs), atol=1e-5, rtol=1e-5)
