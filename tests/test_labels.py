"""Labels and the derived targets computed in one place."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_user_error

from epx.io.genes import read_genes
from epx.io.labels import derive_target, read_labels


def test_derived_targets():
    v = np.array([0.0, 0.0, 5.0, 10.0, 2.0])
    assert derive_target(v, "raw").tolist() == v.tolist()
    np.testing.assert_allclose(derive_target(v, "log1p"), np.log1p(v))
    # average ties: the two zeros share rank 1.5 -> (1.5-1)/4
    np.testing.assert_allclose(derive_target(v, "rank"), [0.125, 0.125, 0.75, 1.0, 0.5])
    assert derive_target(v, "nonzero").tolist() == [0, 0, 1, 1, 1]
    assert derive_target(v, "binary").tolist() == [0, 0, 1, 1, 0]  # median is 2
    with pytest.raises(Exception, match="unknown target"):
        derive_target(v, "zscore")


def test_labels_by_name_or_id(tmp_path, small_genes):
    genes = read_genes(small_genes)
    labels = tmp_path / "X1_train_y.tsv"
    labels.write_text("gene_name\tgex\nG001\t3.5\nG000\t0.0\n")
    s = read_labels(labels, genes)
    assert s.to_dict() == {"G000": 0.0, "G001": 3.5}  # gene-table order
    headerless = tmp_path / "x.csv"
    headerless.write_text("G002,7\n")
    assert read_labels(headerless, genes).to_dict() == {"G002": 7.0}


def test_labels_naming_unknown_genes(tmp_path, small_genes, run):
    labels = tmp_path / "y.tsv"
    labels.write_text("gene_name\tgex\nG000\t1\nNOPE\t2\n")
    result = run("check", "--genes", small_genes, "--labels", f"X1={labels}")
    assert_user_error(result, f"{labels}:3", "'NOPE' is not in the gene table")


def test_labels_non_numeric_and_bad_option(tmp_path, small_genes, run):
    labels = tmp_path / "y.tsv"
    labels.write_text("gene_name\tgex\nG000\t1\nG001\tabc\n")
    assert_user_error(run("check", "--genes", small_genes, "--labels", f"X1={labels}"), f"{labels}:3", "non-numeric")
    assert_user_error(run("check", "--genes", small_genes, "--labels", str(labels)), "CELL=FILE")


@pytest.mark.shared_data
def test_real_ml4g_labels(shared):
    genes = read_genes([shared / "ml4g_cage" / "X1_train_info.tsv", shared / "ml4g_cage" / "X1_val_info.tsv"])
    y = read_labels(shared / "ml4g_cage" / "X1_train_y.tsv", genes)
    assert len(y) == 14310
    assert 0.55 < (y == 0).mean() < 0.61  # the seed README: 58% zeros in X1


def test_versioned_ids_and_bed_header(tmp_path):
    bed = tmp_path / "genes.bed"
    bed.write_text("chrom\tstart\tend\tname\tscore\tstrand\nchr1\t100\t900\tENSG01\t0\t+\nchr1\t1000\t2000\tENSG02\t0\t-\n")
    genes = read_genes(bed)
    assert genes["gene_id"].tolist() == ["ENSG01", "ENSG02"]
    labels = tmp_path / "rpkm.tsv"
    labels.write_text("gene_id\trpkm\nENSG01.7\t2.5\nENSG02.3\t0\n")
    assert read_labels(labels, genes).to_dict() == {"ENSG01": 2.5, "ENSG02": 0.0}
