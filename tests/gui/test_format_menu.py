"""The File menu's exports are made from the format registry (core.formats): one entry per format, each opening
its codec's dialog; the zip joins the YouTube-VIS dialog."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog

from core.formats import codec, codecs


def test_the_export_menu_offers_every_format_of_the_registry(make_window, monkeypatch):
    w = make_window()
    a = w.actions_
    offered = [c.name for c in codecs() if c.menu_label and not c.menu_joins]
    assert list(a.exports) == offered and {"ytvis", "davis", "coco"} <= set(offered)
    file_menu = w.menuBar().actions()[0].menu()
    assert all(act in file_menu.actions() for act in a.exports.values())
    for name, act in a.exports.items():
        assert getattr(a, f"export_{name}") is act and act.text() == codec(name).menu_label
    assert [c.name for c in codecs() if c.menu_joins == "ytvis"] == ["zip"]
    refused: list[str] = []
    monkeypatch.setattr(w, "show_error", lambda title, _msg: refused.append(title))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_a, **_k: ("", ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_a, **_k: "")
    for act in a.exports.values():  # no clip open: every entry reaches the export and is refused with a message
        act.trigger()
    assert refused == ["Nothing to export yet"] * len(a.exports)
