"""Validation during training, ``vpp model-card`` and the speed benchmark's bookkeeping (not its timings)."""

from __future__ import annotations

import json

import pytest
import torch

from core.bench import bench_model
from core.cli import main
from core.data.synthetic import write_synthetic_dataset
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import save_checkpoint
from core.model.vpp.config import VPPConfig
from core.training.validate import evaluate_model, make_validator, open_split


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    write_synthetic_dataset(root, train_videos=0, val_videos=2, width=80, height=64, frames=3, seed=5)
    return root / "valid"


@pytest.fixture(scope="module")
def model_and_config():
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=96, num_queries=6, decoder_layers=1, decoder_dim=32,
                                decoder_ffn=64, num_classes=6, categories=tuple("abcdef"))
    return build_vpp(cfg).eval(), cfg


def test_evaluate_model_scores_a_split_and_restores_the_model(split, model_and_config):
    model, cfg = model_and_config
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = open_split(split / "instances.json", split / "JPEGImages")
    fig = evaluate_model(model, cfg, s, pkr=0.4, mode="random")
    assert {"AP", "AP50", "bbox_AP", "segm_AP", "keep_ratio", "gflops", "ms"} <= set(fig)
    assert -1.0 <= fig["AP"] <= 1.0
    assert 0.35 < fig["keep_ratio"] < 0.6  # the first frame of each clip runs denser
    stages = ("Map-SM", "block 3", "block 6", "block 9")
    kept = [fig[f"kept@{st}"] for st in stages]  # after the first frame: the static budgets
    assert kept == sorted(kept, reverse=True) and kept[-1] < 0.3
    assert all(0.0 <= fig[f"object_recall@{st}"] <= 1.0 for st in stages)
    # the run settings were the session's: the model holds none, and validation left it as it was
    for name in ("keep", "mode", "set_keep", "set_mode"):
        assert not hasattr(model.backbone, name) and not hasattr(model, name), name
    assert model.training
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_validator_reports_ap_and_keep_per_pkr(split, model_and_config):
    model, cfg = model_and_config
    validate = make_validator(split / "instances.json", split / "JPEGImages", pkrs=(1.0, 0.55), max_videos=1)
    out = validate(model, cfg, 7)
    assert set(out) == {"AP@1", "keep@1", "AP@0.55", "keep@0.55"}
    assert out["keep@1"] == 1.0 and out["keep@0.55"] < 0.8


def test_model_card_command_writes_the_table(split, model_and_config, tmp_path, capsys):
    model, cfg = model_and_config
    ckpt = save_checkpoint(model, cfg, tmp_path / "m.safetensors")
    code = main(["model-card", "--split", str(split), "--model", str(ckpt), "--pkr", "0.7", "0.4", "--repeats", "1",
                 "--markdown", str(tmp_path / "t.md"), "--json", str(tmp_path / "f.json")])
    assert code == 0, capsys.readouterr().err
    lines = (tmp_path / "t.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in table[2:]] == ["dense", "vpp@0.7", "vpp@0.4", "random@0.4"]
    figures = json.loads((tmp_path / "f.json").read_text())
    rows, delta = figures["rows"], figures["ap_track_delta"]
    assert (delta["a"], delta["b"]) == ("vpp@0.4", "random@0.4")
    assert delta["observed"] == pytest.approx(rows[2]["AP"] - rows[3]["AP"])
    assert delta["low"] <= delta["high"] and delta["resamples"] == 1000
    assert lines[-1].startswith("AP_track vpp@0.4 − random@0.4: ") and "interval" in lines[-1]
    assert rows[0]["backbone_speedup"] == 1.0 and rows[0]["keep_ratio"] == 1.0
    assert rows[3]["keep_ratio"] == pytest.approx(rows[2]["keep_ratio"], abs=0.02)
    assert "object-token recall (Map-SM / block 3 / block 6 / block 9)" in table[0]
    assert rows[0]["object_recall@Map-SM"] == 1.0 and table[2].endswith("| 1.00 / 1.00 / 1.00 / 1.00 |")
    assert rows[2]["object_recall@block 9"] < 1.0


def test_bench_rows_relate_to_their_dense_row(model_and_config):
    model, cfg = model_and_config
    rows = bench_model(model, cfg, "t", [0.5], size=(96, 64), repeats=1, warmup=0, log=lambda m: None)
    assert [r.name for r in rows] == ["dense", "vpp@0.5", "random@0.5"]
    dense = rows[0]
    for r in rows[1:]:
        assert r.backbone_gflops < dense.backbone_gflops
        assert r.backbone_speedup == pytest.approx(dense.backbone_ms / r.backbone_ms)
        assert r.backbone_realization == pytest.approx(r.backbone_speedup / r.backbone_flop_ratio)
