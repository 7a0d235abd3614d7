"""Per-window statistics of a signal track, vectorised over all windows of a chromosome.

The engine behind ``epx featurize`` for bigWig tracks. Each chromosome's data arrive once as sorted,
non-overlapping intervals (``starts``, ``ends``, ``values``) restricted to the merged windows
(see :mod:`epx.io.bigwig`). Each window's interval range comes from ``np.searchsorted``; sums,
minima and maxima over the ranges of *all* windows come from one ``ufunc.reduceat`` call per
quantity (windows sorted by first interval, so the work is O(intervals + window overlaps)); the
partially covered intervals at window edges are corrected separately. There is no per-window
Python loop.

Semantics (match pyBigWig ``bw.stats(chrom, s, e, type=..., exact=True)``):

* Bases without data are *missing*: ``mean``, ``std``, ``min``, ``max`` and ``slope`` use covered
  bases only; ``sum`` is the sum over covered bases; ``coverage`` = covered bases / window length.
* A non-finite value (NaN, +-inf) is no data (the reader drops it, see :mod:`epx.io.bigwig`): its
  bases are uncovered for every statistic and every bin. Here pyBigWig differs (its mean, std and
  sum become NaN), and that is the point: one NaN base must not erase a window.
* Overlapping items (a file's items, e.g. fixedStep with span > step) each count, as in libBigWig's
  exact statistics: a base under two items contributes two values, so ``coverage`` (and a bin's
  covered fraction) can exceed 1. Such chromosomes go through :func:`pair_window_stats`, which
  expands (window, item) pairs; sorted, disjoint data take the vectorised path below.
* ``std`` is the *sample* standard deviation over covered bases (divisor ``n - 1``; 0 when a single
  base is covered), exactly as libBigWig computes it for exact statistics.
* ``sum`` adds ``float32(length) * float32(value)`` products per interval, like libBigWig, so it
  agrees with pyBigWig to ~1e-12 rather than differing by float32 rounding. Where that float32
  product overflows (values near 3.4e38) the exact float64 product is used: pyBigWig's sum is
  inf there, ours stays finite.
* ``slope`` is the least-squares slope of the per-base value against the base position over
  covered bases, in signal units per base, oriented by strand: positive means the signal rises in
  the direction of transcription. NaN when fewer than 2 bases are covered.
* A window without any covered base gives NaN for mean/std/min/max/slope and 0 for sum/coverage.
* Windows are clipped to the chromosome ``[0, size)``; coverage is relative to the clipped length.
  A window entirely off the chromosome behaves as an uncovered window.

Binned tracks (:func:`bin_matrix`): ``n_bins`` bins of ``bin_size`` bp around each TSS, value =
sum over the bin / ``bin_size`` (uncovered bases count as 0), plus the covered fraction per bin.
Each bin sums its own intervals (no running sum along the chromosome), so one huge value cannot
cost precision anywhere else.
For ``+`` genes the bins cover ``[tss - h*W, tss + (N-h)*W)`` with ``h = N // 2``; for ``-`` genes
the geometry is mirrored around ``tss + 1`` (``[tss + 1 - (N-h)*W, tss + 1 + h*W)``) and the bins are
reversed, so the TSS base always sits in bin ``h`` and downstream is always to the right. Bins off
the chromosome are 0 with coverage 0.

Numerics: window sums are pairwise float64 sums of the window's own terms (no large prefix
differences). The two statistics prone to cancellation (``std``, ``slope``) carry a rounding-error
bound; the few windows where it is not negligible (e.g. constant signal) are recomputed exactly by
a two-pass sum over their intervals. Slope positions are offsets from the start of the merged
region holding the window; where a small window sits far into a long region (about 2% of slope
windows on a genome-wide track), the bound sends it to the exact two-pass sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from epx.features.geometry import BinSpec
from epx.io.bigwig import (
    BigWigReader,
    _ranges,
    merge_regions,
    overlapping,
    restrict_to_regions,
)
from epx.io.chroms import alias_map

STATS: tuple[str, ...] = ("mean", "std", "min", "max", "sum", "coverage", "slope")
_EPS = np.finfo(np.float64).eps
_MAX_PAIRS = 2_000_000  # window x interval pairs expanded at once by the exact fallbacks


# --------------------------------------------------------------------------------------------
# Window geometry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowSpec:
    """A gene-relative window, with offsets in the direction of transcription.

    ``anchor="tss"``: ``[tss + start, tss + end)`` for ``+`` genes, mirrored around ``tss + 1`` for
    ``-`` genes (so ``start=-1000, end=1000`` is the same 2 kb around the TSS on either strand).
    ``anchor="tes"``: relative to the first base past the gene's 3' end (``end`` for ``+`` genes,
    ``start - 1`` for ``-`` genes), mirrored the same way; ``start=0, end=10000`` is the 10 kb
    downstream flank. ``anchor="body"``: the gene ``[start, end)`` with its 5' end moved by
    ``start`` and its 3' end by ``end`` (both 0: the gene body).
    """

    name: str
    anchor: str = "tss"
    start: int = 0
    end: int = 0

    def __post_init__(self) -> None:
        if self.anchor not in ("tss", "tes", "body"):
            raise ValueError(f"unknown window anchor {self.anchor!r} (use tss, tes or body)")
        if self.anchor != "body" and self.end <= self.start:
            raise ValueError(f"window {self.name!r}: end offset must exceed start offset")


DEFAULT_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("tss", "tss", -1000, 1000),
    WindowSpec("promoter", "tss", -2000, 500),
    WindowSpec("body", "body", 0, 0),
    WindowSpec("upstream", "tss", -10000, -2000),
    WindowSpec("downstream", "tes", 0, 10000),
)


def gene_windows(
    spec: WindowSpec, tss: np.ndarray, gstart: np.ndarray, gend: np.ndarray, sign: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Genomic ``[start, end)`` of one window type for each gene (not clipped)."""
    plus = sign > 0
    if spec.anchor == "tss":
        ws = np.where(plus, tss + spec.start, tss + 1 - spec.end)
        we = np.where(plus, tss + spec.end, tss + 1 - spec.start)
    elif spec.anchor == "tes":
        ws = np.where(plus, gend + spec.start, gstart - spec.end)
        we = np.where(plus, gend + spec.end, gstart - spec.start)
    else:
        ws = np.where(plus, gstart + spec.start, gstart - spec.end)
        we = np.where(plus, gend + spec.end, gend - spec.start)
    return ws.astype(np.int64), np.maximum(we, ws).astype(np.int64)


def bin_span(tss: np.ndarray, sign: np.ndarray, bins: BinSpec) -> tuple[np.ndarray, np.ndarray]:
    """Genomic ``[start, end)`` covered by the bins of each gene (not clipped)."""
    n, w = bins.n_bins, bins.bin_size
    h = n // 2
    lo = np.where(sign > 0, tss - h * w, tss + 1 - (n - h) * w).astype(np.int64)
    return lo, lo + n * w


def merge_windows(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Union of windows as sorted, disjoint, non-touching ``(k, 2)`` regions (empty ones dropped)."""
    return merge_regions(starts, ends)


# --------------------------------------------------------------------------------------------
# Per-chromosome signal with prefix sums
# --------------------------------------------------------------------------------------------
def _moment_terms(
    srel: np.ndarray, length: np.ndarray, v32: np.ndarray, names: Sequence[str]
) -> dict[str, np.ndarray]:
    """Contributions of base runs ``[anchor + srel, anchor + srel + length)`` with value ``v32``.

    ``s1 = L*v``, ``sf = float32(L)*float32(v)`` (libBigWig's product for ``sum``), ``s2 = L*v^2``;
    slope geometry with offsets ``u`` from the anchor: ``gx = sum u``, ``gxx = sum u^2``,
    ``gxv = v * gx``. All float64; inputs are converted to float64 once (mixed-type numpy
    arithmetic is several times slower).
    """
    out: dict[str, np.ndarray] = {}
    want = set(names)
    lf = length.astype(np.float64)
    v = v32.astype(np.float64)
    if want & {"s1", "s2", "sf"}:
        s1 = lf * v  # exact: a 24-bit mantissa times an integer < 2**29
        if "sf" in want:
            out["sf"] = _libbigwig_product(s1)
        if "s2" in want:
            out["s2"] = s1 * v
        if "s1" in want:
            out["s1"] = s1
    if want & {"gx", "gxx", "gxv"}:
        mid = lf - 1.0
        mid *= 0.5
        mid += srel  # mean offset of the run
        gx = lf * mid
        if "gxx" in want:
            within = lf * lf
            within -= 1.0
            within *= lf
            within *= 1.0 / 12.0
            gxx = gx * mid
            gxx += within
            out["gxx"] = gxx
        if "gxv" in want:
            out["gxv"] = gx * v
        if "gx" in want:
            out["gx"] = gx
    return out


def _libbigwig_product(exact: np.ndarray) -> np.ndarray:
    """libBigWig's per-interval ``float32(L) * float32(v)``: the exact product rounded once to
    float32, except where float32 overflows (then the exact product, never inf)."""
    with np.errstate(over="ignore"):
        f32 = exact.astype(np.float32)
    out = f32.astype(np.float64)
    big = ~np.isfinite(f32)
    if big.any():
        out[big] = exact[big]
    return out


class ChromSignal:
    """One chromosome's intervals inside merged regions.

    Window statistics reduce per-interval terms over each window's interval range with
    ``np.add.reduceat`` (pairwise summation, local magnitudes); bins evaluate a prefix sum of
    ``L*v`` at their boundaries.
    """

    def __init__(
        self, starts: np.ndarray, ends: np.ndarray, values: np.ndarray, regions: np.ndarray
    ):
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        self.v32 = np.asarray(values, dtype=np.float32)
        self.regions = np.asarray(regions, dtype=np.int64).reshape(-1, 2)
        self.n = len(self.starts)
        self.seg_first = np.searchsorted(self.starts, self.regions[:, 0], side="left")
        seg_end = np.searchsorted(self.starts, self.regions[:, 1], side="left")
        self.seg_count = seg_end - self.seg_first
        if int(self.seg_count.sum()) != self.n:
            raise ValueError("intervals must lie inside the regions (use bigwig.restrict_to_regions)")
        self.length = self.ends - self.starts
        self._prefix: dict[str, np.ndarray] = {}

    @classmethod
    def for_windows(
        cls, starts: np.ndarray, ends: np.ndarray, values: np.ndarray, ws: np.ndarray, we: np.ndarray
    ) -> ChromSignal:
        """Signal restricted to the merged windows ``[ws, we)``.

        Built per window type, so the slope's coordinate anchors (region starts) stay as close
        to the windows as that window type allows, and no interval outside them is processed.
        """
        regions = merge_windows(ws, we)
        s, e, v = restrict_to_regions(starts, ends, values, regions)
        return cls(s, e, v, regions)

    def anchors(self) -> np.ndarray:
        """Start of the region holding each interval (the slope's coordinate origin)."""
        return np.repeat(self.regions[:, 0], self.seg_count)

    def padded(self, what: str) -> np.ndarray:
        """float64 per-interval array with one trailing zero-length entry, so that a window
        range may end at ``n`` in ``reduceat``. Cached and read-only: compute into new arrays."""
        cached = self._prefix.get(f"padded-{what}")
        if cached is not None:
            return cached
        out = np.empty(self.n + 1, dtype=np.float64)
        if what == "length":
            out[: self.n] = self.length
            out[self.n] = 0.0
        elif what == "value":
            out[: self.n] = self.v32
            out[self.n] = self.v32[-1] if self.n else 0.0
        elif what == "srel":
            np.subtract(self.starts, self.anchors(), out=out[: self.n], casting="unsafe")
            out[self.n] = 0.0
        else:
            raise KeyError(what)
        out.flags.writeable = False
        self._prefix[f"padded-{what}"] = out
        return out

    def count_prefix(self) -> np.ndarray:
        """Covered bases before each interval (int64, exact)."""
        p = self._prefix.get("count")
        if p is None:
            p = np.empty(self.n + 1, dtype=np.int64)
            p[0] = 0
            np.cumsum(self.length, out=p[1:])
            self._prefix["count"] = p
        return p



class _Windows:
    """Index bookkeeping shared by all statistics of one set of windows."""

    def __init__(self, sig: ChromSignal, ws: np.ndarray, we: np.ndarray):
        self.ws, self.we = ws, we
        self.length = we - ws
        self.m = len(ws)
        nreg = len(sig.regions)
        r = np.searchsorted(sig.regions[:, 0], ws, side="right") - 1
        self.r = np.clip(r, 0, max(nreg - 1, 0))
        i0 = np.searchsorted(sig.ends, ws, side="right")
        i1 = np.searchsorted(sig.starts, we, side="left")
        self.nonempty = (i1 > i0) & (self.length > 0)
        self.i0 = i0
        self.i1 = np.where(self.nonempty, i1, i0)
        # reduceat indices: windows sorted by first interval, so the gaps between consecutive
        # ranges (also reduced, then discarded) add up to at most n.
        self.order = np.argsort(self.i0, kind="stable")
        self.idx = np.empty(2 * self.m, dtype=np.int64)
        self.idx[0::2] = self.i0[self.order]
        self.idx[1::2] = self.i1[self.order]
        last = max(sig.n - 1, 0)
        a = np.minimum(self.i0, last)
        b = np.minimum(np.maximum(self.i1 - 1, 0), last)
        two_edges = self.nonempty & (b != a)
        self.edges = []
        if sig.n:
            anchor = sig.regions[self.r, 0]
            # Full and clipped geometry of the edge intervals: (srel, length) pairs and value.
            for idx, mask in ((a, self.nonempty), (b, two_edges)):
                s_full, ln_full = sig.starts[idx], sig.length[idx]
                s_clip = np.maximum(s_full, ws)
                ln_clip = np.minimum(sig.ends[idx], we) - s_clip
                self.edges.append(
                    (s_full - anchor, ln_full, s_clip - anchor, ln_clip, sig.v32[idx], mask)
                )
        self._sig = sig

    def rsum(self, padded: np.ndarray, ufunc: np.ufunc = np.add) -> np.ndarray:
        """``ufunc`` reduced over each window's interval range (garbage for empty windows)."""
        out = np.empty(self.m, dtype=padded.dtype)
        if self.m:
            out[self.order] = ufunc.reduceat(padded, self.idx)[0::2]
        return out

    def n_covered(self, lf: np.ndarray) -> np.ndarray:
        n = self.rsum(lf)
        for _sf, ln_full, _sc, ln_clip, _v, mask in self.edges:
            n -= np.where(mask, ln_full - ln_clip, 0)
        return np.where(self.nonempty, n, 0.0)

    def total(self, name: str, term: np.ndarray) -> np.ndarray:
        """Window sum of one (padded) moment term, with the edge intervals clipped."""
        tot = self.rsum(term)
        for s_full, ln_full, s_clip, ln_clip, v, mask in self.edges:
            full = _moment_terms(s_full, ln_full, v, [name])[name]
            clipped = _moment_terms(s_clip, ln_clip, v, [name])[name]
            tot += np.where(mask, clipped - full, 0.0)
        return np.where(self.nonempty, tot, 0.0)

    def extreme(self, ufunc: np.ufunc, vpad: np.ndarray) -> np.ndarray:
        return np.where(self.nonempty, self.rsum(vpad, ufunc), np.nan)


def _exact_two_pass(
    sig: ChromSignal, win: _Windows, sel: np.ndarray, want_std: bool, want_slope: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass std and slope for windows ``sel``: slower, but free of cancellation."""
    std = np.full(len(sel), np.nan)
    slope = np.full(len(sel), np.nan)
    counts = (win.i1 - win.i0)[sel]
    pos = 0
    while pos < len(sel):
        cum = np.cumsum(counts[pos:])
        stop = pos + max(1, int(np.searchsorted(cum, _MAX_PAIRS, side="right")))
        chunk = sel[pos:stop]
        cnt = counts[pos:stop]
        idx = _ranges(win.i0[chunk], cnt)
        k = np.repeat(np.arange(len(chunk)), cnt)
        ws, we = win.ws[chunk][k], win.we[chunk][k]
        s = np.maximum(sig.starts[idx], ws)
        ln = (np.minimum(sig.ends[idx], we) - s).astype(np.float64)
        v = sig.v32[idx].astype(np.float64)
        first = np.cumsum(cnt) - cnt
        n = np.add.reduceat(ln, first)
        mean = np.add.reduceat(ln * v, first) / n
        dv = v - mean[k]
        if want_std:
            v1 = np.add.reduceat(ln * dv * dv, first)
            std[pos:stop] = np.where(n >= 2, np.sqrt(v1 / np.maximum(n - 1, 1)), np.sqrt(v1))
        if want_slope:
            mid = (s - ws).astype(np.float64) + (ln - 1.0) / 2.0  # mean offset of the run
            xbar = np.add.reduceat(ln * mid, first) / n
            dx = mid - xbar[k]
            sxx = np.add.reduceat(ln * dx * dx + ln * (ln * ln - 1.0) / 12.0, first)
            sxv = np.add.reduceat(ln * dx * dv, first)
            with np.errstate(invalid="ignore", divide="ignore"):
                slope[pos:stop] = np.where(n >= 2, sxv / sxx, np.nan)
        pos = stop
    return std, slope


def _empty_stats(m: int, stats: Iterable[str]) -> dict[str, np.ndarray]:
    return {st: (np.zeros(m) if st in ("sum", "coverage") else np.full(m, np.nan)) for st in stats}


def window_stats(
    sig: ChromSignal,
    starts: np.ndarray,
    ends: np.ndarray,
    sign: np.ndarray | None = None,
    stats: Iterable[str] = STATS,
) -> dict[str, np.ndarray]:
    """Statistics of windows ``[starts, ends)`` (already clipped to the chromosome).

    Every window must lie inside one of ``sig.regions``. ``sign`` (+1/-1 per window) orients
    ``slope``; None means +1. Returns ``{stat: float64 array}``.
    """
    stats = list(stats)
    unknown = set(stats) - set(STATS)
    if unknown:
        raise ValueError(f"unknown statistics: {sorted(unknown)}")
    ws = np.asarray(starts, dtype=np.int64)
    we = np.maximum(np.asarray(ends, dtype=np.int64), ws)
    want = set(stats)
    base = [st for st in stats if st != "slope"]
    if "slope" in want:
        base = list(dict.fromkeys(base + ["mean", "s2"]))
    out = _base_stats(sig, ws, we, base)
    if "slope" in want:
        out["slope"] = _slope(sig, ws, we, sign, out["n"], out["s1"], out["s2"])
    return {k: out[k] for k in stats}


def _base_stats(
    sig: ChromSignal, ws: np.ndarray, we: np.ndarray, stats: Sequence[str]
) -> dict[str, np.ndarray]:
    """Everything except the slope, plus the raw sums ``n``, ``s1`` (and ``s2`` if asked)."""
    m = len(ws)
    want = set(stats)
    if sig.n == 0 or m == 0:
        out = _empty_stats(m, [s for s in stats if s != "s2"])
        out.update(n=np.zeros(m), s1=np.zeros(m), s2=np.zeros(m))
        return out
    win = _Windows(sig, ws, we)
    lf = sig.padded("length")
    n = win.n_covered(lf)
    covered = n > 0
    nn = np.where(covered, n, 1.0)
    out: dict[str, np.ndarray] = {"n": n}
    with np.errstate(invalid="ignore", divide="ignore"):
        if "coverage" in want:
            out["coverage"] = np.where(win.length > 0, n / np.maximum(win.length, 1), 0.0)
        v = sig.padded("value")
        if "min" in want:
            out["min"] = win.extreme(np.minimum, v)
        if "max" in want:
            out["max"] = win.extreme(np.maximum, v)
        t1 = lf * v  # exact: a 24-bit mantissa times an integer < 2**29
        if "sum" in want:
            out["sum"] = win.total("sf", _libbigwig_product(t1))
        s1 = win.total("s1", t1)
        out["s1"] = s1
        if "mean" in want:
            out["mean"] = np.where(covered, s1 / nn, np.nan)
        if want & {"std", "s2"}:
            t1 *= v
            s2 = win.total("s2", t1)
            out["s2"] = s2
        del t1, v
        if "std" in want:
            m2 = s2 - s1 * s1 / nn
            # Rounding bound: S2 sums non-negative terms; |S1 terms| sum to <= sqrt(n * S2).
            k = 16.0 * _EPS
            err = k * s2 + 2.0 * np.abs(s1) * k * np.sqrt(n * s2) / nn + 4.0 * _EPS * s2
            denom = np.maximum(n - 1.0, 1.0)
            var = np.maximum(m2, 0.0) / denom
            dvar = err / denom
            std = np.sqrt(var)
            dstd = dvar / (np.sqrt(var + dvar) + std + 1e-300)
            std = np.where(covered, std, np.nan)
            redo = np.flatnonzero(covered & ~(dstd <= 1e-9 * np.maximum(std, 1e-2)))
            if len(redo):
                std[redo] = _exact_two_pass(sig, win, redo, True, False)[0]
            out["std"] = std
    return out


def _slope(
    sig: ChromSignal,
    ws: np.ndarray,
    we: np.ndarray,
    sign: np.ndarray | None,
    n: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
) -> np.ndarray:
    """Least-squares slope per window, given the windows' covered bases, sum and sum of squares.

    Positions are offsets from the start of the region of ``sig`` holding the window; windows
    whose rounding bound is not negligible (far from their region's start) are recomputed
    exactly.
    """
    m = len(ws)
    if sig.n == 0 or m == 0:
        return np.full(m, np.nan)
    win = _Windows(sig, ws, we)
    nn = np.where(n > 0, n, 1.0)
    k = 16.0 * _EPS
    with np.errstate(invalid="ignore", divide="ignore"):
        lf = sig.padded("length")
        mid = lf - 1.0
        mid *= 0.5
        mid += sig.padded("srel")  # mean offset of each run from its region's start
        g = lf * mid
        gx = win.total("gx", g)
        t = g * sig.padded("value")
        gxv = win.total("gxv", t)
        np.multiply(g, mid, out=t)
        del g
        within = lf * lf
        within -= 1.0
        within *= lf
        within *= 1.0 / 12.0
        t += within
        del within, mid, lf
        gxx = win.total("gxx", t)
        del t
        den = gxx - gx * gx / nn
        num = gxv - gx * s1 / nn
        slope = np.where(n >= 2, num / den, np.nan)
        # gx, gxx sum non-negative terms; sum |gxv terms| <= sqrt(gxx * s2).
        bgx, bgxx, bgxv = k * gx, k * gxx, k * np.sqrt(gxx * s2)
        bs1 = k * np.sqrt(n * s2)
        dden = bgxx + 2.0 * gx * bgx / nn + 4.0 * _EPS * (gxx + gx * gx / nn)
        dnum = bgxv + (gx * bs1 + np.abs(s1) * bgx) / nn
        dnum += 4.0 * _EPS * (np.abs(gxv) + np.abs(gx * s1) / nn)
        dslope = (dnum + np.abs(slope) * dden) / np.abs(den)
        # Scale for "negligible": the slope of a ramp spanning the window's signal range.
        scale = np.abs(slope) + np.sqrt(s2 / nn) / np.maximum(win.length, 1) + 1e-300
        redo = np.flatnonzero((n >= 2) & ~(dslope <= 1e-9 * scale))
        if len(redo):
            slope[redo] = _exact_two_pass(sig, win, redo, False, True)[1]
        if sign is not None:
            slope = slope * np.where(np.asarray(sign) < 0, -1.0, 1.0)
    return slope


def bin_matrix(
    sig: ChromSignal,
    tss: np.ndarray,
    sign: np.ndarray,
    chrom_size: int,
    bins: BinSpec = BinSpec(),
) -> tuple[np.ndarray, np.ndarray]:
    """Binned signal around each TSS: ``(values, coverage)``, both ``(n_genes, n_bins)`` float64.

    Bin value = sum over the bin / bin_size (uncovered bases count as 0); coverage = covered
    fraction. Oriented so downstream is to the right; see the module docstring for the geometry.
    Each gene's clipped bin span must lie inside one of ``sig.regions``.
    """
    tss = np.asarray(tss, dtype=np.int64)
    sign = np.asarray(sign)
    g, nb, w = len(tss), bins.n_bins, bins.bin_size
    if g == 0 or sig.n == 0:
        return np.zeros((g, nb)), np.zeros((g, nb))
    sums, covered = bounded_sums(sig, _bin_bounds(tss, sign, chrom_size, bins))
    return _downstream_right(sums / w, sign), _downstream_right(covered / w, sign)


def bounded_sums(sig: ChromSignal, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the signal and covered bases in each bin ``[bounds[r, k], bounds[r, k + 1])``:
    ``(sums, covered)``, both ``(rows, k)`` float64. Rows are contiguous, non-decreasing bin
    boundaries (an empty bin, where two boundaries are equal, gives 0)."""
    g, nb = bounds.shape[0], bounds.shape[1] - 1
    # Rows in genomic order keep reduceat's work linear (see below); results go back after.
    by_pos = np.argsort(bounds[:, 0], kind="stable")
    flat = bounds[by_pos].ravel()
    # j: the first interval ending after boundary x; part: its bases before x (0 if it starts
    # after x). Bin [x_k, x_k+1) = the intervals j_k .. j_k+1 - 1 in full, plus part_k+1 of
    # interval j_k+1, minus part_k of interval j_k. Covered bases use an exact integer prefix;
    # sums reduce each bin's own intervals (reduceat), so magnitudes never mix across bins.
    j = np.searchsorted(sig.ends, flat, side="right")
    starts_pad = np.append(sig.starts, np.iinfo(np.int64).max)
    v_pad = sig.padded("value")
    part = flat - starts_pad[j]
    np.maximum(part, 0, out=part)  # 0 for j = n (past the last interval)
    f_cnt = (sig.count_prefix()[j] + part).reshape(g, nb + 1)
    covered = np.empty((g, nb))
    covered[by_pos] = np.diff(f_cnt, axis=1).astype(np.float64)
    terms = sig.padded("length") * v_pad  # L * v per interval, exact; the padding entry is 0
    full = np.add.reduceat(terms, j).reshape(g, nb + 1)[:, :nb]
    jj = j.reshape(g, nb + 1)
    full[jj[:, 1:] <= jj[:, :-1]] = 0.0  # reduceat gives terms[j] for an empty range
    pv = (part * v_pad[j]).reshape(g, nb + 1)
    sums = np.empty((g, nb))
    sums[by_pos] = full + pv[:, 1:] - pv[:, :-1]
    return sums, covered


def region_layout(starts: np.ndarray, ends: np.ndarray, bin_size: int, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each distal region's bins go, as Chromoformer frames them: ``n = ceil(length /
    bin_size)`` bins (the last one partial, at most ``frame``), placed at bin ``left = ceil((frame
    - n) / 2)`` of a ``frame``-bin frame. Only the ``n`` real bins are stored, back to back:
    returns ``(n, left, offset)`` with ``offset`` the first stored bin of each region."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    n = np.clip(-(-(ends - starts) // bin_size), 0, frame)
    left = -(-(frame - n) // 2)
    return n, left, np.cumsum(n) - n


def region_bins(sig: ChromSignal | None, pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                starts: np.ndarray, ends: np.ndarray, bin_size: int, frame: int) -> np.ndarray:
    """Mean signal per bin of each distal region, the regions' bins back to back (see
    :func:`region_layout`), float32: sum over the bin / the bin's length within the region
    (uncovered bases count as 0). Regions are on the forward strand (a pCRE has no orientation).
    ``sig`` is the disjoint-interval signal; ``pairs`` = (starts, ends, values) of overlapping
    items instead. Regions are grouped by their number of bins, so each group is one
    rectangular :func:`bounded_sums` call."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    n, _left, offset = region_layout(starts, ends, bin_size, frame)
    out = np.zeros(int(n.sum()), np.float32)
    if len(out) == 0 or (pairs is None and (sig is None or sig.n == 0)):
        return out
    f32 = np.finfo(np.float32).max
    for count in np.unique(n[n > 0]):
        rows = np.flatnonzero(n == count)
        k = np.arange(count + 1, dtype=np.int64)[None, :]
        bounds = np.minimum(starts[rows, None] + k * bin_size, ends[rows, None])
        if pairs is not None:
            res = pair_window_stats(*pairs, bounds[:, :-1].ravel(), bounds[:, 1:].ravel(), stats=())
            sums = res["_s1"].reshape(len(rows), count)
        else:
            sums, _ = bounded_sums(sig, bounds)
        out[offset[rows, None] + np.arange(count)[None, :]] = np.clip(sums / np.diff(bounds, axis=1), -f32, f32)
    return out


def _bin_bounds(tss: np.ndarray, sign: np.ndarray, chrom_size: int, bins: BinSpec) -> np.ndarray:
    """``(genes, n_bins + 1)`` bin boundaries in genomic order, clipped to the chromosome."""
    lo, _hi = bin_span(tss, sign, bins)
    bounds = lo[:, None] + np.arange(bins.n_bins + 1, dtype=np.int64)[None, :] * bins.bin_size
    return np.clip(bounds, 0, chrom_size)


def _downstream_right(rows: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Mirror the rows of '-' genes so that downstream is to the right (in place)."""
    minus = np.asarray(sign) < 0
    rows[minus] = rows[minus, ::-1]
    return rows


# --------------------------------------------------------------------------------------------
# Overlapping items: (window, item) pairs
# --------------------------------------------------------------------------------------------
def pair_window_stats(
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    ws: np.ndarray,
    we: np.ndarray,
    sign: np.ndarray | None = None,
    stats: Iterable[str] = STATS,
) -> dict[str, np.ndarray]:
    """Window statistics for items sorted by start that may overlap, each item counting on its
    own (libBigWig's exact statistics); the same definitions as :func:`window_stats`.

    Expands every (window, overlapping item) pair, in chunks of at most ``_MAX_PAIRS``, and
    reduces per window with two-pass sums (no cancellation). Slower than the vectorised path but
    linear in the pairs, and only used for chromosomes whose items overlap.
    """
    stats = list(stats)
    ws = np.asarray(ws, dtype=np.int64)
    we = np.maximum(np.asarray(we, dtype=np.int64), ws)
    m = len(ws)
    sums = {k: np.zeros(m) for k in ("n", "s1", "sf")}
    out = _empty_stats(m, stats)
    out["_n"], out["_s1"] = sums["n"], sums["s1"]
    if len(starts) == 0 or m == 0:
        return out
    v32 = np.asarray(values, dtype=np.float32)
    run_end = np.maximum.accumulate(ends)
    i0 = np.searchsorted(run_end, ws, side="right")  # items before i0 all end at or before ws
    i1 = np.searchsorted(starts, we, side="left")
    cnt = np.where(we > ws, np.maximum(i1 - i0, 0), 0)
    orient = np.ones(m) if sign is None else np.where(np.asarray(sign) < 0, -1.0, 1.0)
    pos = 0
    while pos < m:
        stop = pos + max(1, int(np.searchsorted(np.cumsum(cnt[pos:]), _MAX_PAIRS, side="right")))
        chunk = np.arange(pos, min(stop, m))
        c = cnt[chunk]
        idx = _ranges(i0[chunk], c)
        k = np.repeat(np.arange(len(chunk)), c)
        a = np.maximum(starts[idx], ws[chunk][k])
        ln = np.minimum(ends[idx], we[chunk][k]) - a
        real = ln > 0
        idx, k, a, ln = idx[real], k[real], a[real], ln[real].astype(np.float64)
        mc = len(chunk)
        v = v32[idx].astype(np.float64)
        n = np.bincount(k, ln, mc)
        s1 = np.bincount(k, ln * v, mc)
        has = n > 0
        sums["n"][chunk], sums["s1"][chunk] = n, s1
        if "sum" in stats:
            sums["sf"][chunk] = np.bincount(k, _libbigwig_product(ln * v), mc)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(has, s1 / np.where(has, n, 1.0), np.nan)
            if {"min", "max"} & set(stats):
                first = np.searchsorted(k, np.arange(mc))[has]
                for st, uf in (("min", np.minimum), ("max", np.maximum)):
                    if st in stats:
                        res = np.full(mc, np.nan)
                        res[has] = uf.reduceat(v, first) if len(first) else res[has]
                        out[st][chunk] = res
            dv = v - mean[k] if len(k) else v
            if "std" in stats:
                m2 = np.bincount(k, ln * dv * dv, mc)
                out["std"][chunk] = np.where(has, np.sqrt(m2 / np.maximum(n - 1.0, 1.0)), np.nan)
            if "slope" in stats:
                mid = (a - ws[chunk][k]).astype(np.float64) + (ln - 1.0) / 2.0
                xbar = np.bincount(k, ln * mid, mc) / np.where(has, n, 1.0)
                dx = mid - xbar[k]
                sxx = np.bincount(k, ln * dx * dx + ln * (ln * ln - 1.0) / 12.0, mc)
                sxv = np.bincount(k, ln * dx * dv, mc)
                out["slope"][chunk] = np.where(n >= 2, sxv / sxx, np.nan) * orient[chunk]
            if "mean" in stats:
                out["mean"][chunk] = mean
        pos = int(chunk[-1]) + 1
    length = (we - ws).astype(np.float64)
    if "coverage" in stats:
        out["coverage"] = np.where(length > 0, sums["n"] / np.maximum(length, 1.0), 0.0)
    if "sum" in stats:
        out["sum"] = sums["sf"]
    return out


def pair_bin_matrix(
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    tss: np.ndarray,
    sign: np.ndarray,
    chrom_size: int,
    bins: BinSpec = BinSpec(),
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bin_matrix` for overlapping items (each counts; coverage may exceed 1)."""
    tss = np.asarray(tss, dtype=np.int64)
    g, nb, w = len(tss), bins.n_bins, bins.bin_size
    bounds = _bin_bounds(tss, sign, chrom_size, bins)
    res = pair_window_stats(starts, ends, values, bounds[:, :-1].ravel(), bounds[:, 1:].ravel(), stats=())
    values_ = (res["_s1"] / w).reshape(g, nb)
    cover = (res["_n"] / w).reshape(g, nb)
    return _downstream_right(values_, sign), _downstream_right(cover, sign)


# --------------------------------------------------------------------------------------------
# Gene-level driver
# --------------------------------------------------------------------------------------------
@dataclass
class TrackFeatures:
    """Features of one track for a gene table (rows in gene-table order).

    ``bins``/``bin_coverage`` are the first geometry's; ``geometry_bins`` maps every geometry's
    name to ``(values, coverage)``; ``region_bins`` maps it to the distinct distal regions' bins,
    back to back in :class:`RegionInput` order (see :func:`region_layout`)."""

    table: pd.DataFrame
    bins: np.ndarray | None = None
    bin_coverage: np.ndarray | None = None
    geometry_bins: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    region_bins: dict[str, np.ndarray] | None = None


@dataclass
class RegionInput:
    """Distinct distal regions (pCREs) to bin: canonical chromosome and ``[start, end)`` of each;
    each is binned in a frame ``max_width`` wide. Genes share regions (one pcHi-C fragment
    contacts several promoters), so each is computed and stored once."""

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    max_width: int


def gene_arrays(genes: pd.DataFrame) -> dict[str, np.ndarray]:
    """The gene-table columns the engines need, as numpy arrays."""
    return {
        "tss": genes["tss"].to_numpy(dtype=np.int64),
        "start": genes["start"].to_numpy(dtype=np.int64),
        "end": genes["end"].to_numpy(dtype=np.int64),
        "sign": np.where(genes["strand"].to_numpy() == "-", -1, 1).astype(np.int8),
    }


def chrom_groups(genes: pd.DataFrame) -> Mapping[str, np.ndarray]:
    """Row positions of the genes on each (canonical) chromosome, ordered by TSS.

    TSS order makes the windows' ``searchsorted`` queries nearly sorted (cache-friendly).
    """
    tss = genes["tss"].to_numpy()
    out = {}
    for k, v in genes.groupby("chrom", sort=False).indices.items():
        v = np.asarray(v)
        out[str(k)] = v[np.argsort(tss[v], kind="stable")]
    return out


def bigwig_features(
    path: str | Path,
    genes: pd.DataFrame,
    windows: Sequence[WindowSpec] = DEFAULT_WINDOWS,
    stats: Sequence[str] = STATS,
    bins: BinSpec | Sequence[BinSpec] | None = BinSpec(),
    slope_windows: Sequence[str] | None = None,
    regions: RegionInput | None = None,
) -> TrackFeatures:
    """Window statistics (columns ``{window}_{stat}``), TSS bins at every geometry and the distal
    regions' bins of one bigWig for all genes.

    Streams chromosome by chromosome: merges all windows, bin spans and regions of the chromosome,
    reads and inflates each overlapping block once, then computes everything from the interval
    arrays (so three geometries cost one read, not three).
    Genes on chromosomes absent from the file get uncovered values (NaN, or 0 for sum/coverage).
    ``slope_windows`` limits the slope (the costliest statistic) to the named windows (None: all).
    """
    stats = list(stats)
    unknown = set(stats) - set(STATS)
    if unknown:
        raise ValueError(f"unknown statistics: {sorted(unknown)}")
    geometries: list[BinSpec] = [] if bins is None else [bins] if isinstance(bins, BinSpec) else list(bins)
    arr = gene_arrays(genes)
    g = len(genes)
    sloped = {w.name for w in windows} if slope_windows is None else set(slope_windows)
    cols: dict[str, np.ndarray] = {}
    for spec in windows:
        for st in stats:
            if st == "slope" and spec.name not in sloped:
                continue
            cols[f"{spec.name}_{st}"] = np.full(g, 0.0 if st in ("sum", "coverage") else np.nan)
    binned = {b.name: (np.zeros((g, b.n_bins)), np.zeros((g, b.n_bins))) for b in geometries}
    frames = {b.name: b.frame_bins(regions.max_width) for b in geometries} if regions is not None else {}
    layout = {b.name: region_layout(regions.start, regions.end, b.bin_size, frames[b.name])
              for b in geometries} if regions is not None else {}
    region_out = {name: np.zeros(int(n.sum()), np.float32) for name, (n, _l, _o) in layout.items()}
    region_rows = _regions_by_chrom(regions) if regions is not None else {}
    with BigWigReader(path) as reader:
        sizes = reader.chroms()
        amap = alias_map(sizes, path=path)
        for chrom, rows in chrom_groups(genes).items():
            fchrom = amap.get(chrom)
            if fchrom is None or len(rows) == 0:
                continue
            size = sizes[fchrom]
            tss, gs, ge, sg = arr["tss"][rows], arr["start"][rows], arr["end"][rows], arr["sign"][rows]
            wins = []
            for spec in windows:
                ws, we = gene_windows(spec, tss, gs, ge, sg)
                wins.append((spec, np.clip(ws, 0, size), np.clip(we, 0, size)))
            all_s = [w[1] for w in wins]
            all_e = [w[2] for w in wins]
            for b in geometries:
                lo, hi = bin_span(tss, sg, b)
                all_s.append(np.clip(lo, 0, size))
                all_e.append(np.clip(hi, 0, size))
            ridx = region_rows.get(chrom, np.zeros(0, np.int64))
            if len(ridx):
                rs = np.clip(regions.start[ridx], 0, size)
                re_ = np.clip(regions.end[ridx], 0, size)
                all_s.append(rs)
                all_e.append(re_)
            merged = merge_windows(np.concatenate(all_s), np.concatenate(all_e))
            if len(merged) == 0:
                continue
            s, e, v = reader.intervals(fchrom, merged)
            if overlapping(s, e):
                _overlapping_chrom(cols, (s, e, v), wins, rows, sg, stats, sloped)
                for b in geometries:
                    vals, cov = pair_bin_matrix(s, e, v, tss, sg, size, b)
                    binned[b.name][0][rows], binned[b.name][1][rows] = vals, cov
                if len(ridx):
                    for b in geometries:
                        _place_regions(region_out[b.name], layout[b.name], ridx,
                                       region_bins(None, (s, e, v), rs, re_, b.bin_size, frames[b.name]))
                continue
            # One pass over all window types for everything but the slope, one for the slope of
            # the windows that want it, and the bins: all on the same intervals.
            sig = ChromSignal(s, e, v, merged)
            base = [st for st in stats if st != "slope"]
            if "slope" in stats:
                base = list(dict.fromkeys(base + ["s2"]))
            nw = len(rows)
            res = _base_stats(
                sig, np.concatenate([w[1] for w in wins] or [np.zeros(0, np.int64)]),
                np.concatenate([w[2] for w in wins] or [np.zeros(0, np.int64)]), base,
            )
            for k, (spec, _ws, _we) in enumerate(wins):
                part = slice(k * nw, (k + 1) * nw)
                for st in stats:
                    if st != "slope":
                        cols[f"{spec.name}_{st}"][rows] = res[st][part]
            ks = [k for k, w in enumerate(wins) if w[0].name in sloped] if "slope" in stats else []
            if ks:
                idx = np.concatenate([np.arange(k * nw, (k + 1) * nw) for k in ks])
                sws = np.concatenate([wins[k][1] for k in ks])
                swe = np.concatenate([wins[k][2] for k in ks])
                slope = _slope(sig, sws, swe, np.tile(sg, len(ks)), res["n"][idx], res["s1"][idx], res["s2"][idx])
                for j, k in enumerate(ks):
                    cols[f"{wins[k][0].name}_slope"][rows] = slope[j * nw : (j + 1) * nw]
            for b in geometries:
                vals, cov = bin_matrix(sig, tss, sg, size, b)
                binned[b.name][0][rows], binned[b.name][1][rows] = vals, cov
            if len(ridx):
                for b in geometries:
                    _place_regions(region_out[b.name], layout[b.name], ridx,
                                   region_bins(sig, None, rs, re_, b.bin_size, frames[b.name]))
            del sig, s, e, v
    table = pd.DataFrame(cols, index=genes.index)
    first = binned[geometries[0].name] if geometries else (None, None)
    return TrackFeatures(table=table, bins=first[0], bin_coverage=first[1], geometry_bins=binned,
                         region_bins=region_out if regions is not None else None)


def _place_regions(out: np.ndarray, layout: tuple[np.ndarray, np.ndarray, np.ndarray], ridx: np.ndarray,
                   values: np.ndarray) -> None:
    """Copy one chromosome's region bins (regions ``ridx``, back to back) to their place in ``out``."""
    n, _left, offset = layout
    out[_ranges(offset[ridx], n[ridx])] = values


def _regions_by_chrom(regions: RegionInput) -> dict[str, np.ndarray]:
    """Positions of the regions, grouped by (canonical) chromosome, ordered by start."""
    if len(regions.start) == 0:
        return {}
    out = {}
    for c, idx in pd.Series(np.arange(len(regions.chrom))).groupby(np.asarray(regions.chrom), sort=False).indices.items():
        idx = np.asarray(idx)
        out[str(c)] = idx[np.argsort(regions.start[idx], kind="stable")]
    return out


def _overlapping_chrom(
    cols: dict[str, np.ndarray], data: tuple[np.ndarray, np.ndarray, np.ndarray], wins: list,
    rows: np.ndarray, sign: np.ndarray, stats: list[str], sloped: set[str],
) -> None:
    """Window statistics of one chromosome whose items overlap (the pair engine)."""
    s, e, v = data
    for spec, ws, we in wins:
        want = [st for st in stats if st != "slope" or spec.name in sloped]
        res = pair_window_stats(s, e, v, ws, we, sign, want)
        for st in want:
            cols[f"{spec.name}_{st}"][rows] = res[st]
