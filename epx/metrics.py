"""Evaluation metrics, computed in one place for every model.

Spearman (average ties) is the ML4G metric. AUROC and AUPRC apply to binary targets. All
functions ignore rows whose truth is NaN (unlabelled genes) and return NaN when undefined.
"""

from __future__ import annotations

import numpy as np

from epx.ranks import rankdata

REGRESSION_METRICS = ("spearman", "pearson", "r2", "mse")
BINARY_METRICS = ("auroc", "auprc", "spearman")


def _clean(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    keep = np.isfinite(t) & np.isfinite(p)
    return t[keep], p[keep]


def spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _clean(y_true, y_pred)
    if t.size < 3 or np.ptp(t) == 0 or np.ptp(p) == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(t), rankdata(p))[0, 1])


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _clean(y_true, y_pred)
    if t.size < 3 or np.ptp(t) == 0 or np.ptp(p) == 0:
        return float("nan")
    return float(np.corrcoef(t, p)[0, 1])


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _clean(y_true, y_pred)
    ss_tot = float(((t - t.mean()) ** 2).sum()) if t.size else 0.0
    if ss_tot == 0:
        return float("nan")
    return 1.0 - float(((t - p) ** 2).sum()) / ss_tot


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _clean(y_true, y_pred)
    return float(((t - p) ** 2).mean()) if t.size else float("nan")


def auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    t, s = _clean(y_true, y_score)
    pos = t > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve), ties grouped."""
    t, s = _clean(y_true, y_score)
    pos = t > 0.5
    n_pos = int(pos.sum())
    if n_pos == 0 or n_pos == t.size:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, p_sorted = s[order], pos[order]
    tp = np.cumsum(p_sorted)
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]  # end of each tie group
    tp_g = tp[last]
    precision = tp_g / (last + 1)
    recall = tp_g / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_sd(values) -> dict[str, float | None]:
    """Mean and sd (ddof=1) of the finite values, None where undefined; the sd of equal values is
    exactly 0 (a deterministic model's seeds), not the rounding error of their mean."""
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    sd = (0.0 if np.ptp(vals) == 0 else float(vals.std(ddof=1))) if vals.size > 1 else None
    return {"mean": float(vals.mean()) if vals.size else None, "sd": sd}


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, binary: bool) -> dict[str, float]:
    """The metric set for a task: AUROC/AUPRC/Spearman for binary, else Spearman/Pearson/R2/MSE."""
    fns = {"spearman": spearman, "pearson": pearson, "r2": r2, "mse": mse, "auroc": auroc, "auprc": auprc}
    names = BINARY_METRICS if binary else REGRESSION_METRICS
    t, _ = _clean(y_true, y_pred)
    return {"n": int(t.size), **{n: fns[n](y_true, y_pred) for n in names}}
