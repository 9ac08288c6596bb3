"""A document's label edits (add, rename, recolour, delete, reorder, load) and imports joined to its labels.

Plain functions over a :class:`~core.app.document.document.Document`; its ``add_category``,
``rename_category``, ``recolor_category``, ``delete_category``, ``reorder_categories``,
``load_categories``, ``import_file`` (and private ``_labels_changed``) methods call them. Label edits
are not undoable: they are journalled and saved; the label set itself is :mod:`core.app.document.labels`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.app.document.labels import join_categories, read_label_file
from core.app.document.steps import n_tracks
from core.errors import DataError

if TYPE_CHECKING:
    from core.app.document.document import Document


def add_category(doc: Document, name: str, color=None) -> int:
    """A new label called ``name`` and its id (an existing name: its id); see :meth:`Document.add_category`."""
    label_id, created = doc._labels.add(name, color=color)
    if created:
        doc._labels_changed()
    return label_id


def rename_category(doc: Document, category_id: int, name: str) -> None:
    if doc._labels.rename(int(category_id), name):
        doc._labels_changed()


def recolor_category(doc: Document, category_id: int, color) -> None:
    if doc._labels.recolor(int(category_id), color):
        doc._labels_changed()


def delete_category(doc: Document, category_id: int) -> None:
    """Delete a label no track uses (a ValueError names the tracks that do)."""
    label = doc._labels[int(category_id)]
    users = sorted(t.id for t in doc._tracks.values() if t.category_id == label.id)
    if users:
        shown = ", ".join(map(str, users[:8])) + (" …" if len(users) > 8 else "")
        raise ValueError(f"label {label.name!r} is used by {n_tracks(len(users))} ({shown}); relabel (R) or "
                         "delete those tracks first")
    doc._labels.remove(label.id)
    doc._labels_changed()


def reorder_categories(doc: Document, order: Sequence[int]) -> None:
    if doc._labels.reorder(order):
        doc._labels_changed()


def load_categories(doc: Document, path: str | os.PathLike) -> list[int]:
    """Add the labels of a label file (see :meth:`Document.load_categories`); returns their ids, in order."""
    ids, created = [], False
    for outside_id, name in read_label_file(path):
        label_id, new = doc._labels.add(name, prefer_id=outside_id)
        ids.append(label_id)
        created |= new
    if created:
        doc._labels_changed()
    return ids


def labels_changed(doc: Document, *, by_person: bool = True) -> None:
    """Journal ``doc``'s labels and say they changed (``by_person``: the document becomes dirty)."""
    if by_person:
        doc._labels_serial += 1
    # "person": false marks labels a model pass or an import created (nothing a crash would lose)
    person = {} if by_person else {"person": False}
    doc._write_journal({"kind": "categories", **doc._labels.to_json(), **person})
    doc._emit("categories")


def import_file(doc: Document, path: str | os.PathLike, *, video_id: int | None = None,
                label: int | None = None) -> list[int]:
    """Import a results / ground-truth file or DAVIS folder into ``doc`` (see :meth:`Document.import_file`)."""
    from core.export import import_tracks

    imported = import_tracks(path, num_frames=doc.clip.num_frames, height=doc.clip.height,
                             width=doc.clip.width, video_id=video_id)
    if not imported.tracks:
        raise DataError(f"{path}: holds no masks for this clip")
    used = {t.category_id for t in imported.tracks}
    if imported.format == "davis" and label is not None:
        mapping, created = {k: doc._labels[int(label)].id for k in used}, False
    else:
        named = dict(imported.categories)
        cats = [(k, "object" if imported.format == "davis" else named.get(k)) for k in sorted(used)]
        mapping, created = join_categories(doc._labels, cats)
    if created:
        doc._labels_changed(by_person=False)  # the import itself is the undoable step
    return doc.add_tracks([(mapping[t.category_id], t.score, t.frames) for t in imported.tracks],
                          note=f"imported from {Path(path).name}", label=f"Import {Path(path).name}")
