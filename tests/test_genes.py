"""Gene tables: every supported format read into the canonical table, and every bad input."""

from __future__ import annotations

import gzip

import pytest
from conftest import assert_user_error, write_ml4g

from epx.io.genes import GENE_COLUMNS, detect_format, read_genes


def test_ml4g_tss_follows_strand(tmp_path):
    path = write_ml4g(tmp_path / "g.tsv", [
        ("A", "chr2", 100, 900, 100, 150, "+"),
        ("B", "chr2", 1000, 5000, 4950, 5000, "-"),
    ])
    genes = read_genes(path)
    assert list(genes.columns) == GENE_COLUMNS
    assert genes.set_index("gene_id")["tss"].to_dict() == {"A": 100, "B": 4999}
    assert detect_format(path) == "ml4g"


def test_bed6_gtf_and_tss_tsv(tmp_path):
    bed = tmp_path / "g.bed"
    bed.write_text("track name=genes\n1\t100\t500\tA\t0\t+\n1\t600\t900\tB\t3.5\t-\nMT\t5\t50\tC\t0\t+\n")
    genes = read_genes(bed)
    assert genes["chrom"].tolist() == ["chr1", "chr1", "chrM"]  # Ensembl names canonicalised
    assert genes["tss"].tolist() == [100, 899, 5]

    gtf = tmp_path / "g.gtf.gz"
    with gzip.open(gtf, "wt") as fh:
        fh.write('#!genome-build GRCh38\n')
        fh.write('chr1\tHAVANA\tgene\t11869\t14409\t.\t+\t.\tgene_id "ENSG1.5"; gene_name "DDX11L1";\n')
        fh.write('chr1\tHAVANA\texon\t11869\t12227\t.\t+\t.\tgene_id "ENSG1.5"; gene_name "DDX11L1";\n')
        fh.write('chr1\tHAVANA\tgene\t14404\t29570\t.\t-\t.\tgene_id "ENSG2.5"; gene_name "WASH7P";\n')
    genes = read_genes(gtf)
    assert genes[["gene_id", "gene_name", "start", "end", "tss"]].values.tolist() == [
        ["ENSG1.5", "DDX11L1", 11868, 14409, 11868],
        ["ENSG2.5", "WASH7P", 14403, 29570, 29569],
    ]

    tsv = tmp_path / "tss.tsv"
    tsv.write_text("gene_id\tgene_name\tchrom\tstrand\ttss\nE1\tA\t2\t+\t1001\nE2\tB\tchr2\t-\t5000\n")
    genes = read_genes(tsv)
    assert genes["tss"].tolist() == [1000, 4999]  # 1-based TSS column -> 0-based


def test_per_build_columns_need_build(tmp_path, run):
    tsv = tmp_path / "two_builds.tsv"
    tsv.write_text(
        "gene_name\tgene_id\tchr_hg38\tstart_hg38\tend_hg38\tstrand_hg38\ttss_hg38\tchr_hg19\ttss_hg19\n"
        "A\tE1\t1\t1001\t3000\t+\t1001\tchr1\t901\n"
        "B\tE2\t1\t5001\t9000\t-\t9000\tNA\tNA\n"
    )
    result = run("check", "--genes", tsv)
    assert_user_error(result, str(tsv), "--build")
    hg38 = read_genes(tsv, build="hg38")
    assert hg38["tss"].tolist() == [1000, 8999]
    hg19 = read_genes(tsv, build="hg19")  # unmapped gene dropped; body shifted with the TSS
    assert hg19[["gene_id", "start", "end", "tss"]].values.tolist() == [["E1", 900, 2900, 900]]


def test_several_tables_are_concatenated(tmp_path):
    a = write_ml4g(tmp_path / "a.tsv", [("A", "chr2", 100, 900, 100, 150, "+")])
    b = write_ml4g(tmp_path / "b.tsv", [("A", "chr2", 100, 900, 100, 150, "+"), ("B", "chr1", 5, 90, 5, 55, "+")])
    assert read_genes([a, b])["gene_id"].tolist() == ["A", "B"]


@pytest.mark.parametrize(
    "rows, fragments",
    [
        ([("A", "chr2", 100, 900, 100, 150, "*")], ["g.tsv:2", "'A'", "unknown strand '*'"]),
        ([("A", "chr2", 100, 900, 100, 150, "+"), ("B", "chr2", 990, 900, 990, 999, "+")],
         ["g.tsv:3", "'B'", "start 990 > end 900"]),
        ([("A", "chr2", 100, 900, 100, 150, "+"), ("A", "chr3", 100, 900, 100, 150, "+")],
         ["duplicate gene id 'A'", "g.tsv:2", "g.tsv:3"]),
        ([("A", "chr2", "1e9x", 900, 100, 150, "+")], ["g.tsv:2", "'A'", "non-numeric gene_start '1e9x'"]),
    ],
    ids=["unknown-strand", "start-after-end", "duplicate-id", "non-numeric"],
)
def test_bad_gene_tables(tmp_path, run, rows, fragments):
    path = write_ml4g(tmp_path / "g.tsv", rows)
    out = tmp_path / "split.tsv"
    result = run("split", path, "--loco", "-o", out)
    assert_user_error(result, *fragments)
    assert not out.exists()


def test_missing_columns_and_missing_file(tmp_path, run):
    path = tmp_path / "g.tsv"
    path.write_text("gene_name\tchr\tgene_start\tgene_end\tTSS_start\tstrand\nA\tchr1\t1\t9\t1\t+\n")
    assert_user_error(run("check", "--genes", path), str(path), "missing column(s) TSS_end")
    assert_user_error(run("check", "--genes", tmp_path / "nope.tsv"), "nope.tsv", "not found")


def test_unknown_format(tmp_path, run):
    path = tmp_path / "g.txt"
    path.write_text("hello world\nfoo bar\n")
    assert_user_error(run("check", "--genes", path), str(path), "cannot tell the gene-table format")


@pytest.mark.shared_data
def test_real_gene_tables(shared):
    ml4g = read_genes([shared / "ml4g_cage" / f for f in ("X1_train_info.tsv", "X1_val_info.tsv", "X3_test_info.tsv")])
    assert len(ml4g) == 14310 + 1974 + 1984
    assert set(ml4g.loc[ml4g["chrom"] == "chr1", "gene_id"]) == set(
        read_genes(shared / "ml4g_cage" / "X3_test_info.tsv")["gene_id"]
    )
    bed = read_genes(shared / "enrichedheatmap_chr21" / "chr21_genes_hg19.bed")
    assert len(bed) == 720 and set(bed["chrom"]) == {"chr21"}
    gtf = read_genes(shared / "gene_annotation" / "gencode_v29_chr1_head.gtf.gz")
    assert gtf.iloc[0][["gene_name", "start", "tss"]].tolist() == ["DDX11L1", 11868, 11868]
    hg19 = read_genes(shared / "gene_annotation" / "genes_hg38_hg19.tsv", build="hg19")
    hg38 = read_genes(shared / "gene_annotation" / "genes_hg38_hg19.tsv", build="hg38")
    assert len(hg38) == 58302 and 55000 < len(hg19) < len(hg38)
    assert (hg19["start"] <= hg19["end"]).all()


def test_bom_and_crlf(tmp_path, run):
    """Spreadsheet exports: a UTF-8 byte-order mark and Windows line endings."""
    genes = tmp_path / "g.tsv"
    genes.write_bytes(b"\xef\xbb\xbfgene_name\tchr\tgene_start\tgene_end\tTSS_start\tTSS_end\tstrand\r\n"
                      b"A\tchr1\t100\t900\t100\t150\t+\r\nB\tchr2\t100\t900\t850\t900\t-\r\n")
    labels = tmp_path / "y.tsv"
    labels.write_bytes(b"\xef\xbb\xbfgene_name\tgex\r\nA\t1.5\r\nB\t0\r\n")
    assert read_genes(genes)["strand"].tolist() == ["+", "-"]
    result = run("check", "--genes", genes, "--labels", f"X1={labels}")
    assert result.exit_code == 0, result.stderr
