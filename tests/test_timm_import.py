"""timm ViT checkpoints -> our VisionTransformer (core.model.timm_import) and ``vpp train --init-backbone``.

The timm models have random weights (seeded, every tensor perturbed so no two norms or biases are alike). Our ViT
has no cls token (as ViT-Adapter, the paper's backbone): it is compared with timm's own modules run on the patch
tokens, and, through timm's API (``forward_intermediates``), with a timm ViT built with ``class_token=False``.
"""

from __future__ import annotations

import functools
import json
import pickle
from pathlib import Path

import pytest
import timm
import timm.models.vision_transformer as timm_vit
import torch
from safetensors.torch import save_file

import core.training.trainer as trainer_module
from core.cli import main
from core.data.synthetic import write_synthetic_dataset
from core.errors import CheckpointError, ConfigError
from core.model.timm_import import TIMM_LAYERNORM_EPS, convert_timm_vit, read_backbone_file
from core.model.vit import VisionTransformer
from core.model.vpp.checkpoint import load_checkpoint
from core.training.trainer import TrainConfig

TINY = dict(embed_dim=192, depth=12, num_heads=3)
ATOL = 1e-5


def timm_model(seed: int = 0, **kwargs) -> torch.nn.Module:
    """``vit_tiny_patch16_224`` with random weights; every tensor gets its own noise (norms and biases included)."""
    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, **kwargs).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def ours_from(sd, **kw) -> tuple[VisionTransformer, object]:
    widths = {**TINY, **kw}
    state, report = convert_timm_vit(sd, **widths)
    vit = VisionTransformer(embed_dim=widths["embed_dim"], depth=widths["depth"], num_heads=widths["num_heads"],
                            pos_grid=report.pos_grid).eval()
    vit.load_state_dict(state, strict=True)
    return vit, report


def timm_blocks_on_patch_tokens(model, images: torch.Tensor, prefix_rows: int) -> torch.Tensor:
    """timm's patch_embed -> + pos_embed (patch rows) -> norm_pre -> blocks, without prefix tokens and final norm."""
    x = model.patch_embed(images)
    x = x + model.pos_embed[:, prefix_rows:]
    x = model.norm_pre(x)
    for blk in model.blocks:
        x = blk(x)
    return x


def images(h: int, w: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.fixture(scope="module")
def cls_model():
    return timm_model()


@pytest.fixture(scope="module")
def cls_files(cls_model, tmp_path_factory):
    """The same state dict as .safetensors, as a DeiT-style ``{"model": sd}`` .pth and as ``{"state_dict": sd}``."""
    root = tmp_path_factory.mktemp("timm")
    sd = {k: v.detach().clone().contiguous() for k, v in cls_model.state_dict().items()}
    save_file(sd, str(root / "vit_tiny.safetensors"))
    torch.save({"model": sd}, root / "deit_tiny.pth")
    torch.save({"state_dict": sd, "meta": {"epoch": 300}}, root / "wrapped.bin")
    return {"safetensors": root / "vit_tiny.safetensors", "deit": root / "deit_tiny.pth",
            "state_dict": root / "wrapped.bin"}


# --- the forward after the import -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["safetensors", "deit", "state_dict"])
def test_a_timm_file_imports_and_our_vit_computes_timms_blocks_at_224(cls_model, cls_files, kind):
    state, report = read_backbone_file(cls_files[kind], **TINY)
    assert report.layout == "timm" and report.prefix_rows == 1 and report.source_grid == report.pos_grid == (14, 14)
    assert sorted(report.unused) == ["cls_token", "head.bias", "head.weight", "norm.bias", "norm.weight"]
    assert report.mapped == len(state) == 2 + 1 + 12 * 12
    sd = cls_model.state_dict()
    assert torch.equal(state["pos_embed.weight"], sd["pos_embed"][:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2))
    assert torch.equal(state["blocks.7.mlp.fc2.weight"], sd["blocks.7.mlp.fc2.weight"])
    vit = VisionTransformer(**TINY, pos_grid=report.pos_grid).eval()
    vit.load_state_dict(state, strict=True)
    # the LayerNorm eps: timm's ViT and ours both use 1e-6
    assert {m.eps for m in cls_model.modules() if isinstance(m, torch.nn.LayerNorm)} == {TIMM_LAYERNORM_EPS}
    assert {m.eps for m in vit.modules() if isinstance(m, torch.nn.LayerNorm)} == {TIMM_LAYERNORM_EPS}
    x = images(224, 224)
    with torch.no_grad():
        ours, want = vit(x), timm_blocks_on_patch_tokens(cls_model, x, prefix_rows=1)
        assert max_diff(ours, want) < ATOL
        # timm's own forward lets the patch tokens attend to the cls token, which our ViT has not: not the same
        with_cls = cls_model.forward_intermediates(x, indices=[11], norm=False, output_fmt="NLC",
                                                   intermediates_only=True)[0]
    assert max_diff(ours, with_cls) > 1e-3


@pytest.fixture(scope="module")
def no_cls_model():
    return timm_model(seed=5, class_token=False, global_pool="avg", dynamic_img_size=True)


def test_a_timm_vit_without_cls_token_equals_ours_through_timms_forward_intermediates(no_cls_model):
    vit, report = ours_from(no_cls_model.state_dict())
    assert report.prefix_rows == 0 and "fc_norm.weight" in report.unused
    x = images(224, 224)
    with torch.no_grad():
        want = no_cls_model.forward_intermediates(x, indices=[11], norm=False, output_fmt="NLC",
                                                  intermediates_only=True)[0]
        features = no_cls_model.forward_features(x)  # = timm's final norm of the same tokens
        assert max_diff(vit(x), want) < ATOL
        assert max_diff(no_cls_model.norm(vit(x)), features) < ATOL


def test_at_160x224_both_resize_the_position_table_timm_with_antialiasing(no_cls_model, monkeypatch):
    vit, _ = ours_from(no_cls_model.state_dict())
    x = images(160, 224)

    def timm_features():
        return no_cls_model.forward_intermediates(x, indices=[11], norm=False, output_fmt="NLC",
                                                  intermediates_only=True)[0]

    with torch.no_grad():
        ours, timm_aa = vit(x), timm_features()
        # timm resamples with antialiased bicubic, we with plain bicubic: the tables differ, so the features do
        assert max_diff(ours, timm_aa) > 1e-3
        # timm's own forward with only its resampling made plain bicubic computes exactly ours
        plain = functools.partial(timm_vit.resample_abs_pos_embed, antialias=False)
        monkeypatch.setattr(timm_vit, "resample_abs_pos_embed", plain)
        assert max_diff(ours, timm_features()) < ATOL


@pytest.mark.parametrize(("kwargs", "rows"), [
    ({"reg_tokens": 4, "no_embed_class": True}, 0),  # the *_reg4 models: no table rows for cls / registers
    ({"reg_tokens": 4}, 5),  # cls + 4 registers with table rows
    ({"qkv_bias": False}, 1),  # zero qkv biases filled in
])
def test_prefix_tokens_and_missing_qkv_bias(kwargs, rows):
    model = timm_model(seed=7, depth=2, **kwargs)
    vit, report = ours_from(model.state_dict(), depth=2)
    assert report.prefix_rows == rows and report.pos_grid == (14, 14)
    assert ("reg_token" in report.unused) == ("reg_tokens" in kwargs)
    assert bool(report.filled) == ("qkv_bias" in kwargs)
    x = images(224, 224)
    with torch.no_grad():
        assert max_diff(vit(x), timm_blocks_on_patch_tokens(model, x, rows)) < ATOL


def test_a_distilled_deit_drops_cls_and_distillation_rows():
    torch.manual_seed(0)
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, depth=2).eval()
    vit, report = ours_from(model.state_dict(), depth=2)
    assert report.prefix_rows == 2 and {"dist_token", "head_dist.weight"} <= set(report.unused)
    x = images(224, 224)
    with torch.no_grad():
        assert max_diff(vit(x), timm_blocks_on_patch_tokens(model, x, 2)) < ATOL


def test_pos_grid_resizes_the_table_and_says_so(cls_model):
    state, report = convert_timm_vit(cls_model.state_dict(), **TINY, pos_grid=(32, 32))
    assert state["pos_embed.weight"].shape == (1, 192, 32, 32) and report.source_grid == (14, 14)
    assert any("resized" in n for n in report.notes)


# --- refusals name the key ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_block_sd():
    return {k: v.detach().clone() for k, v in timm_model(seed=9, depth=2).state_dict().items()}


def test_widths_depth_and_unknown_parts_are_refused_naming_the_key(two_block_sd):
    with pytest.raises(CheckpointError, match=r"patch_embed\.proj\.weight is 192 wide, the model's ViT 384"):
        convert_timm_vit(two_block_sd, embed_dim=384, depth=2, num_heads=6)
    with pytest.raises(CheckpointError, match=r"2 blocks \(blocks\.0 \.\. blocks\.1\), the model's ViT 12 \(depth\)"):
        convert_timm_vit(two_block_sd, **TINY)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.fc1\.weight: file \(768, 192\) vs model \(384, 192\)"):
        convert_timm_vit(two_block_sd, embed_dim=192, depth=2, num_heads=3, mlp_ratio=2.0)
    with pytest.raises(CheckpointError, match=r"16x16 patches, the model's ViT 8x8"):
        convert_timm_vit(two_block_sd, embed_dim=192, depth=2, num_heads=3, patch=8)
    scaled = {k: v for k, v in timm_model(seed=9, depth=2, init_values=1e-5).state_dict().items()}
    with pytest.raises(CheckpointError, match=r"blocks\.0\.ls1\.gamma \(layer scale\)"):
        convert_timm_vit(scaled, embed_dim=192, depth=2, num_heads=3)
    missing = {k: v for k, v in two_block_sd.items() if k != "blocks.1.norm2.bias"}
    with pytest.raises(CheckpointError, match=r"not in the file: blocks\.1\.norm2\.bias"):
        convert_timm_vit(missing, embed_dim=192, depth=2, num_heads=3)
    broken = {**two_block_sd, "blocks.1.attn.proj.weight": two_block_sd["blocks.1.attn.proj.weight"].clone()}
    broken["blocks.1.attn.proj.weight"][0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"NaN or Inf values: blocks\.1\.attn\.proj\.weight"):
        convert_timm_vit(broken, embed_dim=192, depth=2, num_heads=3)
    odd = {**two_block_sd, "pos_embed": two_block_sd["pos_embed"][:, :-3]}
    with pytest.raises(CheckpointError, match=r"pos_embed has 194 rows: not a square grid"):
        convert_timm_vit(odd, embed_dim=192, depth=2, num_heads=3)


class _Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_files_are_read_safely(two_block_sd, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"model": {"x": _Marker(marker)}}))
    with pytest.raises(CheckpointError, match=r"evil\.pth.*refusing|refusing.*evil\.pth"):
        read_backbone_file(evil, embed_dim=192, depth=2, num_heads=3)
    assert not marker.exists()
    (tmp_path / "w.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"w\.npz: unknown backbone file type '\.npz'"):
        read_backbone_file(tmp_path / "w.npz", embed_dim=192, depth=2, num_heads=3)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: not a readable safetensors file"):
        read_backbone_file(tmp_path / "junk.safetensors", embed_dim=192, depth=2, num_heads=3)
    torch.save({"model": two_block_sd}, tmp_path / "deit.pth")
    with pytest.raises(CheckpointError, match=r"deit\.pth: the file has 2 blocks"):
        read_backbone_file(tmp_path / "deit.pth", **TINY)


# --- the release / COCO-pretrained Mask2Former layout --------------------------------------------------------------

_TEL = {"attn.qkv.weight": "self_attn.in_proj_weight", "attn.qkv.bias": "self_attn.in_proj_bias",
        "attn.proj.weight": "self_attn.out_proj.weight", "attn.proj.bias": "self_attn.out_proj.bias",
        "mlp.fc1.weight": "linear1.weight", "mlp.fc1.bias": "linear1.bias", "mlp.fc2.weight": "linear2.weight",
        "mlp.fc2.bias": "linear2.bias", "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
        "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias"}


def coco_layout(timm_sd, *, prefix: str = "", vpp_blocks: bool = False) -> dict[str, torch.Tensor]:
    """The ViT of ``timm_sd`` as a ViT-Adapter Mask2Former backbone (no cls_token), plus adapter and head tensors."""
    sd = {}
    for k, v in timm_sd.items():
        if k in ("cls_token", "norm.weight", "norm.bias", "head.weight", "head.bias"):
            continue
        if vpp_blocks and k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            k = f"blocks.{i}.TransformerEncoderLayer.{_TEL[rest]}"
        sd[f"{prefix}backbone.{k}"] = v
    gen = torch.Generator().manual_seed(0)
    for k, shape in (("backbone.level_embed", (3, 192)), ("backbone.spm.stem.0.weight", (64, 3, 3, 3)),
                     ("backbone.interactions.0.injector.gamma", (192,)), ("backbone.norm1.weight", (192,)),
                     ("panoptic_head.cls_embed.weight", (81, 256)), ("panoptic_head.query_feat.weight", (100, 256))):
        sd[prefix + k] = torch.randn(shape, generator=gen)
    return sd


def test_a_coco_mask2former_file_initialises_only_the_vit(two_block_sd, tmp_path):
    want, _ = convert_timm_vit(two_block_sd, embed_dim=192, depth=2, num_heads=3)
    torch.save({"state_dict": coco_layout(two_block_sd), "meta": {"epoch": 50}}, tmp_path / "coco.pth")
    state, report = read_backbone_file(tmp_path / "coco.pth", embed_dim=192, depth=2, num_heads=3)
    assert report.layout == "release" and report.prefix_rows == 1
    assert state.keys() == want.keys() and all(torch.equal(state[k], want[k]) for k in want)
    assert {"backbone.level_embed", "backbone.spm.stem.0.weight", "panoptic_head.cls_embed.weight"} <= set(
        report.unused)
    assert any("only its ViT initialises ours" in n and "80 classes" in n for n in report.notes)


def test_a_release_file_with_vpp_blocks_maps_them_and_notes_the_eps(two_block_sd, tmp_path):
    want, _ = convert_timm_vit(two_block_sd, embed_dim=192, depth=2, num_heads=3)
    save_file(coco_layout(two_block_sd, prefix="detector.", vpp_blocks=True), str(tmp_path / "vpp.safetensors"))
    state, report = read_backbone_file(tmp_path / "vpp.safetensors", embed_dim=192, depth=2, num_heads=3)
    assert all(torch.equal(state[k], want[k]) for k in want)
    assert any("eps 1e-5" in n for n in report.notes)


# --- vpp train --init-backbone -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    split = write_synthetic_dataset(root, train_videos=2, val_videos=0, width=64, height=48, frames=3, seed=1)
    return split["train"], split["train"].parent / "JPEGImages"


def train_argv(shapes, out, *extra):
    ann, imgs = shapes
    return ["train", "--train-ann", str(ann), "--train-images", str(imgs), "--out", str(out), "--dense-steps", "1",
            "--sparse-steps", "1", "--batch-size", "1", "--clip-len", "2", "--checkpoint-every", "2",
            "--device", "cpu",
            "--model", json.dumps({"input_long_side": 64, "decoder_dim": 32, "num_queries": 4, "decoder_layers": 1,
                                   "decoder_ffn": 32}), *extra]


def test_vpp_train_init_backbone_starts_from_the_imported_weights(shapes, cls_files, tmp_path, monkeypatch, capsys):
    imported, _ = read_backbone_file(cls_files["deit"], **TINY)
    seen = {}
    original = trainer_module.Trainer.train

    def train(self, *args, **kwargs):
        seen["before"] = {k: v.detach().clone() for k, v in self.model.backbone.vit.state_dict().items()}
        return original(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "train", train)
    out = tmp_path / "run"
    assert main(train_argv(shapes, out, "--init-backbone", str(cls_files["deit"]))) == 0
    log = capsys.readouterr().out
    assert "init_backbone" in log and "layout: timm" in log
    before = seen["before"]
    assert before.keys() == imported.keys()
    assert all(torch.equal(before[k], imported[k]) for k in imported)  # step 1 starts from the file's ViT
    trained, cfg = load_checkpoint(out / "last.safetensors")
    assert cfg.pos_grid == (14, 14)  # the file's grid, so the ViT computes timm's at 224 x 224
    after = trained.backbone.vit.state_dict()
    assert any(not torch.equal(after[k], imported[k]) for k in imported)  # and it trained from there


def test_vpp_train_init_backbone_refusals(shapes, cls_files, tmp_path, capsys):
    out = tmp_path / "small"
    assert main(train_argv(shapes, out, "--variant", "small", "--init-backbone", str(cls_files["safetensors"]))) == 2
    err = capsys.readouterr().err
    assert "vit_tiny.safetensors" in err and "patch_embed.proj.weight is 192 wide, the model's ViT 384" in err
    assert not out.exists()  # refused before anything is written
    assert main(train_argv(shapes, tmp_path / "b", "--init-backbone", str(tmp_path / "nope.pth"))) == 2
    assert "nope.pth: not found (given as init_backbone)" in capsys.readouterr().err
    base = {"train_ann": "a", "train_images": "b", "out_dir": "c"}
    with pytest.raises(ConfigError, match="init and init_backbone are both given"):
        TrainConfig.from_dict({**base, "init": "m.safetensors", "init_backbone": "vit.pth"})
    with pytest.raises(ConfigError, match=r"init_backbone = 5: must be a non-empty string or null"):
        TrainConfig.from_dict({**base, "init_backbone": 5})
