"""Average-ties ranks in numpy: what ``epx.io.labels`` (the rank target) and ``epx.metrics``
(Spearman, AUROC) share. Imports only numpy, so every stage may use it."""

from __future__ import annotations

import numpy as np


def rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span (scipy's ``method="average"``).

    NaN ranks as NaN and the other values are ranked among themselves (scipy would return all NaN).
    numpy only: ``import scipy.stats`` for its ``rankdata`` costs about 0.5 s per command (more from a cold cache).
    """
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    out = np.full(a.shape, np.nan)
    keep = ~np.isnan(a)
    if keep.any():
        _, group, counts = np.unique(a[keep], return_inverse=True, return_counts=True)
        last = np.cumsum(counts)  # the rank of each tie group's last member
        out[keep] = (last - (counts - 1) / 2.0)[group.reshape(-1)]
    return out
