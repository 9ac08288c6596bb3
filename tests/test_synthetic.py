"""The synthetic YouTube-VIS generator: determinism, validity, motion/occlusion/absence, speed, CLI."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from core.cli import main
from core.data.rle import decode_rle
from core.data.synthetic import CATEGORIES, generate_clip, write_synthetic_dataset
from core.data.ytvis_dataset import load_ytvis_dataset


def test_same_seed_same_clip_other_seed_other_clip():
    a, b = generate_clip(3, 96, 64, 8), generate_clip(3, 96, 64, 8)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert [i.category_id for i in a.instances] == [i.category_id for i in b.instances]
    for x, y in zip(a.instances, b.instances):
        np.testing.assert_array_equal(x.masks, y.masks)
    c = generate_clip(4, 96, 64, 8)
    assert not np.array_equal(a.frames, c.frames)


def test_clip_shapes_and_invariants():
    clip = generate_clip(11, 80, 50, 12, max_objects=5)
    assert clip.frames.shape == (12, 50, 80, 3) and clip.frames.dtype == np.uint8
    assert clip.instances
    total = np.zeros((12, 50, 80), int)
    for inst in clip.instances:
        assert inst.masks.shape == (12, 50, 80) and inst.masks.dtype == bool
        assert 1 <= inst.category_id <= len(CATEGORIES) and inst.present.any()
        np.testing.assert_array_equal(inst.present, inst.masks.any(axis=(1, 2)))
        total += inst.masks
    assert total.max() <= 1  # visible parts never overlap: occlusion follows z-order
    with pytest.raises(ValueError, match="width, height >= 8"):
        generate_clip(0, 4, 4, 2)


def test_motion_absence_occlusion_and_categories_over_many_clips():
    colours = {c: [] for c in range(1, len(CATEGORIES) + 1)}
    gaps = moved = occluded = 0
    for seed in range(40):
        clip = generate_clip(seed, 96, 72, 10)
        for k, inst in enumerate(clip.instances):
            p = inst.present
            gaps += int(not p.all())
            first, last = np.nonzero(inst.masks[p][0]), np.nonzero(inst.masks[p][-1])
            moved += int(np.hypot(first[0].mean() - last[0].mean(), first[1].mean() - last[1].mean()) > 2)
            areas = inst.masks.sum(axis=(1, 2))[p]
            occluded += int(any(other.masks[p].any() for j, other in enumerate(clip.instances) if j > k)
                            and areas.min() < 0.8 * areas.max())
            colours[inst.category_id].append(clip.frames[inst.masks].astype(float).mean(axis=0))
    print(f"instances with gaps {gaps}, moving {moved}, occluded {occluded}")
    assert gaps > 5 and moved > 10 and occluded > 0
    means = {c: np.mean(v, axis=0) for c, v in colours.items()}
    assert all(len(v) > 0 for v in colours.values())  # every category appears
    ids = sorted(means)
    closest = min(np.linalg.norm(means[a] - means[b]) for a in ids for b in ids if a < b)
    assert closest > 25  # categories differ in colour statistics


def test_sixty_four_frames_in_well_under_a_second():
    generate_clip(0, 320, 240, 4)  # warm up OpenCV
    start = time.perf_counter()
    generate_clip(1, 320, 240, 64)
    assert time.perf_counter() - start < 1.0


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_is_valid_and_byte_identical_for_the_same_seed(tmp_path):
    kw = dict(train_videos=2, val_videos=1, width=48, height=40, frames=5, seed=7)
    write_synthetic_dataset(tmp_path / "a", **kw)
    write_synthetic_dataset(tmp_path / "b", **kw)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and len(a) == 2 + 3 * 5
    write_synthetic_dataset(tmp_path / "c", **{**kw, "seed": 8})
    assert _files(tmp_path / "c") != a
    train, valid = load_ytvis_dataset(tmp_path / "a", "train"), load_ytvis_dataset(tmp_path / "a", "valid")
    assert [c.name for c in train.gt.categories] == list(CATEGORIES)
    # splits come from distinct seed streams
    assert not np.array_equal(train.video_source(1).frame(0), valid.video_source(1).frame(0))
    # ground truth equals the in-memory generator's masks, with nulls where an object is absent
    clip = generate_clip([7, 0, 1], 48, 40, 5)
    anns = train.gt.tracks(2)
    assert [a.category_id for a in anns] == [i.category_id for i in clip.instances]
    for ann, inst in zip(anns, clip.instances):
        for t, seg in enumerate(ann.segmentations):
            assert (seg is None) == (not inst.present[t])
            if seg is not None:
                np.testing.assert_array_equal(decode_rle(seg), inst.masks[t])
                assert ann.areas[t] == inst.masks[t].sum()


def test_make_synthetic_cli(tmp_path, capsys):
    out = tmp_path / "shapes"
    code = main(["make-synthetic", "--out", str(out), "--train-videos", "1", "--val-videos", "1", "--width", "32",
                 "--height", "24", "--frames", "2", "--seed", "3"])
    assert code == 0
    assert (out / "train" / "instances.json").is_file() and (out / "valid" / "JPEGImages" / "vid00000").is_dir()
    assert "train:" in capsys.readouterr().out
    assert main(["make-synthetic", "--out", str(out), "--train-videos", "0", "--val-videos", "0"]) == 2
    assert "must be >= 0 and not both 0" in capsys.readouterr().err


def test_random_appearance_decouples_colour_from_category():
    """With appearance="random" the same category comes in several colour styles; by default one per category."""
    from core.data.synthetic import _COLOURS, generate_clip

    def styles(appearance):
        seen: dict[int, set[int]] = {}
        for seed in range(30):
            clip = generate_clip([9, seed], 96, 72, 2, max_objects=4, appearance=appearance)
            for inst in clip.instances:
                t = int(inst.present.argmax())
                mean = clip.frames[t][inst.masks[t]].reshape(-1, 3).mean(0)
                hue = mean / np.linalg.norm(mean)  # shading scales the colour; compare directions
                nearest = int(np.argmax([hue @ (np.array(c) / np.linalg.norm(c)) for c in _COLOURS]))
                seen.setdefault(inst.category_id, set()).add(nearest)
        return seen

    by_category = styles("category")
    assert all(s == {c - 1} for c, s in by_category.items()), by_category
    assert sum(len(s) for s in styles("random").values()) > len(by_category) + 6
    paired = styles("paired")  # circle/ring, square/cross, triangle/star share one look
    assert len(paired) == 6, paired
    assert all(len(s) == 1 for s in paired.values()), paired
    assert paired[1] == paired[5] and paired[2] == paired[6] and paired[3] == paired[4], paired
    assert len({min(s) for s in paired.values()}) == 3, paired


def test_distractors_are_unannotated_look_alikes_that_hide_what_is_behind():
    """Distractors wear the categories' colours, are never in a mask, hide objects, keep the objects' draws."""
    from core.data.synthetic import _COLOURS

    found_occlusion, with_distractors = False, 0
    palette = np.array(_COLOURS, np.float32)
    palette /= np.linalg.norm(palette, axis=1, keepdims=True)
    for seed in range(12):
        plain = generate_clip([5, seed], 96, 72, 6, max_objects=3)
        clip = generate_clip([5, seed], 96, 72, 6, max_objects=3, max_distractors=3)
        assert plain.distractors is None and clip.distractors.shape == (6, 72, 96)
        assert len(clip.instances) <= len(plain.instances)
        for inst in clip.instances:
            assert not (inst.masks & clip.distractors).any()  # never annotated
        # The objects are the same draws as without distractors: their visible parts only shrink.
        by_cat = {}
        for inst in plain.instances:
            by_cat.setdefault(inst.category_id, []).append(inst.masks)
        for inst in clip.instances:
            assert any(not (inst.masks & ~m).any() for m in by_cat[inst.category_id])
        hidden = sum(int(m.sum()) for m in (i.masks for i in plain.instances)) - sum(
            int(i.masks.sum()) for i in clip.instances)
        found_occlusion |= hidden > 0
        if not clip.distractors.any():  # it may have stayed off-screen or behind objects
            continue
        with_distractors += 1
        # Their look is one of the categories' colours (direction of the mean RGB).
        t = int(clip.distractors.any(axis=(1, 2)).argmax())
        mean = clip.frames[t][clip.distractors[t]].reshape(-1, 3).astype(np.float32).mean(0)
        assert float((palette @ (mean / np.linalg.norm(mean))).max()) > 0.93, seed
    assert found_occlusion and with_distractors >= 8
    with pytest.raises(ValueError, match="max_distractors"):
        generate_clip(0, 32, 32, 2, max_distractors=-1)


def test_make_synthetic_records_distractors(tmp_path):
    out = tmp_path / "clutter"
    assert main(["make-synthetic", "--out", str(out), "--train-videos", "0", "--val-videos", "1", "--width", "48",
                 "--height", "32", "--frames", "2", "--max-distractors", "2"]) == 0
    import json

    info = json.loads((out / "valid" / "instances.json").read_text())["info"]
    assert info["max_distractors"] == 2
    assert main(["make-synthetic", "--out", str(out), "--val-videos", "1", "--max-distractors", "-1"]) == 2
    assert main(["make-synthetic", "--out", str(out), "--val-videos", "1", "--max-objects", "300"]) == 2
    with pytest.raises(ValueError, match="max_objects <= 254"):
        generate_clip(0, 32, 32, 2, max_objects=255)


def _palette_share(frame: np.ndarray, where: np.ndarray) -> float:
    """Share of the pixels in ``where`` whose colour direction is within ~8 degrees of a category colour."""
    from core.data.synthetic import _COLOURS

    px = frame[where].reshape(-1, 3).astype(np.float32)
    px /= np.linalg.norm(px, axis=1, keepdims=True) + 1e-6
    palette = np.array(_COLOURS, np.float32)
    palette /= np.linalg.norm(palette, axis=1, keepdims=True)
    return float(((px @ palette.T).max(1) > 0.99).mean())


def test_camouflage_scene_background_wears_the_categories_looks_and_objects_an_outline():
    """scene="camouflage": most background pixels take a category's colour; objects have a dark rim."""
    plain_share, camo_share, rim_darker = [], [], []
    for seed in range(6):
        plain = generate_clip([3, seed], 256, 144, 2, max_objects=3)
        camo = generate_clip([3, seed], 256, 144, 2, max_objects=3, scene="camouflage")
        assert np.array_equal(plain.frames, generate_clip([3, seed], 256, 144, 2, max_objects=3, scene="plain").frames)
        for clip, out in ((plain, plain_share), (camo, camo_share)):
            bg = ~np.any([i.masks[0] for i in clip.instances], axis=0) if clip.instances else np.ones((144, 256), bool)
            out.append(_palette_share(clip.frames[0], bg))
        for inst in camo.instances:
            m = inst.masks[0].astype(np.uint8)
            if m.sum() < 400:
                continue
            inner = cv2.erode(m, np.ones((9, 9), np.uint8)).astype(bool)
            rim = m.astype(bool) & ~cv2.erode(m, np.ones((3, 3), np.uint8)).astype(bool)
            if inner.any() and rim.any():
                grey = camo.frames[0].astype(np.float32).mean(2)
                rim_darker.append(grey[rim].mean() < 0.7 * grey[inner].mean())
    assert np.mean(camo_share) > 0.3 > np.mean(plain_share) + 0.1, (camo_share, plain_share)
    assert rim_darker and np.mean(rim_darker) > 0.8, rim_darker
    with pytest.raises(ValueError, match="scene"):
        generate_clip(0, 64, 48, 2, scene="jungle")
    a = generate_clip([4, 1], 96, 64, 4, scene="camouflage")
    b = generate_clip([4, 1], 96, 64, 4, scene="camouflage")
    assert np.array_equal(a.frames, b.frames)


def test_mixed_dataset_alternates_scenes_and_each_video_is_its_own_scenes_clip(tmp_path):
    """scene="mixed": video i is plain for even i, camouflage for odd i, byte-equal to that scene's dataset."""
    kw = dict(train_videos=4, val_videos=0, width=64, height=48, frames=2, seed=5, max_objects=2)
    for scene in ("mixed", "plain", "camouflage"):
        write_synthetic_dataset(tmp_path / scene, scene=scene, **kw)
    gt = json.loads((tmp_path / "mixed" / "train" / "instances.json").read_text())
    assert [v["scene"] for v in gt["videos"]] == ["plain", "camouflage", "plain", "camouflage"]
    assert gt["info"]["scene"] == "mixed"
    for i, scene in enumerate(["plain", "camouflage", "plain", "camouflage"]):
        for t in range(2):
            name = f"train/JPEGImages/vid{i:05d}/{t:05d}.jpg"
            assert (tmp_path / "mixed" / name).read_bytes() == (tmp_path / scene / name).read_bytes(), (i, t)
    other = "camouflage" if i % 2 == 0 else "plain"
    assert (tmp_path / "mixed" / name).read_bytes() != (tmp_path / other / name).read_bytes()
    with pytest.raises(ValueError, match="mixed"):
        write_synthetic_dataset(tmp_path / "bad", scene="jungle", **kw)
