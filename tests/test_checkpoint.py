"""Checkpoints: safetensors + JSON round trip, clear errors for wrong shapes and bad files."""

from __future__ import annotations

import json

import pytest
import torch

from core.errors import CheckpointError
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import config_path, load_checkpoint, read_config, save_checkpoint
from core.model.vpp.config import VPPConfig


def cfg(variant="tiny", **kw):
    base = dict(input_long_side=96, decoder_dim=32, num_queries=5, decoder_layers=2, decoder_ffn=64, pkr=0.5)
    return VPPConfig.for_variant(variant, **{**base, **kw})


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    c = cfg()
    model = build_vpp(c).eval()
    path = save_checkpoint(model, c, tmp_path / "m.safetensors")
    assert config_path(path).is_file()
    loaded, c2 = load_checkpoint(path)
    assert c2 == c
    x = torch.rand(1, 3, 96, 64) * 255
    with torch.no_grad():
        a, b = model(x), loaded(x)
        a2, b2 = model(x, a.backbone.state), loaded(x, b.backbone.state)
    assert torch.equal(a2.decoder.mask_logits, b2.decoder.mask_logits)


def test_config_survives_without_the_json_file(tmp_path):
    c = cfg(num_classes=3, categories=("a", "b", "c"))
    path = save_checkpoint(build_vpp(c), c, tmp_path / "m.safetensors")
    config_path(path).unlink()
    assert read_config(path) == c


def test_wrong_shape_lists_the_mismatched_keys(tmp_path):
    tiny = cfg()
    path = save_checkpoint(build_vpp(tiny), tiny, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, config=cfg("small"))
    msg = str(err.value)
    assert "tiny.safetensors" in msg and "shape mismatches" in msg
    assert "backbone.vit.patch_embed.proj.weight" in msg


def test_missing_and_unexpected_keys_are_named(tmp_path):
    c = cfg()
    path = save_checkpoint(build_vpp(c), c, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys.*unexpected keys|unexpected keys"):
        load_checkpoint(path, config=cfg(decoder_layers=3, selective_blocks=(3, 6)))


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    (tmp_path / "junk.json").write_text(json.dumps(cfg().to_dict()))
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        load_checkpoint(junk)
    (tmp_path / "junk.json").write_text(json.dumps({"variant": "tiny", "bogus": 1}))
    with pytest.raises(CheckpointError, match="bogus"):
        load_checkpoint(junk)


def test_unknown_variant_names_the_valid_ones():
    with pytest.raises(ValueError, match="small"):
        VPPConfig.for_variant("huge")


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    c = cfg()
    path = save_checkpoint(build_vpp(c), c, tmp_path / "m.safetensors")
    before = path.read_bytes()
    import core.model.vpp.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(build_vpp(c), c, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_half_checkpoint_is_smaller_and_loads_back_as_float32(tmp_path):
    torch.manual_seed(2)
    c = cfg()
    model = build_vpp(c).eval()
    full = save_checkpoint(model, c, tmp_path / "full.safetensors")
    half = save_checkpoint(model, c, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, name
        if a.is_floating_point() and a.ndim < 2:
            assert torch.equal(a, b), name  # vectors (norms, biases, pixel statistics) stay exact
        else:
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


# -- bad tensors: NaN/Inf and bytes relabelled to another dtype are refused with the tensor's name --------
QKV = "backbone.vit.blocks.0.attn.qkv.weight"  # (576, 192) in the tiny config


def relabel(src, dst, name, dtype, shape):
    """Copy a safetensors file, changing one tensor's declared dtype and shape (its bytes stay as they are)."""
    import struct

    raw = src.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header[name].update(dtype=dtype, shape=shape)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dst.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    config_path(dst).write_text(config_path(src).read_text())
    return dst


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(3)
    c = cfg()
    model = build_vpp(c)
    root = tmp_path_factory.mktemp("saved")
    return (save_checkpoint(model, c, root / "full.safetensors"),
            save_checkpoint(model, c, root / "half.safetensors", half=True))


@pytest.mark.parametrize(("which", "dtype", "shape"), [
    ("half", "I8", [576, 384]),  # float16 bytes declared int8: the byte count still fits
    ("half", "F32", [288, 192]),  # float16 bytes declared float32
    ("half", "I16", [576, 192]),  # same width, integer
    ("full", "I32", [576, 192]),
    ("full", "F8_E4M3", [576, 768]),  # float8 is not a storage dtype of float weights
    ("full", "U8", [576, 768]),
])
def test_relabelled_tensor_bytes_are_refused_with_the_name(saved, tmp_path, which, dtype, shape):
    src = saved[0] if which == "full" else saved[1]
    path = relabel(src, tmp_path / "bad.safetensors", QKV, dtype, shape)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "bad.safetensors" in msg and QKV in msg and "\n" not in msg
    if shape == [576, 192]:
        assert "dtype mismatches" in msg and dtype in msg


def test_a_declared_shape_that_does_not_fit_the_bytes_is_refused(saved, tmp_path):
    path = relabel(saved[0], tmp_path / "bad.safetensors", QKV, "F16", [576, 192])  # half the bytes it has
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: not a readable safetensors file"):
        load_checkpoint(path)


@pytest.mark.parametrize(("which", "value", "what"), [
    ("full", float("nan"), "1 NaN"), ("full", float("inf"), "1 Inf"), ("half", float("-inf"), "1 Inf"),
    ("f64", 1e300, "1 Inf"),  # finite as float64, infinite once cast to the model's float32
])
def test_nan_and_inf_weights_are_refused_with_the_name(saved, tmp_path, which, value, what):
    from safetensors.torch import load_file, save_file

    src = saved[1] if which == "half" else saved[0]
    state = {k: v.clone() for k, v in load_file(str(src)).items()}
    if which == "f64":
        state[QKV] = state[QKV].double()
    state[QKV][3, 4] = value
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    config_path(path).write_text(config_path(src).read_text())
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert f"{QKV} (" in msg and what in msg and "NaN or Inf" in msg and "bad.safetensors" in msg


def test_float64_and_bfloat16_storage_still_loads(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved[0]))
    for dtype in (torch.float64, torch.bfloat16):
        path = tmp_path / f"{dtype}.safetensors".replace("torch.", "")
        save_file({k: v.to(dtype) for k, v in state.items()}, str(path))
        config_path(path).write_text(config_path(saved[0]).read_text())
        model, _ = load_checkpoint(path)
        assert all(v.dtype == torch.float32 for v in model.state_dict().values())
