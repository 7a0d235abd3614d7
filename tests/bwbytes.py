"""A byte-level bigWig writer for tests: spec-conformant by default, damaged on request.

Real writers (pyBigWig, pybigtools) refuse to write broken files, so the damaged variants the
reader must refuse or survive are built here, with a layout map telling where each on-disk
structure lies (so a test can flip a byte in exactly the structure it means).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field


@dataclass
class Section:
    """One data block. ``kind`` 1 bedGraph ``[(start, end, value)]``, 2 varStep ``[(start, value)]``
    (with ``span``), 3 fixedStep ``[value]`` (with ``start``, ``step``, ``span``)."""

    chrom_id: int
    kind: int
    items: list
    start: int = 0
    step: int = 0
    span: int = 0
    header_chrom_id: int | None = None  # a different chromosome id in the block header

    def bounds(self) -> tuple[int, int]:
        if self.kind == 1:
            return min(a for a, _b, _v in self.items), max(b for _a, b, _v in self.items)
        if self.kind == 2:
            return min(a for a, _v in self.items), max(a for a, _v in self.items) + self.span
        return self.start, self.start + self.step * (len(self.items) - 1) + self.span


@dataclass
class Layout:
    """Byte offsets of the structures of a file written by :func:`build_bigwig`."""

    size: int = 0
    chrom_tree: int = 0
    chrom_nodes: list[int] = field(default_factory=list)
    data: int = 0
    blocks: list[tuple[int, int]] = field(default_factory=list)
    index: int = 0
    index_nodes: list[int] = field(default_factory=list)
    leaves: list[int] = field(default_factory=list)  # offset of each leaf entry
    summary: int = 0


def build_bigwig(
    chroms: list[tuple[str, int]],
    sections: list[Section],
    *,
    compress: bool = True,
    endian: str = "<",
    leaves_per_node: int | None = None,
    chroms_per_leaf: int | None = None,
    leaf_bounds: list[tuple[int, int, int, int]] | None = None,
    header_buf_size: int | None = None,
    data_count: int | None = None,
    key_size: int | None = None,
    summary_bases: int | None = None,
    version: int = 4,
) -> tuple[bytes, Layout]:
    """The bytes of a bigWig file and its layout.

    ``leaves_per_node`` / ``chroms_per_leaf`` split the R-tree / chromosome tree into a root node
    with children (so cycles can be made); ``leaf_bounds`` overrides the index entries' bounds;
    ``header_buf_size`` the header's uncompressBufSize; ``data_count`` the block count at the
    start of the data section; ``summary_bases`` the total summary's basesCovered.
    """
    e = endian
    lay = Layout()
    key = key_size or max(len(c) for c, _ in chroms)
    # -- chromosome B+ tree ------------------------------------------------------------------
    per_leaf = chroms_per_leaf or len(chroms)
    groups = [list(range(i, min(i + per_leaf, len(chroms)))) for i in range(0, len(chroms), per_leaf)]
    chrom_off = 64
    bpt = struct.pack(e + "IIIIQQ", 0x78CA8C91, per_leaf, key, 8, len(chroms), 0)
    nodes: list[bytes] = []
    if len(groups) == 1:
        lay.chrom_nodes.append(chrom_off + 32)
        node = struct.pack(e + "BBH", 1, 0, len(chroms))
        for i in groups[0]:
            name, size = chroms[i]
            node += name.encode().ljust(key, b"\0") + struct.pack(e + "II", i, size)
        nodes.append(node)
    else:
        root_size = 4 + len(groups) * (key + 8)
        leaf_size = 4 + per_leaf * (key + 8)
        root = struct.pack(e + "BBH", 0, 0, len(groups))
        for k, grp in enumerate(groups):
            child = chrom_off + 32 + root_size + k * leaf_size
            root += chroms[grp[0]][0].encode().ljust(key, b"\0") + struct.pack(e + "Q", child)
        nodes.append(root)
        lay.chrom_nodes.append(chrom_off + 32)
        for k, grp in enumerate(groups):
            lay.chrom_nodes.append(chrom_off + 32 + root_size + k * leaf_size)
            node = struct.pack(e + "BBH", 1, 0, len(grp))
            for i in grp:
                name, size = chroms[i]
                node += name.encode().ljust(key, b"\0") + struct.pack(e + "II", i, size)
            nodes.append(node.ljust(leaf_size, b"\0"))
    bpt += b"".join(nodes)
    lay.chrom_tree = chrom_off
    # -- data --------------------------------------------------------------------------------
    blobs, bounds, max_raw = [], [], 0
    for sec in sections:
        if sec.kind == 1:
            body = b"".join(struct.pack(e + "IIf", a, b, v) for a, b, v in sec.items)
        elif sec.kind == 2:
            body = b"".join(struct.pack(e + "If", a, v) for a, v in sec.items)
        else:
            body = b"".join(struct.pack(e + "f", v) for v in sec.items)
        lo, hi = sec.bounds()
        cid = sec.chrom_id if sec.header_chrom_id is None else sec.header_chrom_id
        raw = struct.pack(e + "IIIIIBBH", cid, lo, hi, sec.step, sec.span, sec.kind, 0,
                          len(sec.items)) + body
        max_raw = max(max_raw, len(raw))
        blobs.append(zlib.compress(raw) if compress else raw)
        bounds.append((sec.chrom_id, lo, sec.chrom_id, hi))
    if leaf_bounds is not None:
        bounds = leaf_bounds
    data_off = chrom_off + len(bpt)
    data = struct.pack(e + "Q", len(blobs) if data_count is None else data_count)
    for b in blobs:
        lay.blocks.append((data_off + len(data), len(b)))
        data += b
    lay.data = data_off
    # -- R-tree index ------------------------------------------------------------------------
    index_off = data_off + len(data)
    per_node = leaves_per_node or max(len(blobs), 1)
    leaf_groups = [list(range(i, min(i + per_node, len(blobs)))) for i in range(0, len(blobs), per_node)]
    first, last = bounds[0] if bounds else (0, 0, 0, 0), bounds[-1] if bounds else (0, 0, 0, 0)
    rt = struct.pack(e + "IIQIIIIQII", 0x2468ACE0, per_node, len(blobs), first[0], first[1],
                     last[2], last[3], index_off, 1, 0)
    node_base = index_off + 48
    if len(leaf_groups) <= 1:
        lay.index_nodes.append(node_base)
        rt += struct.pack(e + "BBH", 1, 0, len(blobs))
        for k, ((sc, sb, ec, eb), (off, size)) in enumerate(zip(bounds, lay.blocks, strict=True)):
            lay.leaves.append(node_base + 4 + 32 * k)
            rt += struct.pack(e + "IIIIQQ", sc, sb, ec, eb, off, size)
    else:
        root_size = 4 + 24 * len(leaf_groups)
        leaf_size = 4 + 32 * per_node
        lay.index_nodes.append(node_base)
        rt += struct.pack(e + "BBH", 0, 0, len(leaf_groups))
        for k, grp in enumerate(leaf_groups):
            g0, g1 = bounds[grp[0]], bounds[grp[-1]]
            rt += struct.pack(e + "IIIIQ", g0[0], g0[1], g1[2], g1[3], node_base + root_size + k * leaf_size)
        for k, grp in enumerate(leaf_groups):
            start = node_base + root_size + k * leaf_size
            lay.index_nodes.append(start)
            node = struct.pack(e + "BBH", 1, 0, len(grp))
            for j, i in enumerate(grp):
                lay.leaves.append(start + 4 + 32 * j)
                (sc, sb, ec, eb), (off, size) = bounds[i], lay.blocks[i]
                node += struct.pack(e + "IIIIQQ", sc, sb, ec, eb, off, size)
            rt += node.ljust(leaf_size, b"\0")
    lay.index = index_off
    # -- total summary -----------------------------------------------------------------------
    summary_off = index_off + len(rt)
    covered = sum(
        sum(b - a for a, b, _v in s.items) if s.kind == 1 else s.span * len(s.items) for s in sections
    )
    summary = struct.pack(e + "Qdddd", covered if summary_bases is None else summary_bases, 0, 0, 0, 0)
    lay.summary = summary_off
    buf_size = (max_raw if compress else 0) if header_buf_size is None else header_buf_size
    header = struct.pack(e + "IHHQQQHHQQIQ", 0x888FFC26, version, 0, chrom_off, data_off, index_off,
                         0, 0, 0, summary_off, buf_size, 0)
    out = header + bpt + data + rt + summary
    lay.size = len(out)
    return out, lay


def bedgraph(chrom_id: int, items: list[tuple[int, int, float]]) -> Section:
    return Section(chrom_id, 1, list(items))
