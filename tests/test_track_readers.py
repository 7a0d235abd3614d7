"""Track readers that real files cannot fool: NaN values, overlapping and unsorted items, BED
flavours, and damaged files (refused in one line, never read as "no data", never a crash).

References: pyBigWig's exact statistics where it is right, pybigtools where pyBigWig is weak
(NaN values, coordinates above 2**31), a brute-force definition for everything, and files written
byte by byte (tests/bwbytes.py) for the damage real writers refuse to produce.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bwbytes import Section, bedgraph, build_bigwig
from conftest import assert_user_error, write_ml4g

import epx
from epx.errors import TrackError
from epx.features.peaks import peak_features, read_peaks
from epx.features.windows import (
    STATS,
    BinSpec,
    ChromSignal,
    WindowSpec,
    bigwig_features,
    bin_span,
    merge_windows,
    pair_window_stats,
    window_stats,
)
from epx.io.bigwig import BigWigReader, overlapping, restrict_overlapping, restrict_to_regions

pyBigWig = pytest.importorskip("pyBigWig")
pybigtools = pytest.importorskip("pybigtools")

WINDOWS = [WindowSpec("tss", "tss", -500, 500), WindowSpec("body", "body")]


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------
def data_items(items) -> list[tuple[int, int, float]]:
    """The items that are data under epx's semantics: finite values, positive length."""
    return [(int(a), int(b), float(v)) for a, b, v in items if b > a and np.isfinite(v)]


def brute_stats(items, a: int, b: int) -> dict[str, float]:
    """Every statistic of window [a, b) from its definition, each item counting on its own."""
    pos, val = [], []
    for s, e, v in items:
        lo, hi = max(s, a), min(e, b)
        if hi > lo:
            pos.append(np.arange(lo, hi))
            val.append(np.full(hi - lo, v, dtype=np.float64))
    out = {"sum": 0.0, "coverage": 0.0, **{k: np.nan for k in ("mean", "std", "min", "max", "slope")}}
    if not pos:
        return out
    x, y = np.concatenate(pos).astype(float), np.concatenate(val)
    n = len(y)
    out.update(mean=y.mean(), min=y.min(), max=y.max(), sum=y.sum(), coverage=n / (b - a),
               std=float(np.std(y, ddof=1)) if n > 1 else 0.0)
    if n >= 2 and np.ptp(x) > 0:
        xc = x - x.mean()
        out["slope"] = float(np.sum(xc * (y - y.mean())) / np.sum(xc * xc))
    return out


def brute_bins(items, tss: int, strand: str, size: int, spec: BinSpec) -> tuple[np.ndarray, np.ndarray]:
    sign = np.array([-1 if strand == "-" else 1])
    lo = int(bin_span(np.array([tss]), sign, spec)[0][0])
    vals, cov = np.zeros(spec.n_bins), np.zeros(spec.n_bins)
    for k in range(spec.n_bins):
        a, b = np.clip([lo + k * spec.bin_size, lo + (k + 1) * spec.bin_size], 0, size)
        r = brute_stats(items, int(a), int(b)) if b > a else {"sum": 0.0, "coverage": 0.0}
        vals[k] = r["sum"] / spec.bin_size
        cov[k] = r["coverage"] * (b - a) / spec.bin_size
    return (vals, cov) if strand == "+" else (vals[::-1], cov[::-1])


def pb_stat(pb, chrom: str, a: int, b: int, stat: str) -> float:
    r = pb.stats(chrom, int(a), int(b), type=stat, exact=True)[0]
    if r is None:
        return 0.0 if stat in ("sum", "coverage") else np.nan
    return r


def close(ours, ref, rtol=1e-7, atol=1e-9) -> None:
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), (ours, ref)
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=rtol, atol=atol)


def read_stats(path: Path, chrom: str, ws: np.ndarray, we: np.ndarray) -> dict[str, np.ndarray]:
    """Window statistics through the reader, by the path the driver takes for these data."""
    with BigWigReader(path) as r:
        s, e, v = r.intervals(chrom, merge_windows(ws, we))
    if overlapping(s, e):
        return pair_window_stats(s, e, v, ws, we)
    return window_stats(ChromSignal.for_windows(s, e, v, ws, we), ws, we)


def random_windows(rng, size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    ws = rng.integers(0, size - 10, n)
    we = np.minimum(ws + rng.integers(1, 3_000, n), size)
    return ws, we


def genes_at(chrom: str, tss: list[int], strands: list[str], length: int = 2_000) -> pd.DataFrame:
    rows = []
    for i, (t, s) in enumerate(zip(tss, strands, strict=True)):
        start, end = (t, t + length) if s == "+" else (t - length + 1, t + 1)
        rows.append({"gene_id": f"g{i}", "gene_name": f"g{i}", "chrom": chrom, "start": max(start, 0),
                     "end": end, "strand": s, "tss": t})
    return pd.DataFrame(rows)


def random_bedgraph(rng, size: int, n: int, gap: bool = True) -> list[tuple[int, int, float]]:
    cuts = np.unique(rng.choice(np.arange(1, size), 2 * n, replace=False))
    s, e = cuts[0::2], cuts[1::2]
    m = min(len(s), len(e))
    s, e = s[:m], e[:m]
    v = np.round(rng.normal(4, 2, m), 3).astype(np.float32)  # what a bigWig can hold
    return [(int(a), int(b), float(c)) for a, b, c in zip(s, e, v, strict=True)]


def write_pybigwig(path: Path, chroms: dict[str, int], items: dict[str, list]) -> Path:
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader(list(chroms.items()), maxZooms=2)
    for chrom in chroms:
        its = items.get(chrom, [])
        if its:
            bw.addEntries([chrom] * len(its), [a for a, _, _ in its], ends=[b for _, b, _ in its],
                          values=[float(c) for _, _, c in its])
    bw.close()
    return path


def write_pybigtools(path: Path, chroms: dict[str, int], items: dict[str, list]) -> Path:
    bw = pybigtools.open(str(path), "w")
    bw.write(dict(chroms), [(c, a, b, float(v)) for c in chroms for a, b, v in items.get(c, [])])
    return path


# --------------------------------------------------------------------------------------------
# 1. NaN and inf are no data; huge values stay finite and local
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nan_files(tmp_path_factory):
    """The same track written by pybigtools with ~1% NaN/inf records, and by pyBigWig without them."""
    rng = np.random.default_rng(1)
    d = tmp_path_factory.mktemp("nan")
    size = 200_000
    items = random_bedgraph(rng, size, 3_000)
    bad = rng.random(len(items)) < 0.01
    bad[5] = True  # one early in the chromosome: it must not poison what follows
    kinds = [np.nan, np.inf, -np.inf]
    dirty = [(a, b, kinds[i % 3] if bad[i] else v) for i, (a, b, v) in enumerate(items)]
    chroms = {"chr1": size}
    nan_path = write_pybigtools(d / "nan.bw", chroms, {"chr1": dirty})
    clean_path = write_pybigwig(d / "clean.bw", chroms, {"chr1": data_items(dirty)})
    return nan_path, clean_path, data_items(dirty), size


def test_nan_file_really_holds_nan(nan_files):
    nan_path, _clean, _items, _size = nan_files
    recs = list(pybigtools.open(str(nan_path)).records("chr1"))
    assert sum(np.isnan(v) for _a, _b, v in recs) > 5 and sum(np.isinf(v) for _a, _b, v in recs) > 3


def test_non_finite_values_are_uncovered_for_every_statistic(nan_files):
    nan_path, clean_path, items, size = nan_files
    rng = np.random.default_rng(2)
    ws, we = random_windows(rng, size, 300)
    ours = read_stats(nan_path, "chr1", ws, we)
    pb = pyBigWig.open(str(clean_path))
    for stat in ("mean", "std", "min", "max", "sum", "coverage"):
        close(ours[stat], [pb_stat(pb, "chr1", a, b, stat) for a, b in zip(ws, we, strict=True)])
    close(ours["slope"], [brute_stats(items, a, b)["slope"] for a, b in zip(ws, we, strict=True)], rtol=1e-6)
    # pybigtools' own per-base values of the NaN file: NaN exactly where epx sees no data.
    vals = pybigtools.open(str(nan_path)).values("chr1", 0, 20_000, fillna=None)
    with BigWigReader(nan_path) as r:
        s, e, _v = r.intervals("chr1", np.array([[0, 20_000]]))
    covered = np.zeros(20_000, bool)
    for a, b in zip(s, e, strict=True):
        covered[a:b] = True
    assert np.array_equal(covered, np.isfinite(vals))


def test_nan_does_not_poison_bins_or_later_genes(nan_files):
    nan_path, clean_path, items, size = nan_files
    rng = np.random.default_rng(3)
    tss = sorted(rng.integers(0, size, 60).tolist())
    genes = genes_at("chr1", tss, ["+" if i % 2 else "-" for i in range(60)])
    spec = BinSpec(n_bins=40, bin_size=50)
    dirty = bigwig_features(nan_path, genes, WINDOWS, bins=spec)
    clean = bigwig_features(clean_path, genes, WINDOWS, bins=spec)
    assert np.isfinite(dirty.bins).all()
    assert np.array_equal(dirty.bins, clean.bins) and np.array_equal(dirty.bin_coverage, clean.bin_coverage)
    pd.testing.assert_frame_equal(dirty.table, clean.table)
    for i in range(0, 60, 6):
        ref_v, ref_c = brute_bins(items, tss[i], genes["strand"][i], size, spec)
        np.testing.assert_allclose(dirty.bins[i], ref_v, atol=1e-9)
        np.testing.assert_allclose(dirty.bin_coverage[i], ref_c, atol=1e-12)


def test_huge_values_stay_finite_and_do_not_cost_precision_elsewhere(tmp_path):
    rng = np.random.default_rng(4)
    size = 100_000
    items = random_bedgraph(rng, size, 1_000)
    huge = [(a, b, 3.0e38 if i % 2 else 3.4e38) if 20_000 <= a < 30_000 else (a, b, v)
            for i, (a, b, v) in enumerate(items)]
    path = write_pybigwig(tmp_path / "huge.bw", {"chr1": size}, {"chr1": huge})
    clean = write_pybigwig(tmp_path / "clean.bw", {"chr1": size}, {"chr1": items})
    tss = list(range(1_000, 99_000, 1_500))
    genes = genes_at("chr1", tss, ["+"] * len(tss), length=800)
    spec = BinSpec(n_bins=20, bin_size=50)
    h = bigwig_features(path, genes, WINDOWS, bins=spec)
    c = bigwig_features(clean, genes, WINDOWS, bins=spec)
    assert np.isfinite(h.bins).all() and not h.table.isin([np.inf, -np.inf]).any().any()
    far = np.array([t < 15_000 or t > 35_000 for t in tss])
    # Exactly equal where the huge values are not: no running sum carries them along.
    assert np.array_equal(h.bins[far], c.bins[far])
    pd.testing.assert_frame_equal(h.table[far], c.table[far])
    near = np.flatnonzero(~far)
    assert (h.table["body_sum"].to_numpy()[near] > 1e38).any()
    pb = pyBigWig.open(str(path))
    for i in near:
        a, b = genes["start"][i], genes["end"][i]
        for stat in ("mean", "max", "min", "std", "coverage"):
            close([h.table[f"body_{stat}"][i]], [pb_stat(pb, "chr1", a, b, stat)], rtol=1e-6)
        # pyBigWig's float32 sum overflows to inf here; ours is the exact sum.
        ref = brute_stats(huge, a, b)["sum"]
        close([h.table["body_sum"][i]], [ref], rtol=1e-6)


def _mini_study(tmp_path: Path, bw: Path, bed: Path | None = None) -> tuple[Path, Path]:
    genes = write_ml4g(tmp_path / "genes.tsv", [
        ("A", "chr1", 200, 4_000, 200, 250, "+"),
        ("B", "chr1", 60_000, 64_000, 63_950, 64_000, "-"),
        ("C", "chr1", 150_000, 160_000, 150_000, 150_050, "+"),
    ])
    rows = f"C1\tH3K4me3\tbigwig\t{bw}\n" + (f"C1\tH3K4me3\tbed\t{bed}\n" if bed else "")
    manifest = tmp_path / "m.tsv"
    manifest.write_text("cell_line\tassay\tkind\tpath\n" + rows)
    return genes, manifest


def test_featurize_with_nan_values_keeps_every_number_finite(nan_files, tmp_path, run):
    nan_path, clean_path, _items, _size = nan_files
    out = {}
    for name, bw in (("nan", nan_path), ("clean", clean_path)):
        d = tmp_path / name
        d.mkdir()
        genes, manifest = _mini_study(d, bw)
        result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", d / "ds", "--workers", "1")
        assert result.exit_code == 0, result.stderr
        out[name] = epx.load_dataset(d / "ds")
    meta = json.loads((tmp_path / "nan" / "ds" / "dataset.json").read_text())
    assert np.isfinite(meta["bins_normalisation"]["mean"]).all() and np.isfinite(meta["bins_normalisation"]["sd"]).all()
    assert np.isfinite(out["nan"].bins()).all()
    assert np.array_equal(out["nan"].bins(), out["clean"].bins())
    pd.testing.assert_frame_equal(out["nan"].features(raw=True), out["clean"].features(raw=True))


# --------------------------------------------------------------------------------------------
# 2. BED flavours
# --------------------------------------------------------------------------------------------
BED_CASES = {
    # name: (file name, lines, flavour, 1-based signal column, max_signal over [0, 10_000))
    "chromhmm-bed9": ("states.bed", [
        "chr1\t0\t600\t15_Quies\t0\t.\t0\t600\t255,255,255",
        "chr1\t600\t5301\t1_TssA\t0\t.\t600\t5301\t255,0,0",
        "chr1\t5301\t73103\t2_TssAFlnk\t0\t.\t5301\t73103\t255,69,0",
    ], "BED9", None, None),
    "bed9-thick-zero": ("states2.bed", ["chr1\t100\t500\t1_TssA\t0\t.\t100\t500\t0",
                                        "chr1\t1000\t1400\t2_E\t0\t.\t0\t0\t0"], "BED9", None, None),
    "bed9-rgb-zero": ("tads.bed", ["chr1\t100\t900\tt1\t0\t+\t100\t900\t0", "chr1\t1000\t2000\tt2\t0\t-\t1200\t1800\t0"],
                      "BED9", None, None),
    "bed12": ("genes.bed", [
        "chr1\t1000\t5000\ttx1\t0\t+\t1200\t4800\t0\t2\t400,500,\t0,3500,",
        "chr1\t6000\t9000\ttx2\t0\t-\t6000\t9000\t0,0,255\t1\t3000,\t0,",
    ], "BED12", None, None),
    "narrowpeak-as-bed": ("peaks.bed", [
        "chr1\t100\t300\tp1\t0\t.\t12.5\t-1\t3.2\t80", "chr1\t2000\t2400\tp2\t0\t.\t7.25\t5.1\t-1\t-1",
    ], "narrowPeak", 7, 12.5),
    "broadpeak-as-bed": ("broad.bed", ["chr1\t100\t3000\tb1\t0\t.\t4.5\t2.1\t1.0", "chr1\t5000\t9000\tb2\t0\t.\t8\t3\t2"],
                         "broadPeak", 7, 8.0),
    "gappedpeak": ("g.gappedPeak", [
        "chr1\t100\t3000\tg1\t0\t.\t100\t3000\t0\t2\t50,60,\t0,2840,\t6.5\t3.0\t2.0",
    ], "gappedPeak", 13, 6.5),
    "bedgraph": ("cov.bedGraph", ["chr1\t0\t100\t1.5", "chr1\t100\t250\t9.75"], "bedGraph", 4, 9.75),
    "bed6+1": ("custom.bed", ["chr1\t100\t300\tx\t0\t+\t17"], "BED6+1", None, None),
    "bed5": ("scored.bed", ["chr1\t100\t300\tx\t950"], "BED5", None, None),
}


@pytest.mark.parametrize("case", list(BED_CASES))
def test_bed_flavours_and_their_signal_column(tmp_path, case):
    name, lines, flavour, col, max_signal = BED_CASES[case]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    ps = read_peaks(path)
    assert (ps.flavour, ps.signal_column) == (flavour, col)
    genes = genes_at("chr1", [5_000], ["+"], length=5_000)
    t = peak_features(ps, genes, [WindowSpec("w", "tss", -5_000, 5_000)])
    if col is None:
        assert "w_max_signal" not in t.columns  # no signal column, no signal feature
    else:
        assert t["w_max_signal"][0] == max_signal
    assert t["w_n_peaks"][0] == sum(1 for ln in lines if int(ln.split()[1]) < 10_000 and int(ln.split()[2]) > 0)


def test_featurize_bed9_gives_no_signal_feature(tmp_path, run):
    bed = tmp_path / "states.bed"
    bed.write_text("\n".join(BED_CASES["chromhmm-bed9"][1]) + "\n")
    bw = write_pybigwig(tmp_path / "x.bw", {"chr1": 200_000}, {"chr1": [(0, 1000, 1.0)]})
    genes, manifest = _mini_study(tmp_path, bw, bed)
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", tmp_path / "ds", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    f = epx.load_dataset(tmp_path / "ds").features(raw=True)
    assert not [c for c in f.columns if "max_signal" in c]
    assert f["H3K4me3.bed.tss.n_peaks"].tolist() == [1.0, 1.0, 0.0]


def test_narrow_peak_with_too_few_columns_is_refused(tmp_path):
    p = tmp_path / "x.narrowPeak"
    p.write_text("chr1\t1\t10\tp\t0\t.\t5\t-1\t-1\t5\nchr1\t20\t30\tq\t0\t.\t5\n")
    with pytest.raises(TrackError, match="narrowPeak file needs 10 columns") as err:
        read_peaks(p)
    assert str(err.value).startswith(f"{p}:2: ")


# --------------------------------------------------------------------------------------------
# 3 and 6. Unsorted and overlapping items: read correctly, windowed reads = whole reads
# --------------------------------------------------------------------------------------------
def _clip(items, regions) -> list[tuple[int, int, float]]:
    out = []
    for a, b in regions:
        out += [(max(s, a), min(e, b), v) for s, e, v in sorted(items) if s < b and e > a]
    return out


def _as_list(s, e, v) -> list[tuple[int, int, float]]:
    return [(int(a), int(b), float(c)) for a, b, c in zip(s, e, v, strict=True)]


@pytest.mark.parametrize("compress", [True, False])
def test_items_out_of_order_inside_a_block_are_read_correctly(tmp_path, compress):
    rng = np.random.default_rng(5)
    items = [(a, b, float(np.float32(v))) for a, b, v in random_bedgraph(rng, 90_000, 900)]
    blocks = [list(items[i:i + 300]) for i in range(0, len(items), 300)]
    for blk in blocks:
        rng.shuffle(blk)
    sections = [bedgraph(0, blk) for blk in blocks]
    data, _ = build_bigwig([("chr1", 100_000)], sections, compress=compress)
    path = tmp_path / "unsorted.bw"
    path.write_bytes(data)
    with BigWigReader(path) as r:
        assert _as_list(*r.intervals("chr1")) == sorted(items)
        for _ in range(40):
            ws = np.sort(rng.integers(0, 99_000, 3))
            reg = merge_windows(ws, ws + rng.integers(1, 8_000, 3))
            assert _as_list(*r.intervals("chr1", reg)) == _clip(items, reg)


def test_nested_overlapping_items_match_pybigwig(tmp_path):
    """cgpBigWig-like bedGraph with nested and overlapping items, sorted by start."""
    rng = np.random.default_rng(6)
    starts = np.sort(rng.integers(0, 40_000, 700))
    items = [(int(a), int(a + rng.integers(1, 900)), float(np.float32(rng.normal(3, 1)))) for a in starts]
    data, _ = build_bigwig([("chr1", 50_000)], [bedgraph(0, items[i:i + 200]) for i in range(0, 700, 200)])
    path = tmp_path / "nested.bw"
    path.write_bytes(data)
    pb = pyBigWig.open(str(path))
    ws, we = random_windows(rng, 45_000, 200)
    ours = read_stats(path, "chr1", ws, we)
    for stat in ("mean", "std", "min", "max", "sum", "coverage"):
        close(ours[stat], [pb_stat(pb, "chr1", a, b, stat) for a, b in zip(ws, we, strict=True)], rtol=1e-6)
    close(ours["slope"], [brute_stats(items, a, b)["slope"] for a, b in zip(ws, we, strict=True)], rtol=1e-6)
    genes = genes_at("chr1", [1_000, 20_000, 39_000], ["+", "-", "+"])
    spec = BinSpec(n_bins=30, bin_size=40)
    res = bigwig_features(path, genes, WINDOWS, bins=spec)
    for i, t in enumerate([1_000, 20_000, 39_000]):
        ref_v, ref_c = brute_bins(items, t, genes["strand"][i], 50_000, spec)
        np.testing.assert_allclose(res.bins[i], ref_v, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(res.bin_coverage[i], ref_c, atol=1e-12)
    assert res.bin_coverage.max() > 1  # two items over one base count twice, as in libBigWig


def test_fixedstep_with_span_above_step_matches_pybigwig(tmp_path):
    """kent's wigToBigWig writes fixedStep sections whose span exceeds the step."""
    rng = np.random.default_rng(7)
    path = tmp_path / "span.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([("chr1", 60_000)], maxZooms=1)
    vals = np.round(rng.random(2_000) * 10, 2).tolist()
    bw.addEntries("chr1", 1_000, values=vals, span=50, step=20)
    bw.close()
    pb = pyBigWig.open(str(path))
    ws, we = random_windows(rng, 45_000, 200)
    ours = read_stats(path, "chr1", ws, we)
    for stat in ("mean", "std", "min", "max", "sum", "coverage"):
        close(ours[stat], [pb_stat(pb, "chr1", a, b, stat) for a, b in zip(ws, we, strict=True)], rtol=1e-6)
    genes = genes_at("chr1", [5_000, 30_000], ["+", "-"])
    res = bigwig_features(path, genes, WINDOWS)
    items = [(1_000 + 20 * i, 1_050 + 20 * i, float(np.float32(v))) for i, v in enumerate(vals)]
    ref = brute_stats(items, genes["start"][0], genes["end"][0])
    for stat in STATS:
        close([res.table[f"body_{stat}"][0]], [ref[stat]], rtol=1e-6)


def test_restrict_overlapping_clips_each_item_per_region():
    s, e = np.array([0, 5, 40]), np.array([100, 20, 60])
    v = np.array([1.0, 2.0, 3.0], np.float32)
    rs, re_, rv = restrict_overlapping(s, e, v, np.array([[10, 30], [50, 70]]))
    assert list(zip(rs.tolist(), re_.tolist(), rv.tolist(), strict=True)) == [
        (10, 30, 1.0), (10, 20, 2.0), (50, 70, 1.0), (50, 60, 3.0)]
    # and the disjoint fast path agrees where items do not overlap
    s2, e2, v2 = restrict_to_regions(np.array([0, 40]), np.array([20, 60]), v[:2], np.array([[10, 50]]))
    assert (s2.tolist(), e2.tolist()) == ([10, 40], [20, 50])


# --------------------------------------------------------------------------------------------
# 4 and 5. Damaged files are refused (or read correctly), never read as "no data"
# --------------------------------------------------------------------------------------------
SECTIONS = [
    bedgraph(0, [(100, 200, 1.5), (300, 450, 2.5), (900, 1000, -1.0)]),
    bedgraph(0, [(5_000, 5_100, 4.0), (5_100, 5_300, 8.0)]),
    Section(1, 3, [1.0, 2.0, 3.0], start=50, step=100, span=30),
]
CHROMS = [("chr1", 10_000), ("chr2", 2_000)]


def _file(tmp_path: Path, name: str = "x.bw", **kw) -> Path:
    data, _ = build_bigwig(CHROMS, kw.pop("sections", SECTIONS), **kw)
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read_all(path: Path) -> dict[str, list]:
    with BigWigReader(path) as r:
        return {c: _as_list(*r.intervals(c)) for c in r.chroms()}


TRUTH = {"chr1": [(100, 200, 1.5), (300, 450, 2.5), (900, 1000, -1.0), (5_000, 5_100, 4.0), (5_100, 5_300, 8.0)],
         "chr2": [(50, 80, 1.0), (150, 180, 2.0), (250, 280, 3.0)]}


def test_hand_written_reference_file_reads(tmp_path):
    assert _read_all(_file(tmp_path)) == TRUTH
    assert _read_all(_file(tmp_path, "be.bw", endian=">", compress=False)) == TRUTH


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"header_buf_size": 0}, "looks zlib-compressed"),
        ({"header_buf_size": 30}, "inflates beyond the 30 bytes"),
        ({"data_count": 7}, "data section says it holds 7 blocks but the index lists 3"),
        ({"sections": [bedgraph(0, [(10, 20, 1.0)]),
                       Section(0, 1, [(30, 40, 2.0)], header_chrom_id=1)]}, "holds chromosome id 1 but the index"),
        ({"sections": [bedgraph(0, [(10, 20, 1.0), (50, 40, 2.0)])]}, "ends before it starts (50-40)"),
        ({"sections": [], "summary_bases": 2_700}, "summary says 2700 bases are covered"),
        ({"leaf_bounds": [(0, 100, 0, 1000), (5, 5000, 5, 5300), (1, 50, 1, 280)]}, "chromosome id 5"),
    ],
    ids=["compressed-but-bufsize-0", "block-beyond-bufsize", "data-count", "block-chrom-id",
         "end-before-start", "summary-without-blocks", "unknown-chrom-id"],
)
def test_damaged_files_are_refused(tmp_path, kw, message):
    path = _file(tmp_path, **kw)
    with pytest.raises(TrackError, match=re.escape(message)) as err:
        _read_all(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_zeroed_index_bounds_are_read_from_the_blocks(tmp_path):
    """rtracklayer's test file bed.bw: index leaves with zeroed bounds. Every windowed read
    would see no data; epx takes the bounds from the blocks and reads the data."""
    path = _file(tmp_path, leaf_bounds=[(0, 0, 0, 0)] * 3)
    assert _read_all(path) == TRUTH
    with BigWigReader(path) as r:
        assert _as_list(*r.intervals("chr1", np.array([[5_050, 5_150]]))) == [(5_050, 5_100, 4.0), (5_100, 5_150, 8.0)]


def test_index_bounds_one_base_short_still_find_the_last_base(tmp_path):
    """rtracklayer writes a block's end one base short of its last item; libBigWig's fixedStep
    ends ignore the span. A window on the missed bases must still see them."""
    bounds = [(0, 100, 0, 999), (0, 5_000, 0, 5_299), (1, 50, 1, 251)]
    path = _file(tmp_path, leaf_bounds=bounds)
    with BigWigReader(path) as r:
        assert _as_list(*r.intervals("chr1", np.array([[999, 1_000], [5_299, 5_300]]))) == [
            (999, 1_000, -1.0), (5_299, 5_300, 8.0)]
        # two regions over one block, the second on the missed base: the block is not cut short
        assert _as_list(*r.intervals("chr1", np.array([[150, 160], [999, 1_000]]))) == [
            (150, 160, 1.5), (999, 1_000, -1.0)]
        assert _as_list(*r.intervals("chr2", np.array([[270, 275]]))) == [(270, 275, 3.0)]
    assert _read_all(path) == TRUTH


def test_a_genes_features_do_not_depend_on_its_neighbours(tmp_path):
    """rtracklayer-style bounds (one base short in every block): a gene's numbers are the same
    alone and beside another gene whose window lands in the same block."""
    sections, bounds = [], []
    for b in range(40):  # more blocks than the reader samples at open
        items = [(b * 1_000 + i * 100, b * 1_000 + i * 100 + 50, float(b + 1)) for i in range(10)]
        sections.append(bedgraph(0, items))
        bounds.append((0, items[0][0], 0, items[-1][1] - 1))
    path = tmp_path / "rt.bw"
    path.write_bytes(build_bigwig([("chr1", 100_000)], sections, leaf_bounds=bounds)[0])
    win = [WindowSpec("tss", "tss", -50, 50)]
    alone = bigwig_features(path, genes_at("chr1", [3_999], ["+"]), win, bins=None).table
    pair = bigwig_features(path, genes_at("chr1", [3_999, 3_150], ["+", "+"]), win, bins=None).table
    pd.testing.assert_frame_equal(alone, pair.iloc[:1])
    ref = brute_stats([it for s in sections for it in s.items], 3_949, 4_049)  # incl. the missed base
    for stat in STATS:
        close([alone[f"tss_{stat}"][0]], [ref[stat]])



def test_zero_length_items_are_no_data(tmp_path):
    path = _file(tmp_path, sections=[bedgraph(0, [(10, 20, 1.0), (20, 20, 99.0), (20, 30, 2.0)])])
    res = read_stats(path, "chr1", np.array([0]), np.array([100]))
    assert res["max"][0] == 2.0 and res["coverage"][0] == 0.2


def test_cycles_in_either_tree_fail_at_once(tmp_path):
    many = [bedgraph(0, [(i * 100, i * 100 + 50, 1.0)]) for i in range(6)]
    data, lay = build_bigwig(CHROMS, many, leaves_per_node=2)
    raw = bytearray(data)
    struct.pack_into("<Q", raw, lay.index_nodes[0] + 4 + 16, lay.index_nodes[0])  # root -> root
    (tmp_path / "rtree.bw").write_bytes(bytes(raw))
    with pytest.raises(TrackError, match="R-tree index node at byte .* is reached twice"):
        BigWigReader(tmp_path / "rtree.bw")
    data, lay = build_bigwig(CHROMS, SECTIONS, chroms_per_leaf=1)
    raw = bytearray(data)
    key = max(len(c) for c, _ in CHROMS)
    struct.pack_into("<Q", raw, lay.chrom_nodes[0] + 4 + key, lay.chrom_nodes[0])
    (tmp_path / "bpt.bw").write_bytes(bytes(raw))
    with pytest.raises(TrackError, match="chromosome tree node at byte .* is reached twice"):
        BigWigReader(tmp_path / "bpt.bw")


def test_huge_key_size_is_refused(tmp_path):
    data, lay = build_bigwig(CHROMS, SECTIONS)
    raw = bytearray(data)
    struct.pack_into("<I", raw, lay.chrom_tree + 8, 2**31)
    (tmp_path / "key.bw").write_bytes(bytes(raw))
    with pytest.raises(TrackError, match="key size 2147483648"):
        BigWigReader(tmp_path / "key.bw")


def test_two_spellings_of_one_chromosome_in_a_bigwig(tmp_path):
    path = tmp_path / "alias.bw"
    path.write_bytes(build_bigwig([("1", 5_000), ("chr1", 5_000)], [bedgraph(0, [(0, 10, 1.0)])])[0])
    with pytest.raises(TrackError, match="'1' and 'chr1' both appear"):
        bigwig_features(path, genes_at("chr1", [100], ["+"]), WINDOWS)


@pytest.mark.parametrize(
    "payload, message",
    [
        (gzip.compress(b"x" * 100), "gzip-compressed, not a bigWig file"),
        (struct.pack("<I", 0x8789F2EB) + b"\0" * 60, "a bigBed file, not a bigWig"),
        (b"track type=bedGraph\nchr1\t0\t10\t1\n", "it is text"),
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "unknown magic number"),
    ],
    ids=["gzip", "bigbed", "text", "empty", "png"],
)
def test_what_a_non_bigwig_is(tmp_path, payload, message):
    p = tmp_path / "t.bw"
    p.write_bytes(payload)
    with pytest.raises(TrackError, match=message) as err:
        BigWigReader(p)
    assert "\\x" not in str(err.value) and "PNG" not in str(err.value)


def test_text_tracks_gzip_by_content_bom_and_binary(tmp_path):
    text = "chr1\t10\t20\tp\t0\t.\t3.5\t-1\t-1\t5\n#c\nchr1\t30\t40\tq\t0\t.\t4\t-1\t-1\t5\n"
    plain_gz = tmp_path / "a.narrowPeak.gz"  # says .gz, is plain text: read it
    plain_gz.write_text(text)
    hidden = tmp_path / "b.narrowPeak"  # gzip data without the suffix: read it
    hidden.write_bytes(gzip.compress(text.encode()))
    bom = tmp_path / "c.narrowPeak"  # byte-order mark + a mid-file comment (the slow parser)
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    for p in (plain_gz, hidden, bom):
        ps = read_peaks(p)
        assert list(ps.chroms) == ["chr1"] and ps.chroms["chr1"].signal.tolist() == [3.5, 4.0]
    cut = tmp_path / "cut.bed.gz"
    cut.write_bytes(gzip.compress(text.encode() * 50)[:-30])
    with pytest.raises(TrackError, match="truncated gzip file"):
        read_peaks(cut)
    junk = tmp_path / "junk.bed"
    junk.write_bytes(b"chr1\t1\t2\n\x00\x01\x02\xff\xfe garbage")
    with pytest.raises(TrackError, match="a binary file, not a BED") as err:
        read_peaks(junk)
    assert "\\x" not in str(err.value) and "garbage" not in str(err.value)
    bw = write_pybigwig(tmp_path / "real.bw", {"chr1": 1000}, {"chr1": [(0, 10, 1.0)]})
    with pytest.raises(TrackError, match="a bigWig file, not a BED"):
        read_peaks(bw)


# --------------------------------------------------------------------------------------------
# 7. Through the CLI, in a real process: one line, exit 2, nothing written, never a signal
# --------------------------------------------------------------------------------------------
def _damaged_variants(tmp_path: Path) -> dict[str, bytes]:
    """Files that kill pyBigWig's C library with SIGSEGV (found by flipping header bytes)."""
    base = write_pybigwig(tmp_path / "base.bw", {"chr1": 200_000, "chr2": 50_000},
                          {"chr1": [(0, 1000, 1.0), (5_000, 9_000, 2.0)]}).read_bytes()
    chrom_tree = struct.unpack_from("<Q", base, 8)[0]
    key = struct.unpack_from("<I", base, chrom_tree + 8)[0]
    leaf = chrom_tree + 32 + 4
    out = {}
    bad_id = bytearray(base)
    struct.pack_into("<I", bad_id, leaf + key, 65_536)  # chromosome id far out of range
    out["chrom-id"] = bytes(bad_id)
    bad_val = bytearray(base)
    struct.pack_into("<I", bad_val, chrom_tree + 12, 23)  # value size
    out["value-size"] = bytes(bad_val)
    bad_node = bytearray(base)
    bad_node[chrom_tree + 32] = 255  # node type
    out["node-type"] = bytes(bad_node)
    out["truncated"] = base[: len(base) // 2]
    return out


def test_damaged_bigwigs_through_the_cli(tmp_path):
    for name, payload in _damaged_variants(tmp_path).items():
        d = tmp_path / name
        d.mkdir()
        (d / "k4.bw").write_bytes(payload)
        genes, manifest = _mini_study(d, d / "k4.bw")
        for cmd in (["featurize", "--genes", str(genes), "--manifest", str(manifest), "-o", str(d / "ds"),
                     "--workers", "2"], ["check", "--genes", str(genes), "--manifest", str(manifest)]):
            proc = subprocess.run([sys.executable, "-c", "from epx.cli import main; main()", *cmd],
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2, (name, proc.returncode, proc.stderr)
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("error:") and "k4.bw" in lines[0], (name, proc.stderr)
            assert "Traceback" not in proc.stderr and "[bw" not in proc.stderr
        assert not (d / "ds").exists() and not list(d.glob(".ds*"))


def test_truncated_and_fake_gzip_peaks_through_the_cli(tmp_path, run):
    bw = write_pybigwig(tmp_path / "x.bw", {"chr1": 200_000}, {"chr1": [(0, 1000, 1.0)]})
    bed = tmp_path / "k4.bed.gz"
    bed.write_bytes(gzip.compress(b"chr1\t100\t200\n" * 1000)[:-40])
    genes, manifest = _mini_study(tmp_path, bw, bed)
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", tmp_path / "ds", "--workers", "1")
    assert_user_error(result, "k4.bed.gz", "truncated gzip")
    bed.write_bytes(b"chr1\t100\t200\n")  # not gzip at all, despite the suffix: plain BED
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", tmp_path / "ds", "--workers", "1")
    assert result.exit_code == 0, result.stderr


# --------------------------------------------------------------------------------------------
# pybigtools as the reference above 2**31
# --------------------------------------------------------------------------------------------
def test_coordinates_above_2_31_match_pybigtools(tmp_path):
    big = 3_000_000_000
    items = [(big + 10 * i, big + 10 * i + 7, float(i % 5)) for i in range(2_000)]
    path = write_pybigtools(tmp_path / "big.bw", {"chrBig": big + 100_000, "chr1": 1000},
                            {"chrBig": items, "chr1": [(0, 10, 1.0)]})
    ref = [(a, b, float(v)) for a, b, v in pybigtools.open(str(path)).records("chrBig")]
    with BigWigReader(path) as r:
        assert _as_list(*r.intervals("chrBig")) == ref
    genes = genes_at("chrBig", [big + 5_000, big + 15_000], ["+", "-"])
    res = bigwig_features(path, genes, WINDOWS, bins=BinSpec(20, 25))
    for i in range(2):
        ref_s = brute_stats(items, genes["start"][i], genes["end"][i])
        ref_s["slope"] *= -1 if genes["strand"][i] == "-" else 1  # oriented along transcription
        for stat in STATS:
            close([res.table[f"body_{stat}"][i]], [ref_s[stat]], rtol=1e-6)
        ref_v, ref_c = brute_bins(items, genes["tss"][i], genes["strand"][i], big + 100_000, BinSpec(20, 25))
        np.testing.assert_allclose(res.bins[i], ref_v, atol=1e-9)


# --------------------------------------------------------------------------------------------
# Fuzz: truncations and byte flips in every on-disk structure
# --------------------------------------------------------------------------------------------
def _reference_reads(path: str, library: str) -> dict | None:
    """pyBigWig's or pybigtools' whole-chromosome items, read in a forked child (pyBigWig's C
    library may crash), normalised to epx's semantics; None when the library cannot read it."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            signal.alarm(20)
            if library == "pyBigWig":
                bw = pyBigWig.open(path)
                chroms = bw.chroms()
                items = {c: list(bw.intervals(c) or ()) for c in chroms}
            else:
                bw = pybigtools.open(path)
                chroms = dict(bw.chroms())
                items = {c: list(bw.records(c)) for c in chroms}
            out = {"chroms": chroms, "items": {c: _normalise(items[c], chroms[c]) for c in chroms}}
            payload = pickle.dumps(out)
        except BaseException:
            payload = b""
        with os.fdopen(wfd, "wb") as fh:
            fh.write(payload)
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        payload = fh.read()
    os.waitpid(pid, 0)
    return pickle.loads(payload) if payload else None


def _normalise(items, size: int) -> list[tuple[int, int, float]]:
    """A reference reader's items under epx's semantics: data only, clipped to the chromosome,
    sorted."""
    out = [(a, min(b, size), float(v)) for a, b, v in items if min(b, size) > a and np.isfinite(v)]
    return sorted(out)


def _ours(path: Path, rng) -> dict:
    with BigWigReader(path) as r:
        chroms = r.chroms()
        items = {c: _as_list(*r.intervals(c)) for c in chroms}
        for c, size in chroms.items():  # windowed reads must agree with the whole read
            if size < 2:
                continue
            ws = np.sort(rng.integers(0, size, 4))
            reg = merge_windows(ws, np.minimum(ws + rng.integers(1, max(2, size // 3), 4), size))
            whole = r.intervals(c)
            if overlapping(whole[0], whole[1]):
                ref = restrict_overlapping(*whole, reg)
            else:
                ref = restrict_to_regions(*whole, reg)
            assert sorted(_as_list(*r.intervals(c, reg))) == sorted(_as_list(*ref)), (c, reg)
    return {"chroms": chroms, "items": items}


def _fuzz_bases(tmp_path: Path) -> list[tuple[bytes, dict[str, tuple[int, int]]]]:
    rng = np.random.default_rng(8)
    path = tmp_path / "fz.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([("chr1", 60_000), ("chr2", 30_000), ("chr3", 20_000)], maxZooms=2)
    s = np.sort(rng.choice(np.arange(0, 59_000, 9), 2_500, replace=False))
    bw.addEntries(["chr1"] * len(s), s.tolist(), ends=(s + 6).tolist(), values=rng.random(len(s)).tolist())
    bw.addEntries("chr2", 100, values=rng.random(1_500).tolist(), span=10, step=12)
    vs = np.sort(rng.choice(np.arange(0, 19_000, 20), 600, replace=False))
    bw.addEntries("chr3", vs.tolist(), values=rng.random(len(vs)).tolist(), span=15)
    bw.close()
    a = path.read_bytes()
    h = struct.unpack_from("<IHHQQQHHQQIQ", a, 0)
    zoom_data, zoom_index = struct.unpack_from("<QQ", a, 64 + 8)
    starts = {"header": 0, "zoom headers": 64, "summary": h[9], "chromosome tree": h[3], "data": h[4],
              "index": h[5], "zoom data": zoom_data, "zoom index": zoom_index}
    order = sorted(starts, key=starts.get) + ["end"]
    starts["end"] = len(a)
    parts_a = {name: (starts[name], starts[nxt]) for name, nxt in zip(order[:-1], order[1:], strict=True) if starts[nxt] > starts[name]}
    sections = [bedgraph(0, [(i * 40, i * 40 + 25, float(i % 7)) for i in range(k, k + 100)]) for k in range(0, 800, 100)]
    sections.append(Section(1, 2, [(i * 50, float(i)) for i in range(200)], span=20))
    b, lay = build_bigwig([("chr1", 40_000), ("chrX", 12_000)], sections, endian=">", compress=False,
                          leaves_per_node=3, chroms_per_leaf=1)
    parts_b = {"header": (0, 64), "chromosome tree": (lay.chrom_tree, lay.data), "data": (lay.data, lay.index),
               "index": (lay.index, lay.summary), "summary": (lay.summary, lay.size)}
    return [(a, parts_a), (b, parts_b)]


def test_fuzz_damaged_variants_read_right_or_fail_cleanly(tmp_path):
    """Seeded: 600 variants of two small files (a pyBigWig one with zoom levels, a big-endian
    uncompressed hand-written one with inner tree nodes). Each either reads with the original
    values or pyBigWig's reading of the variant, windowed reads equal to the whole read, or fails
    with TrackError; never another exception, a hang or a signal."""
    rng = np.random.default_rng(9)
    counts = {"refused": 0, "read": 0}
    path = tmp_path / "v.bw"

    def alarm(_sig, _frame):
        raise TimeoutError

    def same(a: dict, b: dict | None) -> bool:
        return b is not None and a["chroms"] == b["chroms"] and all(
            sorted(a["items"][c]) == b["items"][c] for c in a["chroms"])

    old = signal.signal(signal.SIGALRM, alarm)
    try:
        for base, parts in _fuzz_bases(tmp_path):
            path.write_bytes(base)
            truth = _ours(path, rng)
            for i in range(300):
                data = bytearray(base)
                if i % 5 == 0:
                    data = data[: int(rng.integers(0, len(data)))]
                else:
                    name = list(parts)[i % len(parts)]
                    lo, hi = parts[name]
                    for _ in range(int(rng.integers(1, 4))):
                        data[int(rng.integers(lo, hi))] = int(rng.integers(0, 256))
                path.write_bytes(bytes(data))
                signal.alarm(20)
                try:
                    ours = _ours(path, rng)
                except TrackError as err:
                    assert "\n" not in str(err)
                    counts["refused"] += 1
                    continue
                finally:
                    signal.alarm(0)
                counts["read"] += 1
                if ours == truth:
                    continue
                # Damage epx cannot see (a value, an uncompressed coordinate): read as the others do.
                refs = [_reference_reads(str(path), lib) for lib in ("pyBigWig", "pybigtools")]
                assert any(same(ours, ref) for ref in refs), f"variant {i}: neither the original nor {refs}"
    finally:
        signal.signal(signal.SIGALRM, old)
    assert counts["refused"] > 150 and counts["read"] > 100, counts


# --------------------------------------------------------------------------------------------
# Every case through `epx featurize`: refused in one line with nothing written, or read right
# --------------------------------------------------------------------------------------------
BIG_CHROMS = [("chr1", 200_000), ("chr2", 50_000)]


def _bw_case(name: str) -> bytes:
    sections = [bedgraph(0, [(100, 400, 2.0), (500, 900, 4.0)]), bedgraph(0, [(60_000, 64_500, 1.0)])]
    if name == "cycle":
        data, lay = build_bigwig(BIG_CHROMS, sections, leaves_per_node=1)
        raw = bytearray(data)
        struct.pack_into("<Q", raw, lay.index_nodes[0] + 4 + 16, lay.index_nodes[0])
        return bytes(raw)
    if name == "key-size":
        data, lay = build_bigwig(BIG_CHROMS, sections)
        raw = bytearray(data)
        struct.pack_into("<I", raw, lay.chrom_tree + 8, 2**31 + 5)
        return bytes(raw)
    if name == "alias":
        return build_bigwig([("1", 200_000), ("chr1", 200_000)], sections)[0]
    if name == "bufsize-0":
        return build_bigwig(BIG_CHROMS, sections, header_buf_size=0)[0]
    if name == "zeroed-bounds":
        return build_bigwig(BIG_CHROMS, sections, leaf_bounds=[(0, 0, 0, 0)] * 2)[0]
    if name == "unsorted":
        return build_bigwig(BIG_CHROMS, [bedgraph(0, [(500, 900, 4.0), (100, 400, 2.0)]), sections[1]])[0]
    if name == "gzip":
        return gzip.compress(build_bigwig(BIG_CHROMS, sections)[0])
    if name == "bigbed":
        return struct.pack("<I", 0x8789F2EB) + b"\0" * 200
    raise KeyError(name)


@pytest.mark.parametrize(
    "case, fragment",
    [("cycle", "is reached twice"), ("key-size", "key size 2147483653"), ("alias", "'1' and 'chr1' both appear"),
     ("bufsize-0", "looks zlib-compressed"), ("gzip", "gzip-compressed, not a bigWig"),
     ("bigbed", "a bigBed file, not a bigWig")],
)
def test_featurize_refuses_damaged_bigwigs(tmp_path, run, case, fragment):
    bw = tmp_path / "k4.bw"
    bw.write_bytes(_bw_case(case))
    genes, manifest = _mini_study(tmp_path, bw)
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", tmp_path / "ds", "--workers", "1")
    assert_user_error(result, "k4.bw", fragment)
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds*"))
    assert_user_error(run("check", "--genes", genes, "--manifest", manifest), "k4.bw", fragment)


@pytest.mark.parametrize("case", ["zeroed-bounds", "unsorted"])
def test_featurize_reads_odd_but_readable_bigwigs(tmp_path, run, case):
    bw = tmp_path / "k4.bw"
    bw.write_bytes(_bw_case(case))
    genes, manifest = _mini_study(tmp_path, bw)
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", tmp_path / "ds", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    f = epx.load_dataset(tmp_path / "ds").features(raw=True).set_index("gene_id")
    items = [(100, 400, 2.0), (500, 900, 4.0), (60_000, 64_500, 1.0)]
    a = brute_stats(items, 200, 4_000)  # gene A's body
    assert f.loc["A", "H3K4me3.bw.body.mean"] == pytest.approx(a["mean"])
    assert f.loc["A", "H3K4me3.bw.body.coverage"] == pytest.approx(a["coverage"])
    assert f.loc["B", "H3K4me3.bw.tss.mean"] == 1.0


def test_featurize_overlapping_items_match_pybigwig(tmp_path, run):
    path = tmp_path / "k4.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([("chr1", 200_000)], maxZooms=1)
    bw.addEntries("chr1", 0, values=[float(i % 9) for i in range(9_000)], span=40, step=15)
    bw.close()
    genes, manifest = _mini_study(tmp_path, path)
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", tmp_path / "ds", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    f = epx.load_dataset(tmp_path / "ds").features(raw=True).set_index("gene_id")
    pb = pyBigWig.open(str(path))
    for stat in ("mean", "std", "max", "coverage"):
        assert f.loc["A", f"H3K4me3.bw.body.{stat}"] == pytest.approx(pb_stat(pb, "chr1", 200, 4_000, stat), rel=1e-6)
    assert f.loc["A", "H3K4me3.bw.body.coverage"] > 2  # ~40/15 items over each base


@pytest.mark.parametrize(
    "name, payload, fragment",
    [
        ("k4.bed", b"1\t100\t200\nchr1\t300\t400\n", "'1' and 'chr1' both appear"),
        ("k4.bed", b"chr1\t1\t2\n\x00\x00\x07binary", "a binary file, not a BED"),
        ("k4.bed", None, "a bigWig file, not a BED"),
    ],
    ids=["alias", "binary", "bigwig-as-bed"],
)
def test_featurize_refuses_bad_bed_files(tmp_path, run, name, payload, fragment):
    bw = write_pybigwig(tmp_path / "x.bw", {"chr1": 200_000}, {"chr1": [(0, 1000, 1.0)]})
    bed = tmp_path / name
    bed.write_bytes(payload if payload is not None else bw.read_bytes())
    genes, manifest = _mini_study(tmp_path, bw, bed)
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", tmp_path / "ds", "--workers", "1")
    assert_user_error(result, name, fragment)
    assert "\x00" not in result.stderr and "binary\n" not in result.stderr
    assert not (tmp_path / "ds").exists()
    assert_user_error(run("check", "--genes", genes, "--manifest", manifest), name, fragment)


def test_featurize_reads_a_bom_narrowpeak_with_comments(tmp_path, run):
    bw = write_pybigwig(tmp_path / "x.bw", {"chr1": 200_000}, {"chr1": [(0, 1000, 1.0)]})
    bed = tmp_path / "k4.narrowPeak"
    bed.write_bytes(b"\xef\xbb\xbfchr1\t150\t300\tp\t0\t.\t6.5\t-1\t-1\t20\n# mid-file\n"
                    b"chr1\t63900\t64100\tq\t0\t.\t2\t-1\t-1\t20\n")
    genes, manifest = _mini_study(tmp_path, bw, bed)
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", tmp_path / "ds", "--workers", "1")
    assert result.exit_code == 0, result.stderr
    f = epx.load_dataset(tmp_path / "ds").features(raw=True).set_index("gene_id")
    assert f.loc["A", "H3K4me3.bed.tss.max_signal"] == 6.5 and f.loc["B", "H3K4me3.bed.tss.max_signal"] == 2.0
