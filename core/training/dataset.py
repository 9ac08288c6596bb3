"""Training clips from any YouTube-VIS-format dataset: T consecutive frames with instance masks.

A clip is resized so the long side is ``long_side`` (like inference) and padded to a patch multiple;
masks go through the same geometry (nearest-neighbour), so targets align with model inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from core.errors import DataError
from core.training.losses import FrameTargets


@dataclass
class _Video:
    video_id: int
    files: list[Path]
    height: int
    width: int
    tracks: list[tuple[int, int, list]]  # (instance id, category index 0..K-1, per-frame RLE or None)


class YtvisClips:
    """Random-access clips of ``clip_len`` frames from a YTVIS annotation file and its image folder.

    Args:
        ann_file: YTVIS ground truth (videos, annotations, categories).
        image_root: folder the videos' ``file_names`` are relative to.
        clip_len: frames per clip (the paper: 3, chained through the pruning state).
        long_side: resize so the long side has this many pixels.
        patch: pad to a multiple of this.
    """

    def __init__(
        self, ann_file: str | Path, image_root: str | Path, *, clip_len: int = 3, long_side: int = 384, patch: int = 16
    ) -> None:
        ann_file, image_root = Path(ann_file), Path(image_root)
        try:
            data = json.loads(ann_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{ann_file}: cannot read YTVIS annotations ({exc})") from exc
        cats = sorted(c["id"] for c in data.get("categories", []))
        if not cats:
            raise DataError(f"{ann_file}: no categories")
        self.category_ids = cats
        cat_index = {c: i for i, c in enumerate(cats)}
        by_video: dict[int, list] = {}
        for a in data.get("annotations", []):
            by_video.setdefault(a["video_id"], []).append(
                (int(a.get("id", len(by_video))), cat_index[a["category_id"]], a["segmentations"])
            )
        self.videos: list[_Video] = []
        from core.data.ytvis_dataset import frame_name_problem

        for v in data.get("videos", []):
            for k, f in enumerate(v["file_names"]):
                why = frame_name_problem(f)
                if why is not None:  # never read outside the image folder because of a name in the file
                    raise DataError(f"{ann_file}: video {v['id']} file_names[{k}] {f!r} {why}; "
                                    f"names must be relative to {image_root}")
            files = [image_root / f for f in v["file_names"]]
            if len(files) >= 1:
                self.videos.append(_Video(v["id"], files, v["height"], v["width"], by_video.get(v["id"], [])))
        if not self.videos:
            raise DataError(f"{ann_file}: no videos")
        self.clip_len = clip_len
        self.long_side = long_side
        self.patch = patch
        self.clips = [(vi, s) for vi, v in enumerate(self.videos) for s in range(max(1, len(v.files) - clip_len + 1))]

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self.clips)

    def load(self, index: int, *, flip: bool = False) -> tuple[torch.Tensor, list[FrameTargets]]:
        """Clip ``index`` -> frames ``[T, 3, Hp, Wp]`` float 0..255 and per-frame targets."""
        vi, start = self.clips[index]
        video = self.videos[vi]
        frames, targets = [], []
        for t in range(start, min(start + self.clip_len, len(video.files))):
            img = cv2.imread(str(video.files[t]), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"{video.files[t]}: frame {t} of video {video.video_id} is not a readable image")
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            masks, labels, ids = [], [], []
            for inst_id, label, segs in video.tracks:
                rle = segs[t] if t < len(segs) else None
                if rle is None:
                    continue
                if isinstance(rle.get("counts"), list):
                    rle = mask_utils.frPyObjects(rle, *rle["size"])
                m = mask_utils.decode(rle)
                if m.any():
                    masks.append(m)
                    labels.append(label)
                    ids.append(inst_id)
            x, ms = self._geometry(img, masks)
            if flip:
                x, ms = x.flip(-1), ms.flip(-1)
            frames.append(x)
            labels_t = torch.tensor(labels, dtype=torch.long)
            targets.append(FrameTargets(labels_t, ms, torch.tensor(ids, dtype=torch.long)))
        while len(frames) < self.clip_len:  # a video shorter than a clip repeats its last frame
            frames.append(frames[-1])
            targets.append(targets[-1])
        return torch.stack(frames), targets

    def _geometry(self, img: np.ndarray, masks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = img.shape[:2]
        scale = self.long_side / max(h, w)
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        ph, pw = -(-rh // self.patch) * self.patch, -(-rw // self.patch) * self.patch
        img = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x = torch.zeros(3, ph, pw)
        x[:, :rh, :rw] = torch.from_numpy(img).permute(2, 0, 1).float()
        ms = torch.zeros(len(masks), ph, pw)
        for i, m in enumerate(masks):
            ms[i, :rh, :rw] = torch.from_numpy(cv2.resize(m, (rw, rh), interpolation=cv2.INTER_NEAREST)).float()
        return x, ms


def collate(items: list[tuple[torch.Tensor, list[FrameTargets]]]) -> tuple[torch.Tensor, list[list[FrameTargets]]]:
    """Pad clips to a common size: frames ``[B, T, 3, H, W]``, targets ``[B][T]``."""
    h = max(x.shape[-2] for x, _ in items)
    w = max(x.shape[-1] for x, _ in items)
    frames = torch.zeros(len(items), items[0][0].shape[0], 3, h, w)
    targets = []
    for i, (x, tg) in enumerate(items):
        frames[i, :, :, : x.shape[-2], : x.shape[-1]] = x
        padded = []
        for t in tg:
            m = torch.zeros(t.masks.shape[0], h, w)
            m[:, : t.masks.shape[-2], : t.masks.shape[-1]] = t.masks
            padded.append(FrameTargets(t.labels, m, t.instance_ids))
        targets.append(padded)
    return frames, targets
