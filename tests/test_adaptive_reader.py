"""``AdaptiveReader``: frames are read on the caller's thread until reading proves the bottleneck, then ahead.

The decision is made on a clock the tests drive (reads and the caller's work advance it by set amounts), so it
does not depend on this machine's speed.
"""

from __future__ import annotations

import functools
import json
import threading

import pytest

from core.cli import main
from core.commands import infer as infer_command
from core.data.errors import FrameReadError
from core.data.prefetch import AdaptiveReader
from tests.test_infer_speed_path import _tiny_model_and_frames


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def _run(n: int, *, read_s: float, work_s: float, warmup_s: float = 0.0, probe: int = 4, fail_at: int | None = None):
    """Read ``n`` items through an AdaptiveReader whose reads take ``read_s`` and whose caller works ``work_s`` on
    each (``warmup_s`` on the first). Returns (reader, items got, thread name of each read, the error or None)."""
    clock = FakeClock()
    threads: dict[int, str] = {}

    def items():
        for i in range(n):
            clock.advance(read_s)
            if i == fail_at:
                raise FrameReadError(f"clip/{i:05d}.png", i, "corrupt data")
            yield i

    def transform(i):
        threads[i] = threading.current_thread().name
        return i * 10

    got, error = [], None
    with AdaptiveReader(items(), depth=2, transform=transform, probe=probe, clock=clock) as reader:
        try:
            for k, item in enumerate(reader):
                got.append(item)
                clock.advance(warmup_s if k == 0 else work_s)
        except FrameReadError as exc:
            error = exc
    return reader, got, threads, error


def test_reading_slower_than_the_work_moves_the_rest_onto_a_reader_thread():
    reader, got, threads, error = _run(20, read_s=0.15, work_s=0.05)
    assert error is None
    assert got == [i * 10 for i in range(20)]
    assert reader.switched_at == 4
    main_thread = threading.current_thread().name
    assert all(threads[i] == main_thread for i in range(4))
    assert all(threads[i] == "vpp-prefetch" for i in range(4, 20))


def test_cheap_reading_stays_on_the_callers_thread():
    reader, got, threads, _ = _run(20, read_s=0.01, work_s=0.05)
    assert got == [i * 10 for i in range(20)]
    assert reader.switched_at is None and reader.busy_seconds == 0.0
    assert set(threads.values()) == {threading.current_thread().name}


def test_the_first_items_warm_up_does_not_count_as_work():
    """The model's first frame is slow (allocation, kernel selection); counted, it would hide a slow reader."""
    reader, got, _, _ = _run(12, read_s=0.15, work_s=0.05, warmup_s=30.0)
    assert got == [i * 10 for i in range(12)]
    assert reader.switched_at == 4


def test_an_error_read_inline_comes_after_the_items_before_it():
    reader, got, _, error = _run(20, read_s=0.15, work_s=0.05, fail_at=2)
    assert got == [0, 10] and isinstance(error, FrameReadError) and error.index == 2
    assert reader.switched_at is None
    assert list(reader) == []  # over after the error


def test_an_error_read_ahead_comes_after_the_items_before_it():
    reader, got, _, error = _run(20, read_s=0.15, work_s=0.05, fail_at=9)
    assert reader.switched_at == 4
    assert got == [i * 10 for i in range(9)] and isinstance(error, FrameReadError) and error.index == 9


def test_leaving_early_stops_the_thread_and_closes_the_items():
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    reader = AdaptiveReader(endless(), depth=2, probe=3, ratio=0.0)  # ratio 0: always switches
    with reader:
        for x in reader:
            if x == 10:
                break
    assert reader.switched_at == 3
    assert not reader._ahead.alive and closed == [True]

    inline = AdaptiveReader(endless(), depth=2, probe=3, ratio=float("inf"))  # never switches
    with inline:
        assert next(inline) == 0
    assert inline.switched_at is None and closed == [True, True]


@pytest.mark.parametrize(("kwargs", "match"), [({"depth": 0}, "depth"), ({"probe": 2}, "probe")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveReader([], **kwargs)


def test_infer_by_default_gives_the_same_bytes_when_it_moves_reading_to_a_thread(tmp_path, capsys, monkeypatch):
    model, frames = _tiny_model_and_frames(tmp_path, seed=3, n=7)
    inline = tmp_path / "inline.json"
    assert main(["infer", str(frames), "--model", str(model), "--out", str(inline), "--prefetch", "0"]) == 0
    capsys.readouterr()
    # a reader that always switches after its probe, as a slow decoder would make it
    monkeypatch.setattr(infer_command, "AdaptiveReader", functools.partial(AdaptiveReader, probe=3, ratio=0.0))
    monkeypatch.setattr(infer_command, "_prefetch_depth", functools.partial(_cpu_default, infer_command))
    switched = tmp_path / "switched.json"
    code = main(["infer", str(frames), "--model", str(model), "--out", str(switched), "--profile"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert switched.read_bytes() == inline.read_bytes()
    profile = json.loads(next(x for x in err.splitlines() if x.startswith("vpp-profile: "))[len("vpp-profile: "):])
    assert profile["beside"]["reader thread (decode, resize)"] > 0.0


def _cpu_default(module, asked, device):
    """``_prefetch_depth`` as on a CPU whose cores torch keeps busy."""
    assert asked is None
    return module.ADAPTIVE


@pytest.mark.parametrize(("asked", "device", "cores", "threads", "want"), [
    (None, "cpu", 2, 2, "ADAPTIVE"),  # torch keeps every core busy: read ahead only if reading is the bottleneck
    (None, "cpu", 8, 8, "ADAPTIVE"),
    (None, "cpu", 4, 2, "PREFETCH_DEPTH"),  # a core is free for the reader
    (None, "cuda", 2, 2, "PREFETCH_DEPTH"),
    (None, "cpu", 1, 1, 0),  # one core: a reader thread could only take turns with the model
    (0, "cpu", 2, 2, 0),
    (3, "cpu", 2, 2, 3),
])
def test_the_default_read_ahead(monkeypatch, asked, device, cores, threads, want):
    import torch

    monkeypatch.setattr(infer_command.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    expected = getattr(infer_command, want) if isinstance(want, str) else want
    assert infer_command._prefetch_depth(asked, device) == expected
