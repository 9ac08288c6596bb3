"""The registry of model families (core.build), the sessions it makes, and the one clip loop (core.clip_loop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.build import FAMILIES, family_of_file, make_session
from core.clip_loop import Lockstep, Session, run_clip
from core.data.categories import ytvis_categories
from core.model.release.builder import build_release_model
from core.model.release.checkpoint import save_release_checkpoint
from core.model.release.config import ReleaseConfig
from core.model.vpp.builder import build_vpp
from core.model.vpp.checkpoint import save_checkpoint
from core.model.vpp.config import VPPConfig
from core.release_session import ReleaseSession
from core.resources import LoadedModel, load_model
from core.session import InferenceSession

SMALL_RELEASE = dict(embed_dim=48, conv_inplane=8, feat_channels=32, out_channels=32, encoder_layers=1,
                     encoder_ffn=64, decoder_layers=2, decoder_ffn=64, num_queries=10, pos_grid=(4, 4))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families")
    torch.manual_seed(0)
    cfg = VPPConfig.for_variant("tiny", input_long_side=64, num_classes=3, depth=4, map_block=1,
                                selective_blocks=(2,), deep_block=2, out_indices=(0, 1, 2, 3))
    ours = save_checkpoint(build_vpp(cfg), cfg, folder / "ours.safetensors")
    release = build_release_model("tiny", **SMALL_RELEASE, extra={"input_long_side": 96}).eval()
    theirs = save_release_checkpoint(release, folder / "theirs.safetensors", categories=ytvis_categories("2021"))
    return ours, theirs


def test_the_registry_names_each_familys_parts():
    assert set(FAMILIES) == {"vpp", "release"}
    vpp, release = FAMILIES["vpp"], FAMILIES["release"]
    assert vpp.config is VPPConfig and release.config is ReleaseConfig
    assert set(vpp.variants) == {"tiny", "small"} and set(release.variants) == {"tiny", "small"}
    assert vpp.session == InferenceSession.from_loaded and release.session == ReleaseSession.from_loaded


def test_a_file_loads_and_runs_through_its_family(files):
    ours, theirs = files
    assert family_of_file(ours) is FAMILIES["vpp"] and family_of_file(theirs) is FAMILIES["release"]
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(3)]
    for path, family, cls in ((ours, "vpp", InferenceSession), (theirs, "release", ReleaseSession)):
        loaded = load_model(path)
        assert loaded.family is FAMILIES[family] and loaded.kind == family
        session = make_session(loaded, pkr=0.5)
        assert type(session) is cls and isinstance(session, Session) and session.pkr == pytest.approx(0.5)
        seen: list[int] = []
        assert run_clip(frames, session, lambda i, res, seen=seen: seen.append(res.index)) == 3
        assert seen == [0, 1, 2]  # run_clip starts a new clip: the session's own frame index follows


def test_a_loaded_model_without_a_family_is_ours():
    cfg = VPPConfig.for_variant("tiny", input_long_side=64)
    assert LoadedModel(build_vpp(cfg), cfg, "untrained", False).family is FAMILIES["vpp"]


class _Counter:
    def __init__(self, name: str, log: list) -> None:
        self.name, self.log, self.n = name, log, 0

    def reset(self) -> None:
        self.n = 0

    def step(self, frame):
        self.log.append((self.name, frame))
        self.n += 1
        return self.name, self.n


def test_lockstep_runs_each_frame_through_every_stepper_rotating_the_order():
    log: list = []
    after: list = []
    lockstep = Lockstep([_Counter(n, log) for n in "abc"], rotate=True, after=lambda k, r: after.append(k))
    results: list = []
    assert run_clip(["f0", "f1", "f2"], lockstep, lambda i, r: results.append(r)) == 3
    assert log == [("a", "f0"), ("b", "f0"), ("c", "f0"), ("b", "f1"), ("c", "f1"), ("a", "f1"),
                   ("c", "f2"), ("a", "f2"), ("b", "f2")]
    assert after == [0, 1, 2, 1, 2, 0, 2, 0, 1]
    assert results[-1] == [("a", 3), ("b", 3), ("c", 3)]  # in stepper order whatever order they ran in
    plain: list = []
    run_clip(["g"], Lockstep([_Counter(n, plain) for n in "ab"]), lambda i, r: None)
    assert plain == [("a", "g"), ("b", "g")]
