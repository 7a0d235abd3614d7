"""KmerRidgeModel: k-mer frequencies of the central ``span`` bp of each reference window, then ridge.

The smallest model of the ``sequence`` input kind: no torch, closed-form ridge (L2 logistic by
Newton steps for binary targets) on standardised k-mer frequencies. It reads ``FoldData.X``, a lazy
one-hot view (:class:`epx.sequence.windows.SequenceRows`), in batches, and only the central span of
each window (``view.resize(span)`` builds just those bases from the FASTA).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from epx.models.contract import FoldData
from epx_example.model import RidgeModel


def _canonical_columns(k: int) -> np.ndarray:
    """Per k-mer code, the code of min(k-mer, reverse complement): a k-mer and its reverse
    complement on the other strand count as one feature."""
    codes = np.arange(4**k)
    digits = (codes[:, None] // 4 ** np.arange(k - 1, -1, -1)) % 4  # A, C, G, T = 0..3
    rc = ((3 - digits[:, ::-1]) * 4 ** np.arange(k - 1, -1, -1)).sum(axis=1)
    return np.minimum(codes, rc)


def kmer_frequencies(onehot: np.ndarray, k: int, canonical: bool = False) -> np.ndarray:
    """(n, 4**k) frequencies of the k-mers of one-hot windows (n, L, 4); k-mers touching N (an
    all-zero row) are skipped; a window without any valid k-mer gets all zeros."""
    onehot = np.asarray(onehot)
    n, length, _ = onehot.shape
    valid = onehot.sum(axis=2) == 1
    codes = onehot.argmax(axis=2).astype(np.int64)
    m = length - k + 1
    if m < 1:
        return np.zeros((n, 4**k))
    index = np.zeros((n, m), np.int64)
    ok = np.ones((n, m), bool)
    for t in range(k):
        index = index * 4 + codes[:, t:t + m]
        ok &= valid[:, t:t + m]
    if canonical:
        index = _canonical_columns(k)[index]
    rows = np.broadcast_to(np.arange(n)[:, None], index.shape)
    counts = np.bincount((rows[ok] * 4**k + index[ok]), minlength=n * 4**k).reshape(n, 4**k).astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    return counts / np.where(total > 0, total, 1.0)


class KmerRidgeModel(RidgeModel):
    def __init__(self, params: dict[str, Any], task: str, seed: int = 0) -> None:
        super().__init__(params, task, seed)
        if task not in ("regression", "binary"):
            raise ValueError(f"kmer-ridge fits regression or binary targets, not {task}")

    def features(self, X: Any) -> np.ndarray:
        """k-mer frequencies of the central ``span`` bp of each row, read in batches of ``batch_rows``."""
        k, canonical = int(self.params["k"]), bool(self.params["canonical"])
        window = int(X.shape[1])
        span = min(int(self.params["span"]), window)
        if hasattr(X, "resize"):  # a lazy view: build only the central bases
            view, lo = X.resize(span), 0
        else:
            view, lo = X, window // 2 - span // 2
        batch = int(self.params["batch_rows"])
        parts = [kmer_frequencies(np.asarray(view[a:a + batch])[:, lo:lo + span], k, canonical)
                 for a in range(0, len(view), batch)]
        out = np.concatenate(parts) if parts else np.zeros((0, 4**k))
        if canonical:
            out = out[:, np.unique(_canonical_columns(k))]
        return out

    def fit(self, train: FoldData, valid: FoldData | None = None) -> None:
        super().fit(FoldData(X=self.features(train.X), y=train.y, rows=train.rows))

    def predict(self, data: FoldData) -> np.ndarray:
        return super().predict(FoldData(X=self.features(data.X), y=None, rows=data.rows))
