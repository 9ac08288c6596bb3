"""The training noise on the keep ranking: its scale decides whether training sees the inference selection.

A trained model's keep log-probabilities span well under one unit (v3 run 3: 0.4-0.7 per stage), so
standard logistic noise (scale 1, the old fixed value) turned the training top-k into random drop while
inference kept the plain top-k. ``selection_noise`` (default 0.1, the release's 1 / tau) is a constructor
option of the backbone and a key of the model config.
"""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError
from core.model.backbone import PrunedViT, _select
from core.model.map_sm import MapSM
from core.model.selective import SelectiveModule
from core.model.vit import VisionTransformer
from core.model.vpp.builder import build_vpp
from core.model.vpp.config import VPPConfig


def _overlap_with_topk(scores: torch.Tensor, k: int, noise: float, draws: int = 40) -> float:
    top = set(_select(scores, k, None, training=False)[0][0].tolist())
    got = [len(top & set(_select(scores, k, None, training=True, noise=noise)[0][0].tolist())) / k
           for _ in range(draws)]
    return sum(got) / draws


def test_noise_scale_sets_how_close_training_is_to_the_inference_selection():
    torch.manual_seed(0)
    n, k = 200, 100
    scores = torch.linspace(-0.5, 0.0, n).unsqueeze(0)  # a spread like a trained model's
    assert _overlap_with_topk(scores, k, 0.0) == 1.0
    small, large = _overlap_with_topk(scores, k, 0.1), _overlap_with_topk(scores, k, 1.0)
    assert small > 0.68  # close to the inference top-k
    assert large < 0.62  # near random drop (k / n = 0.5): what training used to see
    assert small - large > 0.1


def test_zero_noise_still_returns_the_straight_through_factor():
    scores = torch.linspace(-1.0, 0.0, 10).unsqueeze(0).requires_grad_()
    local, factor = _select(scores, 4, None, training=True, noise=0.0)
    assert local[0].tolist() == [6, 7, 8, 9]
    assert torch.allclose(factor, torch.ones_like(factor))  # forward value 1 ...
    factor.sum().backward()
    assert scores.grad[0, 6:].abs().sum() > 0  # ... gradient reaches the kept scores


def _backbone(noise: float) -> PrunedViT:
    torch.manual_seed(1)
    dim = 48
    vit = VisionTransformer(patch=16, embed_dim=dim, depth=12, num_heads=3, pos_grid=(8, 8))
    gates = {b: SelectiveModule(dim) for b in (3, 6, 9)}
    for g in gates.values():  # spread the keep scores so the ranking is well defined
        torch.nn.init.normal_(g.fc2.weight, std=2.0)
    return PrunedViT(vit, MapSM(dim), gates, out_indices=(11,), selection_noise=noise)


def _kept(model: PrunedViT, images: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return model(images, None, keep=(0.6, 0.5, 0.4, 0.3)).kept_masks


def test_zero_noise_trains_on_exactly_the_inference_selection():
    images = torch.randn(2, 3, 128, 128)
    model = _backbone(0.0)
    inference = _kept(model.eval(), images)
    training = _kept(model.train(), images)  # masked training path, first frame: selective stages only
    assert [m.sum().item() for m in training] == [m.sum().item() for m in inference]
    for a, b in zip(training, inference):
        assert torch.equal(a, b)
    noisy = _backbone(10.0).train()
    assert any(not torch.equal(a, b) for a, b in zip(_kept(noisy, images), inference))


def test_noise_is_a_checked_constructor_option_and_a_config_key():
    with pytest.raises(ValueError, match="selection_noise"):
        _backbone(-0.5)
    cfg = VPPConfig.for_variant("tiny", num_classes=3, selection_noise=0.3, input_long_side=64)
    assert build_vpp(cfg).backbone.selection_noise == 0.3
    assert VPPConfig().selection_noise == 0.1
    with pytest.raises(ConfigError, match="selection_noise"):
        VPPConfig.for_variant("tiny", selection_noise=11.0)
    with pytest.raises(ConfigError, match="selection_noise"):
        VPPConfig.for_variant("tiny", selection_noise="high")
