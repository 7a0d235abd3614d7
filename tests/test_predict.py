"""`epx predict RUN DATASET -o OUT` through the real CLI, on datasets featurized from real files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error, demo_labels

ASSAYS = "H3K4me3,H3K27ac,H3K36me3"


def _featurize(run, study, out, cells, *extra):
    result = run("featurize", "--genes", study / "genes.tsv", "--manifest", study / "manifest.tsv",
                 *demo_labels(study, cells), "--cells", ",".join(cells), "--assays", ASSAYS, "-o", out, *extra)
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def setup(demo_study, tmp_path_factory):
    from typer.testing import CliRunner

    from epx.cli import app

    runner = CliRunner()

    def run(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    root = tmp_path_factory.mktemp("predict")
    both = _featurize(run, demo_study, root / "x1x3", ("X1", "X3"))
    alone = _featurize(run, demo_study, root / "x3", ("X3",))  # the new cell line, featurized later
    trained = root / "run"
    result = run("train", both, "--model", "lgbm", "--chr-kfold", "3", "--test", "chr1", "--train-cells", "X1",
                 "--predict-cells", "X3", "-o", trained, "--shap-rows", "0")
    assert result.exit_code == 0, result.stderr
    return {"both": both, "alone": alone, "run": trained, "root": root, "study": demo_study}


def test_predicts_a_new_cell_line_like_the_runs_own_test_rows(run, setup, tmp_path):
    out = tmp_path / "pred"
    result = run("predict", setup["run"], setup["alone"], "-o", out)
    assert result.exit_code == 0, result.stderr
    preds = pd.read_parquet(out / "predictions.parquet")
    genes = pd.read_parquet(setup["alone"] / "genes.parquet")
    assert list(preds.columns[:4]) == ["gene_id", "gene_name", "cell_line", "chrom"]
    assert {"y_pred", "proba", "y_score", "y_true", "trained_on"} <= set(preds.columns)
    assert len(preds) == len(genes) and set(preds["cell_line"]) == {"X3"} and not preds["trained_on"].any()
    # The run's test rows (chr1, predicted by every fold model and averaged) are the same numbers.
    test = pd.read_parquet(setup["run"] / "test.parquet")
    test = test[test["cell_line"] == "X3"].set_index("gene_id")
    mine = preds.set_index("gene_id").loc[test.index]
    np.testing.assert_allclose(mine["y_pred"], test["y_pred"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(mine["proba"], test["proba"], rtol=1e-6, atol=1e-9)
    # Scored against its labels, with the run's target.
    metrics = json.loads((out / "metrics.json").read_text())
    held_out = preds.loc[~preds["gene_trained_on"], "chrom"]
    assert set(held_out) == {"chr1"} and len(held_out) == (genes["chrom"] == "chr1").sum()  # genes never learnt
    assert metrics["target"] == "rank" and metrics["by_cell_line"]["X3"]["n"] == len(held_out)
    assert metrics["by_cell_line"]["X3"]["spearman"] > 0.5
    assert "X3" in result.stdout and "spearman" in result.stdout


def test_same_cell_line_in_either_dataset_gives_the_same_predictions(run, setup, tmp_path):
    assert run("predict", setup["run"], setup["both"], "-o", tmp_path / "a", "--cells", "X3").exit_code == 0
    assert run("predict", setup["run"], setup["alone"], "-o", tmp_path / "b").exit_code == 0
    a = pd.read_parquet(tmp_path / "a" / "predictions.parquet")
    b = pd.read_parquet(tmp_path / "b" / "predictions.parquet")
    np.testing.assert_allclose(a["y_pred"], b["y_pred"], rtol=1e-6)


def test_training_rows_are_marked_and_not_scored(run, setup, tmp_path):
    out = tmp_path / "p"
    result = run("predict", setup["run"], setup["both"], "-o", out)
    assert result.exit_code == 0, result.stderr
    preds = pd.read_parquet(out / "predictions.parquet")
    x1 = preds[preds["cell_line"] == "X1"]
    assert x1.loc[x1["chrom"] != "chr1", "trained_on"].all() and not x1.loc[x1["chrom"] == "chr1", "trained_on"].any()
    assert not preds.loc[preds["cell_line"] == "X3", "trained_on"].any()
    assert (preds["gene_trained_on"] == (preds["chrom"] != "chr1")).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["by_cell_line"]["X1"]["n"] == int((x1["chrom"] == "chr1").sum())


def test_submit_accepts_predictions(run, setup, tmp_path):
    out = tmp_path / "pred"
    assert run("predict", setup["run"], setup["alone"], "-o", out).exit_code == 0
    result = run("submit", out, "--cell", "X3", "--genes", setup["study"] / "test_genes.tsv", "--last-name", "Doe",
                 "--first-name", "Jane", "--out-dir", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "Doe_Jane_Project1.zip").is_file()
    # predictions of the training dataset's training cell line are in-sample: refused
    inside = tmp_path / "inside"
    assert run("predict", setup["run"], setup["both"], "-o", inside, "--cells", "X1").exit_code == 0
    assert_user_error(run("submit", inside, "--cell", "X1", "--genes", setup["study"] / "genes.tsv",
                          "--last-name", "Doe", "--first-name", "Jim", "--out-dir", tmp_path), "was a training row")
    assert not (tmp_path / "Doe_Jim_Project1.zip").exists()


def test_bad_runs_and_datasets_are_refused(run, setup, demo_study, tmp_path):
    root = setup["root"]
    out = tmp_path / "never"
    # a model that is not installed here
    foreign = tmp_path / "foreign-run"
    shutil.copytree(setup["run"], foreign)
    config = json.loads((foreign / "config.json").read_text())
    config["model"] = "transformer9000"
    (foreign / "config.json").write_text(json.dumps(config))
    assert_user_error(run("predict", foreign, setup["alone"], "-o", out), "transformer9000", "installed models")
    # a dataset lacking an assay the run needs
    fewer = root / "fewer"
    if not fewer.exists():
        run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
            "--cells", "X3", "--assays", "H3K4me3,H3K27ac", "-o", fewer)
    assert_user_error(run("predict", setup["run"], fewer, "-o", out), "lacks assay 'H3K36me3'", str(fewer))
    # another featurize geometry
    wider = root / "wider"
    if not wider.exists():
        _featurize(run, demo_study, wider, ("X3",), "--tss-window", "500")
    assert_user_error(run("predict", setup["run"], wider, "-o", out), "--tss-window 500", "--tss-window 100")
    # not a run; an unknown cell line; an existing output
    assert_user_error(run("predict", setup["alone"], setup["alone"], "-o", out), "not an epx run")
    assert_user_error(run("predict", setup["run"], setup["alone"], "-o", out, "--cells", "X9"), "'X9' is not in the dataset")
    assert not out.exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert_user_error(run("predict", setup["run"], setup["alone"], "-o", tmp_path / "taken", "--force"), "not written by epx")


def test_bin_rows_equals_the_whole_normalised_array(demo_dataset):
    import epx

    ds = epx.load_dataset(demo_dataset)
    genes, cells = np.array([5, 0, 17, 5]), np.array([2, 0, 1, 1])
    np.testing.assert_allclose(ds.bin_rows(genes, cells, normalised=True), ds.bins(normalised=True)[genes, cells], rtol=1e-6)
    np.testing.assert_array_equal(ds.bin_rows(genes, cells), ds.bins()[genes, cells])


def _subset_study(study, root, n):
    """The first n genes of the demo study with their labels, as files a user would write."""
    lines = (study / "genes.tsv").read_text().splitlines(keepends=True)
    (root / "genes.tsv").write_text("".join(lines[: n + 1]))
    kept = {ln.split("\t")[0] for ln in lines[1 : n + 1]}
    labels = []
    for cell in ("X1", "X3"):
        rows = (study / "labels" / f"{cell}.tsv").read_text().splitlines(keepends=True)
        (root / f"{cell}.tsv").write_text(rows[0] + "".join(r for r in rows[1:] if r.split("\t")[0] in kept))
        labels += ["--labels", f"{cell}={root / f'{cell}.tsv'}"]
    return root / "genes.tsv", labels


def test_other_gene_sets_are_normalised_like_the_run_or_refused(run, setup, tmp_path):
    study = setup["study"]
    genes, labels = _subset_study(study, tmp_path, 300)
    common = ["--manifest", study / "manifest.tsv", "--assays", ASSAYS]
    assert run("featurize", "--genes", genes, *labels, "--cells", "X1,X3", *common, "-o", tmp_path / "small").exit_code == 0
    assert run("featurize", "--genes", genes, *labels[2:], "--cells", "X3", *common, "-o", tmp_path / "small3").exit_code == 0
    small_run = tmp_path / "small-run"
    assert run("train", tmp_path / "small", "--model", "lgbm", "--chr-kfold", "3", "--train-cells", "X1",
               "-o", small_run, "--shap-rows", "0").exit_code == 0
    # more genes than the run saw: the shared genes get exactly the predictions of a same-genes dataset
    assert run("predict", small_run, setup["alone"], "-o", tmp_path / "big-pred").exit_code == 0
    assert run("predict", small_run, tmp_path / "small3", "-o", tmp_path / "small-pred").exit_code == 0
    big = pd.read_parquet(tmp_path / "big-pred" / "predictions.parquet").set_index("gene_id")
    small = pd.read_parquet(tmp_path / "small-pred" / "predictions.parquet").set_index("gene_id")
    np.testing.assert_allclose(big.loc[small.index, "y_pred"], small["y_pred"], rtol=1e-5, atol=1e-7)
    # fewer genes than the run was normalised over: refused
    assert_user_error(run("predict", setup["run"], tmp_path / "small3", "-o", tmp_path / "never"),
                      "lacks 300 of the 600 genes", "run's gene table")
    assert not (tmp_path / "never").exists()


def test_a_refeaturized_training_cell_line_is_still_in_sample(run, setup, tmp_path):
    copy = _featurize(run, setup["study"], tmp_path / "copy", ("X1",))  # same cell, another dataset
    out = tmp_path / "p"
    assert run("predict", setup["run"], copy, "-o", out).exit_code == 0
    preds = pd.read_parquet(out / "predictions.parquet")
    assert (preds["trained_on"] == (preds["chrom"] != "chr1")).all()
    assert_user_error(run("submit", out, "--cell", "X1", "--genes", setup["study"] / "genes.tsv", "--last-name", "A",
                          "--first-name", "B", "-o", tmp_path), "was a training row")


def test_an_extra_assay_is_refused_for_tabular_runs(run, setup, demo_study, tmp_path):
    extra = tmp_path / "extra"
    assert run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
               "--cells", "X3", "--assays", ASSAYS + ",DNase", "-o", extra).exit_code == 0
    assert_user_error(run("predict", setup["run"], extra, "-o", tmp_path / "p"), "has assay 'DNase'",
                      "featurize with --assays H3K")
