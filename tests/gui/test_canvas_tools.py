"""vpp_gui.canvas_tools: the mask tools' overlay turns input into gestures (plain methods and a real mouse)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
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
    assert got == [([(10.0, 10.0), (50.0, 10.0), (50.0, 60.0)],)]
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
