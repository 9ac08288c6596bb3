"""The project's labels (core.app.document.labels): add / rename / recolour / delete / reorder, saved and journalled,
and the three namespaces (project, model, imported file) joined by name: an import never renames a track."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_document import CATS, H, T, W, clip_info, compact, rect, run_pass

from core.app.document import ClipInfo, Document
from core.app.document.labels import default_color, read_label_file
from core.errors import DataError

SYNTHETIC = {1: "circle", 2: "square", 3: "triangle", 4: "star", 5: "ring", 6: "cross"}
CAR = "davis_car_shadow"


def _names(doc: Document) -> dict[int, str]:
    """Every track's label name."""
    return {t.id: doc.category_name(t.category_id) for t in doc.tracks.values()}


# -- the label set --------------------------------------------------------------------------------------


def test_add_category_strips_and_never_duplicates_a_name():
    doc = Document(clip_info(), categories=CATS)
    assert not doc.dirty
    chair = doc.add_category("  chair ")
    assert chair == 4 and doc.categories[chair] == "chair" and doc.dirty
    assert doc.add_category("CHAIR") == chair and doc.add_category("Person") == 1
    assert list(doc.categories) == [1, 2, 3, chair]  # new labels go last
    for bad in ("", "   ", "a\tb", "x" * 101):
        with pytest.raises(ValueError):
            doc.add_category(bad)
    assert len(doc.labels) == 4


def test_rename_recolour_reorder_and_delete_rules():
    doc = Document(clip_info(), categories=CATS)
    a = doc.create_track(0, rect(2, 2, 8, 8), 2)
    doc.rename_category(2, " hound ")
    assert doc.rows()[0].category == "hound" and doc.track(a).category_id == 2  # the track follows its label
    with pytest.raises(ValueError, match="exists already"):
        doc.rename_category(2, "CAT")
    with pytest.raises(ValueError, match="unknown label 9"):
        doc.rename_category(9, "x")
    doc.recolor_category(2, (255, 0, 16))
    assert doc.category_color(2) == "#ff0010" and doc.category_color(1) == default_color(1)
    with pytest.raises(ValueError, match="colour"):
        doc.recolor_category(2, "red")
    doc.reorder_categories([3, 1, 2])
    assert list(doc.categories) == [3, 1, 2]
    with pytest.raises(ValueError, match="every label once"):
        doc.reorder_categories([3, 1])
    # delete: refused while a track uses it, naming the track; an unused one goes
    with pytest.raises(ValueError, match=rf"'hound' is used by 1 track \({a}\)"):
        doc.delete_category(2)
    doc.delete_category(3)
    assert 3 not in doc.categories
    assert doc.add_category("new") == 4  # a deleted label's id is never given to a new one


def test_undo_brings_back_a_deleted_label_with_its_track():
    doc = Document(clip_info(), categories=CATS)
    lab = doc.add_category("chair", "#102030")
    t = doc.create_track(1, rect(2, 2, 9, 9), lab)
    doc.delete([t])
    doc.delete_category(lab)
    assert lab not in doc.categories
    doc.undo()  # the track is back, so is its label (name and colour)
    assert doc.track(t).category_id == lab and doc.categories[lab] == "chair"
    assert doc.category_color(lab) == "#102030"


def test_labels_are_saved_in_order_with_colours_and_older_projects_load(tmp_path):
    doc = Document(clip_info(), categories=CATS)
    chair = doc.add_category("chair", "#abcdef")
    doc.reorder_categories([chair, 3, 2, 1])
    path = doc.save(tmp_path / "p.vppproj")
    assert not doc.dirty
    loaded = Document.load(path)
    assert list(loaded.categories.items()) == [(chair, "chair"), (3, "cat"), (2, "dog"), (1, "person")]
    assert loaded.category_color(chair) == "#abcdef" and not loaded.dirty
    # a project of an older version: no colours, categories sorted by id
    raw = json.loads(path.read_text())
    del raw["label_colors"]
    raw["categories"] = [[1, "person"], [2, "dog"]]
    old = tmp_path / "old.vppproj"
    old.write_text(json.dumps(raw))
    older = Document.load(old)
    assert older.categories == {1: "person", 2: "dog"} and older.category_color(2) == default_color(2)
    raw["label_colors"] = [[1, "blue"]]
    old.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"old\.vppproj: bad label"):
        Document.load(old)


def test_label_edits_are_journalled_and_recovered(tmp_path):
    doc = Document(clip_info(), categories=CATS)
    doc.start_journal(tmp_path)
    chair = doc.add_category("chair")
    t = doc.create_track(2, rect(1, 1, 6, 6), chair)
    doc.recolor_category(chair, "#010203")
    doc.rename_category(1, "judoka")
    doc.delete_category(3)
    doc.reorder_categories([chair, 2, 1])
    journal = doc.journal_path
    rec = Document.recover(journal)
    assert list(rec.categories.items()) == list(doc.categories.items())
    assert rec.category_color(chair) == "#010203" and rec.track(t).category_id == chair and rec.dirty
    # an older journal's categories record (names only) still replays, with default colours
    lines = journal.read_bytes().splitlines(keepends=True)
    from core.app.document.journal import encode_line

    old = tmp_path / "old.journal"
    old.write_bytes(b"".join(lines[:1]) + encode_line({"kind": "categories", "categories": [[1, "a"], [7, "b"]]}))
    assert Document.recover(old).categories == {1: "a", 7: "b"}
    doc.stop_journal()


def test_a_person_s_label_edits_make_the_document_dirty_not_the_model_s():
    doc = Document(clip_info())
    doc.set_categories({1: "person", 2: "dog"})  # the model's: no work of a person's
    assert doc.categories == {1: "person", 2: "dog"} and not doc.dirty
    doc.recolor_category(1, "#000000")
    assert doc.dirty


# -- namespaces joined by name --------------------------------------------------------------------------


def _model_tracks(doc: Document, categories: dict[int, int]) -> dict[int, int]:
    """A pass with one object per (pass id -> model category); returns pass id -> document track id."""
    frames = []
    for f in range(T):
        frames.append(compact(f, [(pid, cat, 0.9, rect(2, 6 * k, 8, 6 * k + 5))
                                  for k, (pid, cat) in enumerate(categories.items())]))
    run_pass(doc, frames)
    return {pid: next(t.id for t in doc.tracks.values() if t.frames[0].decode()[3, 6 * k + 1])
            for k, pid in enumerate(categories)}


def test_model_categories_join_the_project_labels_by_name():
    doc = Document(clip_info(), categories={1: "person", 2: "dog"})
    doc.set_categories({1: "dog", 7: "cat", 2: "Person"})  # another model numbers them differently
    assert doc.categories == {1: "person", 2: "dog", 7: "cat"}  # no label renamed, "cat" keeps its id
    ids = _model_tracks(doc, {10: 1, 11: 2, 12: 7})
    assert _names(doc) == {ids[10]: "dog", ids[11]: "person", ids[12]: "cat"}
    # a label a person renames keeps its model category; a deleted one is made again by name
    doc.rename_category(2, "hound")
    ids = _model_tracks(doc, {20: 1})
    assert _names(doc) == {ids[20]: "hound"}
    doc.delete_category(7)
    ids = _model_tracks(doc, {30: 7})
    assert _names(doc) == {ids[30]: "cat"} and doc.track(ids[30]).category_id == 8


def test_import_of_a_ground_truth_never_renames_existing_tracks(shared_data):
    """The bug of issue 24: the model's "circle #8" became "person #8" when a GT with other ids was imported."""
    doc = Document(ClipInfo("/clips/car-shadow", 40, 480, 854))
    doc.set_categories(SYNTHETIC)
    frames = [compact(f, [(1, 5, 0.9, rect(0, 0, 50, 50, 480, 854)), (2, 1, 0.8, rect(0, 100, 50, 150, 480, 854)),
                          (3, 2, 0.7, rect(0, 200, 50, 250, 480, 854))], 480, 854) for f in range(40)]
    run_pass(doc, frames)
    doc.accept([min(doc.tracks)])  # a person's track, and model tracks
    before = _names(doc)
    assert sorted(before.values()) == ["circle", "ring", "square"]
    (new,) = doc.import_file(shared_data / CAR / "gt_ytvis.json")  # its "car" is id 5, the model's "ring"
    assert {t: n for t, n in _names(doc).items() if t != new} == before
    assert doc.category_name(doc.track(new).category_id) == "car"
    assert doc.track(new).category_id != 5 and doc.categories[5] == "ring"
    assert list(doc.categories.values()).count("car") == 1  # only the labels its tracks use are created
    assert len(doc.categories) == 7
    # importing it again joins the same label
    (again,) = doc.import_file(shared_data / CAR / "gt_ytvis.json")
    assert doc.track(again).category_id == doc.track(new).category_id


def test_a_label_set_from_the_ground_truth_keeps_its_ids_and_the_model_joins_it(shared_data):
    doc = Document(ClipInfo("/clips/car-shadow", 40, 480, 854))
    ids = doc.load_categories(shared_data / CAR / "gt_ytvis.json")
    assert len(ids) == 40 and doc.categories[5] == "car" and doc.categories[26] == "person" and doc.dirty
    doc.set_categories({1: "car", 2: "person", 3: "circle"})
    run_pass(doc, [compact(f, [(1, 1, 0.9, rect(0, 0, 50, 50, 480, 854))], 480, 854) for f in range(40)])
    (tid,) = doc.tracks
    assert doc.track(tid).category_id == 5 and doc.categories[41] == "circle"
    (gt,) = doc.import_file(shared_data / CAR / "gt_ytvis.json")
    assert doc.track(gt).category_id == 5 and len(doc.categories) == 41


def test_a_results_file_without_names_joins_by_id_only_without_a_clash(shared_data, tmp_path):
    results = shared_data / CAR / "pred_ytvis_results.json"
    clip = ClipInfo("/clips/car-shadow", 40, 480, 854)
    ours = Document(clip, categories={5: "car"})  # e.g. exported from this project: id 5 is ours
    (a,) = ours.import_file(results)
    assert ours.category_name(ours.track(a).category_id) == "car" and ours.categories == {5: "car"}
    empty = Document(clip)
    (b,) = empty.import_file(results)
    assert empty.track(b).category_id == 5 and empty.categories == {5: "class 5"}
    raw = json.loads(results.read_text())
    raw.append({**raw[0], "category_id": 9})  # 5 is a label, 9 is not: the ids are not ours
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(raw))
    other = Document(clip, categories={5: "car"})
    got = other.import_file(mixed)
    assert sorted(other.category_name(other.track(t).category_id) for t in got) == ["class 5", "class 9"]
    assert other.categories[5] == "car" and other.track(got[1]).category_id == 9


def test_davis_masks_take_the_given_label_or_object(shared_data, tmp_path):
    clip = ClipInfo("/clips/car-shadow", 40, 480, 854)
    doc = Document(clip, categories={1: "airplane"})
    (a,) = doc.import_file(shared_data / CAR / "pred_masks")
    assert doc.category_name(doc.track(a).category_id) == "object" and doc.categories[1] == "airplane"
    car = doc.add_category("car")
    (b,) = doc.import_file(shared_data / CAR / "pred_masks", label=car)
    assert doc.track(b).category_id == car


# -- exports and label files ----------------------------------------------------------------------------


def test_exports_write_the_project_labels(tmp_path):
    doc = Document(clip_info(), categories=CATS)
    chair = doc.add_category("chair")
    doc.create_track(0, rect(2, 2, 9, 9), chair)
    doc.rename_category(1, "judoka")
    doc.export({"coco": tmp_path / "c.json"})
    cats = json.loads((tmp_path / "c.json").read_text())["categories"]
    assert {c["id"]: c["name"] for c in cats} == {1: "judoka", 2: "dog", 3: "cat", chair: "chair"}


def test_label_files(tmp_path, shared_data):
    text = tmp_path / "labels.txt"
    text.write_text("\ufeffchair\n\n  table \nChair\nperson\n", encoding="utf-8")
    assert read_label_file(text) == [(None, "chair"), (None, "table"), (None, "person")]
    doc = Document(clip_info(), categories=CATS)
    assert doc.load_categories(text) == [4, 5, 1]  # "person" exists: not duplicated
    assert list(doc.categories.values()) == ["person", "dog", "cat", "chair", "table"]
    gt = read_label_file(shared_data / CAR / "gt_ytvis.json")
    assert gt[4] == (5, "car") and len(gt) == 40

    def refused(name, data, match):
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(DataError, match=match) as info:
            read_label_file(p)
        assert str(p) in str(info.value)

    refused("empty.txt", b"\n  \n", "holds no label names")
    refused("binary.txt", b"chair\n\x89PNG\x00\x00", "not a text file")
    refused("latin1.txt", "chair\nchaise longue\nfa\u00e7ade\n".encode("latin-1"), "line 3 is not UTF-8")
    refused("tab.txt", b"chair\ntable\tleg\n", "line 2: .*control character")
    refused("nocats.json", b'{"videos": []}', "no 'categories' list")
    refused("badcat.json", b'{"categories": [{"id": "1", "name": "a"}]}', r"categories\[0\] must be")
    refused("broken.json", b'{"categories": [', "not valid JSON")
    with pytest.raises(DataError, match="is a folder"):
        read_label_file(tmp_path)
    before = doc.categories
    with pytest.raises(DataError):
        doc.load_categories(tmp_path / "empty.txt")
    assert doc.categories == before


def test_relabel_and_create_track_check_the_labels():
    doc = Document(clip_info(), categories=CATS)
    with pytest.raises(ValueError, match="unknown category 9; known: 1 person, 2 dog, 3 cat"):
        doc.create_track(0, rect(1, 1, 5, 5), 9)
    t = doc.create_track(0, rect(1, 1, 5, 5), doc.add_category("chair"))
    assert doc.rows()[0].category == "chair" and doc.track(t).protected
    assert np.any(doc.mask(t, 0))
    assert doc.mask(t, 0).shape == (H, W)
