"""BED peak files (BED3+, narrowPeak, broadPeak) and peak-centric window features.

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

BED flavours are told apart by the file name where it says (``.narrowPeak``, ``.broadPeak``,
``.gappedPeak``, ``.bedGraph``/``.bdg``) and otherwise by the column count and content of the first
data lines: a column 7 that holds BED9's thickStart (an integer inside the item, followed by
thickEnd and an itemRgb such as ``255,0,0``) is a coordinate, not narrowPeak's signalValue.
Items are whole spans (BED12 blocks are not split, as bedtools without ``-split``). Files are read
gzip-compressed or not, whatever their suffix says; a UTF-8 byte-order mark is ignored.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from epx.bigwig import _ranges
from epx.chroms import alias_map, canonical_chrom
from epx.errors import TrackError, require_file
from epx.windows import DEFAULT_WINDOWS, WindowSpec, chrom_groups, gene_arrays, gene_windows

PEAK_STATS: tuple[str, ...] = ("n_peaks", "coverage", "density", "entropy", "max_signal")
_SKIP_PREFIXES = ("#", "track", "browser")
_SAMPLE_LINES = 1000  # data lines inspected to tell the BED flavour

# flavour -> (minimum columns, 0-based signal column or None)
FLAVOURS: dict[str, tuple[int, int | None]] = {
    "narrowPeak": (10, 6),  # BED6+4: signalValue, pValue, qValue, peak
    "broadPeak": (9, 6),  # BED6+3: signalValue, pValue, qValue
    "gappedPeak": (15, 12),  # BED12+3: signalValue, pValue, qValue
    "bedGraph": (4, 3),  # chrom, start, end, value
}
_SUFFIX_FLAVOUR = {".narrowpeak": "narrowPeak", ".broadpeak": "broadPeak", ".gappedpeak": "gappedPeak",
                   ".bedgraph": "bedGraph", ".bdg": "bedGraph"}
_RGB = re.compile(r"\d{1,3}(,\d{1,3}){2},?|\d{1,3}")
_INT = re.compile(r"[+-]?\d+")
_INT_LIST = re.compile(r"(\d+,)*\d+,?")
_FIRST_FIELD = re.compile(rb"^[ \t]*([^\s]+)", re.M)  # the first field of every non-blank line


@dataclass
class ChromPeaks:
    """Peaks of one chromosome, sorted by start, plus the sorted helper arrays the features use."""

    starts: np.ndarray
    ends: np.ndarray
    signal: np.ndarray
    sorted_ends: np.ndarray = field(init=False)
    union_starts: np.ndarray = field(init=False)
    union_ends: np.ndarray = field(init=False)
    union_cum: np.ndarray = field(init=False)
    mids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        order = np.lexsort((self.ends, self.starts))
        self.starts = self.starts[order]
        self.ends = self.ends[order]
        self.signal = self.signal[order]
        self.sorted_ends = np.sort(self.ends)
        self.mids = np.sort((self.starts + self.ends) / 2.0)
        keep = self.ends > self.starts
        s, e = self.starts[keep], self.ends[keep]
        if len(s):
            run_end = np.maximum.accumulate(e)
            new = np.ones(len(s), dtype=bool)
            new[1:] = s[1:] > run_end[:-1]
            first = np.flatnonzero(new)
            last = np.append(first[1:], len(s)) - 1
            self.union_starts, self.union_ends = s[first], run_end[last]
        else:
            self.union_starts = self.union_ends = np.zeros(0, dtype=np.int64)
        self.union_cum = np.concatenate([[0], np.cumsum(self.union_ends - self.union_starts)])

    def __len__(self) -> int:
        return len(self.starts)


@dataclass
class PeakSet:
    """All peaks of one file, keyed by canonical chromosome name."""

    path: str
    chroms: dict[str, ChromPeaks]
    flavour: str  # "BED3".."BED6", "BED9", "BED12", "narrowPeak", "broadPeak", "gappedPeak", ...
    signal_column: int | None  # 1-based column of the signal value, None when there is none
    n_columns: int

    @property
    def has_signal(self) -> bool:
        return self.signal_column is not None


def read_text_track(path: Path, what: str = "peak file") -> bytes:
    """The bytes of a text track, gunzipped when they are gzip data (whatever the suffix says),
    without a UTF-8 byte-order mark. Refuses binary files with what they are, never their bytes."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TrackError(f"cannot read {what}: {err.strerror}", path=path) from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = _gunzip(data)
        except EOFError:
            raise TrackError(f"truncated gzip file: the {what} ends before its compressed data do",
                             path=path) from None
        except (gzip.BadGzipFile, zlib.error, OSError) as err:
            raise TrackError(f"damaged gzip file ({err}); the {what} cannot be decompressed",
                             path=path) from None
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
    head = data[:65536]
    magic = head[:4]
    if magic in (b"\x26\xfc\x8f\x88", b"\x88\x8f\xfc\x26"):
        raise TrackError(f"a bigWig file, not a BED {what} (give it as kind bigwig)", path=path)
    if magic in (b"\xeb\xf2\x89\x87", b"\x87\x89\xf2\xeb"):
        raise TrackError(f"a bigBed file, not a BED {what} (convert it with bigBedToBed)", path=path)
    if b"\x00" in head:
        raise TrackError(f"a binary file, not a BED {what} (BED is tab-separated text)", path=path)
    return data


def _gunzip(data: bytes) -> bytes:
    """All gzip members (bgzip writes several), with ISA-L when installed (faster than zlib)."""
    try:
        from isal import igzip, isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency
        return gzip.decompress(data)
    try:
        return igzip.decompress(data)
    except isal_zlib.error as err:  # damaged deflate data: ISA-L's own error type
        raise gzip.BadGzipFile(str(err)) from None


def bed_overview(path: str | Path) -> tuple[set[str], str, int | None]:
    """Chromosome names (as the file spells them), flavour and 1-based signal column of a BED
    file, without parsing its coordinates (what ``epx check`` needs)."""
    p = require_file(path, "peak file")
    data = read_text_track(p)
    found = set(_FIRST_FIELD.findall(data))
    names = {n.decode("utf-8", errors="replace") for n in found if not n.startswith((b"#", b"track", b"browser"))}
    rows, lines = _sample_rows(_head(data))
    flavour, col = detect_flavour(p.name, rows, lines, p)
    alias_map(sorted(names), path=p)  # one chromosome spelled two ways is refused here already
    return names, flavour, None if col is None else col + 1


def _head(data: bytes, size: int = 1 << 20) -> bytes:
    """The first ``size`` bytes, cut after the last whole line."""
    return data if len(data) <= size else data[: data.rfind(b"\n", 0, size) + 1]


def detect_flavour(name: str, rows: list[list[str]], lines: list[int], path: Path) -> tuple[str, int | None]:
    """The BED flavour and its 0-based signal column, from the file name and sample data lines."""
    if not rows:
        return "BED3", None
    ncols = min(len(r) for r in rows)
    base = name.lower().removesuffix(".gz")
    for suffix, flavour in _SUFFIX_FLAVOUR.items():
        if base.endswith(suffix):
            need, col = FLAVOURS[flavour]
            short = next((i for i, r in enumerate(rows) if len(r) < need), None)
            if short is not None:
                raise TrackError(f"a {flavour} file needs {need} columns, this line has {len(rows[short])}",
                                 path=path, line=lines[short])
            return flavour, col

    def all_rows(test) -> bool:
        try:
            return all(test(r) for r in rows)
        except (ValueError, IndexError):
            return False

    def numeric(r: list[str], cols: range) -> bool:
        for c in cols:
            float(r[c])
        return True

    def thick_rgb(r: list[str]) -> bool:  # BED9: thickStart, thickEnd (inside the item, or
        # equal: no thick part, often 0 0), then an itemRgb such as 255,0,0 or 0
        if not (_INT.fullmatch(r[6]) and _INT.fullmatch(r[7]) and _RGB.fullmatch(r[8])):
            return False
        thick_start, thick_end = int(r[6]), int(r[7])
        return thick_start == thick_end or int(r[1]) <= thick_start <= thick_end <= int(r[2])

    def blocks(r: list[str]) -> bool:  # BED12: blockCount, blockSizes, blockStarts
        return bool(_INT.fullmatch(r[9]) and _INT_LIST.fullmatch(r[10]) and _INT_LIST.fullmatch(r[11]))

    if ncols <= 6:
        return f"BED{ncols}", None
    if ncols >= 9 and all_rows(thick_rgb):
        if ncols >= 12 and all_rows(blocks):
            if ncols == 15 and all_rows(lambda r: numeric(r, range(12, 15))):
                return "gappedPeak", 12
            return ("BED12" if ncols == 12 else f"BED12+{ncols - 12}"), None
        return ("BED9" if ncols == 9 else f"BED9+{ncols - 9}"), None
    if ncols == 10 and all_rows(lambda r: numeric(r, range(6, 9)) and _INT.fullmatch(r[9]) is not None):
        return "narrowPeak", 6
    if ncols == 9 and all_rows(lambda r: numeric(r, range(6, 9))):
        return "broadPeak", 6
    return f"BED6+{ncols - 6}", None


def _sample_rows(data: bytes) -> tuple[list[list[str]], list[int]]:
    """The first data lines, split into fields, with their line numbers."""
    rows: list[list[str]] = []
    lines: list[int] = []
    for lineno, raw in enumerate(data.splitlines(), start=1):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith(_SKIP_PREFIXES):
            continue
        rows.append(line.split("\t") if "\t" in line else line.split())
        lines.append(lineno)
        if len(rows) >= _SAMPLE_LINES:
            break
    return rows, lines


def read_peaks(path: str | Path) -> PeakSet:
    """Parse a BED3+ file: BED3-12, narrowPeak, broadPeak, gappedPeak, bedGraph (gzipped or not).

    Skips blank, ``#``, ``track`` and ``browser`` lines. Raises a one-line :class:`TrackError`
    naming the file and line for too few columns, non-integer or negative coordinates, or
    start > end, and for two spellings of one chromosome (``1`` and ``chr1``). The signal
    column depends on the flavour (see :func:`detect_flavour`); flavours without one give no
    signal.
    """
    p = require_file(path, "peak file")
    data = read_text_track(p)
    rows, lines = _sample_rows(_head(data))
    flavour, signal_col = detect_flavour(p.name, rows, lines, p)
    parsed = _parse_fast(data, signal_col)
    if parsed is None:
        parsed = _parse_slow(data, p, signal_col)
    chroms, s, e, signal, ncols = parsed
    if signal_col is None or len(signal) == 0 or not np.isfinite(signal).any():
        signal_col = None
        signal = np.full(len(s), np.nan)
    out: dict[str, ChromPeaks] = {}
    if len(s):
        codes, uniq = pd.factorize(np.asarray(chroms, dtype=object))
        names = sorted(alias_map([str(u) for u in uniq], path=p))
        to_canon = np.array([names.index(canonical_chrom(str(u))) for u in uniq], dtype=np.int64)
        ccode = to_canon[codes]
        order = np.argsort(ccode, kind="stable")
        bounds = np.searchsorted(ccode[order], np.arange(len(names) + 1))
        for k, name in enumerate(names):
            grp = order[bounds[k] : bounds[k + 1]]
            out[name] = ChromPeaks(s[grp], e[grp], signal[grp])
    return PeakSet(path=str(p), chroms=out, flavour=flavour,
                   signal_column=None if signal_col is None else signal_col + 1, n_columns=ncols)


def _parse_fast(data: bytes, signal_col: int | None) -> tuple | None:
    """pandas C-parser path for clean tab-separated files; None means "use the slow path"."""
    # Leading header lines are fine; skip lines further down are left to the slow path.
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        line = data[pos : (nl if nl >= 0 else len(data))]
        if line.strip() and not line.lstrip().startswith((b"#", b"track", b"browser")):
            break
        pos = nl + 1 if nl >= 0 else len(data)
    body = data[pos:]
    if not body.strip():
        return [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 3
    if any(tok in body for tok in (b"\n#", b"\ntrack", b"\nbrowser", b"\n ", b"\n\t")):
        return None
    if b"\t" not in body[: body.find(b"\n")]:
        return None
    first = body[: body.find(b"\n")] if b"\n" in body else body
    ncols = first.count(b"\t") + 1
    if ncols < 3:
        return None
    cols = [0, 1, 2] + ([signal_col] if signal_col is not None and signal_col < ncols else [])
    try:
        t = pd.read_csv(
            io.BytesIO(body), sep="\t", header=None, usecols=cols,
            dtype={0: str}, engine="c", skip_blank_lines=False, na_filter=len(cols) > 3,
        )
    except (ValueError, pd.errors.ParserError):
        return None
    if t.shape[1] < 3 or t[1].dtype.kind != "i" or t[2].dtype.kind != "i" or t[0].isna().any():
        return None
    s, e = t[1].to_numpy(np.int64), t[2].to_numpy(np.int64)
    if (s < 0).any() or (s > e).any():
        return None
    if len(cols) > 3:
        sig = pd.to_numeric(t[signal_col], errors="coerce").to_numpy(np.float64)
    else:
        sig = np.full(len(s), np.nan)
    return t[0].to_numpy(), s, e, sig, ncols


def _parse_slow(data: bytes, p: Path, signal_col: int | None) -> tuple:
    """Line-by-line parser: handles any layout and reports errors with their line numbers."""
    chroms: list[str] = []
    starts: list[str] = []
    ends: list[str] = []
    sig: list[str] = []
    lines: list[int] = []
    ncols = None
    text = data.decode("utf-8", errors="replace")
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith(_SKIP_PREFIXES):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 3:
            raise TrackError(
                f"too few columns ({len(parts)}; BED needs chrom, start, end)", path=p, line=lineno
            )
        if ncols is None:
            ncols = len(parts)
        chroms.append(parts[0])
        starts.append(parts[1])
        ends.append(parts[2])
        sig.append(parts[signal_col] if signal_col is not None and len(parts) > signal_col else "nan")
        lines.append(lineno)
    s = _parse_coords(starts, lines, p, "start")
    e = _parse_coords(ends, lines, p, "end")
    bad = np.flatnonzero(s > e)
    if len(bad):
        i = int(bad[0])
        raise TrackError(f"start {s[i]} > end {e[i]}", path=p, line=lines[i])
    signal = pd.to_numeric(pd.Series(sig, dtype=object), errors="coerce").to_numpy(np.float64)
    return chroms, s, e, signal, ncols or 3


def _parse_coords(text: list[str], lines: list[int], path: Path, what: str) -> np.ndarray:
    ser = pd.Series(text, dtype=object)
    num = pd.to_numeric(ser, errors="coerce")
    vals = num.to_numpy(np.float64, na_value=np.nan)
    bad = ~np.isfinite(vals) | (vals != np.floor(vals))
    bad |= ~ser.str.fullmatch(r"\s*[+-]?\d+\s*").fillna(False).to_numpy(bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        hint = "; a column-header line? BED files have none (start it with #)" if i == 0 else ""
        raise TrackError(f"non-integer {what} coordinate {text[i][:40]!r}{hint}", path=path, line=lines[i])
    if (vals < 0).any():
        i = int(np.flatnonzero(vals < 0)[0])
        raise TrackError(f"negative {what} coordinate {text[i]}", path=path, line=lines[i])
    if (vals > 2**62).any():
        i = int(np.flatnonzero(vals > 2**62)[0])
        raise TrackError(f"{what} coordinate {text[i]} is too large", path=path, line=lines[i])
    return vals.astype(np.int64)


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
