"""The split contract: schemes, cross-cell, determinism, the fold iterator and bad options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error

from epx.io.genes import read_genes
from epx.split import iter_folds, make_split, read_split


def _no_leak(split: pd.DataFrame) -> None:
    """Train and test of each fold never share a gene or a chromosome."""
    for f in iter_folds(split):
        train, test = split.iloc[f.train], split.iloc[f.test]
        assert not set(train["gene_id"]) & set(test["gene_id"]), f.name
        assert not set(train["chrom"]) & set(test["chrom"]), f.name


def test_loco_cli_writes_split_and_summary(tmp_path, small_genes, run):
    labels = tmp_path / "y.tsv"
    labels.write_text("gene_name\tgex\n" + "".join(f"G{i:03d}\t{i % 3}\n" for i in range(30)))
    out = tmp_path / "split.tsv"
    result = run("split", small_genes, "--loco", "--labels", f"X1={labels}", "-o", out)
    assert result.exit_code == 0, result.stderr
    split = read_split(out)
    assert len(split) == 30 and set(split["cell_line"]) == {"X1"}
    folds = list(iter_folds(split))
    assert [f.name for f in folds] == ["chr1", "chr2", "chr3", "chr4", "chr5", "chrX"]
    assert [len(f.test) for f in folds] == [10, 4, 4, 4, 4, 4]
    _no_leak(split)
    assert "chr1" in result.stdout and "test >0" in result.stdout and "65.4%" in result.stdout
    # never overwrite without --force
    again = run("split", small_genes, "--loco", "-o", out)
    assert_user_error(again, str(out), "--force")
    assert run("split", small_genes, "--chr-kfold", "2", "-o", out, "--force").exit_code == 0
    assert read_split(out)["fold"].str.startswith("k").all()


def test_chr_kfold_balanced_and_deterministic(small_genes):
    genes = read_genes(small_genes)
    a = make_split(genes, "chr-kfold", k=3, seed=7)
    b = make_split(genes, "chr-kfold", k=3, seed=7)
    assert a.equals(b)
    sizes = sorted(len(f.test) for f in iter_folds(a))
    assert sizes == [8, 10, 12] or max(sizes) - min(sizes) <= 4  # chr1 (10) alone; 4+4, 4+4+... balanced
    assert sum(sizes) == 30
    _no_leak(a)
    # whole chromosomes stay together
    assert (a.groupby("chrom")["fold"].nunique() == 1).all()


def test_random_folds_warn_and_are_seeded(small_genes, tmp_path, run):
    genes = read_genes(small_genes)
    a = make_split(genes, "random", k=5, seed=1)
    assert a.equals(make_split(genes, "random", k=5, seed=1))
    assert not a.equals(make_split(genes, "random", k=5, seed=2))
    assert sorted(a["fold"].value_counts().tolist()) == [6] * 5
    result = run("split", small_genes, "--random", "5", "-o", tmp_path / "s.tsv")
    assert result.exit_code == 0 and "leakage" in result.stderr


def test_holdout_ml4g_protocol_cross_cell(small_genes):
    genes = read_genes(small_genes)
    split = make_split(genes, "holdout", valid_chroms=["chr2", "3"], test_chroms=["chr1"],
                       train_cells=["X1", "X2"], test_cells=["X3"])
    roles = split.groupby(["cell_line", "role"]).size().to_dict()
    assert roles == {("X1", "test"): 10, ("X1", "train"): 12, ("X1", "valid"): 8,
                     ("X2", "test"): 10, ("X2", "train"): 12, ("X2", "valid"): 8,
                     ("X3", "none"): 20, ("X3", "test"): 10}
    (fold,) = list(iter_folds(split))
    assert set(split.iloc[fold.train]["cell_line"]) == {"X1", "X2"}
    assert set(split.iloc[fold.train]["chrom"]) == {"chr4", "chr5", "chrX"}
    assert set(split.iloc[fold.valid]["chrom"]) == {"chr2", "chr3"}


def test_cross_cell_loco_trains_on_train_cells_only(small_genes):
    genes = read_genes(small_genes)
    split = make_split(genes, "loco", train_cells=["X1"], test_cells=["X2"], test_chroms=["chrX"])
    for f in iter_folds(split):
        assert set(split.iloc[f.train]["cell_line"]) == {"X1"}
        test = split.iloc[f.test]
        assert set(test.loc[test["cell_line"] == "X2", "chrom"]) == {f.name, "chrX"}
    assert "chrX" not in {f.name for f in iter_folds(split)}
    _no_leak(split)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--chr-kfold", "7"], ["would leave a fold empty", "6 chromosome"]),
        (["--loco", "--test", "chr9"], ["chr9", "have no genes"]),
        (["--holdout", "chr1,chr2,chr3,chr4,chr5,chrX"], ["no training genes"]),
        (["--loco", "--random", "3"], ["exactly one of"]),
        ([], ["exactly one of"]),
        (["--loco", "--train-cells", "X1", "--test-cells", "X1"], ["both --train-cells and --test-cells"]),
        (["--random", "31"], ["would leave a fold empty"]),
    ],
    ids=["kfold-too-many", "unknown-test-chrom", "holdout-no-train", "two-schemes", "no-scheme", "cell-overlap", "random-too-many"],
)
def test_bad_split_options(tmp_path, small_genes, run, args, fragments):
    out = tmp_path / "split.tsv"
    result = run("split", small_genes, *args, "-o", out)
    assert_user_error(result, *fragments)
    assert not out.exists()


def test_split_file_that_is_not_a_split(tmp_path):
    bad = tmp_path / "s.tsv"
    bad.write_text("gene_id\tfold\nA\t1\n")
    with pytest.raises(Exception, match="missing column"):
        read_split(bad)


@pytest.mark.shared_data
def test_ml4g_holdout_on_real_tables(shared, tmp_path, run):
    d = shared / "ml4g_cage"
    genes = read_genes([d / "X1_train_info.tsv", d / "X1_val_info.tsv", d / "X3_test_info.tsv"])
    split = make_split(genes, "holdout", valid_chroms=["chr14", "chr19"], test_chroms=["chr1"],
                       train_cells=["X1", "X2"], test_cells=["X3"])
    x3 = split[(split["cell_line"] == "X3") & (split["role"] == "test")]
    assert len(x3) == 1984
    x1 = split[split["cell_line"] == "X1"]
    assert (x1["role"] == "valid").sum() == 1974 and (x1["role"] == "train").sum() == 14310
    kfold = make_split(genes, "chr-kfold", k=5, test_chroms=["chr1"])
    sizes = np.array([len(f.test) - 1984 for f in iter_folds(kfold)])
    assert sizes.max() / sizes.min() < 1.1  # balanced by gene count
