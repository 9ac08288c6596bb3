"""Persistent settings (QSettings): recent files, last folders, theme, window layout, run choices.

Everything goes through :class:`Settings`, which takes the ``QSettings`` to use (tests pass one that
lives in ``tmp_path``), so no code reads global settings behind the app's back.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "VPP Studio"
APPLICATION = "vpp-gui"
MAX_RECENT = 10


class Settings:
    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings if qsettings is not None else QSettings(ORGANIZATION, APPLICATION)

    # -- recent files ------------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.q.value("recent_files", [])
        if isinstance(value, str):  # QSettings returns a lone string for a one-item list
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | Path) -> list[str]:
        p = str(Path(path).resolve())
        files = [p] + [f for f in self.recent_files() if f != p]
        files = files[:MAX_RECENT]
        self.q.setValue("recent_files", files)
        return files

    def recent_projects(self) -> list[str]:
        value = self.q.value("recent_projects", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent_project(self, path: str | Path) -> list[str]:
        p = str(Path(path).resolve())
        files = ([p] + [f for f in self.recent_projects() if f != p])[:MAX_RECENT]
        self.q.setValue("recent_projects", files)
        return files

    def clear_recent(self) -> None:
        self.q.setValue("recent_files", [])

    # -- folders -------------------------------------------------------------------------------------
    def folder(self, what: str) -> str:
        """Last folder used for ``what`` ("open", "export"), else the home folder."""
        value = str(self.q.value(f"folders/{what}", "") or "")
        return value if value and Path(value).is_dir() else str(Path.home())

    def set_folder(self, what: str, folder: str | Path) -> None:
        self.q.setValue(f"folders/{what}", str(folder))

    # -- plain values --------------------------------------------------------------------------------
    def value(self, key: str, default, kind: type | None = None):
        value = self.q.value(key, default)
        if kind is bool and isinstance(value, str):  # INI files store booleans as text
            return value.lower() in ("true", "1", "yes")
        if kind is not None and value is not None:
            try:
                return kind(value)
            except (TypeError, ValueError):
                return default
        return value

    def set_value(self, key: str, value) -> None:
        self.q.setValue(key, value)

    # -- window layout -------------------------------------------------------------------------------
    def window_layout(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.q.value("window/geometry")
        state = self.q.value("window/state")
        return (geometry if isinstance(geometry, QByteArray) else None,
                state if isinstance(state, QByteArray) else None)

    def set_window_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)

    def sync(self) -> None:
        self.q.sync()
