"""The pure-numpy bigWig reader and the window engine, checked against pyBigWig."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bwbytes import Section, build_bigwig

pyBigWig = pytest.importorskip("pyBigWig")

from epx.errors import TrackError  # noqa: E402
from epx.features.windows import (  # noqa: E402
    DEFAULT_WINDOWS,
    STATS,
    BinSpec,
    ChromSignal,
    WindowSpec,
    bigwig_features,
    bin_matrix,
    gene_windows,
    merge_windows,
    window_stats,
)
from epx.io.bigwig import BigWigReader, restrict_to_regions  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TOL = 1e-6

SIZES = [("chr1", 60_000), ("chr2", 20_000), ("chr3", 15_000), ("4", 12_000), ("chr5", 5_000)]


@pytest.fixture(scope="module")
def small_bw(tmp_path_factory) -> Path:
    """bedGraph with gaps and constant runs, varStep, fixedStep (span < step, span == step),
    a mixed-type chromosome, data at both chromosome ends, an Ensembl-style name, an empty chrom."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("bw") / "small.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(SIZES, maxZooms=2)
    # chr1: bedGraph, irregular intervals with gaps, first at 0, last ending at the chrom end.
    cuts = np.unique(np.concatenate([[0, 60_000], rng.choice(np.arange(1, 60_000), 3_000, replace=False)]))
    s, e = cuts[:-1], cuts[1:]
    keep = rng.random(len(s)) < 0.6
    keep[0] = keep[-1] = True
    s, e = s[keep], e[keep]
    v = np.round(rng.normal(3, 2, len(s)), 2).astype(np.float32)
    v[200:260] = 1.25  # constant run: exercises the exact std/slope fallback
    bw.addEntries(["chr1"] * len(s), s.tolist(), ends=e.tolist(), values=v.tolist())
    # chr2: varStep, span 20, irregular starts.
    starts = np.sort(rng.choice(np.arange(0, 19_980, 20), 600, replace=False))
    bw.addEntries("chr2", starts.tolist(), values=rng.gamma(2, 2, len(starts)).tolist(), span=20)
    # chr3: fixedStep span 7 step 25, then a bedGraph tail (mixed section types).
    bw.addEntries("chr3", 100, values=rng.random(300).tolist(), span=7, step=25)
    tail = np.arange(10_000, 15_000, 50)
    bw.addEntries(["chr3"] * len(tail), tail.tolist(), ends=(tail + 30).tolist(),
                  values=rng.random(len(tail)).tolist())
    # "4": contiguous fixedStep (span == step), up to the chromosome end.
    bw.addEntries("4", 2_000, values=(rng.random(400) * 10 - 5).tolist(), span=25, step=25)
    bw.close()
    return path


def _pb_stat(pb, chrom: str, a: int, b: int, stat: str) -> float:
    r = pb.stats(chrom, a, b, type=stat, exact=True)[0]
    if r is None:
        return 0.0 if stat in ("sum", "coverage") else np.nan
    return r


def _pb_slope(pb, chrom: str, a: int, b: int) -> float:
    vals = np.asarray(pb.values(chrom, a, b), dtype=float)
    ok = np.isfinite(vals)
    if ok.sum() < 2:
        return np.nan
    x = np.arange(b - a, dtype=float)[ok]
    y = vals[ok]
    xc = x - x.mean()
    return float(np.sum(xc * (y - y.mean())) / np.sum(xc * xc))


def _random_windows(rng, size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    ws = rng.integers(-3_000, size + 500, n)
    we = ws + rng.integers(1, 6_000, n)
    return np.clip(ws, 0, size), np.clip(we, 0, size)


def _assert_close(ours: np.ndarray, ref: np.ndarray, what: str, tol: float = TOL) -> None:
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), f"{what}: NaN pattern differs"
    ok = ~np.isnan(ref)
    if ok.any():
        d = np.max(np.abs(ours[ok] - ref[ok]))
        assert d < tol, f"{what}: max abs diff {d}"


def test_reader_intervals_match_pybigwig(small_bw: Path) -> None:
    pb = pyBigWig.open(str(small_bw))
    with BigWigReader(small_bw) as r:
        assert r.chroms() == dict(SIZES)
        for chrom, size in SIZES:
            s, e, v = r.intervals(chrom)
            ref = pb.intervals(chrom) or ()
            assert len(s) == len(ref)
            if ref:
                ref = np.array(ref)
                assert np.array_equal(s, ref[:, 0]) and np.array_equal(e, ref[:, 1])
                assert np.array_equal(v, ref[:, 2].astype(np.float32))
            # Restricted to regions: clipped to them.
            reg = np.array([[100, 900], [5_000, 5_001], [size - 300, size]])
            s2, e2, v2 = r.intervals(chrom, reg)
            assert np.all(e2 > s2)
            inside = np.zeros(len(s2), bool)
            for a, b in reg:
                inside |= (s2 >= a) & (e2 <= b)
            assert inside.all()
        assert r.intervals("chrNope", np.array([[0, 10]]))[0].size == 0


@pytest.mark.parametrize("chrom,size", SIZES)
def test_window_stats_match_pybigwig(small_bw: Path, chrom: str, size: int) -> None:
    rng = np.random.default_rng(hash(chrom) % 2**32)
    ws, we = _random_windows(rng, size, 150)
    # Add fully uncovered / off-chromosome / 1 bp / whole-chromosome windows.
    ws = np.concatenate([ws, [size, 0, 7, 0]])
    we = np.concatenate([we, [size, 1, 8, size]])
    pb = pyBigWig.open(str(small_bw))
    with BigWigReader(small_bw) as r:
        s, e, v = r.intervals(chrom, merge_windows(ws, we))
    sig = ChromSignal.for_windows(s, e, v, ws, we)
    ours = window_stats(sig, ws, we)
    for stat in STATS:
        if stat == "slope":
            ref = [(_pb_slope(pb, chrom, a, b) if b > a else np.nan) for a, b in zip(ws, we, strict=True)]
            ref = np.array(ref)
            both = np.isfinite(ref)
            assert np.array_equal(np.isnan(ours["slope"]), np.isnan(ref))
            np.testing.assert_allclose(ours["slope"][both], ref[both], rtol=1e-7, atol=1e-10)
            continue
        ref = np.array([
            _pb_stat(pb, chrom, int(a), int(b), stat) if b > a else
            (0.0 if stat in ("sum", "coverage") else np.nan)
            for a, b in zip(ws, we, strict=True)
        ])
        _assert_close(ours[stat], ref, f"{chrom} {stat}")


def test_uncovered_window_semantics(small_bw: Path) -> None:
    with BigWigReader(small_bw) as r:
        s, e, v = r.intervals("chr5")  # in the header, no data
    ws, we = np.array([0, 100]), np.array([5_000, 200])
    res = window_stats(ChromSignal.for_windows(s, e, v, ws, we), ws, we)
    for stat in ("mean", "std", "min", "max", "slope"):
        assert np.isnan(res[stat]).all()
    assert (res["sum"] == 0).all() and (res["coverage"] == 0).all()


def test_std_is_sample_std_and_slope_orientation(tmp_path: Path) -> None:
    path = tmp_path / "ramp.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([("chr1", 1_000)], maxZooms=0)
    bw.addEntries("chr1", 100, values=[float(i) for i in range(10)], span=1, step=1)
    bw.close()
    with BigWigReader(path) as r:
        s, e, v = r.intervals("chr1")
    ws, we = np.array([100, 100]), np.array([110, 110])
    sig = ChromSignal.for_windows(s, e, v, ws, we)
    res = window_stats(sig, ws, we, sign=np.array([1, -1]))
    assert res["std"][0] == pytest.approx(np.std(np.arange(10), ddof=1))
    assert res["slope"][0] == pytest.approx(1.0)  # rises downstream on '+'
    assert res["slope"][1] == pytest.approx(-1.0)  # same bases read 3'->5' on '-'


def _bins_reference(pb, chrom: str, size: int, tss: int, strand: str, n: int, w: int):
    h = n // 2
    lo = tss - h * w if strand == "+" else tss + 1 - (n - h) * w
    full = np.zeros(n * w)
    cov = np.zeros(n * w)
    a, b = max(lo, 0), min(lo + n * w, size)
    if b > a:
        vals = np.asarray(pb.values(chrom, a, b), dtype=float)
        full[a - lo : b - lo] = np.nan_to_num(vals)
        cov[a - lo : b - lo] = np.isfinite(vals)
    val = full.reshape(n, w).mean(1)
    c = cov.reshape(n, w).mean(1)
    return (val, c) if strand == "+" else (val[::-1], c[::-1])


@pytest.mark.parametrize("chrom,size", SIZES[:4])
def test_bin_matrix_matches_values(small_bw: Path, chrom: str, size: int) -> None:
    rng = np.random.default_rng(3)
    tss = np.concatenate([rng.integers(0, size, 40), [0, 50, size - 1, size - 30]])
    strand = np.where(rng.random(len(tss)) < 0.5, "+", "-")
    strand[-4:] = ["-", "+", "+", "-"]
    sign = np.where(strand == "-", -1, 1)
    spec = BinSpec(n_bins=20, bin_size=50)
    pb = pyBigWig.open(str(small_bw))
    from epx.features.windows import bin_span

    lo, hi = bin_span(tss, sign, spec)
    lo, hi = np.clip(lo, 0, size), np.clip(hi, 0, size)
    with BigWigReader(small_bw) as r:
        s, e, v = r.intervals(chrom, merge_windows(lo, hi))
    vals, cov = bin_matrix(ChromSignal.for_windows(s, e, v, lo, hi), tss, sign, size, spec)
    for i in range(len(tss)):
        ref_v, ref_c = _bins_reference(pb, chrom, size, int(tss[i]), strand[i], 20, 50)
        np.testing.assert_allclose(vals[i], ref_v, atol=TOL, rtol=0)
        np.testing.assert_allclose(cov[i], ref_c, atol=1e-12, rtol=0)


def test_bins_orientation_minus_strand(tmp_path: Path) -> None:
    """A step at the TSS: '-' gene reads the bins mirrored, the TSS base in the same bin."""
    path = tmp_path / "step.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([("chr1", 10_000)], maxZooms=0)
    # value = 1 on [0, 5000), 2 on [5000, 10000)
    bw.addEntries(["chr1", "chr1"], [0, 5_000], ends=[5_000, 10_000], values=[1.0, 2.0])
    bw.close()
    genes = pd.DataFrame({
        "gene_id": ["P", "M"], "gene_name": ["P", "M"], "chrom": ["chr1", "chr1"],
        "start": [5_000, 3_000], "end": [7_000, 5_000], "strand": ["+", "-"], "tss": [5_000, 4_999],
    })
    res = bigwig_features(path, genes, windows=[], bins=BinSpec(n_bins=10, bin_size=100))
    plus, minus = res.bins
    # '+' TSS at 5000: bins 0-4 upstream (value 1), bins 5-9 downstream (value 2).
    assert np.array_equal(plus, [1] * 5 + [2] * 5)
    # '-' TSS at 4999: downstream is lower coordinates (value 1) and is on the right.
    assert np.array_equal(minus, [2] * 5 + [1] * 5)
    # Bins off the chromosome end are 0 with coverage 0.
    edge = genes.assign(tss=[9_950, 20], strand=["+", "-"])
    res = bigwig_features(path, edge, windows=[], bins=BinSpec(n_bins=10, bin_size=100))
    assert np.array_equal(res.bin_coverage[0], [1] * 5 + [0.5] + [0] * 4)
    assert np.array_equal(res.bins[0], [2] * 5 + [1.0] + [0] * 4)
    # '-' TSS at 20: genomic span [-479, 521); its downstream half runs off position 0, and
    # downstream is on the right.
    assert np.array_equal(res.bin_coverage[1], [1] * 5 + [0.21] + [0] * 4)


def test_bigwig_features_gene_table(small_bw: Path) -> None:
    """Canonical gene chromosomes find Ensembl-style file names; unknown chromosomes stay NaN/0."""
    genes = pd.DataFrame({
        "gene_id": ["a", "b", "c", "d"], "gene_name": ["a", "b", "c", "d"],
        "chrom": ["chr4", "chr1", "chr1", "chr9"],
        "start": [2_500, 100, 40_000, 10], "end": [9_000, 30_000, 59_990, 50],
        "strand": ["+", "-", "+", "+"], "tss": [2_500, 29_999, 40_000, 10],
    })
    res = bigwig_features(small_bw, genes)
    t = res.table
    assert list(t.columns) == [f"{w.name}_{s}" for w in DEFAULT_WINDOWS for s in STATS]
    assert t.loc[3].filter(like="_mean").isna().all() and (t.loc[3].filter(like="_sum") == 0).all()
    pb = pyBigWig.open(str(small_bw))
    sizes = dict(SIZES)
    for i, (chrom, fchrom) in enumerate([("chr4", "4"), ("chr1", "chr1"), ("chr1", "chr1")]):
        g = genes.iloc[i]
        sign = np.array([-1 if g.strand == "-" else 1])
        for spec in DEFAULT_WINDOWS:
            ws, we = gene_windows(spec, np.array([g.tss]), np.array([g.start]), np.array([g.end]), sign)
            a, b = int(np.clip(ws[0], 0, sizes[fchrom])), int(np.clip(we[0], 0, sizes[fchrom]))
            for stat in ("mean", "std", "min", "max", "sum", "coverage"):
                ref = _pb_stat(pb, fchrom, a, b, stat) if b > a else np.nan
                _assert_close([t.loc[i, f"{spec.name}_{stat}"]], [ref], f"{chrom} {spec.name} {stat}")
            ref = _pb_slope(pb, fchrom, a, b) * sign[0]
            got = t.loc[i, f"{spec.name}_slope"]
            assert (np.isnan(ref) and np.isnan(got)) or got == pytest.approx(ref, rel=1e-7, abs=1e-10)
        ref_v, ref_c = _bins_reference(pb, fchrom, sizes[fchrom], int(g.tss), g.strand, 100, 100)
        np.testing.assert_allclose(res.bins[i], ref_v, atol=TOL, rtol=0)
        np.testing.assert_allclose(res.bin_coverage[i], ref_c, atol=1e-12, rtol=0)


def test_window_geometry() -> None:
    tss, gs, ge = np.array([1000, 1999]), np.array([1000, 500]), np.array([3000, 2000])
    sign = np.array([1, -1])
    ws, we = gene_windows(WindowSpec("t", "tss", -100, 50), tss, gs, ge, sign)
    assert ws.tolist() == [900, 1950] and we.tolist() == [1050, 2100]
    ws, we = gene_windows(WindowSpec("d", "tes", 0, 300), tss, gs, ge, sign)
    assert ws.tolist() == [3000, 200] and we.tolist() == [3300, 500]
    ws, we = gene_windows(WindowSpec("b", "body"), tss, gs, ge, sign)
    assert ws.tolist() == [1000, 500] and we.tolist() == [3000, 2000]
    assert merge_windows(np.array([5, 0, 10, 30]), np.array([10, 3, 12, 30])).tolist() == [[0, 3], [5, 12]]


def test_restrict_splits_intervals_across_regions() -> None:
    s, e, v = np.array([0, 100]), np.array([50, 400]), np.array([1.0, 2.0], np.float32)
    rs, re_, rv = restrict_to_regions(s, e, v, np.array([[10, 20], [150, 200], [300, 500]]))
    assert rs.tolist() == [10, 150, 300] and re_.tolist() == [20, 200, 400]
    assert rv.tolist() == [1.0, 2.0, 2.0]


# --------------------------------------------------------------------------------------------
# Hand-written files: uncompressed and big-endian; broken files
# --------------------------------------------------------------------------------------------
def _write_bigwig(path: Path, chroms, sections, compress: bool, endian: str = "<") -> None:
    """Sections as ``(chrom id, kind, start, step, span, items)``, written byte by byte."""
    secs = [Section(cid, kind, items, start=start, step=step, span=span)
            for cid, kind, start, step, span, items in sections]
    path.write_bytes(build_bigwig(chroms, secs, compress=compress, endian=endian)[0])


HAND_CHROMS = [("chr1", 5_000), ("chrX", 3_000)]
HAND_SECTIONS = [
    (0, 1, 10, 0, 0, [(10, 20, 1.5), (20, 35, -2.0), (100, 200, 0.25)]),
    (0, 2, 300, 0, 10, [(300, 4.0), (400, 5.0), (4_990, 6.0)]),
    (1, 3, 0, 100, 30, [1.0, 2.0, 3.0, 4.0]),
]


@pytest.mark.parametrize("compress", [False, True])
def test_hand_written_file_matches_pybigwig(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "hand.bw"
    _write_bigwig(path, HAND_CHROMS, HAND_SECTIONS, compress)
    pb = pyBigWig.open(str(path))
    with BigWigReader(path) as r:
        assert r.compressed == compress
        for chrom, _size in HAND_CHROMS:
            s, e, v = r.intervals(chrom)
            ref = np.array(pb.intervals(chrom))
            assert np.array_equal(np.column_stack([s, e]), ref[:, :2])
            assert np.allclose(v, ref[:, 2])


def test_big_endian_file(tmp_path: Path) -> None:
    le, be = tmp_path / "le.bw", tmp_path / "be.bw"
    _write_bigwig(le, HAND_CHROMS, HAND_SECTIONS, True, "<")
    _write_bigwig(be, HAND_CHROMS, HAND_SECTIONS, True, ">")
    with BigWigReader(le) as a, BigWigReader(be) as b:
        assert a.chroms() == b.chroms() == dict(HAND_CHROMS)
        for chrom, _ in HAND_CHROMS:
            for x, y in zip(a.intervals(chrom), b.intervals(chrom), strict=True):
                assert np.array_equal(x, y)
        s, e, v = b.intervals("chrX")
        assert s.tolist() == [0, 100, 200, 300] and e.tolist() == [30, 130, 230, 330]
        assert v.tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_region_filtering_and_partial_inflation(tmp_path: Path, endian: str) -> None:
    """Large blocks, restricted to scattered regions: items kept are exactly the overlapping
    ones, whether a block is inside a region, cut by one, split by several, or inflated only
    partially (the last region ends early in the block)."""
    rng = np.random.default_rng(11)
    starts = np.cumsum(rng.integers(5, 60, 6_000))
    ends = starts + rng.integers(1, 5, len(starts))
    vals = rng.random(len(starts)).astype(np.float32)
    size = int(ends[-1]) + 100
    sections = [
        (0, 1, int(starts[i]), 0, 0,
         [(int(a), int(b), float(c)) for a, b, c in zip(starts[i:i + 1500], ends[i:i + 1500],
                                                       vals[i:i + 1500], strict=True)])
        for i in range(0, len(starts), 1500)
    ]
    path = tmp_path / f"big{endian == '>'}.bw"
    _write_bigwig(path, [("chr1", size)], sections, True, endian)
    with BigWigReader(path) as r:
        for trial in range(30):
            ws = np.sort(rng.integers(0, size, 1 + trial % 7))
            we = ws + rng.integers(1, 20_000 if trial % 2 else 300, len(ws))
            reg = merge_windows(ws, np.minimum(we, size))
            s, e, v = r.intervals("chr1", reg)
            keep_s, keep_e, keep_v = [], [], []
            for a, b in reg:
                hit = (starts < b) & (ends > a)
                keep_s.append(np.maximum(starts[hit], a))
                keep_e.append(np.minimum(ends[hit], b))
                keep_v.append(vals[hit])
            assert np.array_equal(s, np.concatenate(keep_s))
            assert np.array_equal(e, np.concatenate(keep_e))
            assert np.array_equal(v, np.concatenate(keep_v))


def test_not_a_bigwig(tmp_path: Path) -> None:
    p = tmp_path / "notes.bw"
    p.write_text("chr1\t0\t10\t1.0\n" * 10)
    with pytest.raises(TrackError, match="not a bigWig file") as err:
        BigWigReader(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)
    empty = tmp_path / "empty.bw"
    empty.write_bytes(b"")
    with pytest.raises(TrackError, match="not a bigWig file"):
        BigWigReader(empty)


def test_truncated_bigwig(small_bw: Path, tmp_path: Path) -> None:
    data = small_bw.read_bytes()
    for cut in (40, len(data) // 2, len(data) - 100):
        p = tmp_path / f"cut{cut}.bw"
        p.write_bytes(data[:cut])
        with pytest.raises(TrackError, match="truncated|damaged") as err:
            with BigWigReader(p) as r:
                for chrom in r.chroms():
                    r.intervals(chrom)
        assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_corrupt_block(tmp_path: Path) -> None:
    path = tmp_path / "hand.bw"
    _write_bigwig(path, HAND_CHROMS, HAND_SECTIONS, True)
    raw = bytearray(path.read_bytes())
    with BigWigReader(path) as r:
        off, _size = r.blocks("chr1")
    raw[int(off[0]) + 2 : int(off[0]) + 12] = b"\xff" * 10
    path.write_bytes(bytes(raw))
    with pytest.raises(TrackError, match="does not inflate") as err, BigWigReader(path) as r:
        r.intervals("chr1")
    assert str(path) in str(err.value)


def test_reader_pickles_as_path(small_bw: Path) -> None:
    import pickle

    with BigWigReader(small_bw) as r:
        clone = pickle.loads(pickle.dumps(r))
    with clone:
        assert clone.chroms() == dict(SIZES)


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_real_chr21_h3k4me3_matches_pybigwig() -> None:
    folder = SHARED / "enrichedheatmap_chr21"
    bw_path = folder / "chr21_H3K4me3_coverage_hg19.bw"
    gene_path = folder / "chr21_genes_hg19.bed"
    if not bw_path.exists() or not gene_path.exists():
        pytest.skip(f"shared data not available: {folder}")
    bed = pd.read_csv(gene_path, sep="\t", header=None,
                      names=["chrom", "start", "end", "gene_id", "score", "strand"])
    genes = bed.assign(
        gene_name=bed["gene_id"],
        tss=np.where(bed["strand"] == "+", bed["start"], bed["end"] - 1),
    )[["gene_id", "gene_name", "chrom", "start", "end", "strand", "tss"]]
    res = bigwig_features(bw_path, genes)
    pb = pyBigWig.open(str(bw_path))
    size = pb.chroms("chr21")
    arr_sign = np.where(genes["strand"] == "-", -1, 1)
    for spec in DEFAULT_WINDOWS:
        ws, we = gene_windows(spec, genes["tss"].to_numpy(), genes["start"].to_numpy(),
                              genes["end"].to_numpy(), arr_sign)
        ws, we = np.clip(ws, 0, size), np.clip(we, 0, size)
        for stat in ("mean", "std", "min", "max", "sum", "coverage"):
            ref = [(_pb_stat(pb, "chr21", int(a), int(b), stat) if b > a else np.nan)
                   for a, b in zip(ws, we, strict=True)]
            _assert_close(res.table[f"{spec.name}_{stat}"].to_numpy(), np.array(ref),
                          f"chr21 {spec.name} {stat}")
    assert res.table["tss_coverage"].gt(0).sum() > 100  # the track does cover many promoters
    for i in range(0, len(genes), 7):
        g = genes.iloc[i]
        ref_v, ref_c = _bins_reference(pb, "chr21", size, int(g.tss), g.strand, 100, 100)
        np.testing.assert_allclose(res.bins[i], ref_v, atol=TOL, rtol=0)
        np.testing.assert_allclose(res.bin_coverage[i], ref_c, atol=1e-12, rtol=0)
