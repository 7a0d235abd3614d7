"""Peak-centric window features from BED files (read by :mod:`epx.io.bed`).

Why numpy and not bedtools: counts and coverage for tens of thousands of windows are a handful of
``np.searchsorted`` calls on sorted peak starts/ends and on the merged peak union, which is several
times faster than writing BED files and running ``bedtools intersect``/``coverage`` (see
``benchmarks/bench_featurize.py``), and it needs no temporary files.

Features per window (:data:`PEAK_STATS`):

* ``n_peaks``: peaks overlapping the window (``peak.start < win.end and peak.end > win.start``).
* ``coverage``: bases of the window covered by the union of peaks / window length.
* ``density``: ``n_peaks`` per kb of window.
* ``entropy``: Shannon entropy (bits) of peak *midpoints* ``(start + end) / 2`` over
  ``n_sub = 10`` equal sub-bins of the window, counting the peaks whose midpoint lies in the
  window; 0 when fewer than 2 midpoints fall in the window. Ranges from 0 (clustered) to
  ``log2(10)`` (spread evenly).
* ``max_signal``: largest signal value of the overlapping peaks (NaN when none overlap); only for
  files with a signal column (see :data:`FLAVOURS`): other files have no ``max_signal`` feature.

Per gene, :func:`tss_distance` gives the signed distance from the TSS to the nearest peak base:
negative upstream, positive downstream (strand-aware), 0 when a peak overlaps the TSS, NaN when the
chromosome has no peaks. Ties between an upstream and a downstream peak go downstream.

Windows are clipped at 0, and at the chromosome end when ``chrom_sizes`` is given (a BED file does
not know chromosome sizes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from epx.features.windows import (
    DEFAULT_WINDOWS,
    WindowSpec,
    chrom_groups,
    gene_arrays,
    gene_windows,
)
from epx.io.bed import ChromPeaks, PeakSet, read_peaks
from epx.io.bigwig import _ranges
from epx.io.chroms import canonical_chrom

PEAK_STATS: tuple[str, ...] = ("n_peaks", "coverage", "density", "entropy", "max_signal")


def _covered_before(cp: ChromPeaks, x: np.ndarray) -> np.ndarray:
    """Bases ``< x`` covered by the peak union."""
    j = np.searchsorted(cp.union_ends, x, side="right")
    cov = cp.union_cum[j]
    if len(cp.union_starts):
        jj = np.minimum(j, len(cp.union_starts) - 1)
        part = np.where(j < len(cp.union_starts), np.maximum(x - cp.union_starts[jj], 0), 0)
        cov = cov + part
    return cov


def peak_window_stats(
    cp: ChromPeaks | None,
    starts: np.ndarray,
    ends: np.ndarray,
    stats: Sequence[str] = PEAK_STATS,
    n_sub: int = 10,
) -> dict[str, np.ndarray]:
    """Peak features of windows ``[starts, ends)`` on one chromosome (see module docstring)."""
    ws = np.asarray(starts, dtype=np.int64)
    we = np.maximum(np.asarray(ends, dtype=np.int64), ws)
    m = len(ws)
    length = (we - ws).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    if cp is None or len(cp) == 0:
        for st in stats:
            out[st] = np.full(m, np.nan) if st == "max_signal" else np.zeros(m)
        return out
    n = np.searchsorted(cp.starts, we, side="left") - np.searchsorted(cp.sorted_ends, ws, side="right")
    n = np.where(length > 0, n, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if "n_peaks" in stats:
            out["n_peaks"] = n.astype(np.float64)
        if "density" in stats:
            out["density"] = np.where(length > 0, n / length * 1000.0, 0.0)
        if "coverage" in stats:
            cov = _covered_before(cp, we) - _covered_before(cp, ws)
            out["coverage"] = np.where(length > 0, cov / length, 0.0)
        if "entropy" in stats:
            edges = ws[:, None] + length[:, None] * (np.arange(n_sub + 1) / n_sub)[None, :]
            pos = np.searchsorted(cp.mids, edges.ravel(), side="left").reshape(m, n_sub + 1)
            pos[:, -1] = np.searchsorted(cp.mids, we.astype(np.float64), side="left")
            counts = np.diff(pos, axis=1).astype(np.float64)
            tot = counts.sum(axis=1)
            p = counts / np.maximum(tot, 1.0)[:, None]
            ent = -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=1)
            out["entropy"] = np.where(tot >= 2, np.abs(ent), 0.0)
        if "max_signal" in stats:
            out["max_signal"] = _max_signal(cp, ws, we, n)
    return {k: out[k] for k in stats}


def _max_signal(cp: ChromPeaks, ws: np.ndarray, we: np.ndarray, n: np.ndarray) -> np.ndarray:
    m = len(ws)
    res = np.full(m, np.nan)
    if not np.isfinite(cp.signal).any():
        return res
    hi = np.searchsorted(cp.starts, we, side="left")
    # Peaks with index < lo all end at or before ws (running max of ends <= ws).
    lo = np.searchsorted(np.maximum.accumulate(cp.ends), ws, side="right")
    lo = np.minimum(lo, hi)
    has = n > 0
    exact = has & (hi - lo == n)  # the range [lo, hi) holds exactly the overlapping peaks
    sel = np.flatnonzero(exact)
    if len(sel):
        order = sel[np.argsort(lo[sel], kind="stable")]
        idx = np.empty(2 * len(order), dtype=np.int64)
        idx[0::2] = lo[order]
        idx[1::2] = hi[order]
        padded = np.append(cp.signal, 0.0)
        res[order] = np.fmax.reduceat(padded, idx)[0::2]
    rest = np.flatnonzero(has & ~exact)  # nested peaks: filter each range by end > ws
    pos = 0
    while pos < len(rest):
        cnt_all = (hi - lo)[rest[pos:]]
        stop = pos + max(1, int(np.searchsorted(np.cumsum(cnt_all), 2_000_000, side="right")))
        chunk = rest[pos:stop]
        cnt = (hi - lo)[chunk]
        idx = _ranges(lo[chunk], cnt)
        k = np.repeat(np.arange(len(chunk)), cnt)
        vals = np.where(cp.ends[idx] > ws[chunk][k], cp.signal[idx], np.nan)
        first = np.cumsum(cnt) - cnt
        res[chunk] = np.fmax.reduceat(vals, first)
        pos = stop
    return res


def tss_distance(cp: ChromPeaks | None, tss: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Signed distance (bp) from each TSS to the nearest peak base; see the module docstring."""
    tss = np.asarray(tss, dtype=np.int64)
    out = np.full(len(tss), np.nan)
    if cp is None or len(cp.union_starts) == 0:
        return out
    us, ue = cp.union_starts, cp.union_ends
    k = np.searchsorted(us, tss, side="right") - 1  # last union interval starting at or before tss
    has_left = k >= 0
    kk = np.maximum(k, 0)
    inside = has_left & (ue[kk] > tss)
    left = np.where(has_left, (ue[kk] - 1) - tss, np.iinfo(np.int64).min // 4)  # <= -1
    r = k + 1
    has_right = r < len(us)
    right = np.where(has_right, us[np.minimum(r, len(us) - 1)] - tss, np.iinfo(np.int64).max // 4)
    plus = np.asarray(sign) > 0
    # Orient: downstream positive. For '-' genes genomic-left is downstream.
    up_gen = np.where(plus, left, right)  # genomic signed distance of the upstream candidate
    down_gen = np.where(plus, right, left)
    d_up, d_down = np.abs(up_gen), np.abs(down_gen)
    pick_down = d_down <= d_up
    gen = np.where(pick_down, down_gen, up_gen)
    oriented = np.where(plus, gen, -gen).astype(np.float64)
    out[:] = np.where(inside, 0.0, oriented)
    return out


def peak_features(
    peaks: str | Path | PeakSet,
    genes: pd.DataFrame,
    windows: Sequence[WindowSpec] = DEFAULT_WINDOWS,
    stats: Sequence[str] = PEAK_STATS,
    chrom_sizes: Mapping[str, int] | None = None,
    n_sub: int = 10,
) -> pd.DataFrame:
    """Peak features (columns ``{window}_{stat}`` plus ``tss_distance``) for all genes."""
    ps = peaks if isinstance(peaks, PeakSet) else read_peaks(peaks)
    if not ps.has_signal:
        stats = [st for st in stats if st != "max_signal"]
    sizes = {canonical_chrom(k): int(v) for k, v in (chrom_sizes or {}).items()}
    arr = gene_arrays(genes)
    g = len(genes)
    cols: dict[str, np.ndarray] = {}
    for spec in windows:
        for st in stats:
            cols[f"{spec.name}_{st}"] = np.full(g, np.nan if st == "max_signal" else 0.0)
    tss_d = np.full(g, np.nan)
    for chrom, rows in chrom_groups(genes).items():
        cp = ps.chroms.get(chrom)
        tss, gs, ge, sg = arr["tss"][rows], arr["start"][rows], arr["end"][rows], arr["sign"][rows]
        top = sizes.get(chrom, np.iinfo(np.int64).max)
        for spec in windows:
            ws, we = gene_windows(spec, tss, gs, ge, sg)
            ws, we = np.clip(ws, 0, top), np.clip(we, 0, top)
            for st, val in peak_window_stats(cp, ws, we, stats, n_sub).items():
                cols[f"{spec.name}_{st}"][rows] = val
        tss_d[rows] = tss_distance(cp, tss, sg)
    cols["tss_distance"] = tss_d
    return pd.DataFrame(cols, index=genes.index)
