"""BED files as real tools write them: BED3-12, narrowPeak, broadPeak, gappedPeak, bedGraph.

BED flavours are told apart by the file name where it says (``.narrowPeak``, ``.broadPeak``,
``.gappedPeak``, ``.bedGraph``/``.bdg``) and otherwise by the column count and content of the first
data lines: a column 7 that holds BED9's thickStart (an integer inside the item, followed by
thickEnd and an itemRgb such as ``255,0,0``) is a coordinate, not narrowPeak's signalValue.
Items are whole spans (BED12 blocks are not split, as bedtools without ``-split``). Files are read
gzip-compressed or not, whatever their suffix says; a UTF-8 byte-order mark is ignored.
The window features computed from these peaks live in :mod:`epx.features.peaks`.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from epx.errors import TrackError, require_file
from epx.io.chroms import alias_map, canonical_chrom

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


