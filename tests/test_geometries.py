"""Several bin geometries in one dataset, and distal regions from contact pairs (issue 10's data
contract): real bigWigs and pairs files through the real CLI, checked against pyBigWig."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyBigWig
import pytest
from conftest import assert_user_error, write_bigwig, write_ml4g

from epx.dataset import load_dataset

CHROMS = {"chr1": 400_000, "chr2": 300_000}


def _study(tmp_path: Path) -> dict[str, Path]:
    """8 genes (both strands; one 3 kb from the chr2 start so wide windows leave it), two cell lines x
    two assays of dense, position-dependent signal with gaps, and labels."""
    rng = np.random.default_rng(7)
    genes = []
    for i, (chrom, tss, strand) in enumerate([("chr1", 60_000, "+"), ("chr1", 150_000, "-"), ("chr1", 230_000, "+"),
                                               ("chr1", 330_000, "-"), ("chr2", 3_000, "+"), ("chr2", 90_000, "-"),
                                               ("chr2", 180_000, "+"), ("chr2", 250_000, "-")]):
        start, end = (tss, tss + 8_000) if strand == "+" else (tss - 7_950, tss + 50)
        genes.append((f"G{i}", chrom, start, end, tss, tss + 50, strand))
    gene_file = write_ml4g(tmp_path / "genes.tsv", genes)
    rows = ["cell_line\tassay\tkind\tpath"]
    for cell in ("A", "B"):
        for assay in ("H3K27ac", "H3K4me3"):
            entries = []
            for chrom, size in CHROMS.items():
                for s in range(0, size, 250):
                    if rng.random() < 0.15:
                        continue  # gaps without data, as real bigWigs have
                    entries.append((chrom, s, s + 250, float(rng.gamma(1.0, 2.0) + (s % 7000) / 1000)))
            path = write_bigwig(tmp_path / f"{cell}_{assay}.bw", CHROMS, entries)
            rows.append(f"{cell}\t{assay}\tbigwig\t{path}")
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    labels = tmp_path / "labels.tsv"
    labels.write_text("gene_name\tgex\n" + "".join(f"G{i}\t{i * 1.5}\n" for i in range(8)))
    pairs = tmp_path / "pairs.bedpe"
    pairs.write_text(
        "chr1\t59000\t62000\tchr1\t100000\t103500\t.\t12.5\n"   # G0 -> 3.5 kb region
        "chr1\t59000\t62000\tchr1\t20001\t24999\t.\t20\n"      # G0 -> a second, stronger one
        "chr1\t149000\t151000\tchr1\t100000\t103500\t.\t8\n"   # G1 shares G0's first region
        "chr2\t179000\t182000\tchr2\t120000\t175000\t.\t9\n"   # G6 -> 55 kb region, clipped to 40 kb
        "chr2\t249000\t251000\tchr1\t5000\t9000\t.\t30\n"      # trans: skipped with a warning
    )
    return {"genes": gene_file, "manifest": manifest, "labels": labels, "pairs": pairs}


@pytest.fixture
def study(tmp_path: Path) -> dict[str, Path]:
    return _study(tmp_path)


def _featurize(run, study, out: Path, *extra: str | Path):
    return run("featurize", "--genes", study["genes"], "--manifest", study["manifest"], "--labels",
               f"A={study['labels']}", "-o", out, "--workers", "1", *extra)


def test_each_geometry_equals_a_featurize_of_it_alone(run, study, tmp_path):
    result = _featurize(run, study, tmp_path / "multi", "--bins", "2000x20,500x80,100x400")
    assert result.exit_code == 0, result.stderr
    ds = load_dataset(tmp_path / "multi")
    assert ds.geometry_names == ["2000x20", "500x80", "100x400"]
    meta = json.loads((tmp_path / "multi" / "dataset.json").read_text())
    assert [g["file"] for g in meta["geometries"]] == ["bins.npy", "bins_500x80.npy", "bins_100x400.npy"]
    for name in ("500x80", "100x400"):
        single = tmp_path / f"single_{name}"
        assert _featurize(run, study, single, "--bins", name).exit_code == 0
        alone = load_dataset(single)
        assert alone.geometry_names == [name]
        np.testing.assert_array_equal(np.load(tmp_path / "multi" / f"bins_{name}.npy"), np.load(single / "bins.npy"))
        np.testing.assert_array_equal(np.load(tmp_path / "multi" / f"bins_{name}_coverage.npy"),
                                      np.load(single / "bins_coverage.npy"))
        for key in ("mean", "sd"):
            np.testing.assert_allclose(ds.geometry(name)["normalisation"][key], alone.geometry(name)["normalisation"][key])
    # the chr2 gene 3 kb from the chromosome start: its 40 kb windows are padded, and featurize said so
    assert "run past a chromosome end" in result.stderr and "2000x20" in result.stderr


def test_bins_match_pybigwig_at_every_geometry(run, study, tmp_path):
    assert _featurize(run, study, tmp_path / "ds", "--bins", "2000x20,100x400").exit_code == 0
    ds = load_dataset(tmp_path / "ds")
    genes = ds.genes
    for geo in ds.geometries:
        w, n = geo["bin_size"], geo["n_bins"]
        arr = np.load(tmp_path / "ds" / geo["file"])
        for cell_i, cell in enumerate(ds.cell_lines):
            bw = pyBigWig.open(str(study["manifest"].parent / f"{cell}_H3K4me3.bw"))
            for g, r in enumerate(genes.itertuples()):
                h = n // 2
                lo = r.tss - h * w if r.strand == "+" else r.tss + 1 - (n - h) * w
                expected = np.zeros(n)
                for k in range(n):
                    a, b = lo + k * w, lo + (k + 1) * w
                    a_, b_ = max(a, 0), min(b, CHROMS[r.chrom])
                    if b_ > a_:
                        expected[k] = np.nansum(np.array(bw.values(r.chrom, a_, b_), dtype=float)) / w
                if r.strand == "-":
                    expected = expected[::-1]
                np.testing.assert_allclose(arr[g, cell_i, ds.assays.index("H3K4me3")], expected, rtol=1e-5, atol=1e-5)


def test_pairs_give_region_bins_centred_in_the_frame(run, study, tmp_path):
    result = _featurize(run, study, tmp_path / "ds", "--bins", "2000x20,500x80", "--pairs", study["pairs"])
    assert result.exit_code == 0, result.stderr
    assert "trans" in result.stderr and "clipped" in result.stderr
    ds = load_dataset(tmp_path / "ds")
    assert ds.has_regions
    table = ds.regions
    g0 = table[(table.gene_id == "G0") & (table.cell_line == "A")].sort_values("slot")
    assert list(g0["score"]) == [20.0, 12.5]  # slot 0 = the strongest contact
    shared_region = table[(table.start == 100_000) & (table.end == 103_500)]
    assert shared_region["region"].nunique() == 1 and set(shared_region["gene_id"]) == {"G0", "G1"}
    g6 = table[table.gene_id == "G6"].iloc[0]
    assert (g6.start, g6.end) == (127_500, 167_500)  # 55 kb clipped to 40 kb around its centre
    view = ds.region_view(ds.gene_index(["G0", "G6", "G2"]), np.zeros(3, int))
    batch = view[np.arange(3)]
    assert batch["present"].tolist() == [[True, True] + [False] * 6, [True] + [False] * 7, [False] * 8]
    assert batch["score"][0, :2].tolist() == [20.0, 12.5] and batch["score"][2].sum() == 0
    # 3.5 kb at 500 bp = 7 bins, centred in an 80-bin frame: left pad ceil(73 / 2) = 37
    mask = batch["500x80.mask"][0, 1]
    assert mask.sum() == 7 and mask[37:44].all()
    assert (batch["500x80"][0, 1][:, ~mask] == 0).all() and (batch["500x80"][2] == 0).all()
    raw = np.load(tmp_path / "ds" / "regions_500x80.npy")  # (cells, region bins, assays), no padding
    distinct = table.drop_duplicates("region").sort_values("region")
    counts = np.minimum(-(-(distinct["end"] - distinct["start"]).to_numpy() // 500), 80)
    assert raw.shape == (2, counts.sum(), 2)
    bw = pyBigWig.open(str(study["manifest"].parent / "A_H3K27ac.bw"))
    region = int(g0.iloc[1]["region"])
    first = int(counts[:region].sum())
    values = np.nan_to_num(np.array(bw.values("chr1", 100_000, 103_500), dtype=float))
    expected = [values[k * 500:(k + 1) * 500].mean() for k in range(7)]
    np.testing.assert_allclose(raw[0, first:first + 7, ds.assays.index("H3K27ac")], expected, rtol=1e-5)
    geo = ds.geometry("500x80")["normalisation"]
    a = ds.assays.index("H3K27ac")
    z = (np.log1p(np.array(expected)) - geo["mean"][0][a]) / geo["sd"][0][a]
    np.testing.assert_allclose(batch["500x80"][0, 1, a, 37:44], z, rtol=1e-4, atol=1e-5)
    # 3.5 kb at 2000 bp: two bins (the second partial, averaged over its own 1.5 kb)
    assert batch["2000x20.mask"][0, 1].sum() == 2


@pytest.mark.parametrize("spec", ["100x", "0x5", "abc", "100x100,100x100", "5x0"])
def test_unreadable_bins_spec_is_one_line(run, study, tmp_path, spec):
    result = _featurize(run, study, tmp_path / "ds", "--bins", spec)
    assert_user_error(result, "--bins")
    assert not (tmp_path / "ds").exists()


def test_old_plain_bins_count_still_works(run, study, tmp_path):
    assert _featurize(run, study, tmp_path / "ds", "--bins", "40", "--bin-size", "50").exit_code == 0
    assert load_dataset(tmp_path / "ds").geometry_names == ["50x40"]
    assert_user_error(_featurize(run, study, tmp_path / "ds2", "--bins", "50x40", "--bin-size", "50"), "--bin-size")


def test_a_model_asking_for_a_missing_geometry_is_refused(run, study, tmp_path):
    pytest.importorskip("epx_torch", reason="the cnn backend is installed by scripts/install.sh with torch")
    assert _featurize(run, study, tmp_path / "ds", "--bins", "500x20").exit_code == 0
    result = run("train", tmp_path / "ds", "--model", "cnn", "--bins", "100x100", "--random", "2", "-o", tmp_path / "run")
    assert_user_error(result, "100x100", "--bins 500x20,100x100")
    assert not (tmp_path / "run").exists()


def test_pairs_errors_are_one_line_and_leave_nothing(run, study, tmp_path):
    bad = tmp_path / "bad.bedpe"
    bad.write_text("chr1\t59000\t62000\tchr1\t100000\t103500\t.\t12.5\nchr1\t59000\t62000\tchr1\t90000\t80000\t.\t3\n")
    assert_user_error(_featurize(run, study, tmp_path / "ds", "--pairs", bad), "bad.bedpe:2")
    nan = tmp_path / "nan.bedpe"
    nan.write_text("chr1\t59000\t62000\tchr1\t100000\t103500\t.\tnan\n")
    assert_user_error(_featurize(run, study, tmp_path / "ds", "--pairs", nan), "nan.bedpe:1")
    assert_user_error(_featurize(run, study, tmp_path / "ds", "--pairs", tmp_path / "missing.bedpe"), "missing.bedpe")
    assert_user_error(_featurize(run, study, tmp_path / "ds", "--pairs", f"Z={study['pairs']}"), "'Z'")
    assert not (tmp_path / "ds").exists()


def test_pairs_for_one_cell_line(run, study, tmp_path):
    assert _featurize(run, study, tmp_path / "ds", "--bins", "2000x20", "--pairs", f"B={study['pairs']}").exit_code == 0
    ds = load_dataset(tmp_path / "ds")
    assert set(ds.regions["cell_line"]) == {"B"}
    batch = ds.region_view(ds.gene_index(["G0", "G0"]), np.array([0, 1]))[np.arange(2)]
    assert batch["present"][0].sum() == 0 and batch["present"][1].sum() == 2


def test_region_layout_and_partial_bins():
    from epx.features.windows import ChromSignal, merge_windows, region_bins, region_layout

    n, left, offset = region_layout(np.array([0, 100, 5]), np.array([1000, 40_100, 5]), 300, 134)
    assert n.tolist() == [4, 134, 0] and left.tolist() == [65, 0, 67] and offset.tolist() == [0, 4, 138]
    # constant signal 2.0 on [0, 2000): every bin's mean is 2, the partial last bin included
    s, e, v = np.array([0]), np.array([2000]), np.array([2.0], np.float32)
    sig = ChromSignal(s, e, v, merge_windows(np.array([0]), np.array([2000])))
    got = region_bins(sig, None, np.array([100, 1500]), np.array([1100, 2500]), 300, 10)
    # [1500, 2500) at 300 bp: [1500, 1800) all signal, [1800, 2100) two thirds, then none
    assert got.tolist() == pytest.approx([2.0] * 4 + [2.0, 4 / 3, 0.0, 0.0])
