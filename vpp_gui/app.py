"""``vpp-gui [PATH]``: start the desktop app, on PATH (a frame folder or a video) or the demo clip."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QApplication

from core.app.clips import demo_clip, open_clip_for_pass
from core.app.settings import ModelSpec
from core.app.studio import ModelFactory, default_model_factory
from vpp_gui.settings import APPLICATION, ORGANIZATION, Settings
from vpp_gui.worker import InferenceRunner


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install must not stop the app
        return False


def data_folder() -> Path:
    """Where the app keeps journals of unsaved documents (the platform's app data folder)."""
    from PySide6.QtCore import QStandardPaths

    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location) if location else Path.home() / ".local" / "share" / "vpp-studio"


def create_window(path: str | Path | None = None, *, model_factory: ModelFactory = default_model_factory,
                  settings: Settings | None = None, open_clip: Callable[[str], object] = open_clip_for_pass,
                  demo: bool = True, model: ModelSpec | None = None, project: str | Path | None = None,
                  recover: bool = True, data_dir: str | Path | None = None):
    """Build the main window (a QApplication must exist) and open ``project``, ``path``, else the demo clip.

    With ``recover``, journals left by a crash are offered first (a recovered document wins); the
    journal beside ``project`` is always offered when it is opened, whatever the settings list.
    Tests inject a small ``model_factory`` and a ``settings`` object living in ``tmp_path``.
    """
    from vpp_gui.main_window import MainWindow

    demo_path = demo_clip()
    hint = "" if demo_path.is_dir() else f"(The demo clip is not installed: {demo_path} does not exist.)"
    runner = InferenceRunner(model_factory, open_clip)
    window = MainWindow(settings or Settings(), runner, cuda_available=cuda_available(), demo_hint=hint,
                        data_dir=data_dir if data_dir is not None else data_folder())
    if model is not None:
        window.controls.set_model(model)
    if recover and window.projects.offer_recovery(skip=project):
        return window
    if project is not None:
        window.projects.open(project)
    elif path is not None:
        window.open_path(path)
    elif demo and demo_path.is_dir():
        window.open_path(demo_path)
    return window


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vpp-gui", description="VPP Studio desktop app")
    parser.add_argument("path", nargs="?", help="a folder of frames or a video file (default: the demo clip)")
    parser.add_argument("--model", help="a checkpoint (.safetensors) to start with instead of the default model")
    parser.add_argument("--project", help="a VPP Studio project (*.vppproj) to open")
    parser.add_argument("--theme", choices=("dark", "light"), help="colour theme (remembered)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("VPP Studio")
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    window = create_window(args.path, model=ModelSpec("file", args.model) if args.model else None,
                           project=args.project)
    if args.theme:
        window.set_theme(args.theme)
    window.show()
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
