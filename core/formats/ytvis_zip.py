"""A zip holding ``results.json`` (the YouTube-VIS results, byte for byte): what the evaluation server takes.

Shares the body of :mod:`core.formats.ytvis` (computed once when both are written) and reads back the same
way. ``vpp infer --zip`` is a flag: the zip is written beside ``--out`` with the suffix ``.zip``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from core.data.ytvis import read_ytvis_results
from core.formats.base import Codec, ExportJob, ImportedTracks, ImportProbe
from core.formats.ytvis import check_read_back, results_body, tracks_from_results

#: The one member of the zip.
MEMBER = "results.json"


def zipped(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
    return buf.getvalue()


class YtvisZipCodec(Codec):
    name = "zip"
    label = "zipped results"
    option = "--zip"
    help = "a zip holding results.json (for the evaluation server)"
    infer_help = "also write OUT.zip with results.json inside"
    infer_suffix = ".zip"
    summary = ""  # said by the YTVIS codec: "YTVIS JSON/zip"
    menu_joins = "ytvis"
    file_filter = "Zipped results.json for the evaluation server (*.zip)"
    suffix = ".zip"

    def build(self, job: ExportJob, path: Path) -> bytes:
        return zipped(MEMBER, results_body(job, path)[2])

    def read_back(self, staged: Path, path: Path, job: ExportJob) -> None:
        check_read_back(staged, path, job)

    def claims(self, probe: ImportProbe) -> bool:
        return probe.is_zip

    def import_tracks(self, probe: ImportProbe, **clip: Any) -> ImportedTracks:
        clip.pop("category_id", None)
        return tracks_from_results(probe.path, read_ytvis_results(probe.path), **clip)


CODEC = YtvisZipCodec()
