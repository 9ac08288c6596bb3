"""Importing the authors' released checkpoints: key names, widths, the command, refusals, and an end-to-end run.

The release-side state dicts are written here from this project's modules renamed back to the release's names by
an inverse table of this file (not ``core.model.convert``'s), with the release's shapes (Tiny 192 d, Small 384 d;
``pos_embed`` with its cls row), both block namings (VPP ``TransformerEncoderLayer`` and timm), the release's
unused Map-SM tensors, and random values; they are wrapped like mmengine's files (``state_dict``, ``meta``,
``message_hub`` with a ``HistoryBuffer``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import types
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import load_file

import core.cli
from core.commands import import_checkpoint
from core.data.categories import ytvis_categories
from core.errors import CheckpointError
from core.model.convert import convert_release_state_dict
from core.model.release.builder import build_release_model
from core.model.release.checkpoint import load_release_checkpoint, model_kind, sidecar_path
from core.model.release.config import nominal_pkr, release_keep
from core.model.rovis_tracker import RovisTracker

DIM = {"tiny": 192, "small": 384}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on the shared 2-core machine two threads contending run these forwards ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# --- ours -> the release's names (the inverse of the importer's rules, written out independently) -----------------

_VPP_BLOCK = {"attn.qkv.weight": "self_attn.in_proj_weight", "attn.qkv.bias": "self_attn.in_proj_bias",
              "attn.proj.weight": "self_attn.out_proj.weight", "attn.proj.bias": "self_attn.out_proj.bias",
              "mlp.fc1.weight": "linear1.weight", "mlp.fc1.bias": "linear1.bias",
              "mlp.fc2.weight": "linear2.weight", "mlp.fc2.bias": "linear2.bias",
              "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
              "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias"}
_HEAD = ((r"^(pixel_decoder\.encoder\.layers\.\d+\.)self_attn\.", r"\1attentions.0."),
         (r"^(pixel_decoder\.encoder\.layers\.\d+\.)ffn\.", r"\1ffns.0."),
         (r"^(transformer_decoder\.layers\.\d+\.)cross_attn\.", r"\1attentions.0."),
         (r"^(transformer_decoder\.layers\.\d+\.)self_attn\.", r"\1attentions.1."),
         (r"^(transformer_decoder\.layers\.\d+\.)ffn\.", r"\1ffns.0."))


def release_key(ours: str, naming: str) -> str:
    if ours.startswith("head."):
        k = ours.removeprefix("head.")
        for pattern, repl in _HEAD:
            k = re.sub(pattern, repl, k)
        return "detector.panoptic_head." + k
    k = ours.removeprefix("adapter.")
    if k.startswith("backbone.vit."):
        k = k.removeprefix("backbone.vit.")
        if k == "pos_embed.weight":
            k = "pos_embed"
        elif (m := re.match(r"^blocks\.(\d+)\.(.+)$", k)) and naming == "vpp":
            k = f"blocks.{m.group(1)}.TransformerEncoderLayer.{_VPP_BLOCK[m.group(2)]}"
    elif k.startswith("backbone.map_sm."):
        part, rest = k.removeprefix("backbone.map_sm.").split(".", 1)
        k = "interactions.0.matching_module." + {"norm": "norm_selector", "fc1": "selector.fc1",
                                                 "fc2": "selector.fc2"}[part] + "." + rest
    elif k.startswith("backbone.selective."):
        block, part, rest = k.removeprefix("backbone.selective.").split(".", 2)
        k = f"selective_modules.{(3, 6, 9).index(int(block))}." + {"norm": "norm", "fc1": "mlp.fc1",
                                                                   "fc2": "mlp.fc2"}[part] + "." + rest
    return "detector.backbone." + k


def release_state_dict(variant: str, naming: str, *, meta: bool = False, seed: int = 0,
                       **widths) -> tuple[OrderedDict, dict[str, str]]:
    """The release's state dict (``detector.*``) of ``variant`` and ``{release key: our key}``.

    ``meta``: shapes only. Values: small random weights, norms near 1, positive running variances, and a class
    bias that makes every query confident (so the tracker has tracks to follow).
    """
    with torch.device("meta"):
        model = build_release_model(variant, block_norm_eps=1e-5 if naming == "vpp" else 1e-6, **widths)
    dim, gen = DIM[variant], torch.Generator().manual_seed(seed)
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    ours: dict[str, str] = {}
    for k, v in model.state_dict().items():
        shape = (1, 1 + 14 * 14, dim) if k.endswith("vit.pos_embed.weight") else tuple(v.shape)
        rk = release_key(k, naming)
        ours[rk] = k
        if meta:
            sd[rk] = torch.empty(shape, dtype=v.dtype, device="meta")
        elif not v.dtype.is_floating_point:
            sd[rk] = torch.tensor(11)
        elif k.endswith("running_var"):
            sd[rk] = torch.rand(shape, generator=gen) + 0.5
        elif re.search(r"(norm\w*|gn|norms\.\d|bn|stem\.[147]|conv\d\.1)\.weight$", k):
            sd[rk] = 1.0 + 0.05 * torch.randn(shape, generator=gen)
        else:
            sd[rk] = 0.05 * torch.randn(shape, generator=gen)
    if not meta:
        bias = sd["detector.panoptic_head.cls_embed.bias"]
        bias[0], bias[-1] = 6.0, -6.0
    hid = model.adapter.backbone.map_sm.fc1.out_features
    unused = {"detector.backbone.interactions.0.matching_module.init_mlp.weight": (hid, dim),
              "detector.backbone.interactions.0.matching_module.norm_input.weight": (dim,),
              "detector.backbone.interactions.0.matching_module.norm_input.bias": (dim,)}
    for k, shape in unused.items():
        sd[k] = torch.empty(shape, device="meta") if meta else torch.randn(shape, generator=gen)
    return sd, ours


def released_value(rk: str, value: torch.Tensor) -> torch.Tensor:
    """What our tensor must be for the release's ``rk``: the pos_embed drops its cls row and becomes a map."""
    if rk == "detector.backbone.pos_embed":
        return value[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    return value


# --- an mmengine-shaped file -------------------------------------------------------------------------------------

def save_mmengine(path, state_dict) -> None:
    """torch.save ``{state_dict, meta, message_hub}`` with a stand-in ``mmengine...HistoryBuffer`` (then removed)."""
    names = ("mmengine", "mmengine.logging", "mmengine.logging.history_buffer")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}

    class HistoryBuffer:
        def __init__(self, values):
            self._log_history, self._count_history, self.max_length = list(values), [1] * len(values), 1000000

    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = "mmengine.logging.history_buffer", "HistoryBuffer"
    mods["mmengine.logging.history_buffer"].HistoryBuffer = HistoryBuffer
    sys.modules.update(mods)
    try:
        hub = {"log_scalars": {"train/loss": HistoryBuffer([1.5, 1.2])}, "runtime_info": {"epoch": 6, "iter": 9},
               "resumed_keys": {"epoch": True}}
        meta = {"epoch": 6, "iter": 9, "mmengine_version": "0.7.0", "cfg": "model = dict(type='ROVIS')"}
        state_dict = OrderedDict(state_dict)  # as mmengine's get_state_dict: module.state_dict()'s _metadata too
        state_dict._metadata = OrderedDict([("", {"version": 1}), ("detector.backbone", {"version": 1})])
        torch.save({"state_dict": state_dict, "meta": meta, "message_hub": hub}, path)
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:  # pragma: no cover - no real mmengine here
                sys.modules[n] = mod


def run_import(src, out, variant=None) -> int:
    return import_checkpoint.run(argparse.Namespace(src=str(src), out=str(out), variant=variant))


# --- key mapping, all four combinations (shapes only) -------------------------------------------------------------

@pytest.mark.parametrize("variant", ["tiny", "small"])
@pytest.mark.parametrize("naming", ["vpp", "timm"])
def test_every_release_key_maps_and_the_widths_come_from_the_shapes(variant, naming):
    sd, ours = release_state_dict(variant, naming, meta=True)
    out, report = convert_release_state_dict(sd)
    with torch.device("meta"):
        model = build_release_model(variant)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert report.variant == variant and report.block_naming == naming
    assert report.widths["embed_dim"] == DIM[variant] and report.widths["pos_grid"] == (14, 14)
    assert report.widths["block_norm_eps"] == (1e-5 if naming == "vpp" else 1e-6)
    assert report.widths["map_sm_hidden"] == DIM[variant] // 2
    assert report.widths["selective_hidden"] == DIM[variant] // 4
    assert sorted(report.unused) == sorted(k for k in sd if k not in ours)
    assert report.mapped == len(ours) and report.missing == [] and report.pruning_trained
    assert set(out) == set(ours.values())


def test_small_with_the_release_configs_widths_imports_with_the_widths_of_the_tensors():
    # the released Small configs: Map-SM hid_dim 192 // 2, selective hidden 192 // 4 (not 384 // 2, 384 // 4)
    sd, _ = release_state_dict("small", "vpp", meta=True, map_sm_hidden=96, selective_hidden=48)
    out, report = convert_release_state_dict(sd, variant="small")
    assert report.widths["map_sm_hidden"] == 96 and report.widths["selective_hidden"] == 48
    assert tuple(out["adapter.backbone.map_sm.fc1.weight"].shape) == (96, 384)
    assert any("Map-SM hidden width 96" in n for n in report.notes)
    # a Map-SM that reads 192-wide tokens (the configs' in_dim) cannot run on the 384-wide ViT: refused
    narrow = OrderedDict(sd)
    for k in ("norm_selector.weight", "norm_selector.bias"):
        narrow[f"detector.backbone.interactions.0.matching_module.{k}"] = torch.empty(192, device="meta")
    with pytest.raises(CheckpointError, match="192-wide tokens but the ViT is 384"):
        convert_release_state_dict(narrow)


def test_refusals_name_the_tensor():
    sd, _ = release_state_dict("tiny", "vpp", meta=True)
    extra = OrderedDict(sd)
    extra["detector.backbone.blocks.3.TransformerEncoderLayer.layer_scale"] = torch.empty(192, device="meta")
    with pytest.raises(CheckpointError, match=r"detector\.backbone\.blocks\.3\.TransformerEncoderLayer\.layer_scale"):
        convert_release_state_dict(extra)
    stray = OrderedDict(sd)
    stray["detector.track_head.fc.weight"] = torch.empty(2, 2, device="meta")
    with pytest.raises(CheckpointError, match=r"detector\.track_head\.fc\.weight"):
        convert_release_state_dict(stray)
    missing = OrderedDict((k, v) for k, v in sd.items() if "blocks.7.TransformerEncoderLayer.linear2.bias" not in k)
    with pytest.raises(CheckpointError, match=r"not in the checkpoint: detector\.backbone\.blocks\.7\."
                                              r"TransformerEncoderLayer\.linear2\.bias"):
        convert_release_state_dict(missing)
    timm, _ = release_state_dict("tiny", "timm", meta=True)
    mixed = OrderedDict(sd)
    mixed["detector.backbone.blocks.0.attn.qkv.weight"] = timm["detector.backbone.blocks.0.attn.qkv.weight"]
    with pytest.raises(CheckpointError, match="mixes VPP"):
        convert_release_state_dict(mixed)
    bad = OrderedDict(sd)
    bad["detector.panoptic_head.query_embed.weight"] = torch.empty(100, 128, device="meta")
    with pytest.raises(CheckpointError, match=r"query_embed\.weight: checkpoint \(100, 128\)"):
        convert_release_state_dict(bad)
    with pytest.raises(CheckpointError, match="--variant small does not fit"):
        convert_release_state_dict(sd, variant="small")


def test_a_dense_checkpoint_gets_initialised_pruning_modules_and_says_so():
    sd, _ = release_state_dict("tiny", "timm", meta=True)
    dense = OrderedDict((k, v) for k, v in sd.items() if "selective_modules" not in k and "matching_module" not in k)
    out, report = convert_release_state_dict(dense)
    assert not report.pruning_trained and report.missing
    assert all(k.startswith(("adapter.backbone.map_sm.", "adapter.backbone.selective.")) for k in report.missing)
    assert out["adapter.backbone.map_sm.fc1.weight"].device.type == "cpu"  # filled, not left out


# --- the mapped pieces against independent references ------------------------------------------------------------

def test_mapped_vpp_block_pos_embed_and_selective_module_compute_what_the_release_does():
    sd, _ = release_state_dict("tiny", "vpp", meta=True)
    g = torch.Generator().manual_seed(5)
    # block 3: the release's block is torch's nn.TransformerEncoderLayer (pre-norm, GELU, eps 1e-5)
    ref = torch.nn.TransformerEncoderLayer(192, 3, 768, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.ndim == 1 and p.shape[0] == 192 else 0.0))
    for k, v in ref.state_dict().items():
        sd[f"detector.backbone.blocks.3.TransformerEncoderLayer.{k}"] = v
    pos = torch.randn(1, 197, 192, generator=g)
    sd["detector.backbone.pos_embed"] = pos
    sel = {"norm.weight": 1 + 0.1 * torch.randn(192, generator=g), "norm.bias": 0.1 * torch.randn(192, generator=g),
           "mlp.fc1.weight": 0.1 * torch.randn(48, 192, generator=g), "mlp.fc1.bias": torch.zeros(48),
           "mlp.fc2.weight": 0.1 * torch.randn(2, 48, generator=g), "mlp.fc2.bias": torch.tensor([0.3, -0.2])}
    for k, v in sel.items():
        sd[f"detector.backbone.selective_modules.1.{k}"] = v
    out, report = convert_release_state_dict(sd)
    model = build_release_model("tiny", **report.widths).eval()
    bb = model.adapter.backbone
    prefix = "adapter.backbone.vit.blocks.3."
    bb.vit.blocks[3].load_state_dict({k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)})
    bb.vit.pos_embed.load_state_dict({"weight": out["adapter.backbone.vit.pos_embed.weight"]})
    prefix = "adapter.backbone.selective.6."
    bb.selective["6"].load_state_dict({k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)})
    x = torch.randn(2, 24, 192, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(bb.vit.blocks[3](x), ref(x), rtol=1e-4, atol=1e-4)
        quiet = x * 3e-3  # token variance ~1e-5: the LayerNorm eps (1e-5, not timm's 1e-6) matters here
        torch.testing.assert_close(bb.vit.blocks[3](quiet), ref(quiet), rtol=1e-4, atol=1e-4)
        # the release's _get_pos_embed: drop the cls row, [1, C, 14, 14], bicubic to the grid
        table = pos[:, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
        want = torch.nn.functional.interpolate(table, size=(4, 6), mode="bicubic", align_corners=False)
        torch.testing.assert_close(bb.vit.pos_embed((4, 6)), want.reshape(1, 192, 24).transpose(1, 2))
        # the release's SelectiveModule: log_softmax(Mlp(LayerNorm(x)))[..., 0]
        h = torch.nn.functional.layer_norm(x, (192,), sel["norm.weight"], sel["norm.bias"])
        h = torch.nn.functional.gelu(h @ sel["mlp.fc1.weight"].T + sel["mlp.fc1.bias"])
        logp = (h @ sel["mlp.fc2.weight"].T + sel["mlp.fc2.bias"]).log_softmax(-1)[..., 0]
        torch.testing.assert_close(bb.selective["6"](x), logp)


# --- the command, end to end -------------------------------------------------------------------------------------

def test_import_command_writes_every_tensor_and_runs_with_rovis_at_pkr_1_and_0_4(tmp_path, monkeypatch, capsys):
    sd, ours = release_state_dict("tiny", "vpp", seed=1)
    src, out = tmp_path / "vpp_vitTiny_0.4PKR.pth", tmp_path / "tiny.safetensors"
    save_mmengine(src, sd)
    if "import_checkpoint" not in core.cli.COMMANDS:
        monkeypatch.setattr(core.cli, "COMMANDS", (*core.cli.COMMANDS, "import_checkpoint"))
    assert core.cli.main(["import-checkpoint", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "variant: tiny (vpp block names)" in printed and "unexpected keys: 0" in printed
    assert "known-unused release tensors dropped: 3" in printed

    weights = load_file(str(out))
    assert set(weights) == set(ours.values())
    for rk, k in ours.items():
        assert torch.equal(weights[k], released_value(rk, sd[rk])), rk
    side = json.loads(sidecar_path(out).read_text())
    assert side["kind"] == "release" and model_kind(out) == "release"
    assert side["categories"] == [{"id": c.id, "name": c.name} for c in ytvis_categories("2021")]
    assert side["config"]["embed_dim"] == 192 and side["source"]["meta"]["epoch"] == 6

    model, info = load_release_checkpoint(out)
    assert info.names[0] == ytvis_categories("2021")[0].name
    g = torch.Generator().manual_seed(3)
    frames = [torch.rand(1, 3, 60, 90, generator=g) * 255 for _ in range(2)]  # padded to 64 x 96 inside
    dense_flops = None
    for pkr in (1.0, 0.4):
        keep = release_keep(pkr)
        tracker, state, ids = RovisTracker(), None, []
        with torch.no_grad():
            for frame in frames:
                out_f = model(frame, state, keep=keep, track_queries=tracker.track_queries())
                state = out_f.state
                res = tracker.update(out_f.head, input_size=out_f.input_size, valid_size=out_f.valid_size)
                ids.append(res.ids.tolist())
        assert out_f.input_size == (64, 96) and out_f.valid_size == (60, 90)
        assert tuple(out_f.mask_logits.shape[-2:]) == (16, 24)
        assert tuple(res.mask_logits.shape[-2:]) == (60, 90)  # scored at the frame's size, as the release
        assert out_f.class_logits.shape[-1] == 41 and out_f.num_queries == 100
        assert out_f.class_logits.shape[1] == 100 + len(ids[0])  # the tracks came back as queries
        assert torch.isfinite(out_f.mask_logits).all()
        assert ids[0] and set(ids[1]) & set(ids[0])  # tracks were started and continued
        if pkr == 1.0:
            assert out_f.keep_ratio == 1.0
        else:
            assert out_f.keep_ratio < 0.5 and nominal_pkr(keep) == pytest.approx(0.4)
            assert out_f.flops < dense_flops
        dense_flops = out_f.flops


def test_small_timm_checkpoint_with_the_config_widths_through_the_command(tmp_path):
    sd, ours = release_state_dict("small", "timm", seed=2, map_sm_hidden=96, selective_hidden=48)
    src, out = tmp_path / "small_timm.pth", tmp_path / "small.safetensors"
    save_mmengine(src, sd)
    assert run_import(src, out, variant="small") == 0
    weights = load_file(str(out))
    assert set(weights) == set(ours.values())
    for rk, k in ours.items():
        assert torch.equal(weights[k], released_value(rk, sd[rk])), rk
    cfg = json.loads(sidecar_path(out).read_text())["config"]
    assert (cfg["variant"], cfg["map_sm_hidden"], cfg["selective_hidden"], cfg["block_norm_eps"]) == (
        "small", 96, 48, 1e-6)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused(tmp_path, capsys, monkeypatch):
    marker, src, out = tmp_path / "PWNED", tmp_path / "evil.pth", tmp_path / "evil.safetensors"
    torch.save({"state_dict": {"detector.backbone.pos_embed": torch.zeros(1)}, "meta": {"x": _RunsCode(marker)}},
               src)
    with pytest.raises(CheckpointError, match="system"):
        run_import(src, out)
    if "import_checkpoint" not in core.cli.COMMANDS:
        monkeypatch.setattr(core.cli, "COMMANDS", (*core.cli.COMMANDS, "import_checkpoint"))
    assert core.cli.main(["import-checkpoint", str(src), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()


def test_release_files_are_validated_before_anything_is_allocated(tmp_path):
    from safetensors.torch import save_file

    from core.model.release.checkpoint import read_release_file
    from core.model.release.config import release_config

    path = tmp_path / "m.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"vpp_model_kind": "release"})
    assert model_kind(path) == "release"  # from the metadata, no sidecar
    good = {"kind": "release", "format": 1, "config": release_config("tiny").to_dict(),
            "categories": [{"id": c.id, "name": c.name} for c in ytvis_categories("2021")]}

    def write(**changes):
        sidecar_path(path).write_text(json.dumps({**good, **changes}))

    write()
    assert read_release_file(path).config == release_config("tiny")
    with pytest.raises(CheckpointError, match="missing keys"):  # the weights are not this model's: refused early
        load_release_checkpoint(path)
    for changes, message in (({"kind": "vpp"}, "not a release model"),
                             ({"config": {**good["config"], "embed_dim": "192"}}, "embed_dim must be an integer"),
                             ({"config": {**good["config"], "depth": 10**9}}, "depth must be an integer in 2..64"),
                             ({"config": {**good["config"], "colour": 1}}, "unknown release model config keys"),
                             ({"categories": good["categories"][:3]}, "3 categories for a model of 40"),
                             ({"categories": [{"id": "1", "name": "x"}] * 40}, r"categories\[0\]")):
        write(**changes)
        with pytest.raises(CheckpointError, match=message):
            read_release_file(path)
    sidecar_path(path).write_text(json.dumps({"variant": "tiny", "pkr": 0.5}))  # a VPPConfig sidecar
    assert model_kind(path) == "vpp"
