"""The twelve summary figures (AP ... ARl) as running means over categories, one category at a time.

COCO's ``summarize`` (and the YouTube-VIS video protocol, which copies it) averages the valid (> -1)
entries of ``precision [T, R, K, A, M]`` and ``recall [T, K, A, M]`` over IoU thresholds, recall points
and categories. Holding those arrays for every category of the ground truth costs ~97 KB per category
(10 x 101 x 4 x 3 float64, twice over), so a ground truth listing 10^5 categories took 11 GB even when
only a handful occur. :class:`SummaryMeans` keeps a sum and a count per figure instead: each category
with ground truth adds its own ``[T, R, A, M]`` / ``[T, A, M]`` slices and is then dropped, and categories
without ground truth (all -1, excluded from every mean) are never allocated at all. The figures are the
same means (summed per category, so they agree with one ``np.mean`` to rounding, ~1e-16).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The order of pycocotools' ``COCOeval.stats`` (and of the video-AP summary).
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


class SummaryMeans:
    """Sums and counts of the valid entries behind each of :data:`SUMMARY_KEYS`.

    ``t50`` / ``t75``: the IoU-threshold indices of AP50 / AP75 (empty: that figure stays -1, as
    ``COCOeval.summarize`` gives when the threshold is not in its list); ``n_max_dets``: the number of
    maxDets settings (the last is the one AP and the area-range figures use). Area index 0 is "all",
    1..3 small, medium, large.
    """

    def __init__(self, t50: Sequence[int], t75: Sequence[int], n_max_dets: int = 3) -> None:
        self._t50, self._t75, self._last = list(t50), list(t75), n_max_dets - 1
        self._sum = dict.fromkeys(SUMMARY_KEYS, 0.0)
        self._count = dict.fromkeys(SUMMARY_KEYS, 0)

    def _add(self, key: str, values: np.ndarray) -> None:
        valid = values[values > -1]
        if valid.size:
            self._sum[key] += float(np.sum(valid))
            self._count[key] += int(valid.size)

    def add(self, precision: np.ndarray, recall: np.ndarray) -> None:
        """One category's ``precision [T, R, A, M]`` and ``recall [T, A, M]``."""
        last = self._last
        self._add("AP", precision[:, :, 0, last])
        self._add("AP50", precision[self._t50, :, 0, last])
        self._add("AP75", precision[self._t75, :, 0, last])
        for a, key in ((1, "APs"), (2, "APm"), (3, "APl")):
            self._add(key, precision[:, :, a, last])
        for m, key in enumerate(("AR1", "AR10", "AR100")):
            self._add(key, recall[:, 0, m])
        for a, key in ((1, "ARs"), (2, "ARm"), (3, "ARl")):
            self._add(key, recall[:, a, last])

    def figures(self) -> dict[str, float]:
        """Each figure's mean, -1 where no category gave a valid entry."""
        return {k: self._sum[k] / self._count[k] if self._count[k] else -1.0 for k in SUMMARY_KEYS}
