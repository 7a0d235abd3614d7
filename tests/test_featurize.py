"""epx featurize: the dataset directory contract, normalisation, no-op re-runs and bad tracks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyBigWig
import pytest
from conftest import assert_user_error, demo_labels, write_bigwig, write_ml4g
from scipy.stats import spearmanr

import epx
from epx.features.derived import feature_catalogue
from epx.featurize import FeaturizeParams


def test_dataset_contract(demo_dataset):
    ds = epx.load_dataset(demo_dataset)
    meta = json.loads((demo_dataset / "dataset.json").read_text())
    assert meta["epx_version"] == epx.__version__ and meta["cell_lines"] == ["X1", "X2", "X3"]
    assert meta["assays"] == ["H3K27ac", "H3K4me3", "H3K27me3", "H3K36me3", "H3K4me1", "H3K9me3", "DNase"]
    assert all(t["size"] > 0 and len(t["blake2b"]) == 32 for t in meta["fingerprint"]["tracks"])
    n = len(ds.genes)
    feats = ds.features()
    assert len(feats) == 3 * n and list(feats.columns[:2]) == ["gene_id", "cell_line"]
    assert set(ds.feature_names) == {name for name, _ in feature_catalogue(ds.assays, ds.assays, FeaturizeParams())}
    # stable, self-describing names
    for name in ("H3K27ac.bw.tss.mean", "H3K4me3.bw.body.slope", "DNase.bed.promoter.n_peaks",
                 "H3K4me3.bed.tss.distance", "balance.H3K27ac_minus_H3K27me3", "bivalency.H3K4me3_x_H3K27me3",
                 "index.activation", "promoter.coherence_with_body", "DNase.x.signal_per_peak_density", "tss.to_5prime_rel"):
        assert name in ds.feature_names, name
    bins = ds.bins()
    assert bins.shape == (n, 3, 7, 100) and bins.dtype == np.float32 and isinstance(bins, np.memmap)
    assert ds.bins_coverage().shape == bins.shape
    # log1p + z-score per cell line: each feature ~ mean 0, sd 1 within a cell line
    x1 = feats[feats["cell_line"] == "X1"]["H3K4me3.bw.promoter.mean0"].to_numpy()
    assert abs(x1.mean()) < 1e-4 and abs(x1.std() - 1) < 1e-3
    nb = ds.bins(normalised=True)
    assert np.isfinite(nb).all() and abs(float(nb[:, 0, 1].mean())) < 1e-3


def test_features_carry_signal(demo_dataset):
    ds = epx.load_dataset(demo_dataset)
    table = ds.features(raw=True).merge(ds.labels, on=["gene_id", "cell_line"])
    x1 = table[table["cell_line"] == "X1"]
    assert spearmanr(x1["H3K4me3.bw.promoter.mean0"], x1["value"]).statistic > 0.4
    assert spearmanr(x1["H3K27me3.bw.promoter.mean0"], x1["value"]).statistic < 0
    # X3's BED files use Ensembl names ("1"); aliasing must still find its peaks
    x3 = table[table["cell_line"] == "X3"]
    assert (x3["H3K4me3.bed.promoter.n_peaks"] > 0).mean() > 0.2


def test_bins_follow_strand(demo_dataset):
    """Promoter marks peak just downstream of the TSS: bin 50+ on either strand after orientation."""
    ds = epx.load_dataset(demo_dataset)
    bins = np.asarray(ds.bins()[:, 0, 1])  # X1, H3K4me3
    for strand in "+-":
        rows = (ds.genes["strand"] == strand).to_numpy()
        profile = bins[rows].mean(axis=0)
        assert profile[50:55].mean() > profile[40:45].mean(), strand


def test_rerun_is_noop_and_force_rebuilds(demo_study, demo_dataset, run, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(demo_dataset, out)
    args = ["featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
            *demo_labels(demo_study), "-o", out]
    before = (out / "features.parquet").stat().st_mtime_ns
    result = run(*args)
    assert result.exit_code == 0 and "up to date" in result.stderr
    assert (out / "features.parquet").stat().st_mtime_ns == before
    changed = run(*args, "--tss-window", "200")
    assert_user_error(changed, str(out), "--force")
    assert run(*args, "--tss-window", "200", "--no-bins", "--force").exit_code == 0
    ds = epx.load_dataset(out)
    assert not ds.has_binned and ds.meta["params"]["tss_window"] == 200


def test_list_features(run, demo_study):
    result = run("featurize", "--list-features")
    lines = result.stdout.splitlines()
    assert result.exit_code == 0 and len(lines) > 300
    assert any(line.startswith("H3K27ac.bw.tss.mean\t") and "100 bp downstream" in line for line in lines)
    assert all("\t" in line and line.split("\t")[1] for line in lines)


def _mini(tmp_path, *, bw_bytes: bytes | None = None, bed_lines: list[str] | None = None):
    genes = write_ml4g(tmp_path / "genes.tsv", [
        ("A", "chr1", 1000, 5000, 1000, 1050, "+"),
        ("B", "chr1", 8000, 9990, 9940, 9990, "-"),  # its windows run off the chromosome end
        ("C", "chr2", 500, 2500, 500, 550, "+"),
    ])
    bw = tmp_path / "k4.bw"
    if bw_bytes is None:
        write_bigwig(bw, {"chr1": 10_000, "chr2": 5_000}, [("chr1", 900, 1200, 4.0), ("chr1", 9900, 10_000, 2.0)])
    else:
        bw.write_bytes(bw_bytes)
    bed = tmp_path / "k4.bed"
    bed.write_text("\n".join(bed_lines or ["track name=x", "browser position chr1", "#c", "1\t950\t1100\tp\t0\t.\t5\t-1\t-1\t50"]) + "\n")
    manifest = tmp_path / "m.tsv"
    manifest.write_text("cell_line\tassay\tkind\tpath\nC1\tH3K4me3\tbigwig\tk4.bw\nC1\tH3K4me3\tbed\tk4.bed\n"
                        "C2\tH3K4me3\tbed\tk4.bed\n")
    return genes, manifest


def test_small_study_edges(tmp_path, run):
    genes, manifest = _mini(tmp_path)
    out = tmp_path / "ds"
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", out, "--workers", "1")
    assert result.exit_code == 0, result.stderr
    ds = epx.load_dataset(out)
    f = ds.features(raw=True).set_index(["gene_id", "cell_line"])
    bw = pyBigWig.open(str(tmp_path / "k4.bw"))
    # gene A: one-sided TSS window [1000, 1100) is fully covered by the 4.0 interval
    assert f.loc[("A", "C1"), "H3K4me3.bw.tss.mean"] == pytest.approx(bw.stats("chr1", 1000, 1100, exact=True)[0])
    # gene B (- strand, TSS 9989): promoter [8990, 10990) clipped at the chromosome end (10 kb)
    assert f.loc[("B", "C1"), "H3K4me3.bw.promoter.mean"] == pytest.approx(2.0)
    assert f.loc[("B", "C1"), "H3K4me3.bw.promoter.coverage"] == pytest.approx(100 / (10_000 - 8990))
    # gene C: chr2 has no data -> NaN mean, zero coverage, not a crash
    assert np.isnan(f.loc[("C", "C1"), "H3K4me3.bw.tss.mean"]) and f.loc[("C", "C1"), "H3K4me3.bw.tss.coverage"] == 0
    # Ensembl-named BED ("1") matched to chr1 genes; headers skipped
    assert f.loc[("A", "C1"), "H3K4me3.bed.tss.n_peaks"] == 1
    assert f.loc[("A", "C1"), "H3K4me3.bed.tss.distance"] == 0
    # C2 has no bigWig: its bigWig features are NaN and its bins zero with zero coverage
    assert f.loc[("A", "C2"), ["H3K4me3.bw.tss.mean", "H3K4me3.bw.body.max"]].isna().all()
    assert f.loc[("A", "C2"), "H3K4me3.bed.tss.n_peaks"] == 1
    assert float(np.abs(ds.bins()[:, 1]).sum()) == 0 and float(ds.bins_coverage()[:, 1].sum()) == 0


@pytest.mark.parametrize(
    "bed_lines, fragments",
    [
        (["chr1\t100"], ["k4.bed:1", "column"]),
        (["chr1\t100\t200", "chr1\tx\t300"], ["k4.bed:2"]),
        (["chr1\t-5\t200"], ["k4.bed:1", "negative"]),
        (["chr1\t500\t200"], ["k4.bed:1", "start"]),
    ],
    ids=["too-few-columns", "non-integer", "negative", "start-after-end"],
)
def test_bad_bed_lines(tmp_path, run, bed_lines, fragments):
    genes, manifest = _mini(tmp_path, bed_lines=bed_lines)
    out = tmp_path / "ds"
    result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", out, "--workers", "1")
    assert_user_error(result, *fragments)
    assert not out.exists() and not list(tmp_path.glob(".ds*"))


def test_truncated_and_fake_bigwig(tmp_path, run):
    write_bigwig(tmp_path / "good.bw", {"chr1": 10_000}, [("chr1", 0, 5000, 1.0)])
    data = (tmp_path / "good.bw").read_bytes()
    for name, payload in (("truncated", data[: len(data) // 3]), ("fake", b"#bedGraph\nchr1\t0\t10\t1\n" * 10)):
        d = tmp_path / name
        d.mkdir()
        genes, manifest = _mini(d, bw_bytes=payload)
        out = d / "ds"
        result = run("featurize", "--genes", genes, "--manifest", manifest, "-o", out, "--workers", "2")
        assert_user_error(result, "k4.bw")
        assert not out.exists()


@pytest.mark.shared_data
def test_real_chr21_h3k4me3(shared, tmp_path, run):
    d = shared / "enrichedheatmap_chr21"
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"cell_line\tassay\tkind\tpath\nlung\tH3K4me3\tbigwig\t{d / 'chr21_H3K4me3_coverage_hg19.bw'}\n")
    out = tmp_path / "ds"
    result = run("featurize", "--genes", d / "chr21_genes_hg19.bed", "--manifest", manifest,
                 "--labels", f"lung={d / 'chr21_rpkm.tsv'}", "-o", out)
    assert result.exit_code == 0, result.stderr
    ds = epx.load_dataset(out)
    table = ds.features(raw=True).merge(ds.labels, on=["gene_id", "cell_line"])
    assert len(table) == 720
    rho = spearmanr(table["H3K4me3.bw.promoter.mean0"], table["value"]).statistic
    assert rho > 0.55, rho
    assert pd.Series(ds.labels["value"] == 0).sum() == 305


def test_assay_and_cell_selection_with_completion(demo_study, run, tmp_path):
    env = {"_EPX_COMPLETE": "complete_bash", "COMP_CWORD": "5"}
    line = f"epx featurize --manifest {demo_study / 'manifest.tsv'} --assays H3K4me3,H3K27"
    got = run(env={**env, "_TYPER_COMPLETE_ARGS": line, "COMP_WORDS": line}).stdout.split()
    assert got == ["H3K4me3,H3K27ac", "H3K4me3,H3K27me3"]
    out = tmp_path / "ds"
    result = run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                 "--assays", "H3K4me3,DNase", "--cells", "X1", "--no-bins", "-o", out)
    assert result.exit_code == 0, result.stderr
    ds = epx.load_dataset(out)
    assert ds.assays == ["H3K4me3", "DNase"] and ds.cell_lines == ["X1"]
    assert_user_error(run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                          "--assays", "H3K99", "-o", tmp_path / "x"), "no assay H3K99", "H3K4me3")


def test_split_of_a_dataset(demo_dataset, run, tmp_path):
    out = tmp_path / "split.tsv"
    result = run("split", demo_dataset, "--chr-kfold", "3", "--train-cells", "X1,X2", "--test-cells", "X3", "-o", out)
    assert result.exit_code == 0, result.stderr
    split = pd.read_csv(out, sep="\t")
    assert set(split["cell_line"]) == {"X1", "X2", "X3"}
    assert set(split.loc[split["cell_line"] == "X3", "role"]) == {"test"}


def test_dataset_fold_access(demo_dataset):
    from epx.split import make_split

    ds = epx.load_dataset(demo_dataset)
    split = make_split(ds.genes, "loco")
    parts = ds.fold(split, "chr2")
    assert set(parts["test"]["gene_id"]) == set(ds.genes.loc[ds.genes["chrom"] == "chr2", "gene_id"])
    assert "chr2" not in set(ds.genes.set_index("gene_id").loc[parts["train"]["gene_id"], "chrom"])
    assert set(parts["train"]["cell_line"]) == {"X1", "X2", "X3"} and parts["train"]["value"].notna().all()
    from epx.errors import DatasetError

    with pytest.raises(DatasetError, match="no fold"):
        ds.fold(split, "chr99")


def test_debug_shows_traceback(run, tmp_path):
    result = run("--debug", "check", "--genes", tmp_path / "missing.tsv")
    assert result.exit_code == 2 and "Traceback" in result.stderr and "not found" in result.stderr
