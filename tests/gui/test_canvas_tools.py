"""vpp_gui.canvas_tools: the mask tools' overlay turns input into gestures (plain methods and a real mouse)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from vpp_gui.canvas_tools import MAX_RADIUS, MIN_RADIUS, ToolOverlay
from vpp_gui.frame_view import FrameView

W, H = 120, 80


@pytest.fixture
def view(qtbot):
    v = FrameView()
    qtbot.addWidget(v)
    v.resize(480, 360)
    v.show()
    qtbot.waitExposed(v)
    v.set_frame(np.zeros((H, W, 3), np.uint8))
    qtbot.wait(30)  # let the ViewBox lay itself out before mapping coordinates
    return v


def record(signal) -> list:
    got: list = []
    signal.connect(lambda *args: got.append(args))
    return got


def widget_pos(view: FrameView, x: float, y: float) -> QPoint:
    """Frame pixel (x, y) (centres at whole numbers) -> viewport coordinates."""
    scene = view.view.mapViewToScene(QPointF(x + 0.5, y + 0.5))
    return view.graphics.mapFromScene(scene)


def drag(qtbot, view: FrameView, points: list[tuple[float, float]], button=Qt.MouseButton.LeftButton) -> None:
    """A real drag through ``points`` (positions computed before it starts: a pan moves the view)."""
    viewport = view.graphics.viewport()
    pos = [widget_pos(view, x, y) for x, y in points]
    qtbot.mouseMove(viewport, pos[0])
    qtbot.wait(20)
    qtbot.mousePress(viewport, button, pos=pos[0])
    for p in pos[1:]:
        qtbot.wait(20)  # pyqtgraph drops moves closer than 10 ms apart
        qtbot.mouseMove(viewport, p)
    qtbot.wait(20)
    qtbot.mouseRelease(viewport, button, pos=pos[-1])
    qtbot.wait(20)


def test_the_overlay_lies_in_the_view_above_the_masks_and_covers_the_frame(view):
    tools = view.tools
    assert isinstance(tools, ToolOverlay) and tools.getViewBox() is view.view
    assert view.items["contours"].zValue() < tools.zValue() < 10  # labels are at 10
    assert (tools.boundingRect().width(), tools.boundingRect().height()) == (W, H)
    assert tools.stroke_canvas().shape == (H, W) and tools.tool() == "select"


def test_brush_stroke_paints_live_then_emits_its_points_and_clears(view):
    tools = view.tools
    tools.set_tool("brush")
    tools.set_radius(3)
    got = record(tools.strokeFinished)
    assert tools.begin_stroke(10, 20)
    tools.extend_stroke(30, 20)
    tools.extend_stroke(30, 40)
    canvas = tools.stroke_canvas()
    assert canvas[20, 10] == 1 and canvas[20, 20] == 1 and canvas[30, 30] == 1 and canvas[60, 60] == 0
    assert tools._live.isVisible() and not got
    tools.end_stroke()
    assert got == [([(10.0, 20.0), (30.0, 20.0), (30.0, 40.0)], 3.0, False)]
    assert not canvas.any() and not tools._live.isVisible()
    tools.end_stroke()  # nothing in progress: nothing more
    assert len(got) == 1


def test_eraser_emits_erase_and_points_are_clamped_to_the_frame(view):
    tools = view.tools
    tools.set_tool("eraser")
    got = record(tools.strokeFinished)
    tools.begin_stroke(-5, 10)
    tools.extend_stroke(500, 300)
    tools.end_stroke()
    assert got == [([(0.0, 10.0), (W - 1.0, H - 1.0)], float(tools.radius()), True)]


def test_strokes_start_only_with_the_brush_or_the_eraser_and_cancel_emits_nothing(view):
    tools = view.tools
    got = record(tools.strokeFinished)
    assert not tools.begin_stroke(10, 10)  # select tool
    tools.set_tool("brush")
    tools.begin_stroke(10, 10)
    tools.extend_stroke(50, 50)
    tools.cancel()
    tools.end_stroke()
    assert got == [] and not tools.stroke_canvas().any()


def test_radius_grows_and_shrinks_in_steps_and_is_clamped(view):
    tools = view.tools
    got = record(tools.radiusChanged)
    tools.set_radius(1)
    tools.grow_radius()
    assert tools.radius() == 2  # at least +1
    tools.set_radius(100)
    tools.grow_radius()
    assert tools.radius() == 125
    tools.shrink_radius()
    assert tools.radius() == 100
    tools.set_radius(10_000)
    assert tools.radius() == MAX_RADIUS
    tools.grow_radius()
    assert tools.radius() == MAX_RADIUS
    tools.set_radius(0)
    assert tools.radius() == MIN_RADIUS
    tools.shrink_radius()
    assert tools.radius() == MIN_RADIUS
    assert got[-1] == (MIN_RADIUS,) and (125,) in got


def test_polygon_of_three_clicks_closes_and_two_points_do_not(view):
    tools = view.tools
    tools.set_tool("polygon")
    got = record(tools.polygonFinished)
    tools.add_polygon_point(10, 10)
    tools.add_polygon_point(50, 10)
    assert tools.close_polygon() is False and got == []
    assert tools.polygon_points() == [(10.0, 10.0), (50.0, 10.0)]
    tools.add_polygon_point(50, 60)
    assert tools.close_polygon() is True
    assert got == [([(10.0, 10.0), (50.0, 10.0), (50.0, 60.0)], False)]
    assert tools.polygon_points() == [] and tools.close_polygon() is False and len(got) == 1


def test_backspace_and_switching_tools_drop_polygon_points(view):
    tools = view.tools
    tools.set_tool("polygon")
    got = record(tools.polygonFinished)
    changed = record(tools.toolChanged)
    for p in [(10, 10), (50, 10), (50, 60)]:
        tools.add_polygon_point(*p)
    tools.remove_last_point()
    assert tools.polygon_points() == [(10.0, 10.0), (50.0, 10.0)]
    tools.add_polygon_point(50, 60)
    tools.set_tool("brush")
    tools.set_tool("polygon")
    assert tools.polygon_points() == [] and tools.close_polygon() is False and got == []
    assert changed == [("brush",), ("polygon",)]
    with pytest.raises(ValueError, match="unknown tool"):
        tools.set_tool("lasso")


def test_select_and_fill_clicks_emit_frame_coordinates(view, qtbot):
    tools = view.tools
    got = record(tools.clicked)
    tools.click(30, 40)
    tools.set_tool("fill")
    tools.click(200, -3)
    tools.set_tool("brush")
    tools.click(5, 5)  # not a click tool
    assert got == [(30.0, 40.0), (W - 1.0, 0.0)]
    tools.set_tool("select")
    qtbot.mouseClick(view.graphics.viewport(), Qt.MouseButton.LeftButton, pos=widget_pos(view, 30, 40))
    assert got[-1] == (30.0, 40.0)


def test_polygon_by_mouse_closes_on_a_click_near_the_first_point(view, qtbot):
    tools = view.tools
    tools.set_tool("polygon")
    got = record(tools.polygonFinished)
    viewport = view.graphics.viewport()
    for x, y in [(20, 20), (90, 20), (90, 60)]:
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=widget_pos(view, x, y))
        qtbot.wait(10)
    assert len(tools.polygon_points()) == 3 and got == []
    near = widget_pos(view, 20, 20) + QPoint(3, 2)  # a few screen pixels off the first point
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=near)
    assert len(got) == 1
    pts = np.array(got[0][0])
    assert pts.shape == (3, 2) and np.abs(pts - [(20, 20), (90, 20), (90, 60)]).max() < 0.5


def test_a_real_brush_drag_paints_and_does_not_pan(view, qtbot):
    tools = view.tools
    tools.set_tool("brush")
    tools.set_radius(4)
    got = record(tools.strokeFinished)
    before = view.view.viewRange()
    path = [(20, 30), (40, 32), (60, 35), (80, 40)]
    drag(qtbot, view, path)
    assert view.view.viewRange() == before
    assert len(got) == 1
    points, radius, erase = got[0]
    assert radius == 4.0 and erase is False and len(points) >= 2
    pts = np.array(points)
    assert np.abs(pts[0] - path[0]).max() < 0.5 and np.abs(pts[-1] - path[-1]).max() < 0.5
    assert not tools.stroke_canvas().any()


def test_a_drag_with_the_select_tool_pans_the_view(view, qtbot):
    got = record(view.tools.strokeFinished)
    before = view.view.viewRange()
    drag(qtbot, view, [(20, 30), (40, 32), (60, 35), (80, 40)])
    after = view.view.viewRange()
    assert after[0][0] < before[0][0] - 20  # dragged right by ~60 frame pixels: the view moved left
    assert got == []


def test_with_the_brush_a_middle_drag_still_pans_and_the_wheel_zooms(view, qtbot):
    tools = view.tools
    tools.set_tool("brush")
    got = record(tools.strokeFinished)
    before = view.view.viewRange()
    drag(qtbot, view, [(20, 30), (40, 32), (60, 35), (80, 40)], button=Qt.MouseButton.MiddleButton)
    panned = view.view.viewRange()
    assert panned[0][0] < before[0][0] - 20 and got == [] and not tools.stroke_canvas().any()
    viewport = view.graphics.viewport()
    pos = QPointF(widget_pos(view, 60, 40))
    wheel = QWheelEvent(pos, QPointF(viewport.mapToGlobal(pos.toPoint())), QPoint(), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, wheel)
    qtbot.wait(20)
    zoomed = view.view.viewRange()
    assert zoomed[0][1] - zoomed[0][0] < 0.9 * (panned[0][1] - panned[0][0])  # wheel up zooms in


def drag_with(qtbot, view: FrameView, points: list[tuple[float, float]], modifiers: Qt.KeyboardModifier) -> None:
    """A left drag with keys held (QTest's mouseMove carries no modifiers, and pyqtgraph reads them from the
    moves): the mouse events themselves, as the platform sends them."""
    viewport = view.graphics.viewport()
    pos = [QPointF(widget_pos(view, x, y)) for x, y in points]
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton

    def send(kind: QEvent.Type, p: QPointF, button, buttons) -> None:
        QApplication.sendEvent(viewport, QMouseEvent(kind, p, QPointF(viewport.mapToGlobal(p.toPoint())), button,
                                                     buttons, modifiers))

    send(QEvent.Type.MouseMove, pos[0], none, none)
    qtbot.wait(20)
    send(QEvent.Type.MouseButtonPress, pos[0], left, left)
    for p in pos[1:]:
        qtbot.wait(20)
        send(QEvent.Type.MouseMove, p, none, left)
    qtbot.wait(20)
    send(QEvent.Type.MouseButtonRelease, pos[-1], left, none)
    qtbot.wait(20)


def quick_clicks(qtbot, view: FrameView, points: list[tuple[float, float]], gap_ms: int = 50) -> None:
    """Clicks ``gap_ms`` apart as a real mouse sends them: every second one of a quick pair arrives as a
    double-click (press, release, double-click, release), which is how Qt reports it."""
    viewport = view.graphics.viewport()
    left = Qt.MouseButton.LeftButton
    for i, (x, y) in enumerate(points):
        pos = widget_pos(view, x, y)
        if i % 2:
            qtbot.mouseDClick(viewport, left, pos=pos)
        else:
            qtbot.mousePress(viewport, left, pos=pos)
        qtbot.mouseRelease(viewport, left, pos=pos)
        qtbot.wait(gap_ms)


POLY = [(10, 10), (40, 8), (70, 12), (100, 20), (105, 50), (80, 70), (40, 72), (12, 55)]


def test_quick_clicks_and_double_clicks_add_points_and_never_close_the_polygon(view, qtbot):
    tools = view.tools
    tools.set_tool("polygon")
    got = record(tools.polygonFinished)
    quick_clicks(qtbot, view, POLY)
    assert got == []  # a double-click used to close it (and drop its point): one polygon became several
    pts = np.array(tools.polygon_points())
    assert pts.shape == (len(POLY), 2) and np.abs(pts - POLY).max() < 0.5
    assert tools.close_polygon() and len(got) == 1 and len(got[0][0]) == len(POLY) and got[0][1] is False


def test_shift_at_the_first_click_makes_the_polygon_subtract(view, qtbot):
    tools = view.tools
    tools.set_tool("polygon")
    got = record(tools.polygonFinished)
    viewport = view.graphics.viewport()
    shift = Qt.KeyboardModifier.ShiftModifier
    for i, (x, y) in enumerate([(20, 20), (90, 20), (90, 60)]):
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, shift if i == 0 else Qt.KeyboardModifier.NoModifier,
                         widget_pos(view, x, y))
        qtbot.wait(10)
    assert tools.polygon_subtracts()
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=widget_pos(view, 20, 20))  # its first point
    assert len(got) == 1 and got[0][1] is True and not tools.polygon_subtracts()
    for i, (x, y) in enumerate([(20, 20), (90, 20), (90, 60)]):  # Shift later than the first click: adds
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, shift if i == 2 else Qt.KeyboardModifier.NoModifier,
                         widget_pos(view, x, y))
        qtbot.wait(10)
    assert tools.close_polygon() and got[-1][1] is False


def test_a_polygon_point_can_be_dragged_before_it_is_closed(view, qtbot):
    tools = view.tools
    tools.set_tool("polygon")
    got = record(tools.polygonFinished)
    for p in [(20, 20), (60, 15), (90, 60)]:
        tools.add_polygon_point(*p)
    before = view.view.viewRange()
    drag(qtbot, view, [(60, 15), (65, 25), (70, 35)])
    assert view.view.viewRange() == before  # the point moved, the view did not pan
    pts = tools.polygon_points()
    assert len(pts) == 3 and np.abs(np.subtract(pts[1], (70, 35))).max() < 0.5
    assert pts[0] == (20.0, 20.0) and pts[2] == (90.0, 60.0) and got == []
    drag(qtbot, view, [(40, 70), (60, 72), (80, 75)])  # away from every point: pans, points stay
    assert view.view.viewRange() != before and len(tools.polygon_points()) == 3 and got == []


def test_box_tool_drag_shows_and_emits_a_box_and_modifier_drags_paint_hints(view, qtbot):
    tools = view.tools
    tools.set_tool("box")
    tools.set_radius(3)
    boxes, hints = record(tools.boxFinished), record(tools.hintFinished)
    before = view.view.viewRange()
    drag(qtbot, view, [(20, 15), (50, 40), (80, 60)])
    assert view.view.viewRange() == before and len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]  # edges: pixel 20 starts at 20, pixel 80 ends at 81
    assert abs(x0 - 20.5) < 0.6 and abs(y0 - 15.5) < 0.6 and abs(x1 - 80.5) < 0.6 and abs(y1 - 60.5) < 0.6
    assert tools.box_rect() == boxes[0]
    drag_with(qtbot, view, [(30, 30), (40, 32), (50, 35)], Qt.KeyboardModifier.ShiftModifier)
    drag_with(qtbot, view, [(70, 20), (72, 30)], Qt.KeyboardModifier.ControlModifier)
    assert [h[1:] for h in hints] == [(3.0, True), (3.0, False)] and len(boxes) == 1
    assert np.abs(np.subtract(hints[0][0][0], (30, 30))).max() < 0.5 and not tools.stroke_canvas().any()
    assert view.view.viewRange() == before and tools.box_rect() == boxes[0]
    tools.cancel()
    assert tools.box_rect() is None
    drag(qtbot, view, [(100, 70), (60, 50), (-40, -30)])  # any direction, clamped to the frame
    assert boxes[-1] == (0.0, 0.0, 100.5, 70.5) or np.abs(np.subtract(boxes[-1], (0, 0, 100.5, 70.5))).max() < 0.6
