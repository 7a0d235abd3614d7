"""A pure-numpy bigWig reader built for whole-genome featurisation, strict about damaged files.

Why not pyBigWig: its per-window API re-reads and re-inflates the same compressed blocks once per
window and per statistic, which dominates the cost of featurising tens of thousands of genes. This
reader parses the header, the chromosome B+ tree and the R-tree index itself (UCSC bigWig format,
Kent et al. 2010), finds the data blocks overlapping the *merged* windows of one chromosome, and
inflates each such block exactly once (with ISA-L when the ``isal`` package is installed: about
1.7x faster than zlib), decoding it with ``np.frombuffer`` into interval arrays. And its C library
crashes (SIGSEGV) on some damaged files, which no ``try`` can catch.

Supported: compressed and uncompressed files (``uncompressBufSize == 0``), little- and big-endian
files, bedGraph (type 1), varStep (type 2) and fixedStep (type 3) sections. Zoom levels are not
used (all statistics are exact). A reader holds an open file; pass *paths*, not readers, to worker
processes (pickling a reader re-opens it from its path).

What the data mean (the contract the window engine builds on):

* A non-finite value (NaN, +-inf) is **no data**: the item is dropped, so its bases are uncovered.
  pybigtools, pyBigWig and kent's wigToBigWig all write NaN values; pyBigWig's min/max skip them
  and pybigtools' per-base values are NaN there, both the same as "uncovered".
* Zero-length items (``start == end``) cover no base and are dropped.
* Items may overlap (fixedStep sections with span > step, some cgpBigWig outputs). They are kept,
  each counting on its own, as libBigWig's exact statistics count them; ``intervals`` then
  returns overlapping intervals and :func:`overlapping` tells the caller.
* Items come back sorted by start, also when a block stores them out of order.

Damage is refused with a one-line :class:`~epx.errors.TrackError` naming the structure and its
byte offset, never read as "no data": a bad magic number (with what the file is instead: gzip,
bigBed, text), any structure past the end of the file, cycles in either tree, chromosome ids the
index does not know, a data count that disagrees with the index, blocks that do not inflate,
inflate beyond the header's buffer size, or belong to another chromosome than their index entry,
and items ending before they start. All work is bounded by the file size, so a damaged file fails
fast.

Index entries whose bounds miss some of their block's items (rtracklayer ends blocks one base
short, libBigWig's fixedStep blocks ignore the span; zeroed bounds) are read, not refused: see
``_sample_slack``.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from epx.errors import TrackError

try:  # ISA-L inflates bigWig blocks ~1.7x faster than zlib, with identical output.
    from isal import isal_zlib as _inflater

    _INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _inflater.error)
except ImportError:  # pragma: no cover - isal is a dependency, but zlib is always there
    _inflater = zlib
    _INFLATE_ERRORS = (zlib.error,)

BIGWIG_MAGIC = 0x888FFC26
BIGBED_MAGIC = 0x8789F2EB
_BPT_MAGIC = 0x78CA8C91
_RTREE_MAGIC = 0x2468ACE0

_HEADER = "IHHQQQHHQQIQ"  # 64 bytes
_BPT_HEADER = "IIIIQQ"  # 32 bytes
_RTREE_HEADER = "IIQIIIIQII"  # 48 bytes
_NODE_HEADER = "BBH"  # 4 bytes
_SECTION_HEADER = "IIIIIBBH"  # 24 bytes

_BEDGRAPH, _VARSTEP, _FIXEDSTEP = 1, 2, 3
_ITEM_SIZE = {_BEDGRAPH: 12, _VARSTEP: 8, _FIXEDSTEP: 4}
_MAX_KEY_SIZE = 65_535  # chromosome names are short; a larger key size is a damaged header
_BIG = np.iinfo(np.int64).max

Intervals = tuple[np.ndarray, np.ndarray, np.ndarray]


def _empty() -> Intervals:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)


def merge_regions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Union of ``[starts, ends)`` as sorted, disjoint, non-touching ``(k, 2)`` regions (empty
    ones dropped)."""
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    keep = ends > starts
    s, e = starts[keep], ends[keep]
    if len(s) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    run_end = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > run_end[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(s)) - 1
    return np.column_stack([s[first], run_end[last]])


def _as_regions(regions: np.ndarray | None, size: int) -> np.ndarray:
    if regions is None:
        return np.array([[0, size]], dtype=np.int64)
    reg = np.asarray(regions, dtype=np.int64).reshape(-1, 2)
    if len(reg) > 1 and not (np.all(reg[1:, 0] > reg[:-1, 1]) and np.all(reg[:, 1] > reg[:, 0])):
        reg = merge_regions(reg[:, 0], reg[:, 1])
    return reg


def overlapping(starts: np.ndarray, ends: np.ndarray) -> bool:
    """True when intervals sorted by start overlap (some base is covered by two items)."""
    return len(starts) > 1 and bool(np.any(ends[:-1] > starts[1:]))


def restrict_to_regions(
    starts: np.ndarray,
    ends: np.ndarray,
    values: np.ndarray,
    regions: np.ndarray,
    copy: bool = True,
) -> Intervals:
    """Keep the parts of sorted, non-overlapping intervals that fall inside merged ``regions``.

    Intervals are clipped to region bounds, and an interval spanning a gap between two regions is
    split into one piece per region, so every returned interval lies inside exactly one region.
    Only the first and last interval of each region can stick out, so clipping is O(regions).
    ``copy=False`` lets the fast path (nothing dropped) clip the input arrays in place.
    For overlapping intervals use :func:`restrict_overlapping`.
    """
    regions = np.asarray(regions, dtype=np.int64).reshape(-1, 2)
    if len(starts) == 0 or len(regions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=values.dtype)
    lo = np.searchsorted(ends, regions[:, 0], side="right")
    hi = np.searchsorted(starts, regions[:, 1], side="left")
    counts = np.maximum(hi - lo, 0)
    if int(counts.sum()) == len(starts) and np.all(lo[1:] >= hi[:-1]):
        s, e, v = (starts.copy(), ends.copy(), values) if copy else (starts, ends, values)
        out_first = lo
    else:
        idx = _ranges(lo, counts)
        s, e, v = starts[idx], ends[idx], values[idx]
        out_first = np.cumsum(counts) - counts
    nz = counts > 0
    first = out_first[nz]
    last = first + counts[nz] - 1
    s[first] = np.maximum(s[first], regions[nz, 0])
    e[last] = np.minimum(e[last], regions[nz, 1])
    return s, e, v


def restrict_overlapping(
    starts: np.ndarray, ends: np.ndarray, values: np.ndarray, regions: np.ndarray
) -> Intervals:
    """:func:`restrict_to_regions` for intervals sorted by start that may overlap.

    Every interval is clipped to each region it overlaps (one piece per region); the result is
    sorted by start within each region, so sorted by start overall.
    """
    regions = np.asarray(regions, dtype=np.int64).reshape(-1, 2)
    if len(starts) == 0 or len(regions) == 0:
        none = np.zeros(0, dtype=np.int64)
        return none, none.copy(), np.zeros(0, dtype=values.dtype)
    run_end = np.maximum.accumulate(ends)
    lo = np.searchsorted(run_end, regions[:, 0], side="right")
    hi = np.searchsorted(starts, regions[:, 1], side="left")
    counts = np.maximum(hi - lo, 0)
    idx = _ranges(lo, counts)
    reg = np.repeat(np.arange(len(regions)), counts)
    s = np.maximum(starts[idx], regions[reg, 0])
    e = np.minimum(ends[idx], regions[reg, 1])
    keep = e > s
    return s[keep], e[keep], values[idx][keep]


def _ranges(lo: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(lo[i], lo[i] + counts[i])`` for all i, without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) + np.repeat(np.asarray(lo, np.int64) - offsets, counts)


def describe_non_bigwig(head: bytes) -> str:
    """What a file that is not a bigWig most likely is, from its first bytes (never the bytes)."""
    if not head:
        return "not a bigWig file (the file is empty)"
    if head[:2] == b"\x1f\x8b":
        return "gzip-compressed, not a bigWig file (bigWig data are compressed inside; gunzip it first)"
    if len(head) >= 4 and BIGBED_MAGIC in struct.unpack("<I", head[:4]) + struct.unpack(">I", head[:4]):
        return "a bigBed file, not a bigWig file (convert it with bigBedToBed and give it as kind bed)"
    if len(head) < 4:
        return f"not a bigWig file (only {len(head)} bytes)"
    sample = head[:512]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    if printable == len(sample):
        return ("not a bigWig file (it is text; convert bedGraph or wig text with "
                "bedGraphToBigWig or wigToBigWig)")
    return f"not a bigWig file (unknown magic number 0x{struct.unpack('<I', head[:4])[0]:08x})"


class BigWigReader:
    """Random access to the base-level data of one bigWig file.

    ``chroms()`` gives the file's chromosome sizes (file spelling); ``intervals(chrom, regions)``
    returns the data restricted to merged regions as ``(starts, ends, values)`` arrays.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            self._fh = open(self.path, "rb")
        except OSError as err:
            raise TrackError(f"cannot open bigWig: {err.strerror}", path=self.path) from None
        self._mm: mmap.mmap | None = None
        self._slack = (0, 0)  # how far items reach beyond their index entry (before, after)
        self._slack_exact = False  # True once every block has been measured
        try:
            self._size = os.fstat(self._fh.fileno()).st_size
            if self._size >= 4:
                try:
                    self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
                except (OSError, ValueError):
                    self._mm = None
            self._parse()
        except BaseException:
            self.close()
            raise

    # -- low-level reading -------------------------------------------------------------------
    def _fail(self, message: str) -> TrackError:
        return TrackError(message, path=self.path)

    def _read(self, offset: int, n: int, what: str) -> bytes:
        if offset < 0 or n < 0 or offset + n > self._size:
            raise self._fail(
                f"truncated or damaged bigWig: the {what} needs bytes {offset}-{offset + n}"
                f" but the file ends at byte {self._size}"
            )
        if self._mm is not None:
            return self._mm[offset : offset + n]
        return os.pread(self._fh.fileno(), n, offset)

    def _unpack(self, fmt: str, offset: int, what: str) -> tuple:
        fmt = self._endian + fmt
        return struct.unpack(fmt, self._read(offset, struct.calcsize(fmt), what))

    # -- header and indexes ------------------------------------------------------------------
    def _parse(self) -> None:
        head = os.pread(self._fh.fileno(), 64, 0)
        magic_le = struct.unpack("<I", head[:4])[0] if len(head) >= 4 else None
        magic_be = struct.unpack(">I", head[:4])[0] if len(head) >= 4 else None
        if magic_le == BIGWIG_MAGIC:
            self._endian = "<"
        elif magic_be == BIGWIG_MAGIC:
            self._endian = ">"
        else:
            raise self._fail(describe_non_bigwig(head))
        (
            _magic,
            self.version,
            self.zoom_levels,
            chrom_tree_offset,
            self._data_offset,
            index_offset,
            _field_count,
            _defined_field_count,
            _autosql_offset,
            summary_offset,
            self._uncompress_buf_size,
            _reserved,
        ) = self._unpack(_HEADER, 0, "header")
        self._parse_chrom_tree(chrom_tree_offset)
        self._parse_index(index_offset)
        self._check_tail(summary_offset)

    def _check_tail(self, summary_offset: int) -> None:
        """Validate the zoom levels and the summary too, so a file cut anywhere is reported, and
        hold the index to what the summary promises."""
        if summary_offset:
            bases, *_ = self._unpack("Qdddd", summary_offset, "total summary")
            if bases > 0 and len(self._blk_off) == 0:
                raise self._fail(
                    f"damaged bigWig: the summary says {bases} bases are covered but the index"
                    " lists no data block"
                )
        for level in range(self.zoom_levels):
            _red, _res, data_off, index_off = self._unpack(
                "IIQQ", 64 + 24 * level, "zoom level header"
            )
            self._read(data_off, 4, "zoom data")
            leaves = self._walk_rtree(index_off, "zoom index")
            if len(leaves) and int((leaves["off"] + leaves["size"]).max()) > self._size:
                raise self._fail(
                    f"truncated or damaged bigWig: zoom level {level + 1} data lie beyond the"
                    f" end of the file (byte {self._size})"
                )

    def _parse_chrom_tree(self, offset: int) -> None:
        magic, _block_size, key_size, val_size, count, _res = self._unpack(
            _BPT_HEADER, offset, "chromosome tree header"
        )
        if magic != _BPT_MAGIC:
            raise self._fail(f"damaged bigWig: bad chromosome tree magic at byte {offset}")
        if not 0 < key_size <= _MAX_KEY_SIZE:
            raise self._fail(f"damaged bigWig: chromosome tree key size {key_size} at byte {offset}")
        if val_size != 8:
            raise self._fail(f"damaged bigWig: chromosome tree value size {val_size} (expected 8)")
        e = self._endian
        leaf_dt = np.dtype([("key", f"S{key_size}"), ("id", e + "u4"), ("size", e + "u4")])
        node_dt = np.dtype([("key", f"S{key_size}"), ("child", e + "u8")])
        names: dict[int, str] = {}
        sizes: dict[int, int] = {}
        by_name: dict[str, int] = {}
        stack = [offset + 32]
        visited: set[int] = set()
        while stack:
            node = stack.pop()
            if node in visited:
                raise self._fail(
                    f"damaged bigWig: the chromosome tree node at byte {node} is reached twice"
                    " (the tree loops)"
                )
            visited.add(node)
            is_leaf, _r, n = self._unpack(_NODE_HEADER, node, "chromosome tree node")
            if is_leaf not in (0, 1):
                raise self._fail(f"damaged bigWig: chromosome tree node at byte {node} has type {is_leaf}")
            dt = leaf_dt if is_leaf else node_dt
            items = np.frombuffer(self._read(node + 4, n * dt.itemsize, "chromosome tree node"), dt)
            if is_leaf:
                for key, cid, size in zip(items["key"].tolist(), items["id"].tolist(),
                                          items["size"].tolist(), strict=True):
                    # Zero-padded like a C string: the name ends at the first NUL.
                    raw_name = key.split(b"\0", 1)[0]
                    try:
                        name = raw_name.decode("utf-8")
                    except UnicodeDecodeError:
                        name = ""
                    if not name or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
                        raise self._fail(
                            f"damaged bigWig: chromosome id {cid} in the node at byte {node} has"
                            " an empty name or one that is not text"
                        )
                    if cid in names or name in by_name:
                        what = f"id {cid}" if cid in names else f"name {name!r}"
                        raise self._fail(f"damaged bigWig: chromosome {what} appears twice in the chromosome tree")
                    names[cid], sizes[cid], by_name[name] = name, size, cid
            else:
                stack.extend(int(c) for c in items["child"][::-1])
        if len(names) != count:
            raise self._fail(
                f"damaged bigWig: the chromosome tree header says {count} chromosomes but the"
                f" tree holds {len(names)}"
            )
        if names and max(names) >= count:
            raise self._fail(
                f"damaged bigWig: chromosome id {max(names)} in a file of {count} chromosomes"
            )
        self._chrom_ids = by_name
        self._chrom_sizes = {names[i]: sizes[i] for i in names}

    def _walk_rtree(self, offset: int, what: str) -> np.ndarray:
        """All leaf items of the R-tree at ``offset`` (structured array). Every node is visited at
        most once, so a damaged tree fails at once instead of looping."""
        fields = self._unpack(_RTREE_HEADER, offset, f"{what} header")
        if fields[0] != _RTREE_MAGIC:
            raise self._fail(f"damaged bigWig: bad {what} magic at byte {offset}")
        e = self._endian
        leaf_dt = np.dtype(
            [("sc", e + "u4"), ("sb", e + "u4"), ("ec", e + "u4"), ("eb", e + "u4"),
             ("off", e + "u8"), ("size", e + "u8")]
        )
        node_dt = np.dtype(
            [("sc", e + "u4"), ("sb", e + "u4"), ("ec", e + "u4"), ("eb", e + "u4"),
             ("child", e + "u8")]
        )
        leaves = []
        stack = [offset + 48]
        visited: set[int] = set()
        while stack:
            node = stack.pop()
            if node in visited:
                raise self._fail(f"damaged bigWig: the {what} node at byte {node} is reached twice (the tree loops)")
            visited.add(node)
            is_leaf, _r, count = self._unpack(_NODE_HEADER, node, f"{what} node")
            if is_leaf not in (0, 1):
                raise self._fail(f"damaged bigWig: {what} node at byte {node} has type {is_leaf}")
            dt = leaf_dt if is_leaf else node_dt
            items = np.frombuffer(self._read(node + 4, count * dt.itemsize, f"{what} node"), dt)
            if is_leaf:
                leaves.append(items)
            else:
                stack.extend(int(c) for c in items["child"][::-1])
        return np.concatenate(leaves) if leaves else np.zeros(0, dtype=leaf_dt)

    def _parse_index(self, offset: int) -> None:
        blocks = self._walk_rtree(offset, "R-tree index")
        order = np.lexsort((blocks["sb"], blocks["sc"]))
        blocks = blocks[order]
        self._blk_sc = blocks["sc"].astype(np.int64)
        self._blk_sb = blocks["sb"].astype(np.int64)
        self._blk_ec = blocks["ec"].astype(np.int64)
        self._blk_eb = blocks["eb"].astype(np.int64)
        self._blk_off = blocks["off"].astype(np.int64)
        self._blk_size = blocks["size"].astype(np.int64)
        n = len(blocks)
        if n == 0:
            return
        known = np.array(sorted(self._chrom_ids.values()), dtype=np.int64)
        for ids in (self._blk_sc, self._blk_ec):
            bad = ~np.isin(ids, known)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise self._fail(
                    f"damaged bigWig: the index entry of the data block at byte {self._blk_off[i]}"
                    f" names chromosome id {ids[i]}, which the chromosome tree does not list"
                )
        end = self._blk_off + self._blk_size
        bad = (end > self._size) | (self._blk_size <= 0) | (self._blk_off < 64)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self._fail(
                f"truncated or damaged bigWig: the data block at byte {self._blk_off[i]}"
                f" ({self._blk_size[i]} bytes) lies outside the file ({self._size} bytes)"
            )
        if self.version >= 2:  # v1 files store no count, or a 32-bit one
            (count,) = self._unpack("Q", self._data_offset, "data count")
            if count != n:
                raise self._fail(
                    f"damaged bigWig: the data section says it holds {count} blocks but the index"
                    f" lists {n}"
                )
        empty = (self._blk_sc > self._blk_ec) | (
            (self._blk_sc == self._blk_ec) & (self._blk_sb >= self._blk_eb)
        )
        if empty.any():
            self._repair_empty_entries(np.flatnonzero(empty))
        self._sample_slack()

    def _sample_slack(self, n_sample: int = 32) -> None:
        """Learn how far items reach beyond their index entries, from up to ``n_sample`` blocks
        spread over the file. Real writers differ: rtracklayer ends a block one base short of its
        last item; libBigWig's fixedStep blocks end ``span - step`` short. Every read widens its
        block plan by this slack, so a window at a block's edge still finds its items. A read that
        meets an item beyond the slack measures every block of the file once (:meth:`_scan_slack`)
        and reads again, so the slack is then exact."""
        n = len(self._blk_off)
        if n <= n_sample:
            self._measure_slack(range(n))
            self._slack_exact = True
        else:
            self._measure_slack(np.linspace(0, n - 1, n_sample).round().astype(int).tolist())

    def _scan_slack(self) -> None:
        """Measure every block (once per reader): the slack becomes exact."""
        if not self._slack_exact:
            self._measure_slack(range(len(self._blk_off)))
            self._slack_exact = True

    def _measure_slack(self, rows) -> None:
        lo, hi = self._slack
        for i in rows:
            if self._blk_sc[i] != self._blk_ec[i]:
                continue
            off = int(self._blk_off[i])
            items = self._section_items(self._inflate(off, int(self._blk_size[i])), off)
            if items is None:
                continue
            _cid, s, e = items
            real = e > s
            if real.any():
                lo = max(lo, int(self._blk_sb[i] - s[real].min()))
                hi = max(hi, int(e[real].max() - self._blk_eb[i]))
        self._slack = (max(lo, 0), max(hi, 0))

    def _repair_empty_entries(self, rows: np.ndarray) -> None:
        """Index entries that cover no bases (zeroed bounds, as in rtracklayer's test file
        ``bed.bw``) would hide their block from every windowed read. Their bounds are taken from
        the items the block holds instead; a block with items on an unknown chromosome is refused.
        Only such entries are inflated here, so intact files cost nothing."""
        known = set(self._chrom_ids.values())
        for i in rows.tolist():
            off = int(self._blk_off[i])
            items = self._section_items(self._inflate(off, int(self._blk_size[i])), off)
            if items is None:
                continue
            bcid, s, e = items
            if bcid not in known:
                raise self._fail(
                    f"damaged bigWig: the data block at byte {off} holds chromosome id {bcid},"
                    " which the chromosome tree does not list"
                )
            real = e > s
            if not real.any():
                continue  # zero-length items only: no data, nothing to find
            self._blk_sc[i] = self._blk_ec[i] = bcid
            self._blk_sb[i], self._blk_eb[i] = int(s[real].min()), int(e[real].max())
        order = np.lexsort((self._blk_sb, self._blk_sc))
        for name in ("_blk_sc", "_blk_sb", "_blk_ec", "_blk_eb", "_blk_off", "_blk_size"):
            setattr(self, name, getattr(self, name)[order])

    def _section_items(self, buf: bytes, off: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """Chromosome id, starts and ends of one inflated section (None when it is empty)."""
        if len(buf) < 24:
            raise self._fail(f"damaged bigWig: the data block at byte {off} is too short ({len(buf)} bytes)")
        e = self._endian
        bcid, bstart, _bend, step, span, btype, _res, count = struct.unpack_from(e + _SECTION_HEADER, buf)
        isz = _ITEM_SIZE.get(btype)
        if isz is None:
            raise self._fail(f"damaged bigWig: the data block at byte {off} has unknown section type"
                             f" {btype}{self._zlib_hint(off)}")
        if len(buf) < 24 + count * isz:
            raise self._fail(
                f"damaged bigWig: the data block at byte {off} says it holds {count} items"
                f" but has room for {(len(buf) - 24) // isz}"
            )
        if count == 0:
            return None
        w = np.frombuffer(buf, e + "u4", count * isz // 4, 24).astype(np.int64)
        if btype == _BEDGRAPH:
            return bcid, w[0::3], w[1::3]
        if btype == _VARSTEP:
            return bcid, w[0::2], w[0::2] + span
        s = bstart + step * np.arange(count, dtype=np.int64)
        return bcid, s, s + span

    # -- public API --------------------------------------------------------------------------
    def chroms(self) -> dict[str, int]:
        """Chromosome sizes, keyed by the names the file uses."""
        return dict(self._chrom_sizes)

    @property
    def compressed(self) -> bool:
        return self._uncompress_buf_size > 0

    def blocks(self, chrom: str, regions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """File offsets and sizes of the data blocks of ``chrom`` that overlap any region."""
        plan = self._block_plan(chrom, regions)
        return plan[0], plan[1]

    def _block_plan(
        self, chrom: str, regions: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        """Blocks overlapping the regions: offsets, sizes, genomic start/end on ``chrom`` (0 /
        int64 max where an index entry reaches into another chromosome), and whether the entry
        spans several chromosomes."""
        cid = self._chrom_ids.get(chrom)
        none = np.zeros(0, np.int64)
        if cid is None:
            return none, none, none, none, none
        regions = _as_regions(regions, self._chrom_sizes[chrom])
        sel = np.flatnonzero((self._blk_sc <= cid) & (self._blk_ec >= cid))
        if len(sel) == 0 or len(regions) == 0:
            return none, none, none, none, none
        bstart = np.where(self._blk_sc[sel] == cid, self._blk_sb[sel], 0)
        bend = np.where(self._blk_ec[sel] == cid, self._blk_eb[sel], _BIG)
        # Widened by the slack seen so far: some writers' index bounds miss items (see _read_chrom).
        lo_slack, hi_slack = self._slack
        rs, re_ = regions[:, 0], regions[:, 1]
        k = np.searchsorted(re_, bstart - lo_slack, side="right")
        hit = k < len(rs)
        hit[hit] &= rs[k[hit]] < np.minimum(bend[hit], _BIG - hi_slack) + hi_slack
        sel, bstart, bend = sel[hit], bstart[hit], bend[hit]
        multi = self._blk_sc[sel] != self._blk_ec[sel]
        return self._blk_off[sel], self._blk_size[sel], bstart, bend, multi

    def _inflate(self, offset: int, size: int) -> bytes:
        raw = self._read(offset, size, "data block")
        if not self.compressed:
            return raw
        try:
            d = _inflater.decompressobj()
            out = d.decompress(raw, self._uncompress_buf_size + 1)
            complete = d.eof
        except _INFLATE_ERRORS as err:
            raise self._fail(f"damaged bigWig: the data block at byte {offset} does not inflate ({err})") from None
        if len(out) > self._uncompress_buf_size:
            raise self._fail(
                f"damaged bigWig: the data block at byte {offset} inflates beyond the"
                f" {self._uncompress_buf_size} bytes the header allows"
            )
        if not complete:
            raise self._fail(f"truncated or damaged bigWig: the data block at byte {offset} ends mid-stream")
        return out

    def _zlib_hint(self, offset: int) -> str:
        """A hint for blocks that do not parse in a file whose header says "uncompressed"."""
        if self.compressed:
            return ""
        first = self._read(offset, 2, "data block")
        if first[0] & 0x0F == 8 and (first[0] * 256 + first[1]) % 31 == 0:
            return (" (the header says the file is uncompressed, uncompressBufSize = 0, but the"
                    " block looks zlib-compressed)")
        return ""

    def _block_mismatch(self, offset: int, found: int, expected: int) -> TrackError:
        return self._fail(
            f"damaged bigWig: the data block at byte {offset} holds chromosome id {found} but the"
            f" index files it under id {expected}{self._zlib_hint(offset)}"
        )

    def _collect(
        self, chrom: str, cid: int, plan: tuple[np.ndarray, ...], regions: np.ndarray, cut: bool
    ) -> tuple[Intervals, bool, tuple[int, int]]:
        """Decode the planned blocks. Returns the items (block order, not yet validated as a
        whole), whether they can be trusted as they are, and how far items reach beyond their
        block's index entry (bases before its start, after its end).

        ``cut=True`` drops bedGraph items lying outside the regions per block, by bisection on the
        inflated bytes, before any conversion. Bisection assumes a block's items are sorted and
        disjoint: the blocks it cut are checked for that afterwards, and the result is only
        trusted when they are and all items kept are too; otherwise the caller reads again with
        ``cut=False``, which keeps whole blocks and measures every item against its index entry.
        """
        offsets, sizes, bstarts, bends, multi = plan
        rs_sorted = regions[:, 0]
        re_run = regions[:, 1]
        n_reg = len(rs_sorted)
        if cut:
            # Blocks inside one region keep all items; blocks overlapped by a single region need
            # at most two bisections (cut_lo / cut_hi, -1 = no cut); others bisect per region.
            # Block extents include the slack: items may reach that far beyond the index entry.
            lo_slack, hi_slack = self._slack
            wstarts = bstarts - lo_slack
            wends = np.minimum(bends, _BIG - hi_slack) + hi_slack
            k = np.searchsorted(rs_sorted, wstarts, side="right") - 1
            inside = (k >= 0) & (re_run[np.maximum(k, 0)] >= wends)
            r_first = np.searchsorted(re_run, wstarts, side="right")
            r_last = np.searchsorted(rs_sorted, wends, side="left") - 1
            single = r_first == r_last
            rf = np.minimum(r_first, n_reg - 1)
            cut_lo = np.where(single & (rs_sorted[rf] > wstarts), rs_sorted[rf], -1)
            cut_hi = np.where(single & (re_run[rf] < wends), re_run[rf], -1)
            mode = np.where(inside, 0, np.where(single, 3, 1))
        else:
            cut_lo = cut_hi = np.full(len(offsets), -1)
            mode = np.zeros(len(offsets), dtype=np.int64)
        e = self._endian
        native = e == ("<" if sys.byteorder == "little" else ">")
        head = struct.Struct(e + _SECTION_HEADER)
        u32 = struct.Struct(e + "I")
        reg_s = rs_sorted.tolist()
        reg_e = re_run.tolist()
        parts: dict[int, list] = {_BEDGRAPH: [], _VARSTEP: [], _FIXEDSTEP: []}
        meta: dict[int, list] = {_BEDGRAPH: [], _VARSTEP: [], _FIXEDSTEP: []}
        per_block: list[tuple[int, int, int, int]] = []  # (type, items, start, end) for cut=False
        over_lo = over_hi = 0
        cut_blocks: list[memoryview] = []  # whole payloads of blocks bisection cut, to verify
        bg_parts = parts[_BEDGRAPH]
        bisect_left, bisect_right = bisect.bisect_left, bisect.bisect_right
        mm = self._mm
        bufsize = self._uncompress_buf_size
        fast_inflate = mm is not None and bufsize > 0
        decompressobj = _inflater.decompressobj
        for off, size, md, b0, b1, c_lo, c_hi, several in zip(
            offsets.tolist(), sizes.tolist(), mode.tolist(), bstarts.tolist(), bends.tolist(),
            cut_lo.tolist(), cut_hi.tolist(), multi.tolist(), strict=True,
        ):
            if fast_inflate:  # block bounds were checked against the file size at open
                try:
                    d = decompressobj()
                    buf = d.decompress(mm[off : off + size], bufsize + 1)
                    if not d.eof or len(buf) > bufsize:
                        buf = self._inflate(off, size)  # raises the TrackError
                except _INFLATE_ERRORS:
                    buf = self._inflate(off, size)  # raises the TrackError
            else:
                buf = self._inflate(off, size)
            if len(buf) < 24:
                raise self._fail(f"damaged bigWig: the data block at byte {off} is too short ({len(buf)} bytes)")
            bcid, bstart, _bend, step, span, btype, _res, count = head.unpack_from(buf, 0)
            if bcid != cid:
                if several:  # an index entry spanning chromosomes: this section is not ours
                    continue
                raise self._block_mismatch(off, bcid, cid)
            isz = _ITEM_SIZE.get(btype)
            if isz is None:
                raise self._fail(f"damaged bigWig: the data block at byte {off} has unknown section type"
                             f" {btype}{self._zlib_hint(off)}")
            nbytes = 24 + count * isz
            if len(buf) < nbytes:
                raise self._fail(
                    f"damaged bigWig: the data block at byte {off} says it holds {count} items"
                    f" but has room for {(len(buf) - 24) // isz}"
                )
            if count == 0:
                continue
            mv = memoryview(buf)
            # A windowed read finds a block by its index entry's bounds, so items beyond them
            # must widen later plans (the slack). With ascending items (verified below) the first
            # start and the last end are the extremes.
            if btype == _BEDGRAPH:
                first, last = u32.unpack_from(buf, 24)[0], u32.unpack_from(buf, 12 * count + 16)[0]
            elif btype == _VARSTEP:
                first = u32.unpack_from(buf, 24)[0]
                last = u32.unpack_from(buf, 8 * count + 16)[0] + span
            else:
                first, last = bstart, bstart + step * (count - 1) + span
            if first < b0 or last > b1:
                over_lo, over_hi = max(over_lo, b0 - first), max(over_hi, last - b1)
            if not cut:
                per_block.append((btype, count, b0, b1))
            if btype != _BEDGRAPH:
                parts[btype].append(mv[24:nbytes])
                meta[btype].append((bstart, step, span, count))
                continue
            if md == 0:
                bg_parts.append(mv[24:nbytes])
                continue
            if native:
                words = mv[24:nbytes].cast("I")
            else:
                words = np.frombuffer(buf, e + "u4", 3 * count, 24).tolist()
            st, en = words[0::3], words[1::3]
            if md == 3:
                lo = bisect_right(en, c_lo) if c_lo >= 0 else 0
                hi = bisect_left(st, c_hi, lo) if c_hi >= 0 else count
                if hi > lo:
                    bg_parts.append(mv[24 + lo * 12 : 24 + hi * 12])
                if lo > 0 or hi < count:
                    cut_blocks.append(mv[24:nbytes])
                continue
            first_start, last_end = st[0], en[-1]
            r0 = bisect_right(reg_e, first_start)
            r1 = bisect_left(reg_s, last_end, r0)
            if r1 - r0 == 1 and reg_s[r0] <= first_start and last_end <= reg_e[r0]:
                bg_parts.append(mv[24:nbytes])  # items inside one region: keep all
                continue
            cut_blocks.append(mv[24:nbytes])
            prev_lo = prev_hi = -1
            for r in range(r0, min(r1, n_reg)):
                lo = bisect_right(en, reg_s[r])
                hi = bisect_left(st, reg_e[r], lo)
                if hi <= lo:
                    continue
                if lo <= prev_hi:
                    prev_hi = max(prev_hi, hi)
                    continue
                if prev_hi > prev_lo:
                    bg_parts.append(mv[24 + prev_lo * 12 : 24 + prev_hi * 12])
                prev_lo, prev_hi = lo, hi
            if prev_hi > prev_lo:
                bg_parts.append(mv[24 + prev_lo * 12 : 24 + prev_hi * 12])
        trusted = not cut_blocks or _ascending_blocks(cut_blocks, e)
        out_s, out_e, out_v = [], [], []
        for btype in (_BEDGRAPH, _VARSTEP, _FIXEDSTEP):
            if not parts[btype]:
                continue
            data = b"".join(parts[btype])
            parts[btype] = []
            m = np.array(meta[btype], dtype=np.int64).reshape(-1, 4)
            if btype == _BEDGRAPH:
                rec = np.frombuffer(data, np.dtype([("s", e + "u4"), ("e", e + "u4"), ("v", e + "f4")]))
                s = rec["s"].astype(np.int64)
                en_ = rec["e"].astype(np.int64)
                v = rec["v"].astype(np.float32)
            elif btype == _VARSTEP:
                rec = np.frombuffer(data, np.dtype([("s", e + "u4"), ("v", e + "f4")]))
                s = rec["s"].astype(np.int64)
                en_ = s + np.repeat(m[:, 2], m[:, 3])
                v = rec["v"].astype(np.float32)
            else:
                v = np.frombuffer(data, np.dtype(e + "f4")).astype(np.float32)
                counts = m[:, 3]
                first_i = np.cumsum(counts) - counts
                local = np.arange(len(v), dtype=np.int64) - np.repeat(first_i, counts)
                s = np.repeat(m[:, 0], counts) + local * np.repeat(m[:, 1], counts)
                en_ = s + np.repeat(m[:, 2], counts)
            out_s.append(s)
            out_e.append(en_)
            out_v.append(v)
        if not out_s:
            return _empty(), trusted, (over_lo, over_hi)
        if len(out_s) == 1:
            s, en_, v = out_s[0], out_e[0], out_v[0]
        else:
            s, en_, v = np.concatenate(out_s), np.concatenate(out_e), np.concatenate(out_v)
        if not cut:
            lo_x, hi_x = _item_excess(per_block, s, en_)
            over_lo, over_hi = max(over_lo, lo_x), max(over_hi, hi_x)
        if len(out_s) > 1:  # several section types: back into genomic order
            order = np.argsort(s, kind="stable")
            s, en_, v = s[order], en_[order], v[order]
        return (s, en_, v), trusted, (over_lo, over_hi)

    def _read_chrom(
        self, chrom: str, regions: np.ndarray | None
    ) -> tuple[Intervals, np.ndarray, bool]:
        """Valid items of the blocks overlapping ``regions``, sorted by start; the regions; and
        whether the items overlap."""
        cid = self._chrom_ids.get(chrom)
        if cid is None:
            return _empty(), np.zeros((0, 2), np.int64), False
        regions = _as_regions(regions, self._chrom_sizes[chrom])
        plan = self._block_plan(chrom, regions)
        if len(plan[0]) == 0:
            return _empty(), regions, False
        for _attempt in range(2):
            (s, e, v), trusted, over = self._collect(chrom, cid, plan, regions, cut=True)
            if trusted and overlapping(s, e):
                trusted = False
            if not trusted:
                (s, e, v), _, over = self._collect(chrom, cid, plan, regions, cut=False)
            if over[0] <= self._slack[0] and over[1] <= self._slack[1]:
                break
            # An item beyond the sampled slack: measure every block once, then read again, so
            # a window finds the same items as a whole-chromosome read.
            self._scan_slack()
            self._slack = (max(self._slack[0], over[0]), max(self._slack[1], over[1]))
            plan = self._block_plan(chrom, regions)
        if not trusted and len(s) > 1 and not np.all(s[1:] >= s[:-1]):
            order = np.lexsort((e, s))
            s, e, v = s[order], e[order], v[order]
        # No data: zero-length items and non-finite values. Items ending before they start are
        # damage, not data.
        keep = e > s
        if not keep.all():
            bad = np.flatnonzero(e < s)
            if len(bad):
                i = int(bad[0])
                raise self._fail(f"damaged bigWig: an item on {chrom} ends before it starts ({s[i]}-{e[i]})")
        finite = np.isfinite(v)
        if not finite.all():
            keep &= finite
        if not keep.all():
            s, e, v = s[keep], e[keep], v[keep]
        return (s, e, v), regions, (not trusted) and overlapping(s, e)

    def raw_intervals(
        self, chrom: str, regions: np.ndarray | None = None
    ) -> Intervals:
        """Items of the blocks overlapping ``regions``, sorted by start, not clipped.

        bedGraph items lying entirely outside the regions may be dropped (per block, by
        bisection); items without data (non-finite values, zero length) always are. The items
        may overlap (see :func:`overlapping`).
        """
        return self._read_chrom(chrom, regions)[0]

    def intervals(
        self, chrom: str, regions: np.ndarray | None = None
    ) -> Intervals:
        """Data of ``chrom`` inside ``regions`` ((n, 2); None = whole chromosome).

        Returns ``(starts int64, ends int64, values float32)`` sorted by start and clipped to the
        regions, each piece lying inside exactly one region. Bases without data are simply
        absent. An unknown chromosome gives empty arrays. Items overlap only where the file's
        items do (:func:`overlapping`).
        """
        (s, e, v), regions, overlaps = self._read_chrom(chrom, regions)
        if len(s) == 0:
            return s, e, v
        if overlaps:
            return restrict_overlapping(s, e, v, regions)
        return restrict_to_regions(s, e, v, regions, copy=False)

    def close(self) -> None:
        """Release the memory map and the file handle."""
        if getattr(self, "_mm", None) is not None:
            self._mm.close()
            self._mm = None
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()
            self._fh = None

    def __enter__(self) -> BigWigReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self):
        # Readers cross process boundaries as paths: each worker opens its own file.
        return (BigWigReader, (self.path,))

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _item_excess(
    per_block: list[tuple[int, int, int, int]], s: np.ndarray, e: np.ndarray
) -> tuple[int, int]:
    """How far items reach before / after their block's index entry (0, 0 when inside).

    ``per_block`` holds ``(type, items, entry start, entry end)`` per block; items come grouped by
    section type (bedGraph, varStep, fixedStep), each group in block order.
    """
    if not per_block or len(s) == 0:
        return 0, 0
    info = np.array(per_block, dtype=np.int64)
    info = info[np.argsort(info[:, 0], kind="stable")]
    lo = np.repeat(info[:, 2], info[:, 1])
    hi = np.repeat(info[:, 3], info[:, 1])
    return max(0, int((lo - s).max())), max(0, int((e - hi).max()))


def _ascending_blocks(payloads: list[memoryview], endian: str) -> bool:
    """Whether each bedGraph payload's items are sorted and disjoint (every item ends no later
    than the next starts, and starts no later than it ends), which bisection relies on.
    Zero-copy views, two comparisons per block."""
    dt = np.dtype(endian + "u4")
    for mv in payloads:
        w = np.frombuffer(mv, dt)
        if (w[1:-3:3] > w[3::3]).any() or (w[0::3] > w[1::3]).any():
            return False
    return True
