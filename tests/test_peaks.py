"""BED peak parsing and peak-centric window features."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from epx.errors import TrackError
from epx.features.peaks import (
    PEAK_STATS,
    peak_features,
    peak_window_stats,
    read_peaks,
    tss_distance,
)
from epx.features.windows import DEFAULT_WINDOWS

PEAKS = [  # chrom, start, end, signalValue
    ("chr1", 100, 200, 5.0),
    ("chr1", 150, 300, 7.0),
    ("chr1", 1000, 1100, 2.0),
    ("chr1", 5000, 5010, 9.0),
]


def _narrowpeak(path: Path, rows) -> Path:
    lines = [f"{c}\t{s}\t{e}\tp{i}\t0\t.\t{v}\t-1\t-1\t50" for i, (c, s, e, v) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def peaks(tmp_path: Path):
    return read_peaks(_narrowpeak(tmp_path / "x.narrowPeak", PEAKS))


def test_hand_computed_window_features(peaks) -> None:
    cp = peaks.chroms["chr1"]
    ws = np.array([0, 250, 2000, 140])
    we = np.array([1000, 1050, 3000, 160])
    res = peak_window_stats(cp, ws, we)
    assert list(res) == list(PEAK_STATS)
    assert res["n_peaks"].tolist() == [2, 2, 0, 2]
    assert res["coverage"].tolist() == [0.2, 100 / 800, 0.0, 1.0]
    assert res["density"].tolist() == [2.0, 2.5, 0.0, 100.0]
    # [0, 1000): midpoints 150 and 225 fall in sub-bins 1 and 2 -> 1 bit.
    # [250, 1050): no midpoint inside (225 and 1050 are outside) -> 0.
    # [140, 160): midpoint 150 only -> fewer than 2 -> 0.
    assert res["entropy"].tolist() == [1.0, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(res["max_signal"], [7.0, 7.0, np.nan, 7.0])


def test_entropy_spread_and_clustered(tmp_path: Path) -> None:
    spread = [("chr1", 100 * k + 40, 100 * k + 60, 1.0) for k in range(10)]
    cp = read_peaks(_narrowpeak(tmp_path / "s.narrowPeak", spread)).chroms["chr1"]
    res = peak_window_stats(cp, np.array([0, 0]), np.array([1000, 200]))
    assert res["entropy"][0] == pytest.approx(np.log2(10))
    assert res["entropy"][1] == pytest.approx(1.0)  # midpoints 50 and 150 in a 200 bp window


def test_max_signal_with_nested_peaks(tmp_path: Path) -> None:
    rows = [("chr1", 0, 1000, 1.0), ("chr1", 100, 200, 50.0), ("chr1", 300, 400, 3.0)]
    cp = read_peaks(_narrowpeak(tmp_path / "n.narrowPeak", rows)).chroms["chr1"]
    res = peak_window_stats(cp, np.array([500, 150, 1000]), np.array([600, 350, 2000]))
    np.testing.assert_array_equal(res["max_signal"], [1.0, 50.0, np.nan])
    assert res["n_peaks"].tolist() == [1, 3, 0]


def test_tss_distance(peaks) -> None:
    cp = peaks.chroms["chr1"]
    tss = np.array([50, 400, 400, 150, 2000])
    sign = np.array([1, 1, -1, -1, 1])
    # union: [100,300) [1000,1100) [5000,5010)
    assert tss_distance(cp, tss, sign).tolist() == [50, -101, 101, 0, -901]
    # Equidistant peaks: the downstream one wins on either strand.
    tie = read_peaks(_narrowpeak(peaks_path := Path(peaks.path).with_name("t.narrowPeak"),
                                 [("chr1", 0, 10, 1.0), ("chr1", 21, 30, 1.0)]))
    assert peaks_path.exists()
    assert tss_distance(tie.chroms["chr1"], np.array([15, 15]), np.array([1, -1])).tolist() == [6, 6]
    assert np.isnan(tss_distance(None, np.array([1]), np.array([1]))).all()


def test_peak_features_gene_table(peaks) -> None:
    genes = pd.DataFrame({
        "gene_id": ["a", "b", "c"], "gene_name": ["a", "b", "c"], "chrom": ["chr1", "chr1", "chr2"],
        "start": [200, 0, 10], "end": [3000, 401, 50], "strand": ["+", "-", "+"], "tss": [200, 400, 10],
    })
    t = peak_features(peaks, genes)
    assert list(t.columns) == [f"{w.name}_{s}" for w in DEFAULT_WINDOWS for s in PEAK_STATS] + [
        "tss_distance"
    ]
    # '+' gene, TSS 200: tss window [-800, 1200) is clipped to [0, 1200): all three first peaks.
    assert t.loc[0, "tss_n_peaks"] == 3
    assert t.loc[0, "tss_coverage"] == pytest.approx(300 / 1200)
    assert t.loc[0, "tss_max_signal"] == 7.0
    assert t.loc[0, "tss_distance"] == 0
    # '-' gene, TSS 400: its tss window is [-599, 1401) -> clipped [0, 1401).
    assert t.loc[1, "tss_n_peaks"] == 3 and t.loc[1, "tss_distance"] == 101
    # chromosome without peaks
    assert t.loc[2, "tss_n_peaks"] == 0 and np.isnan(t.loc[2, "tss_max_signal"])
    assert np.isnan(t.loc[2, "tss_distance"])
    # chrom_sizes clip the windows at the chromosome end
    t2 = peak_features(peaks, genes.iloc[:1], chrom_sizes={"chr1": 1100})
    assert t2.loc[0, "tss_coverage"] == pytest.approx(300 / 1100)


def test_bed3_has_no_signal_and_ensembl_names(tmp_path: Path) -> None:
    p = tmp_path / "p.bed"
    p.write_text("1\t10\t20\nMT\t0\t5\n1\t30\t40\nX\t1\t2\n")
    ps = read_peaks(p)
    assert not ps.has_signal and ps.n_columns == 3 and ps.flavour == "BED3"
    assert sorted(ps.chroms) == ["chr1", "chrM", "chrX"]
    assert ps.chroms["chr1"].starts.tolist() == [10, 30]
    res = peak_window_stats(ps.chroms["chr1"], np.array([0]), np.array([100]))
    assert np.isnan(res["max_signal"]).all() and res["n_peaks"][0] == 2


@pytest.mark.parametrize("a,b", [("1", "chr1"), ("MT", "chrM")])
def test_two_spellings_of_one_chromosome_refused(tmp_path: Path, a: str, b: str) -> None:
    """Which spelling holds the data is anyone's guess: refuse, naming both (never keep the last)."""
    p = tmp_path / "p.bed"
    p.write_text(f"{a}\t10\t20\n{b}\t30\t40\n")
    with pytest.raises(TrackError, match=f"'{a}' and '{b}' both appear"):
        read_peaks(p)


def test_headers_skipped_and_gzip(tmp_path: Path) -> None:
    text = (
        "browser position chr1:1-1000\n"
        'track type=narrowPeak name="x"\n'
        "# comment\n"
        "\n"
        "chr1\t10\t20\tp\t0\t.\t3.5\t-1\t-1\t5\n"
        "#another comment in the middle\n"
        "chr1\t30\t40\tq\t0\t.\t4.5\t-1\t-1\t5\n"
        "track name=second\n"
        "chr2\t5\t6\tr\t0\t.\t1\t-1\t-1\t0\n"
    )
    plain = tmp_path / "x.narrowPeak"
    plain.write_text(text)
    gz = tmp_path / "x.narrowPeak.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(text)
    for path in (plain, gz):
        ps = read_peaks(path)
        assert ps.has_signal
        assert ps.chroms["chr1"].starts.tolist() == [10, 30]
        assert ps.chroms["chr1"].signal.tolist() == [3.5, 4.5]
        assert ps.chroms["chr2"].ends.tolist() == [6]


def test_fast_and_slow_parsers_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    s = rng.integers(0, 10**6, 500)
    e = s + rng.integers(0, 500, 500)
    chrom = rng.choice(["chr1", "2", "chrX"], 500)
    lines = [f"{c}\t{a}\t{b}\tn\t0\t.\t{v:.3f}\t-1\t-1\t1" for c, a, b, v in zip(chrom, s, e, rng.random(500), strict=True)]
    fast = tmp_path / "fast.narrowPeak"
    fast.write_text("\n".join(lines) + "\n")
    slow = tmp_path / "slow.narrowPeak"
    slow.write_text("\n".join(lines[:250] + ["# mid-file comment"] + lines[250:]) + "\n")
    a, b = read_peaks(fast), read_peaks(slow)
    assert a.chroms.keys() == b.chroms.keys()
    for k in a.chroms:
        for field in ("starts", "ends", "signal"):
            np.testing.assert_array_equal(getattr(a.chroms[k], field), getattr(b.chroms[k], field))


@pytest.mark.parametrize(
    "body,line,message",
    [
        ("track name=x\n#c\nchr1\t10\t20\nchr1\t5\n", 4, "too few columns"),
        ("chr1\t10\t20\nchr1\tabc\t20\n", 2, "non-integer start coordinate 'abc'"),
        ("chr1\t10\t20\nchr1\t1.5\t20\n", 2, "non-integer start"),
        ("chr1\t10\t2e1\n", 1, "non-integer end"),
        ("chr1\t-5\t20\n", 1, "negative start coordinate"),
        ("chr1\t5\t-20\n", 1, "negative end coordinate"),
        ("chr1\t0\t1\n\nchr1\t50\t20\n", 3, "start 50 > end 20"),
        ("chrom\tstart\tend\nchr1\t1\t2\n", 1, "a column-header line"),
    ],
)
def test_bed_errors_name_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    p = tmp_path / "bad.bed"
    p.write_text(body)
    with pytest.raises(TrackError, match=message) as err:
        read_peaks(p)
    text = str(err.value)
    assert text.startswith(f"{p}:{line}: ") and "\n" not in text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not found"):
        read_peaks(tmp_path / "nope.bed")


def test_counts_and_coverage_match_bedtools(tmp_path: Path) -> None:
    pybedtools = pytest.importorskip("pybedtools")
    pybedtools.helpers.set_tempdir(str(tmp_path))
    rng = np.random.default_rng(5)
    rows = []
    for chrom in ("chr1", "chr2"):
        s = rng.integers(0, 200_000, 400)
        e = s + rng.integers(1, 3_000, 400)  # overlapping and nested peaks
        rows += [(chrom, int(a), int(b), float(v)) for a, b, v in zip(s, e, rng.random(400), strict=True)]
    rows.sort(key=lambda r: (r[0], r[1]))
    path = _narrowpeak(tmp_path / "r.narrowPeak", rows)
    ps = read_peaks(path)
    win = []
    for chrom in ("chr1", "chr2", "chr3"):
        ws = rng.integers(0, 205_000, 150)
        win += [(chrom, int(a), int(a + L)) for a, L in zip(ws, rng.integers(1, 20_000, 150), strict=True)]
    wdf = pd.DataFrame(win, columns=["chrom", "start", "end"])
    a = pybedtools.BedTool.from_dataframe(wdf)
    cnt = a.intersect(str(path), c=True).to_dataframe(header=None).iloc[:, 3].to_numpy()
    cov = a.coverage(str(path)).to_dataframe(header=None)
    bt_frac = cov.iloc[:, 4].to_numpy() / cov.iloc[:, 5].to_numpy()
    ours_n = np.zeros(len(wdf))
    ours_c = np.zeros(len(wdf))
    for chrom, grp in wdf.groupby("chrom"):
        res = peak_window_stats(ps.chroms.get(chrom), grp["start"].to_numpy(), grp["end"].to_numpy())
        ours_n[grp.index] = res["n_peaks"]
        ours_c[grp.index] = res["coverage"]
    np.testing.assert_array_equal(ours_n, cnt)
    np.testing.assert_allclose(ours_c, bt_frac, rtol=0, atol=1e-12)
    # Brute-force check of max_signal against the definition.
    sig = {c: np.array([r[3] for r in rows if r[0] == c]) for c in ("chr1", "chr2")}
    se = {c: np.array([(r[1], r[2]) for r in rows if r[0] == c]) for c in ("chr1", "chr2")}
    for chrom in ("chr1", "chr2"):
        grp = wdf[wdf.chrom == chrom]
        res = peak_window_stats(ps.chroms[chrom], grp["start"].to_numpy(), grp["end"].to_numpy())
        for k, (ws_, we_) in enumerate(zip(grp["start"], grp["end"], strict=True)):
            hit = (se[chrom][:, 0] < we_) & (se[chrom][:, 1] > ws_)
            ref = sig[chrom][hit].max() if hit.any() else np.nan
            assert (np.isnan(ref) and np.isnan(res["max_signal"][k])) or res["max_signal"][k] == pytest.approx(ref)
