"""The embedded default model and demo clip: shipped, small, trained, and good on the clip it ships with."""

from __future__ import annotations

import json

import pytest

from core.data.sources import FolderSource
from core.data.ytvis import parse_ytvis_results, read_ytvis_gt
from core.evaluation.ytvis_eval import evaluate
from core.resources import DEFAULT_MODEL, DEMO_CLIP, RESOURCES, load_model
from core.results import ClipResults, CompactFrame
from core.session import InferenceSession


def test_default_model_is_shipped_small_and_trained():
    assert DEFAULT_MODEL.is_file(), f"{DEFAULT_MODEL} is missing"
    assert DEFAULT_MODEL.stat().st_size < 20 * 2**20
    loaded = load_model(None)
    assert loaded.trained and loaded.source == str(DEFAULT_MODEL)
    cfg = loaded.config
    assert len(cfg.categories) == cfg.num_classes == 6
    assert (RESOURCES / "MODEL_CARD.md").is_file()


@pytest.mark.parametrize("pkr", [1.0, 0.4])
def test_default_model_finds_and_tracks_the_demo_clip_objects(pkr):
    gt = read_ytvis_gt(RESOURCES / "demo_clip_gt.json")
    loaded = load_model(None)
    session = InferenceSession(loaded.model, loaded.config, pkr=pkr, mode="dense" if pkr == 1.0 else "vpp")
    with FolderSource(DEMO_CLIP) as source:
        assert len(source) == gt.videos[0].length
        clip = ClipResults(len(source), source.size[1], source.size[0])
        for i, res in enumerate(session.run_clip(source)):
            clip.add(CompactFrame.from_result(res, i))
    results = parse_ytvis_results(json.loads(json.dumps(clip.to_ytvis(1))), gt)
    figures = evaluate(gt, results, frame_metrics=False)
    # an untrained model scores ~0 here; the shipped one has AP50 1.0 at both PKRs (see MODEL_CARD.md)
    assert figures["AP50"] > 0.5, figures


def test_default_pkr_follows_the_shipped_config_and_falls_back(tmp_path, monkeypatch):
    import core.resources as res

    shipped = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["pkr"]
    assert res.default_pkr() == pytest.approx(shipped) and 0.0 < shipped < 1.0
    for name, text in (("missing", None), ("corrupt", "{not json"), ("dense", None)):
        weights = tmp_path / f"{name}.safetensors"
        if text is not None:
            weights.with_suffix(".json").write_text(text)
        if name == "dense":
            cfg = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
            weights.with_suffix(".json").write_text(json.dumps({**cfg, "pkr": 1.0}))
        monkeypatch.setattr(res, "DEFAULT_MODEL", weights)
        assert res.default_pkr() == res.FALLBACK_PKR, name
