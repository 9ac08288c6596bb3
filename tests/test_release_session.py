"""A released model (``vpp import-checkpoint``'s kind "release") in the app and the CLI: load, session, infer, bench.

The model is the released architecture at small widths (48-d ViT, 32-d head, 10 queries, 2 decoder layers) with its
class bias set so every query says "person" (YouTube-VIS 2021 id 26, class index 25): random weights would give no
object above the tracker's thresholds, and a fixed class makes the exported ids checkable.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import core.bench
from core.app.settings import RunSettings
from core.app.studio import (
    FrameMessage,
    ModelInfo,
    ModelStore,
    PassDone,
    PreviewChannel,
    RunRequest,
    guarded_pass,
)
from core.bench import bench_release_model, format_table
from core.build import make_session
from core.cli import main
from core.data.categories import ytvis_categories
from core.model.release.builder import build_release_model
from core.model.release.checkpoint import save_release_checkpoint
from core.model.release.config import RELEASE_KEEP, nominal_pkr, release_keep
from core.model.vpp.builder import build_vpp
from core.model.vpp.config import VPPConfig
from core.release_session import ReleaseSession, trained_schedule
from core.resources import LoadedModel, load_model
from core.session import InferenceSession

SMALL = dict(embed_dim=48, conv_inplane=8, feat_channels=32, out_channels=32, encoder_layers=1, encoder_ffn=64,
             decoder_layers=2, decoder_ffn=64, num_queries=10, pos_grid=(4, 4))
PERSON = 25  # class index of "person" in YouTube-VIS 2021 (id 26)
LONG_SIDE = 192  # frames of 100 x 150 -> 128 x 192 -> an 8 x 12 token grid
GRID = (8, 12)
STAGES = ("Map-SM", "block 3", "block 6", "block 9")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_release_model(**extra):
    torch.manual_seed(0)
    model = build_release_model("tiny", **SMALL, **extra).eval()
    with torch.no_grad():
        model.head.cls_embed.bias[PERSON] = 8.0
    return model


@pytest.fixture(scope="module")
def release_path(tmp_path_factory) -> Path:
    model = small_release_model(extra={"input_long_side": LONG_SIDE, "imported_from": "vpp_vitTiny_0.4PKR.pth"})
    path = tmp_path_factory.mktemp("release") / "tiny_release.safetensors"
    return save_release_checkpoint(model, path, categories=ytvis_categories("2021"))


def clip(n: int = 3) -> list[np.ndarray]:
    """Two coloured boxes moving over a grey background, 100 x 150."""
    frames = []
    for i in range(n):
        f = np.full((100, 150, 3), 40, np.uint8)
        f[20:60, 20 + 5 * i:70 + 5 * i] = (220, 40, 40)
        f[50:90, 90 - 3 * i:140 - 3 * i] = (30, 200, 60)
        frames.append(f)
    return frames


def _same(a, b) -> None:
    assert a.index == b.index and a.stage_names == b.stage_names and a.keep_ratio == b.keep_ratio
    assert a.gflops == b.gflops
    for name in ("track_ids", "category_ids", "scores", "masks", "kept"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_load_model_says_release_with_the_files_categories_and_make_session_picks_the_session(release_path):
    loaded = load_model(release_path)
    ytvis = tuple((c.id, c.name) for c in ytvis_categories("2021"))
    assert loaded.kind == "release" and loaded.trained and loaded.source == str(release_path)
    assert loaded.categories == ytvis and loaded.categories[PERSON] == (26, "person")
    assert loaded.release is not None and loaded.config == loaded.release.config == loaded.model.config
    session = make_session(loaded)
    assert isinstance(session, ReleaseSession)
    assert session.input_long_side == LONG_SIDE and session.patch == 16 and session.stage_names == STAGES
    # no --pkr: the schedule the file name says the model was trained for, exactly
    assert trained_schedule(loaded.config) == "0.4" and session.keep == RELEASE_KEEP["0.4"]
    assert make_session(loaded, pkr=1.0).keep is None and make_session(loaded, pkr=0.4).keep == release_keep(0.4)

    cfg = VPPConfig.for_variant("tiny", input_long_side=64, num_queries=8, decoder_layers=2)
    ours = LoadedModel(build_vpp(cfg).eval(), cfg, "tiny 64", False)  # the positional form callers use
    assert ours.kind == "vpp" and ours.categories == tuple(zip(cfg.class_to_category_id, cfg.category_names))
    simple = make_session(ours, pkr=0.5)
    assert type(simple) is InferenceSession and simple.input_long_side == 64 and simple.pkr == 0.5


def test_a_clip_at_pkr_1_and_0_4_tracks_prunes_and_repeats_exactly(release_path):
    loaded = load_model(release_path)
    queries_seen: list[int] = []
    loaded.model.head.register_forward_hook(lambda _m, _i, out: queries_seen.append(out.class_logits.shape[1]))
    frames = clip()
    runs = {}
    for pkr in (1.0, 0.4):
        session = make_session(loaded, pkr=pkr)
        first = list(session.run_clip(frames))
        again = list(session.run_clip(frames))  # run_clip resets: the same clip again gives the same results
        for a, b in zip(first, again, strict=True):
            _same(a, b)
        runs[pkr] = first
        assert session.state.frame_index == 3 and session.state.tracker.frame_index == 2

    n = GRID[0] * GRID[1]
    for pkr, results in runs.items():
        assert [r.index for r in results] == [0, 1, 2]
        for r in results:
            m = r.num_instances
            assert m >= 1 and r.masks.shape == (m, 100, 150) and r.masks.dtype == bool
            assert r.masks.any(axis=(1, 2)).all()
            assert r.kept.shape == (4, *GRID) and r.stage_names == STAGES
            assert (r.category_ids == 26).all() and ((r.scores > 0.3) & (r.scores <= 1)).all()
            assert len(set(r.track_ids.tolist())) == m
        # the first frame's tracks continue: their queries were fed back (10 learned + one per live track)
        assert [r.track_ids.tolist() for r in results] == [results[0].track_ids.tolist()] * 3
        if pkr == 1.0:
            assert all(r.keep_ratio == 1.0 and r.kept.all() for r in results)
        else:
            keep = release_keep(0.4)
            for r in results[1:]:  # steady state: Map-SM prunes from the second frame on
                assert r.keep_ratio == pytest.approx(nominal_pkr(keep), abs=0.02)
                assert [int(k.sum()) for k in r.kept] == [int(n * k) for k in keep]
            assert results[0].kept[0].all() and results[0].keep_ratio > results[1].keep_ratio  # no previous frame
            assert all(r.gflops < d.gflops for r, d in zip(results[1:], runs[1.0][1:]))
    tracks = runs[1.0][0].num_instances
    assert queries_seen[:3] == [10, 10 + tracks, 10 + tracks]


def test_modes_threshold_and_custom_category_ids():
    model = small_release_model()
    cats = [(100 + 3 * i, f"c{i}") for i in range(40)]
    frames = clip()
    vpp = list(ReleaseSession(model, categories=cats, pkr=0.4, input_long_side=LONG_SIDE).run_clip(frames))
    rnd = list(ReleaseSession(model, categories=cats, pkr=0.4, mode="random", input_long_side=LONG_SIDE)
               .run_clip(frames))
    dense = list(ReleaseSession(model, pkr=0.4, mode="dense", input_long_side=LONG_SIDE).run_clip(frames))
    assert (vpp[0].category_ids == 100 + 3 * PERSON).all()  # the model's ids, not class index + 1
    for v, r in zip(vpp[1:], rnd[1:]):  # random drop: the same budget per stage, other tokens
        assert [int(k.sum()) for k in v.kept] == [int(k.sum()) for k in r.kept] and v.keep_ratio == r.keep_ratio
        assert not np.array_equal(v.kept, r.kept)
    assert all(d.keep_ratio == 1.0 for d in dense)
    # a display threshold hides instances but not their tracks
    strict = ReleaseSession(model, pkr=0.4, input_long_side=LONG_SIDE, score_threshold=0.99)
    hidden = list(strict.run_clip(frames))
    assert all(r.num_instances == 0 and r.masks.shape == (0, 100, 150) for r in hidden)
    assert strict.state.tracker.live_ids == vpp[-1].track_ids.tolist()


def test_vpp_infer_exports_the_models_youtube_vis_ids(release_path, tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(clip()):
        cv2.imwrite(str(frames / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out, coco = tmp_path / "r.json", tmp_path / "coco.json"
    code = main(["infer", str(frames), "--model", str(release_path), "--out", str(out), "--pkr", "0.4",
                 "--coco", str(coco)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads(out.read_text())
    assert results and json.loads(captured.out)["tracks"] == len(results)
    assert {r["category_id"] for r in results} == {26}
    for r in results:
        assert len(r["segmentations"]) == 3 and all(s["size"] == [100, 150] for s in r["segmentations"] if s)
    names = {c["id"]: c["name"] for c in json.loads(coco.read_text())["categories"]}
    assert names[26] == "person" and names[1] == "airplane" and len(names) == 40
    run = json.loads((tmp_path / "r.run.json").read_text())
    assert run["model"] == str(release_path) and run["pkr"] == pytest.approx(0.4) and run["mode"] == "vpp"


class ListSource:
    def __init__(self, frames):
        self.frames = frames
        self.closed = False

    def __len__(self):
        return len(self.frames)

    def frame(self, i):
        return self.frames[i]

    def close(self):
        self.closed = True


def test_the_apps_pass_shows_the_release_names_and_keeps_previews_apart(release_path):
    frames = clip()
    store = ModelStore(lambda spec, device: load_model(spec.path, device=device))
    channel = PreviewChannel()
    channel.want(2)
    request = RunRequest(5, "clip", RunSettings("file", str(release_path), pkr=0.4))
    msgs: list = []
    guarded_pass(request, store, channel, lambda _p: ListSource(frames), msgs.append)
    info = msgs[0]
    assert isinstance(info, ModelInfo) and info.trained and isinstance(msgs[-1], PassDone), msgs[-1]
    assert info.category_names == tuple(c.name for c in ytvis_categories("2021"))
    assert info.category_ids == tuple(range(1, 41)) and info.category_names[PERSON] == "person"
    assert (info.input_long_side, info.patch) == (LONG_SIDE, 16)
    preview = [m.frame for m in msgs if isinstance(m, FrameMessage) and m.preview]
    passed = [m.frame for m in msgs if isinstance(m, FrameMessage) and not m.preview]
    assert [f.index for f in preview] == [2] and [f.index for f in passed] == [0, 1, 2]
    session = make_session(load_model(release_path), pkr=0.4)
    plain = list(session.run_clip(frames))
    for got, want in zip(passed, plain, strict=True):  # the preview did not disturb the pass
        assert got.track_ids.tolist() == want.track_ids.tolist() and np.array_equal(got.kept, want.kept)
        assert got.category_ids.tolist() == want.category_ids.tolist() == [26] * want.num_instances
    session.reset()
    alone = session.step(frames[2])  # a preview is the frame run as the first of a clip
    assert np.array_equal(preview[0].kept, alone.kept) and preview[0].track_ids.tolist() == alone.track_ids.tolist()


def test_bench_adapter_rows_bookkeeping(monkeypatch, tmp_path, capsys):
    model = small_release_model()
    rows = bench_release_model(model, "adapter-small-widths", size=(96, 64), repeats=1, warmup=1,
                               log=lambda _m: None)
    assert [r.name for r in rows] == ["dense", "vpp@0.55", "vpp@0.4", "random@0.4", "release-sel@0.55",
                                      "release-sel@0.4"]
    assert [r.mode for r in rows] == ["dense", "vpp", "vpp", "random", "vpp", "vpp"]
    p55, p40 = nominal_pkr(RELEASE_KEEP["0.55"]), nominal_pkr(RELEASE_KEEP["0.4"])
    assert [r.pkr_target for r in rows] == [1.0, p55, p40, p40, p55, p40]
    n = 4 * 6  # 64 x 96 -> a 4 x 6 token grid
    for r in rows[4:]:  # the release's selection: Map-SM's budget, then thresholded gates (count varies)
        keep = RELEASE_KEEP[r.name.split("@")[1]]
        assert 1 / 12 < r.keep_ratio <= (n + 2 * int(n * keep[0]) + 9 * int(n * keep[0])) / (12 * n) + 1e-9
    rows = rows[:4]
    for r in rows[1:]:  # the timed frame is the second of the clip: Map-SM prunes
        keep = RELEASE_KEEP[r.name.split("@")[1]]
        want = (n + sum(b * int(n * k) for b, k in zip((2, 3, 3, 3), keep))) / (12 * n)
        assert r.keep_ratio == pytest.approx(want)
        assert r.backbone_gflops < rows[0].backbone_gflops and r.backbone_flop_ratio > 1.0
    assert rows[0].keep_ratio == 1.0 and rows[0].backbone_speedup == 1.0 and rows[0].e2e_flop_ratio == 1.0
    heads = {round(r.e2e_gflops - r.backbone_gflops, 9) for r in rows}
    assert len(heads) == 1 and heads.pop() > 0  # the head is counted, the same at every PKR
    assert rows[2].e2e_flop_ratio < rows[2].backbone_flop_ratio  # the dense head bounds the end-to-end gain
    assert rows[2].keep_ratio == pytest.approx(rows[3].keep_ratio)
    assert format_table(rows).count("| adapter-small-widths |") == 4

    built = []
    monkeypatch.setattr(core.bench, "build_release_model", lambda variant: built.append(variant) or model)
    out = tmp_path / "bench.json"
    assert main(["bench", "--variants", "adapter-tiny", "--size", "96x64", "--repeats", "1", "--warmup", "0",
                 "--no-random", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert built == ["tiny"] and "| adapter-tiny | vpp@0.4 |" in table
    data = json.loads(out.read_text())
    assert [(r["variant"], r["name"]) for r in data["rows"]] == [
        ("adapter-tiny", "dense"), ("adapter-tiny", "vpp@0.55"), ("adapter-tiny", "vpp@0.4"),
        ("adapter-tiny", "release-sel@0.55"), ("adapter-tiny", "release-sel@0.4")]
