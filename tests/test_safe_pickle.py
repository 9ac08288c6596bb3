"""core.safe_pickle: mmengine checkpoints load without mmengine and without running pickled code."""

from __future__ import annotations

import os
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch

from core.errors import CheckpointError
from core.safe_pickle import STAND_INS, StandIn, load_mmengine_checkpoint, load_torch_file_safely

# --- a throwaway "mmengine" with classes named like the real ones -------------------------------------

_MODULES = ("mmengine", "mmengine.logging", "mmengine.logging.message_hub", "mmengine.logging.history_buffer",
            "mmengine.config", "mmengine.config.config")


def _fake_mmengine() -> dict[str, types.ModuleType]:
    mods = {name: types.ModuleType(name) for name in _MODULES}

    class HistoryBuffer:  # the attributes mmengine's HistoryBuffer pickles
        def __init__(self, log_history=(), count_history=(), max_length=1000000):
            self.max_length = max_length
            self._log_history = np.array(log_history)
            self._count_history = np.array(count_history)

    class MessageHub:
        def __init__(self, name, log_scalars, runtime_info, resumed_keys):
            self._instance_name = name
            self._log_scalars, self._runtime_info, self._resumed_keys = log_scalars, runtime_info, resumed_keys

    class ConfigDict(dict):
        def __getstate__(self):  # as addict.Dict does
            return self

        def __setstate__(self, state):
            self.update(state)

    for cls, mod in ((HistoryBuffer, "mmengine.logging.history_buffer"), (MessageHub, "mmengine.logging.message_hub"),
                     (ConfigDict, "mmengine.config.config")):
        cls.__module__ = mod
        cls.__qualname__ = cls.__name__
        setattr(mods[mod], cls.__name__, cls)
    return mods


def _save_mmengine_like(path, *, old_hub: bool = False, legacy: bool = False) -> dict:
    """torch.save an mmengine-shaped checkpoint with the fake classes, then unregister them."""
    saved = {name: sys.modules.get(name) for name in _MODULES}
    mods = _fake_mmengine()
    sys.modules.update(mods)
    try:
        hb = mods["mmengine.logging.history_buffer"].HistoryBuffer
        hub_cls = mods["mmengine.logging.message_hub"].MessageHub
        cfg_dict = mods["mmengine.config.config"].ConfigDict
        g = torch.Generator().manual_seed(0)
        weights = OrderedDict([
            ("detector.backbone.pos_embed", torch.randn(1, 5, 8, generator=g)),
            ("detector.backbone.blocks.0.TransformerEncoderLayer.linear1.weight",
             torch.nn.Parameter(torch.randn(16, 8, generator=g))),
            ("detector.panoptic_head.query_embed.weight", torch.randn(4, 8, generator=g).half()),
            ("detector.backbone.spm.num_batches_tracked", torch.tensor(7)),
        ])
        scalars = OrderedDict([("train/loss", hb([1.5, 1.25], [1, 1])), ("train/lr", hb([1e-4], [1]))])
        info = OrderedDict([("epoch", 6), ("iter", 1234), ("dataset_meta", {"classes": ("person", "giant_panda")})])
        resumed = OrderedDict([("train/loss", True), ("epoch", True)])
        hub = (hub_cls("rovis", scalars, info, resumed) if old_hub
               else {"log_scalars": scalars, "runtime_info": info, "resumed_keys": resumed})
        meta = {"epoch": 6, "iter": 1234, "seed": np.int64(42), "cfg": "model = dict(type='Mask2Former')",
                "mmengine_version": "0.10.3", "dataset_meta": {"classes": ("person", "giant_panda"),
                                                               "palette": [(220, 20, 60), (0, 82, 0)]},
                "extra_cfg": cfg_dict(lr=0.0001, betas=(0.9, 0.999))}
        ckpt = {"meta": meta, "state_dict": weights, "message_hub": hub,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}}
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
        return {k: v.detach().clone() for k, v in weights.items()}
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:  # pragma: no cover - a real mmengine is not installed here
                sys.modules[name] = mod


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("old_hub", [False, True], ids=["hub-state-dict", "hub-object"])
def test_mmengine_checkpoint_loads_without_mmengine(tmp_path, legacy, old_hub):
    path = tmp_path / "epoch_6.pth"
    expected = _save_mmengine_like(path, old_hub=old_hub, legacy=legacy)
    assert "mmengine" not in sys.modules
    out = load_mmengine_checkpoint(path)
    assert "mmengine" not in sys.modules  # nothing was imported to read it
    assert out["format"] == "mmengine"
    assert out["other_keys"] == ["optimizer"]
    sd = out["state_dict"]
    assert list(sd) == list(expected)
    for k, v in expected.items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k], v)
    meta = out["meta"]
    assert meta["epoch"] == 6 and meta["seed"] == 42 and type(meta["seed"]) is int
    assert meta["dataset_meta"]["classes"] == ("person", "giant_panda")
    assert meta["extra_cfg"] == {"lr": 0.0001, "betas": (0.9, 0.999)}
    hub = out["message_hub"]
    if old_hub:
        assert hub["__class__"] == "mmengine.logging.message_hub.MessageHub"
        scalars = hub["_log_scalars"]
    else:
        scalars = hub["log_scalars"]
    loss = scalars["train/loss"]
    assert loss["__class__"] == "mmengine.logging.history_buffer.HistoryBuffer"
    assert loss["_log_history"] == [1.5, 1.25] and loss["_count_history"] == [1, 1]


def test_raw_object_holds_inert_stand_ins(tmp_path):
    path = tmp_path / "ckpt.pth"
    _save_mmengine_like(path, old_hub=True)
    raw = load_torch_file_safely(path)
    hub = raw["message_hub"]
    assert isinstance(hub, StandIn) and type(hub).class_path.endswith("MessageHub")
    assert isinstance(hub._log_scalars["train/loss"]._log_history, np.ndarray)
    with pytest.raises(AttributeError):  # a pickle cannot patch code onto a stand-in class
        type(hub).__setstate__ = print
    with pytest.raises(AttributeError):
        STAND_INS["mmengine.logging.history_buffer.HistoryBuffer"].__reduce__ = print


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvilEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("writer", ["zip", "legacy", "raw-pickle"])
@pytest.mark.parametrize("evil", [_Evil, _EvilEval], ids=["os.system", "eval"])
def test_code_in_the_pickle_is_refused_and_never_runs(tmp_path, writer, evil):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    ckpt = {"meta": {"payload": evil(marker)}, "state_dict": {"w": torch.zeros(2)}}
    if writer == "raw-pickle":
        path.write_bytes(pickle.dumps(ckpt, protocol=2))
    else:
        torch.save(ckpt, path, _use_new_zipfile_serialization=writer == "zip")
    with pytest.raises(CheckpointError) as info:
        load_mmengine_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg
    assert ("posix.system" in msg) if evil is _Evil else ("builtins.eval" in msg)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_plain_state_dict(tmp_path, legacy):
    path = tmp_path / "weights.pth"
    sd = {"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(2, dtype=torch.float64)}
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    out = load_mmengine_checkpoint(path)
    assert out["format"] == "state_dict" and out["meta"] == {} and out["message_hub"] is None
    assert out["other_keys"] == []
    assert set(out["state_dict"]) == set(sd) and all(torch.equal(out["state_dict"][k], v) for k, v in sd.items())


def test_model_key_checkpoint(tmp_path):
    path = tmp_path / "deit.pth"
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 4)}, "epoch": 300}, path)
    out = load_mmengine_checkpoint(path)
    assert out["format"] == "model" and list(out["state_dict"]) == ["cls_token"] and out["other_keys"] == ["epoch"]


def test_unusable_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_mmengine_checkpoint(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        load_mmengine_checkpoint(junk)
    nothing = tmp_path / "nothing.pth"
    torch.save({"meta": {"epoch": 1}}, nothing)
    with pytest.raises(CheckpointError, match="no state dict"):
        load_mmengine_checkpoint(nothing)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, and still what makes such files
def test_torchscript_archive_is_refused(tmp_path):
    ts = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), ts)
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_mmengine_checkpoint(ts)
