"""The exporter runs one export at a time and is free again as soon as it reports."""

from __future__ import annotations

from vpp_gui.export import Exporter


def _write(tag: str) -> str:
    return f"wrote {tag}"


def _fail() -> str:
    raise OSError("disk full")


def test_a_second_export_can_start_from_the_finished_slot(qtbot):
    exporter = Exporter()
    seen: list[str] = []
    started_again: list[bool] = []

    def on_finished(summary: str) -> None:
        seen.append(summary)
        if len(seen) == 1:
            started_again.append(exporter.start(_write, "second"))

    exporter.finished.connect(on_finished)
    assert exporter.start(_write, "first")
    assert exporter.busy and not exporter.start(_write, "refused while busy")
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=10_000)
    assert seen == ["wrote first", "wrote second"] and started_again == [True]
    qtbot.waitUntil(lambda: not exporter._workers, timeout=10_000)
    assert not exporter.busy


def test_a_failed_export_reports_and_frees_the_exporter(qtbot):
    exporter = Exporter()
    with qtbot.waitSignal(exporter.failed, timeout=10_000) as blocker:
        assert exporter.start(_fail)
    assert "disk full" in blocker.args[0]
    assert not exporter.busy
    with qtbot.waitSignal(exporter.finished, timeout=10_000) as blocker:
        assert exporter.start(_write, "after")
    assert blocker.args == ["wrote after"]
