"""epx train / stack / submit / explain on the demo data with the real plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error

import epx
from epx.metrics import auroc, spearman

FAST = ["-p", "n_estimators=80", "-p", "rounds_without_valid=80", "-p", "learning_rate=0.1"]


@pytest.fixture(scope="module")
def lgbm_run(demo_dataset, tmp_path_factory):
    from typer.testing import CliRunner

    from epx.cli import app

    out = tmp_path_factory.mktemp("runs") / "lgbm"
    args = ["train", str(demo_dataset), "--model", "lgbm", "--loco", "--test", "chr1", "--train-cells", "X1,X2",
            "--predict-cells", "X3", *FAST, "-o", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out, result


def test_run_directory(lgbm_run, demo_dataset):
    out, result = lgbm_run
    for name in ("config.json", "split.tsv", "oof.parquet", "test.parquet", "metrics.json", "importance.tsv",
                 "shap.parquet", "log.txt"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "lgbm" and config["target"] == "rank" and config["plugin"].startswith("epx-lgbm")
    assert config["params"]["n_estimators"] == 80 and config["epx_version"] == epx.__version__
    ds = epx.load_dataset(demo_dataset)
    oof = pd.read_parquet(out / "oof.parquet")
    non_test = ds.genes[ds.genes["chrom"] != "chr1"]
    # one out-of-fold prediction per (gene, cell line) off the test chromosome
    assert len(oof) == 3 * len(non_test) and not oof.duplicated(["gene_id", "cell_line"]).any()
    assert set(oof.columns) >= {"gene_id", "gene_name", "cell_line", "fold", "y_true", "y_pred", "proba", "y_score"}
    test = pd.read_parquet(out / "test.parquet")
    assert set(test["chrom"]) == {"chr1"} and len(test) == 3 * (ds.genes["chrom"] == "chr1").sum()
    assert len(list((out / "models").iterdir())) == 7  # one model per LOCO fold
    assert "mean +- sd" in result.stdout and "spearman" in result.stdout


def test_lgbm_beats_single_mark_baseline(lgbm_run, demo_dataset):
    out, _ = lgbm_run
    oof = pd.read_parquet(out / "oof.parquet")
    raw = epx.load_dataset(demo_dataset).features(raw=True)
    merged = oof.merge(raw[["gene_id", "cell_line", "H3K4me3.bw.promoter.mean0"]], on=["gene_id", "cell_line"])
    for cell, part in merged.groupby("cell_line"):
        model = spearman(part["y_true"], part["y_pred"])
        baseline = spearman(part["y_true"], part["H3K4me3.bw.promoter.mean0"])
        assert model > baseline + 0.05, (cell, model, baseline)


def test_two_stage_mask(lgbm_run):
    out, _ = lgbm_run
    oof = pd.read_parquet(out / "oof.parquet")
    masked = oof["proba"] < 0.4
    assert masked.any() and (~masked).any()
    assert (oof.loc[masked, "y_pred"] == 0).all()
    np.testing.assert_allclose(oof.loc[~masked, "y_pred"], oof.loc[~masked, "y_score"])
    # the classifier separates expressed from silent genes
    assert auroc((oof["y_true"] > oof.groupby("cell_line")["y_true"].transform("min")).astype(float), oof["proba"]) > 0.8


def test_same_command_twice_is_identical(demo_dataset, tmp_path, run):
    args = ["train", demo_dataset, "--model", "lgbm", "--chr-kfold", "3", "--train-cells", "X1", *FAST, "-p", "mask=false"]
    assert run(*args, "-o", tmp_path / "a").exit_code == 0
    assert run(*args, "-o", tmp_path / "b").exit_code == 0
    a, b = (pd.read_parquet(tmp_path / d / "oof.parquet") for d in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)
    assert (a["y_pred"] > 0).all()  # mask=false: nothing forced to 0


def test_cross_cell_and_inner_cv(demo_dataset, tmp_path, run):
    out = tmp_path / "cc"
    result = run("train", demo_dataset, "--model", "lgbm", "--holdout", "chr2", "--test", "chr1", "--train-cells", "X1",
                 "--predict-cells", "X3", "--inner", "chr-kfold", "2", *FAST, "-o", out)
    assert result.exit_code == 0, result.stderr
    test = pd.read_parquet(out / "test.parquet")
    assert set(test["cell_line"]) == {"X1", "X3"} and set(test["chrom"]) == {"chr1"}
    assert sorted(p.name for p in (out / "models").iterdir()) == ["fold_holdout_inner0", "fold_holdout_inner1"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["test"]["by_cell_line"]["X3"]["spearman"] > 0.5


def test_ridge_binary_target(demo_dataset, tmp_path, run):
    out = tmp_path / "bin"
    result = run("train", demo_dataset, "--model", "ridge", "--chr-kfold", "4", "--target", "binary", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "auroc" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fold_mean_sd"]["auroc"]["mean"] > 0.8


def test_stack_seed_rule_and_submit(lgbm_run, demo_dataset, demo_study, tmp_path, run):
    first, _ = lgbm_run
    second = tmp_path / "x1only"
    assert run("train", demo_dataset, "--model", "lgbm", "--loco", "--test", "chr1", "--train-cells", "X1",
               "--predict-cells", "X3", *FAST, "-o", second).exit_code == 0
    stack_dir = tmp_path / "stack"
    result = run("stack", first, second, "-o", stack_dir)
    assert result.exit_code == 0, result.stderr
    assert "not every run predicts X2" in result.stderr and "stack (seed)" in result.stdout
    stacked = pd.read_parquet(stack_dir / "test.parquet")
    a, b = (pd.read_parquet(d / "test.parquet").set_index(["gene_id", "cell_line"]) for d in (first, second))
    s = stacked.set_index(["gene_id", "cell_line"])
    key = s.index
    mean_p = (a.loc[key, "proba"] + b.loc[key, "proba"]) / 2
    mean_rank = (a.loc[key, "y_score"] + b.loc[key, "y_score"]) / 2
    np.testing.assert_allclose(s["y_pred"], mean_rank * (mean_p >= 0.4))

    zip_dir = tmp_path / "sub"
    zip_dir.mkdir()
    result = run("submit", stack_dir, "--cell", "X3", "--genes", demo_study / "test_genes.tsv",
                 "--last-name", "Doe", "--first-name", "Jane", "--out-dir", zip_dir)
    assert result.exit_code == 0, result.stderr
    with zipfile.ZipFile(zip_dir / "Doe_Jane_Project1.zip") as zf:
        assert zf.namelist() == ["gex_predicted.csv"]
        csv = pd.read_csv(zf.open("gex_predicted.csv"), index_col=0)
    genes = pd.read_csv(demo_study / "test_genes.tsv", sep="\t")
    assert csv["gene_name"].tolist() == genes["gene_name"].tolist()
    assert csv.index.tolist() == list(range(len(genes)))
    again = run("submit", stack_dir, "--cell", "X3", "--genes", demo_study / "test_genes.tsv",
                "--last-name", "Doe", "--first-name", "Jane", "--out-dir", zip_dir)
    assert_user_error(again, "Doe_Jane_Project1.zip", "--force")


def test_explain(lgbm_run, run, tmp_path):
    out, _ = lgbm_run
    png = tmp_path / "top.png"
    result = run("explain", out, "--top", "5", "--plot", png)
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mean_abs_shap" in result.stdout and "mean_gain" in result.stdout


# -- bad input ----------------------------------------------------------------------------------


def test_unknown_model_and_existing_run_dir(demo_dataset, lgbm_run, run, tmp_path):
    assert_user_error(run("train", demo_dataset, "--model", "xgb", "--loco", "-o", tmp_path / "r"),
                      "unknown model 'xgb'", "lgbm", "ridge")
    out, _ = lgbm_run
    before = (out / "oof.parquet").read_bytes()
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--loco", "-o", out), str(out), "--force")
    assert (out / "oof.parquet").read_bytes() == before


def test_split_file_that_does_not_match(demo_dataset, run, tmp_path, small_genes):
    split = tmp_path / "split.tsv"
    assert run("split", small_genes, "--loco", "-o", split).exit_code == 0
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--split", split, "-o", tmp_path / "r"),
                      "does not match the dataset", "G000")
    assert not (tmp_path / "r").exists()


def test_missing_training_labels_and_constant_target(demo_study, run, tmp_path):
    labels_zero = tmp_path / "zero.tsv"
    genes = pd.read_csv(demo_study / "genes.tsv", sep="\t")
    pd.DataFrame({"gene_name": genes["gene_name"], "gex": 0.0}).to_csv(labels_zero, sep="\t", index=False)
    ds = tmp_path / "ds"
    assert run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv", "--no-bins",
               "--labels", f"X1={demo_study / 'labels' / 'X1.tsv'}", "--labels", f"X2={labels_zero}", "-o", ds).exit_code == 0
    assert_user_error(run("train", ds, "--model", "ridge", "--loco", "--train-cells", "X3", "-o", tmp_path / "r1"),
                      "no labels for training cell line 'X3'")
    assert_user_error(run("train", ds, "--model", "ridge", "--loco", "--train-cells", "X2", "-o", tmp_path / "r2"),
                      "target is constant")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_plugin_input_kind_missing(demo_dataset, tmp_path):
    """A binned-input plugin refuses a dataset featurized without bins (real entry point, subprocess)."""
    (tmp_path / "epx_binned_toy-0.1.dist-info").mkdir()
    (tmp_path / "epx_binned_toy-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: epx-binned-toy\nVersion: 0.1\n")
    (tmp_path / "epx_binned_toy-0.1.dist-info" / "entry_points.txt").write_text("[epx.models]\nbinned-toy = epx_binned_toy:spec\n")
    (tmp_path / "epx_binned_toy.py").write_text(textwrap.dedent("""
        from epx.models.plugins import ModelSpec
        spec = ModelSpec(name="binned-toy", description="toy", input_kind="binned", tasks=("rank",), model="x:Y")
    """))
    ds = tmp_path / "nobins"
    import shutil

    shutil.copytree(demo_dataset, ds)
    (ds / "bins.npy").unlink()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "epx.cli", "train", str(ds), "--model", "binned-toy", "--loco",
                             "-o", str(tmp_path / "r")], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "needs binned input" in result.stderr and "tabular" in result.stderr
    assert not (tmp_path / "r").exists()


def _fake_run(path, genes: pd.DataFrame, cell: str, values: np.ndarray):
    """A run directory as epx train writes it (stack and submit read prediction files only)."""
    path.mkdir()
    table = pd.DataFrame({"gene_id": genes["gene_id"], "gene_name": genes["gene_name"], "cell_line": cell,
                          "chrom": genes["chrom"], "fold": "test", "y_true": np.nan, "y_pred": values})
    table.to_parquet(path / "test.parquet", index=False)
    table.iloc[:0].to_parquet(path / "oof.parquet", index=False)
    (path / "config.json").write_text(json.dumps({"task": "rank", "model": "fake"}))
    return path


def test_stack_and_submit_refusals(tmp_path, run, small_genes):
    from epx.io.genes import read_genes

    genes = read_genes(small_genes)
    a = _fake_run(tmp_path / "a", genes, "X3", np.linspace(0, 1, len(genes)))
    b = _fake_run(tmp_path / "b", genes.iloc[:-2], "X3", np.linspace(0, 1, len(genes) - 2))
    assert_user_error(run("stack", a, b, "--rule", "mean", "-o", tmp_path / "s"), "cover different genes")
    assert not (tmp_path / "s").exists()
    assert_user_error(run("submit", b, "--cell", "X3", "--genes", small_genes, "--last-name", "Doe", "--first-name", "J",
                          "--out-dir", tmp_path), "no X3 prediction for 2 of 30 genes")
    values = np.linspace(0, 1, len(genes))
    values[3] = np.nan
    c = _fake_run(tmp_path / "c", genes, "X3", values)
    assert_user_error(run("submit", c, "--cell", "X3", "--genes", small_genes, "--last-name", "Doe", "--first-name", "J",
                          "--out-dir", tmp_path), "NaN prediction")
    assert not list(tmp_path.glob("*.zip"))


@pytest.mark.shared_data
def test_submission_round_trip_ml4g(shared, tmp_path, run):
    from epx.io.genes import read_genes

    info = shared / "ml4g_cage" / "X3_test_info.tsv"
    genes = read_genes(info)
    rng = np.random.default_rng(0)
    values = np.where(rng.random(len(genes)) < 0.5, 0.0, rng.random(len(genes)))
    run_dir = _fake_run(tmp_path / "run", genes.iloc[::-1].reset_index(drop=True), "X3", values[::-1])
    result = run("submit", run_dir, "--cell", "X3", "--genes", info, "--last-name", "Muster", "--first-name", "Max",
                 "--out-dir", tmp_path)
    assert result.exit_code == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "Muster_Max_Project1.zip") as zf:
        text = zf.read("gex_predicted.csv").decode()
    assert text.splitlines()[0] == ",gene_name,gex_predicted"
    csv = pd.read_csv(pd.io.common.StringIO(text), index_col=0)
    original = pd.read_csv(info, sep="\t")
    assert len(csv) == 1984 and csv["gene_name"].tolist() == original["gene_name"].tolist()
    np.testing.assert_allclose(csv["gex_predicted"].to_numpy(), values)
    assert csv["gex_predicted"].dtype == np.float64


@pytest.mark.shared_data
def test_attentivechrome_lgbm_matches_logistic_reference(shared, tmp_path, run):
    """Imported AttentiveChrome data, its own train/valid/test genes: AUROC near the references
    (logistic regression on pooled bins: 0.960 Cell1, 0.876 Cell2; +-0.05 is noise at 196 genes)."""
    a = shared / "attentivechrome"
    ds = tmp_path / "ac"
    files = [a / f"Cell{c}.{r}.csv" for c in (1, 2) for r in ("train", "valid", "test")]
    assert run("import", "deepchrome", *files, "-o", ds, "--marks", "H3K4me1,H3K4me3,H3K9me3,H3K27me3,H3K36me3",
               "--annotation", shared / "gene_annotation" / "genes_hg38_hg19.tsv", "--build", "hg19",
               "--bins", "100").exit_code == 0
    out = tmp_path / "run"
    result = run("train", ds, "--model", "lgbm", "--target", "binary", "-o", out)
    assert result.exit_code == 0, result.stderr
    by_cell = json.loads((out / "metrics.json").read_text())["overall"]["test"]["by_cell_line"]
    assert by_cell["Cell1"]["n"] == 196 and by_cell["Cell1"]["auroc"] > 0.91
    assert by_cell["Cell2"]["auroc"] > 0.83
