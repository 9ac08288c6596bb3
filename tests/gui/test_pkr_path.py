"""The PKR slider's value reaches the model's forward unchanged (issue 26), through the one path: the controls ->
the window's run settings (core.app.settings.RunSettings, checked once) -> the run control -> the pass's
RunRequest -> the worker's session -> its keep schedule -> ``model(images, state, keep=..., mode=...)``.

Two probes: :func:`core.model.vpp.builder.keep_schedule` records the PKR the session asks a schedule for (it must
be the slider's float itself: rounded, converted to float32 or replaced by a default anywhere on the way, it
differs), and a pre-hook on the model the app's factory loaded records the keep fractions every forward call
receives (they must be that schedule's).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.model.vpp import builder
from core.model.vpp.builder import keep_for
from tests.gui.conftest import tiny_factory

CHOSEN = 0.35  # on the slider's 0.05 grid; rounded to one decimal (or to a float32) it is another schedule


@pytest.fixture
def clip(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), rng.integers(0, 255, (72, 128, 3), dtype=np.uint8))
    return folder


def test_the_sliders_pkr_reaches_the_forward_unchanged(clip, isolated_settings, qtbot, wait_done, monkeypatch):
    from PySide6.QtCore import QSettings

    from vpp_gui.app import create_window
    from vpp_gui.settings import Settings

    seen: list[tuple[float, ...]] = []  # the keep fractions of every forward call (appended on the worker thread)
    configs = []
    asked: list[float] = []  # the PKR of every keep schedule made
    schedule = builder.keep_schedule

    def recorded_schedule(pkr, **kwargs):
        asked.append(pkr)
        return schedule(pkr, **kwargs)

    monkeypatch.setattr(builder, "keep_schedule", recorded_schedule)

    def watched_factory(spec, device):
        loaded = tiny_factory(spec, device)
        configs.append(loaded.config)
        loaded.model.register_forward_pre_hook(lambda _m, _args, kwargs: seen.append(tuple(kwargs["keep"])),
                                               with_kwargs=True)
        return loaded

    settings = Settings(QSettings(str(isolated_settings), QSettings.Format.IniFormat))
    w = create_window(clip, model_factory=watched_factory, settings=settings, demo=False, recover=False,
                      data_dir=isolated_settings.parent / "appdata")
    qtbot.addWidget(w)
    w.show()
    try:
        c = w.controller
        wait_done(w)
        assert c.state == "done" and w.controls.pkr() != CHOSEN
        config = configs[-1]
        expected = keep_for(config, CHOSEN)
        assert expected != keep_for(config, round(CHOSEN, 1))  # the forward tells a PKR rounded to 0.1 apart
        seen.clear()
        asked.clear()

        w.controls.pkr_slider.setValue(CHOSEN)  # as a drag does; the controls debounce, snap and emit pkrChanged
        qtbot.waitUntil(lambda: c.pkr == CHOSEN, timeout=10_000)
        qtbot.waitUntil(lambda: c.state == "done", timeout=120_000)

        assert w.controls.pkr() == CHOSEN and c.settings.pkr == CHOSEN  # one settings object, the slider's value
        assert w.bridge.doc.settings.pkr == CHOSEN  # recorded by the document as made
        pkrs = [p for p in asked if p != 1.0]  # a new session starts dense, then takes the request's PKR
        assert pkrs and all(type(p) is float and p == CHOSEN for p in pkrs), asked
        assert len(seen) == c.results.num_frames == 3  # one forward per frame of the new pass, no preview
        assert all(keep == expected for keep in seen), (seen, expected)
    finally:
        if w.bridge.doc is not None:
            w.bridge.doc.mark_clean()
        w.close()
