"""Issue 8, section 3: wrong input is refused in one line (exit 2, no output), not silently used."""

from __future__ import annotations

import pytest
from conftest import assert_user_error, demo_labels

from epx.errors import EpxError, GeneTableError

ML4G_ROWS = ("gene_name\tchr\tgene_start\tgene_end\tTSS_start\tTSS_end\tstrand\n"
             "A\tchr2\t100\t900\t100\t150\t+\nB\tchr2\t1000\t5000\t4950\t5000\t-\n")


def assert_refused(result, *fragments: str) -> None:
    """Exit 2 with the fragments on stderr and no traceback: either epx's one-line error or, for
    options the CLI itself constrains (a choice or a minimum), click's usage error."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


# -- --build -----------------------------------------------------------------------------------


def test_unknown_build_is_refused(tmp_path, run, demo_study):
    from epx.io.genes import read_genes

    tsv = tmp_path / "two_builds.tsv"
    tsv.write_text("gene_name\tgene_id\tchr_hg38\tstrand_hg38\ttss_hg38\tchr_hg19\ttss_hg19\n"
                   "A\tE1\t1\t+\t1001\tchr1\t901\n")
    with pytest.raises(GeneTableError, match="unknown genome build 'hg37'; known builds: hg19, hg38"):
        read_genes(tsv, build="hg37")
    with pytest.raises(GeneTableError, match="unknown genome build 'GRCh38'"):
        read_genes(demo_study / "genes.tsv", build="GRCh38")  # even for a table without per-build columns
    assert_refused(run("check", "--genes", tsv, "--build", "hg37"), "hg37", "hg19", "hg38")
    out = tmp_path / "ds"
    assert_refused(run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                       "--build", "hg37", "-o", out), "hg37", "hg19", "hg38")
    assert not out.exists()


# -- --workers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -2])
def test_workers_below_one_are_refused(tmp_path, run, demo_study, workers):
    from epx.featurize import featurize

    out = tmp_path / "ds"
    with pytest.raises(EpxError, match=f"--workers must be a whole number >= 1, got {workers}"):
        featurize([demo_study / "genes.tsv"], demo_study / "manifest.tsv", out, workers=workers)
    assert_refused(run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                       *demo_labels(demo_study), "--workers", str(workers), "-o", out), "--workers", "1")
    assert not out.exists()


# -- gene tables: comment lines, '#' headers, header-only tables -----------------------------


def test_comment_lines_are_skipped_and_a_hash_header_is_used(tmp_path, run):
    from epx.io.genes import read_genes

    ml4g = tmp_path / "commented.tsv"
    ml4g.write_text("# exported from the course page\n# 2 genes\n" + ML4G_ROWS)
    assert read_genes(ml4g)["gene_id"].tolist() == ["A", "B"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("# a comment\n" + ML4G_ROWS.replace("\t-\n", "\t*\n"))
    assert_user_error(run("check", "--genes", bad), f"{bad}:4:", "'B'", "unknown strand")  # file line numbers

    tss = tmp_path / "ucsc.tsv"  # UCSC table browser style: the header line starts with '#'
    tss.write_text("#gene_id\tchrom\tstrand\ttss\nE1\tchr2\t+\t1001\nE2\tchr2\t-\t5000\n")
    assert read_genes(tss)[["gene_id", "tss"]].values.tolist() == [["E1", 1000], ["E2", 4999]]
    bed = tmp_path / "genes.bed"
    bed.write_text("browser position chr1\ntrack name=genes\n#chrom\tstart\tend\tname\tscore\tstrand\n"
                   "#chr1\t1\t50\tOFF\t0\t+\nchr1\t100\t500\tA\t0\t+\n")  # a commented-out row stays a comment
    assert read_genes(bed)["gene_id"].tolist() == ["A"]
    result = run("check", "--genes", tss)
    assert result.exit_code == 0 and "2 on 1 chromosomes" in result.stdout


@pytest.mark.parametrize("text", [
    ML4G_ROWS.split("\n")[0] + "\n",
    "# exported\n" + ML4G_ROWS.split("\n")[0] + "\n\n",
    "gene_id\tchrom\tstrand\ttss\n",
    "#gene_id\tchrom\tstrand\ttss\n",
    "chrom\tstart\tend\tname\tscore\tstrand\n",
], ids=["ml4g", "ml4g-commented", "tss-tsv", "hash-header-only", "bed-header"])
def test_header_only_gene_table_is_a_gene_table_problem(tmp_path, run, demo_study, text):
    genes = tmp_path / "genes.tsv"
    genes.write_text(text)
    out = tmp_path / "ds"
    result = run("featurize", "--genes", genes, "--manifest", demo_study / "manifest.tsv",
                 *demo_labels(demo_study, ("X1",)), "-o", out)
    assert_user_error(result, str(genes), "no genes: the file " + ("is empty or has only comment lines"
                                                                   if text.startswith("#gene_id") else "has a header and no rows"))
    assert "label" not in result.stderr
    assert not out.exists()
    split = tmp_path / "split.tsv"
    assert_user_error(run("split", genes, "--loco", "-o", split), str(genes), "no genes")
    assert not split.exists()


def test_header_only_with_an_explicit_format(tmp_path):
    from epx.io.genes import read_genes

    for fmt, text in (("ml4g", ML4G_ROWS.split("\n")[0] + "\n"), ("tss-tsv", "gene_id\tchrom\tstrand\ttss\n"),
                      ("bed", "chrom\tstart\tend\tname\tscore\tstrand\n")):
        path = tmp_path / f"{fmt}.txt"
        path.write_text(text)
        with pytest.raises(GeneTableError, match="no genes: the file has a header and no rows"):
            read_genes(path, fmt=fmt)


# -- a split file made for another gene table ---------------------------------------------------


def test_split_covering_a_subset_of_the_genes(demo_dataset, demo_study, run, tmp_path):
    import pandas as pd

    import epx
    from epx.errors import SplitError
    from epx.train import SplitOptions, TrainOptions, train

    table = pd.read_csv(demo_study / "genes.tsv", sep="\t")
    subset = tmp_path / "subset.tsv"
    table.iloc[::10].to_csv(subset, sep="\t", index=False)
    split = tmp_path / "split.tsv"
    assert run("split", subset, "--loco", "-o", split).exit_code == 0
    genes = epx.load_dataset(demo_dataset).genes
    first_missing = genes.loc[~genes["gene_id"].isin(table["gene_name"].iloc[::10]), "gene_id"].iloc[0]
    n = len(table.iloc[::10])
    out = tmp_path / "r"
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--split", split, "-o", out),
                      str(split), f"split covers {n} of {len(genes)} genes of the dataset",
                      f"first missing: {first_missing}", "another gene table", "--split-subset")
    assert not out.exists()
    with pytest.raises(SplitError, match=f"covers {n} of {len(genes)} genes"):
        train(demo_dataset, out, TrainOptions(model="ridge"), SplitOptions(file=split))
    assert not out.exists()

    result = run("train", demo_dataset, "--model", "ridge", "--split", split, "--split-subset", "-o", out)
    assert result.exit_code == 0, result.stderr
    oof = pd.read_parquet(out / "oof.parquet")
    assert set(oof["gene_id"]) == set(table["gene_name"].iloc[::10])
    assert "subset" in (out / "config.json").read_text()
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--loco", "--split-subset", "-o", tmp_path / "r2"),
                      "--split-subset applies to a split file")
    assert not (tmp_path / "r2").exists()


# -- negative labels with the log1p and rank targets --------------------------------------------


def test_negative_labels_with_log1p_or_rank(demo_study, run, tmp_path):
    import numpy as np
    import pandas as pd

    x2 = pd.read_csv(demo_study / "labels" / "X2.tsv", sep="\t")
    logged = tmp_path / "X2_log.tsv"
    x2.assign(gex=np.log(x2["gex"] + 0.01)).to_csv(logged, sep="\t", index=False)  # already log-scaled
    ds = tmp_path / "ds"
    assert run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv", "--no-bins",
               *demo_labels(demo_study, ("X1",)), "--labels", f"X2={logged}", "-o", ds).exit_code == 0
    genes_order = pd.read_csv(demo_study / "genes.tsv", sep="\t")["gene_name"]
    first = genes_order[genes_order.isin(x2["gene_name"][np.log(x2["gex"] + 0.01) < 0])].iloc[0]
    for target in ("log1p", "rank", None):  # rank is the default
        out = tmp_path / f"r-{target}"
        args = ["--target", target] if target else []
        result = run("train", ds, "--model", "ridge", "--chr-kfold", "2", *args, "-o", out)
        assert_user_error(result, str(logged.resolve()), "cell line 'X2'", f"first gene '{first}'",
                          f"the {target or 'rank'} target needs expression >= 0", "--target raw or binary")
        assert not out.exists()
    for target in ("raw", "binary"):
        result = run("train", ds, "--model", "ridge", "--chr-kfold", "2", "--target", target, "-o", tmp_path / f"ok-{target}")
        assert result.exit_code == 0, result.stderr
    # cell lines outside the run are not checked
    result = run("train", ds, "--model", "ridge", "--chr-kfold", "2", "--train-cells", "X1", "--target", "log1p",
                 "-o", tmp_path / "x1")
    assert result.exit_code == 0, result.stderr


# -- submitting predictions of rows the run trained on --------------------------------------------


def test_submit_refuses_trained_cell_lines_and_training_rows(demo_dataset, demo_study, run, tmp_path):
    import shutil

    import pandas as pd

    runs = {}
    for name, cells in (("a", "X1,X2"), ("b", "X1")):
        runs[name] = tmp_path / name
        assert run("train", demo_dataset, "--model", "ridge", "--chr-kfold", "2", "--test", "chr1", "--train-cells", cells,
                   "--predict-cells", "X3", "-o", runs[name]).exit_code == 0
    stack = tmp_path / "stack"
    assert run("stack", runs["a"], runs["b"], "--rule", "mean", "-o", stack).exit_code == 0
    test_genes = demo_study / "test_genes.tsv"  # chr1: held out as --test in every fold
    all_genes = demo_study / "genes.tsv"
    table = pd.read_csv(all_genes, sep="\t")
    first_trained = table.loc[table["chr"] != "chr1", "gene_name"].iloc[0]
    zips = tmp_path / "zips"
    zips.mkdir()

    def submit(run_dir, cell, genes):
        return run("submit", run_dir, "--cell", cell, "--genes", genes, "--last-name", "Doe", "--first-name", "J",
                   "--out-dir", zips)

    for run_dir in (runs["a"], stack):
        # X1's chr1 rows are test rows, but X1 itself was trained on
        assert_user_error(submit(run_dir, "X1", test_genes), "cell line 'X1' was trained on", "not held out",
                          "--test-cells X1")
        # X1 genes off chr1 were training rows (cv) of X1
        assert_user_error(submit(run_dir, "X1", all_genes), f"gene '{first_trained}' of cell line 'X1' was a training row",
                          "role cv", "split.tsv")
        assert_user_error(submit(run_dir, "X2" if run_dir == runs["a"] else "X1", test_genes), "was trained on")
        assert not list(zips.iterdir())
        result = submit(run_dir, "X3", test_genes)
        assert result.exit_code == 0, result.stderr
        (zips / "Doe_J_Project1.zip").unlink()

    # the stack remembers which cell lines its runs trained on when a run has moved away
    shutil.move(runs["b"], tmp_path / "moved")
    assert_user_error(submit(stack, "X1", test_genes), "cell line 'X1' was trained on")
    assert submit(stack, "X3", test_genes).exit_code == 0


def test_submit_without_train_cells_option(demo_dataset, demo_study, run, tmp_path):
    """Every labelled cell line is trained on when --train-cells is not given (config has []):
    split.tsv's roles, not the config, decide."""
    out = tmp_path / "r"
    assert run("train", demo_dataset, "--model", "ridge", "--chr-kfold", "2", "--test", "chr1", "-o", out).exit_code == 0
    result = run("submit", out, "--cell", "X3", "--genes", demo_study / "test_genes.tsv", "--last-name", "Doe",
                 "--first-name", "J", "--out-dir", tmp_path)
    assert_user_error(result, "cell line 'X3' was trained on")
    assert not list(tmp_path.glob("*.zip"))
