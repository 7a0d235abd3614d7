"""Regression tests for inputs real users hit (found in review): each fails loudly or works."""

from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
from conftest import assert_user_error, write_bigwig, write_ml4g

import epx
from epx.io.genes import read_genes
from epx.io.labels import read_labels


def test_holdout_without_test_rows_scores_validation(demo_dataset, run, tmp_path):
    out = tmp_path / "r"
    result = run("train", demo_dataset, "--model", "ridge", "--holdout", "chr2", "-o", out)
    assert result.exit_code == 0, result.stderr
    test = pd.read_parquet(out / "test.parquet")
    assert set(test["chrom"]) == {"chr2"} and test["y_true"].notna().all()


def test_holdout_cross_cell_from_a_split_file(demo_dataset, demo_study, run, tmp_path):
    split = tmp_path / "s.tsv"
    assert run("split", demo_study / "genes.tsv", "--holdout", "chr2", "-o", split).exit_code == 0
    out = tmp_path / "r"
    result = run("train", demo_dataset, "--model", "ridge", "--split", split, "--train-cells", "X1,X2",
                 "--predict-cells", "X3", "-o", out)
    assert result.exit_code == 0, result.stderr
    test = pd.read_parquet(out / "test.parquet")
    assert set(test.loc[test["cell_line"] == "X3", "chrom"]) == {"chr2"}
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--split", split, "--test", "chr3",
                          "-o", tmp_path / "r2"), "--test")


def test_stack_refuses_mixed_targets_and_duplicates(demo_dataset, run, tmp_path):
    for target in ("raw", "log1p"):
        assert run("train", demo_dataset, "--model", "ridge", "--chr-kfold", "3", "--target", target,
                   "-o", tmp_path / target).exit_code == 0
    assert_user_error(run("stack", tmp_path / "raw", tmp_path / "log1p", "--rule", "mean", "-o", tmp_path / "s"),
                      "different targets")
    assert_user_error(run("stack", tmp_path / "raw", tmp_path / "raw", "--rule", "mean", "-o", tmp_path / "s"),
                      "listed twice")
    assert not (tmp_path / "s").exists()


def test_stack_of_holdout_runs_scores_test_rows(demo_dataset, run, tmp_path):
    for name, alpha in (("a", "1"), ("b", "50")):
        assert run("train", demo_dataset, "--model", "ridge", "--holdout", "chr2", "--test", "chr1",
                   "-p", f"alpha={alpha}", "-o", tmp_path / name).exit_code == 0
    result = run("stack", tmp_path / "a", tmp_path / "b", "--rule", "mean", "-o", tmp_path / "s")
    assert result.exit_code == 0, result.stderr
    assert "Test metrics" in result.stdout and "stack (mean)" in result.stdout
    assert_user_error(run("stack", tmp_path / "a", tmp_path / "b", "--rule", "nnls", "-o", tmp_path / "n"), "nnls")


def test_force_never_replaces_a_directory_or_the_dataset(small_genes, demo_dataset, run, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.txt").write_text("precious")
    assert_user_error(run("split", small_genes, "--loco", "-o", victim, "--force"), "is a directory")
    assert (victim / "data.txt").read_text() == "precious"
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--loco", "-o", demo_dataset, "--force"),
                      "is the input")
    assert epx.load_dataset(demo_dataset).has_tabular


def test_outputs_follow_the_umask(small_genes, run, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "split.tsv"
        assert run("split", small_genes, "--loco", "-o", out).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_labels_edge_cases(tmp_path, small_genes, run):
    header_only = tmp_path / "h.tsv"
    header_only.write_text("gene_name\tgex\n")
    assert_user_error(run("check", "--genes", small_genes, "--labels", f"X1={header_only}"), "no data rows")
    ok = tmp_path / "ok.tsv"
    ok.write_text("gene_name\tgex\nG000\t1\n")
    assert_user_error(run("check", "--genes", small_genes, "--labels", f"X1={ok}", "--labels", f"X1={ok}"),
                      "'X1' twice")
    # a name shared by two genes blocks only labels that use it
    gtf = tmp_path / "g.gtf"
    gtf.write_text(
        'chr1\tX\tgene\t101\t900\t.\t+\t.\tgene_id "E1"; gene_name "Y_RNA";\n'
        'chr2\tX\tgene\t101\t900\t.\t-\t.\tgene_id "E2"; gene_name "Y_RNA";\n'
        'chr3\tX\tgene\t6\t90\t.\t+\t.\tgene_id "E3"; gene_name "ACTB";\n'
    )
    g = read_genes(gtf)
    by_name = tmp_path / "n.tsv"
    by_name.write_text("gene_name\tgex\nACTB\t5\n")
    assert read_labels(by_name, g).to_dict() == {"E3": 5.0}
    by_name.write_text("gene_name\tgex\nACTB\t5\nY_RNA\t1\n")
    assert_user_error(run("check", "--genes", gtf, "--labels", f"X1={by_name}"), "several genes", "gene_id")


def test_bed_gene_table_with_tss_named_gene(tmp_path):
    bed = tmp_path / "g.bed"
    bed.write_text("chr1\t1000\t5000\tTSSC4\t0\t+\nchr1\t6000\t9000\tACTB\t0\t-\n")
    assert read_genes(bed)["gene_id"].tolist() == ["TSSC4", "ACTB"]


def test_dot_in_assay_name_is_refused(tmp_path, small_genes, run):
    write_bigwig(tmp_path / "k.bw", {"chr1": 100_000}, [("chr1", 0, 100, 1.0)])
    m = tmp_path / "m.tsv"
    m.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K27ac.rep1\tbigwig\tk.bw\n")
    assert_user_error(run("check", "--genes", small_genes, "--manifest", m), f"{m}:2", "H3K27ac.rep1")


def test_chromosome_missing_from_a_bigwig_is_nan_not_zero(tmp_path, run):
    genes = write_ml4g(tmp_path / "genes.tsv", [("A", "chr1", 1000, 5000, 1000, 1050, "+"),
                                                ("B", "chr2", 1000, 5000, 1000, 1050, "+")])
    write_bigwig(tmp_path / "k.bw", {"chr1": 100_000}, [("chr1", 900, 1500, 3.0)])
    m = tmp_path / "m.tsv"
    m.write_text("cell_line\tassay\tkind\tpath\nX1\tH3K4me3\tbigwig\tk.bw\n")
    out = tmp_path / "ds"
    result = run("featurize", "--genes", genes, "--manifest", m, "-o", out, "--workers", "1")
    assert result.exit_code == 0 and "get NaN features" in result.stderr
    f = epx.load_dataset(out).features(raw=True).set_index("gene_id")
    assert f.loc["A", "H3K4me3.bw.tss.mean0"] == 3.0
    assert np.isnan(f.loc["B", ["H3K4me3.bw.tss.mean0", "H3K4me3.bw.body.sum", "H3K4me3.tss_minus_body"]].astype(float)).all()


def test_no_labelled_training_cell(demo_study, run, tmp_path):
    ds = tmp_path / "ds"
    assert run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
               "--cells", "X1", "--assays", "H3K4me3", "--no-bins", "-o", ds).exit_code == 0
    assert_user_error(run("train", ds, "--model", "ridge", "--loco", "-o", tmp_path / "r"), "no labelled cell line")
