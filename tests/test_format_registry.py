"""core.formats: the registry of export formats, found automatically, and everything made from it: the CLI
options of vpp infer / vpp export, the export door's checks and messages (the app's export menu:
tests/gui/test_format_menu.py)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import core.formats
from core.commands import export as export_cmd
from core.commands import infer as infer_cmd
from core.commands.output_options import options_phrase, output_paths
from core.errors import DataError
from core.export import check_outputs, import_tracks
from core.formats import codec, codecs, staging_order
from core.formats.base import Codec


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(core.formats.__path__) if m.name != "base")


def test_every_module_is_a_codec_in_a_stable_order():
    names = [c.name for c in codecs()]
    assert names[:4] == ["ytvis", "zip", "davis", "coco"]
    assert names[4:] == sorted(names[4:])  # any other format by name
    assert len(names) == len(set(names)) == len(_modules())  # every module found, each once
    for m in _modules():
        c = importlib.import_module(f"core.formats.{m}").CODEC
        assert isinstance(c, Codec) and c in codecs() and codec(c.name) is c
    with pytest.raises(ValueError, match="unknown export format 'nope'"):
        codec("nope")


def test_every_codec_says_what_the_cli_and_the_menu_need():
    options = [c.option for c in codecs()]
    assert len(set(options)) == len(options) and all(o.startswith("--") for o in options)
    for c in codecs():
        assert c.label and c.help and (c.menu_label or c.menu_joins)
        if not c.folder:
            assert c.suffix.startswith(".") and c.file_filter.endswith(f"(*{c.suffix})")
    order = staging_order()
    assert [c.name for c in order][-1] == "davis" and {c.name for c in order} == {c.name for c in codecs()}
    assert not any(c.folder for c in order[:-1])  # files first, folders (the slowest) last


def _parser(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpp")
    module.add_parser(parser.add_subparsers())
    return parser


def test_cli_options_come_from_the_registry_and_keep_their_names(tmp_path):
    infer = _parser(infer_cmd)
    for c in codecs():
        if c.name not in ("ytvis", "zip"):
            args = infer.parse_args(["infer", "clip", "--out", "r.json", c.option, str(tmp_path / "x")])
            assert output_paths(args, "infer")[c.name] == tmp_path / "x"
    args = infer.parse_args(["infer", "clip", "--out", "o/r.json", "--zip", "--davis-png", "m", "--coco", "c.json"])
    assert (args.out, args.zip, args.davis_png, args.coco) == ("o/r.json", True, "m", "c.json")
    assert output_paths(args, "infer") == {**{c.name: None for c in codecs()}, "ytvis": Path("o/r.json"),
                                           "zip": Path("o/r.zip"), "davis": Path("m"), "coco": Path("c.json")}
    with pytest.raises(SystemExit):  # --out is required by vpp infer
        infer.parse_args(["infer", "clip"])
    export = _parser(export_cmd)
    args = export.parse_args(["export", "p.vppproj", "--zip", "r.zip", "--coco", "c.json"])
    assert output_paths(args, "export") == {**{c.name: None for c in codecs()}, "zip": "r.zip", "coco": "c.json"}
    options = [c.option for c in codecs()]
    assert options[:4] == ["--out", "--zip", "--davis-png", "--coco"]
    assert options_phrase() == f"{', '.join(options[:-1])} and/or {options[-1]}"


def test_the_door_checks_and_names_outputs_by_the_registry(tmp_path):
    names = [c.name for c in staging_order()]
    with pytest.raises(ValueError, match=f"at least one output: {', '.join(names[:-1])} or {names[-1]}"):
        check_outputs({})
    with pytest.raises(ValueError, match="unknown export format 'pdf'"):
        check_outputs({"pdf": tmp_path / "r.pdf"})
    assert check_outputs({"ytvis": tmp_path / "r.json", "coco": None}) == {"ytvis": tmp_path / "r.json"}
    (tmp_path / "odd.json").write_text("42")
    kinds = [k for c in codecs() for k in c.import_kinds]
    assert kinds[:3] == ["YouTube-VIS results list", "YouTube-VIS ground truth", "COCO per-frame JSON"]
    with pytest.raises(DataError, match=re.escape(f"odd.json: not a {', '.join(kinds[:-1])} or {kinds[-1]}")):
        import_tracks(tmp_path / "odd.json", num_frames=1, height=2, width=2)
