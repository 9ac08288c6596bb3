"""The release-compatible selection (``selection="release"``) next to the static top-k one (``"topk"``).

The reference here is written from the release's code (PatGlan/Video-Patch-Pruning head bf74be2,
``custom_mmdet/models/backbones/map_selective_module.py``, ``selective_module.py``, ``adapter_modules.py``), not from
``core.model.backbone``: a token-by-token re-run of the ViT that calls Map-SM's and the selective modules' MLPs
directly and makes the decisions in NumPy (Map-SM: replicate-pad + 9x9 average of *both* log-probabilities, softmax,
the first ``int(N * keep)`` by keep probability; gates: keep where p(keep) >= 0.5, among the tokens still kept).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.errors import CheckpointError
from core.model.backbone import PrunedViT
from core.model.map_sm import MapSM, background_positions
from core.model.release.builder import build_release_model
from core.model.release.checkpoint import (
    load_release_checkpoint,
    read_release_file,
    save_release_checkpoint,
    sidecar_path,
)
from core.model.release.config import ReleaseConfig
from core.model.selective import SelectiveModule
from core.model.vit import VisionTransformer

KEEP = (0.7, 0.56, 0.448, 0.358)  # the release's PKR-0.55 schedule; "release" uses only the Map-SM value
DIM = 32


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_backbone(*, background_share: float = 0.0, seed: int = 0, spread: float = 30.0) -> PrunedViT:
    """Random weights; Map-SM's last layer scaled by ``spread`` so its logits spread (near 0 the two Map-SM scores
    rank alike, and a test could not tell them apart)."""
    torch.manual_seed(seed)
    vit = VisionTransformer(embed_dim=DIM, depth=12, num_heads=2, pos_grid=(14, 14))
    sel = {b: SelectiveModule(DIM, hidden=DIM // 4) for b in (3, 6, 9)}
    map_sm = MapSM(DIM)
    with torch.no_grad():
        map_sm.fc2.weight.mul_(spread)
    return PrunedViT(vit, map_sm, sel, background_share=background_share).eval()


@pytest.fixture(scope="module")
def backbone() -> PrunedViT:
    return make_backbone()


def frame(seed: int, h: int = 128, w: int = 160, b: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, h, w, generator=g)


def clip(bb: PrunedViT, seeds, **run):
    outs, state = [], None
    with torch.no_grad():
        for s in seeds:
            out = bb(frame(s), state, **run)
            outs.append(out)
            state = out.state
    return outs


# --- the reference ----------------------------------------------------------------------------------------------

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def ref_map_sm_keep(logp: np.ndarray, grid: tuple[int, int], k: int, window: int = 9) -> np.ndarray:
    """``logp`` ``[N, 2]`` undilated (keep, drop) -> bool ``[N]``: the release's top-k after pooling both channels."""
    gh, gw = grid
    pad = window // 2
    pooled = []
    for ch in range(2):
        m = np.pad(logp[:, ch].reshape(gh, gw), pad, mode="edge")  # ReplicationPad2d
        win = np.lib.stride_tricks.sliding_window_view(m, (window, window))
        pooled.append(win.mean(axis=(-1, -2)).reshape(-1))  # AvgPool2d(9, stride=1)
    f = np.stack(pooled, axis=-1)
    p_keep = np.exp(f[:, 0]) / np.exp(f).sum(-1)  # softmax (no Gumbel noise)
    keep = np.zeros(len(p_keep), dtype=bool)
    keep[np.argsort(-p_keep, kind="stable")[:k]] = True
    return keep


def ref_gate(logp: np.ndarray) -> np.ndarray:
    """``[n, 2]`` (keep, drop) log-probabilities -> bool ``[n]``: p(keep) >= 0.5, at least one token."""
    p_keep = 1.0 / (1.0 + np.exp(logp[:, 1] - logp[:, 0]))
    keep = p_keep >= 0.5
    if not keep.any():
        keep[np.argmax(logp[:, 0])] = True
    return keep


def reference(bb: PrunedViT, images: torch.Tensor, state, keep=KEEP):
    """Masks after each prune point, tokens per block, the dense map after every block (``[1, N, C]``)."""
    vit = bb.vit
    with torch.no_grad():
        x, grid = vit.embed(images)
        full = vit.blocks[0](x)
        n_all = full.shape[1]
        alive = np.ones(n_all, dtype=bool)
        masks, counts, maps = [], [n_all], {0: full.clone()}
        for i in range(1, len(vit.blocks)):
            if i == 1:
                if state is not None:
                    logp = bb.map_sm.log_probs(full, state.tokens0, state.deep, state.kept, grid)[0]
                    alive = ref_map_sm_keep(_np(logp), grid, int(n_all * keep[0]))
                masks.append(alive.copy())
            elif i in (3, 6, 9):
                idx = np.flatnonzero(alive)
                logp = bb.selective[str(i)].log_probs(full[:, torch.from_numpy(idx)])[0]
                alive = np.zeros(n_all, dtype=bool)
                alive[idx[ref_gate(_np(logp))]] = True  # only the tokens still kept can stay
                masks.append(alive.copy())
            idx = torch.from_numpy(np.flatnonzero(alive))
            full = full.clone()
            full[:, idx] = vit.blocks[i](full[:, idx])
            counts.append(len(idx))
            maps[i] = full.clone()
    return masks, counts, maps


# --- release mode -------------------------------------------------------------------------------------------------

def test_release_kept_counts_depend_on_the_frame(backbone):
    counts = [out.tokens_per_block for out in clip(backbone, [1, 2, 3], keep=KEEP, selection="release")]
    n = counts[0][0]
    later = {tuple(c[3:]) for c in counts[1:]}  # frames with Map-SM
    assert len(later) == 2, counts  # two different frames keep different numbers of tokens
    for c in counts[1:]:
        assert c[1] == c[2] == int(n * KEEP[0])  # Map-SM: the release's fixed count
    # the gates are thresholds, not the keep fractions' counts
    topk = clip(backbone, [1, 2, 3], keep=KEEP)
    assert all(c[3:] != t.tokens_per_block[3:] for c, t in zip(counts, topk))


def test_release_equals_a_numpy_recomputation_of_the_thresholds(backbone):
    state = None
    for s in (4, 5, 6):
        images = frame(s)
        masks, counts, maps = reference(backbone, images, state)
        with torch.no_grad():
            out = backbone(images, state, keep=KEEP, selection="release")
        got = [m[0].numpy() for m in out.kept_masks]
        for j, (a, b) in enumerate(zip(got, masks)):
            assert np.array_equal(a, b), f"frame {s}, prune point {j}"
        assert out.tokens_per_block == counts
        assert any(c < counts[0] for c in counts[3:])  # the gates did drop tokens
        for f, j in zip(out.features, backbone.out_indices):
            torch.testing.assert_close(f, maps[j], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.state.deep, maps[backbone.deep_block], rtol=1e-5, atol=1e-5)
        state = out.state


def test_release_map_sm_ranking_is_not_the_topk_ranking():
    """The two Map-SM scores differ (pooled keep log-probability vs softmax of both pooled) once the logits spread
    (near 0, log-sigmoid is almost linear and the rankings agree)."""
    backbone = make_backbone()
    outs = clip(backbone, [7, 8], keep=KEEP)
    with torch.no_grad():
        x, grid = backbone.vit.embed(frame(8))
        x = backbone.vit.blocks[0](x)
        st = outs[0].state
        ours = backbone.map_sm(x, st.tokens0, st.deep, st.kept, grid)
        rel = backbone.map_sm.release_scores(x, st.tokens0, st.deep, st.kept, grid)
        logp = backbone.map_sm.log_probs(x, st.tokens0, st.deep, st.kept, grid)
    k = int(x.shape[1] * KEEP[0])
    want = ref_map_sm_keep(_np(logp[0]), grid, k)
    assert np.array_equal(_np(rel[0]) >= np.sort(_np(rel[0]))[-k], want)
    assert not np.array_equal(_np(ours[0]) >= np.sort(_np(ours[0]))[-k], want)


def test_release_forces_no_background_lattice():
    bb = make_backbone(background_share=0.5)
    outs = clip(bb, [1, 2], keep=KEEP, selection="release")
    with torch.no_grad():
        x, grid = bb.vit.embed(frame(2))
        x = bb.vit.blocks[0](x)
        st = outs[0].state
        scores = bb.map_sm.release_scores(x, st.tokens0, st.deep, st.kept, grid)[0]
    n = x.shape[1]
    k = int(n * KEEP[0])
    pure = torch.zeros(n, dtype=torch.bool)
    pure[scores.topk(k).indices] = True
    assert torch.equal(outs[1].kept_masks[0][0], pure)
    lattice = background_positions(grid, int(k * 0.5), 1)
    assert not pure[lattice].all()  # the lattice would have changed the set ...
    topk = clip(bb, [1, 2], keep=KEEP)
    assert topk[1].kept_masks[0][0][lattice].all()  # ... as it does in "topk"


def test_release_is_deterministic_bit_for_bit(backbone):
    a = clip(backbone, [1, 2, 3], keep=KEEP, selection="release")
    b = clip(backbone, [1, 2, 3], keep=KEEP, selection="release")
    for x, y in zip(a, b):
        assert x.tokens_per_block == y.tokens_per_block
        assert all(torch.equal(m, n) for m, n in zip(x.kept_masks, y.kept_masks))
        assert all(torch.equal(f, g) for f, g in zip(x.features, y.features))
        assert torch.equal(x.state.kept, y.state.kept)


def test_release_runs_only_the_kept_tokens_and_restores_dense_maps(backbone):
    seen: dict[int, int] = {}
    handles = [blk.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0].shape[1]))
               for i, blk in enumerate(backbone.vit.blocks)]
    try:
        outs = clip(backbone, [1, 2], keep=KEEP, selection="release")
    finally:
        for h in handles:
            h.remove()
    out = outs[1]
    assert [seen[i] for i in range(12)] == out.tokens_per_block  # the gathered sequence, not masks
    n = out.tokens_per_block[0]
    for j, m in enumerate(out.kept_masks):
        first = backbone.prune_points[j]
        assert int(m.sum()) == out.tokens_per_block[first]
        if j:
            assert not (m & ~out.kept_masks[j - 1]).any()  # a dropped token stays dropped
    assert all(tuple(f.shape) == (1, n, DIM) for f in out.features)
    assert out.state.deep.shape == (1, n, DIM) and out.state.kept.shape == (1, out.tokens_per_block[5])
    assert out.keep_ratio == pytest.approx(sum(out.tokens_per_block) / (12 * n))


def test_a_gate_that_would_drop_everything_keeps_one_token_and_a_gate_cannot_reactivate():
    bb = make_backbone(seed=3)
    with torch.no_grad():
        bb.selective["6"].fc2.bias.copy_(torch.tensor([100.0, -100.0]))  # keeps everything it sees
        bb.selective["9"].fc2.bias.copy_(torch.tensor([-100.0, 100.0]))  # would keep nothing
        out = bb(frame(1), keep=KEEP, selection="release")
    c = out.tokens_per_block
    assert c[1] == c[2] == c[0]  # first frame: no Map-SM
    assert c[3] < c[0] and c[6] == c[3] and c[9] == 1
    assert torch.equal(out.kept_masks[2], out.kept_masks[1])  # keeping all of the survivors adds nothing back
    kept9 = out.kept_masks[3][0].nonzero().view(-1)
    survivors = out.kept_masks[2][0].nonzero().view(-1)
    assert kept9.item() in survivors.tolist()


def test_dense_and_random_modes_and_keep_none_ignore_the_selection(backbone):
    for run in (dict(mode="dense", keep=KEEP), dict(mode="random", keep=KEEP), dict(keep=None)):
        a = clip(backbone, [1, 2], **run)
        b = clip(backbone, [1, 2], selection="release", **run)
        for x, y in zip(a, b):
            assert x.tokens_per_block == y.tokens_per_block
            assert all(torch.equal(f, g) for f, g in zip(x.features, y.features))


def test_release_selection_is_validated(backbone):
    with torch.no_grad(), pytest.raises(ValueError, match="unknown selection 'gates'"):
        backbone(frame(1), keep=KEEP, selection="gates")
    with torch.no_grad(), pytest.raises(ValueError, match="batch 1"):
        backbone(frame(1, b=2), keep=KEEP, selection="release")
    bb = make_backbone()
    bb.train()
    with pytest.raises(ValueError, match="inference rule"):
        bb(frame(1), keep=KEEP, selection="release")


# --- topk unchanged -----------------------------------------------------------------------------------------------

def test_topk_is_the_default_bit_for_bit(backbone):
    a = clip(backbone, [1, 2, 3], keep=KEEP)
    b = clip(backbone, [1, 2, 3], keep=KEEP, mode="vpp", selection="topk")
    for x, y in zip(a, b):
        assert x.tokens_per_block == y.tokens_per_block and x.flops == y.flops
        assert all(torch.equal(m, n) for m, n in zip(x.kept_masks, y.kept_masks))
        assert all(torch.equal(f, g) for f, g in zip(x.features, y.features))
    n = a[0].tokens_per_block[0]
    assert a[1].tokens_per_block[3] == int(n * KEEP[1])  # static counts


def test_topk_map_sm_score_is_the_dilated_keep_log_probability(backbone):
    outs = clip(backbone, [1], keep=KEEP)
    with torch.no_grad():
        x, grid = backbone.vit.embed(frame(2))
        x = backbone.vit.blocks[0](x)
        st = outs[0].state
        got = backbone.map_sm(x, st.tokens0, st.deep, st.kept, grid)
        logp = backbone.map_sm.log_probs(x, st.tokens0, st.deep, st.kept, grid)
        sel = backbone.selective["3"]
    assert torch.equal(got, backbone.map_sm.dilate(logp[..., 0], grid))
    assert torch.equal(sel(x), sel.log_probs(x)[..., 0])


# --- the release model and its file -------------------------------------------------------------------------------

def small_release(**kw):
    torch.manual_seed(0)
    return build_release_model(
        "tiny", embed_dim=DIM, num_heads=2, deform_num_heads=2, conv_inplane=8, feat_channels=32, out_channels=32,
        num_queries=6, num_classes=3, encoder_layers=1, encoder_ffn=32, decoder_layers=1, decoder_ffn=32, **kw,
    ).eval()


def test_release_config_validates_and_defaults_selection():
    assert ReleaseConfig().selection == "topk"
    assert ReleaseConfig(selection="release").to_dict()["selection"] == "release"
    old = ReleaseConfig().to_dict()
    del old["selection"]
    assert ReleaseConfig.from_dict(old).selection == "topk"
    with pytest.raises(ValueError, match="selection must be one of topk, release"):
        ReleaseConfig(selection="threshold")


def test_release_model_runs_its_configs_selection_unless_told_otherwise():
    model = small_release(selection="release")
    g = torch.Generator().manual_seed(1)
    frames = [torch.rand(1, 3, 128, 160, generator=g) * 255 for _ in range(2)]

    def run(**kw):
        outs, state = [], None
        with torch.no_grad():
            for f in frames:
                out = model(f, state, keep=KEEP, **kw)
                outs.append(out)
                state = out.state
        return outs

    default, release, topk = run(), run(selection="release"), run(selection="topk")
    for d, r, t in zip(default, release, topk):
        assert d.backbone.tokens_per_block == r.backbone.tokens_per_block
        assert torch.equal(d.mask_logits, r.mask_logits)
        assert d.backbone.tokens_per_block != t.backbone.tokens_per_block
        assert [f.shape for f in d.adapter.features] == [f.shape for f in t.adapter.features]
        assert d.mask_logits.shape == t.mask_logits.shape
    model.config = model.config.replace(selection="topk")
    assert run()[1].backbone.tokens_per_block == topk[1].backbone.tokens_per_block


CATS = [(1, "a"), (2, "b"), (3, "c")]


def test_the_sidecar_round_trips_the_selection(tmp_path):
    model = small_release(selection="release")
    path = save_release_checkpoint(model, tmp_path / "m.safetensors", categories=CATS)
    assert json.loads(sidecar_path(path).read_text())["config"]["selection"] == "release"
    assert read_release_file(path).selection == "release"
    loaded, info = load_release_checkpoint(path)
    assert loaded.config.selection == "release" and info.config.selection == "release"

    path2 = save_release_checkpoint(model, tmp_path / "t.safetensors", categories=CATS, selection="topk")
    assert read_release_file(path2).selection == "topk"
    with pytest.raises(ValueError, match="selection must be one of"):
        save_release_checkpoint(model, tmp_path / "x.safetensors", categories=CATS, selection="gates")


def test_a_file_without_a_selection_means_topk_and_a_bad_one_is_refused(tmp_path):
    model = small_release(selection="release")
    path = save_release_checkpoint(model, tmp_path / "m.safetensors", categories=CATS)
    side = sidecar_path(path)
    data = json.loads(side.read_text())
    del data["config"]["selection"]  # written before the selection was recorded
    side.write_text(json.dumps(data))
    assert read_release_file(path).selection == "topk"
    assert load_release_checkpoint(path)[0].config.selection == "topk"
    data["config"]["selection"] = "gates"
    side.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="selection must be one of"):
        read_release_file(path)
