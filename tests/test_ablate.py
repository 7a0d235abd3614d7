"""`epx ablate` (which mark predicts best) and `epx train --assays`, through the real CLI on
datasets featurized from the demo study's real files."""

from __future__ import annotations

import io
import json
import re

import pandas as pd
import pytest
from conftest import assert_user_error, demo_labels

ASSAYS = ["H3K27ac", "H3K4me3", "H3K27me3", "H3K36me3", "H3K4me1", "H3K9me3", "DNase"]  # the demo's, in order
VARIANTS = [f"only-{a}" for a in ASSAYS] + [f"without-{a}" for a in ASSAYS] + ["all"]


def _invoke(*args):
    from typer.testing import CliRunner

    from epx.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def ablation(demo_dataset, tmp_path_factory):
    """ridge on every single assay, every assay but one and all; chr-kfold with chr1 held out for testing."""
    out = tmp_path_factory.mktemp("ablate") / "marks"
    result = _invoke("ablate", demo_dataset, "--model", "ridge", "--assays", "each,leave-one-out", "--assays", "all",
                     "--chr-kfold", "3", "--test", "chr1", "--bootstrap", "200", "-o", out)
    assert result.exit_code == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def one_assay(demo_study, tmp_path_factory):
    """A tabular dataset of one assay and one cell line."""
    out = tmp_path_factory.mktemp("one") / "ds"
    result = _invoke("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                     *demo_labels(demo_study, ("X1",)), "--cells", "X1", "--assays", "H3K4me3", "--no-bins",
                     "-o", out, "--workers", "1")
    assert result.exit_code == 0, result.stderr
    return out


def test_every_variant_is_a_run_on_the_one_split(ablation, demo_dataset):
    out, result = ablation
    record = json.loads((out / "ablation.json").read_text())
    assert [v["name"] for v in record["variants"]] == VARIANTS
    assert record["model"] == "ridge" and record["target"] == "rank" and record["params"]["alpha"] == 1.0
    assert record["split"] == "chr-kfold" and record["dataset_assays"] == ASSAYS and record["reference"] == "all"
    split = (out / "split.tsv").read_bytes()
    for v in record["variants"]:
        run = out / v["run"]
        config = json.loads((run / "config.json").read_text())
        assert config["assays"] == v["assays"] and config["dataset_assays"] == ASSAYS, v["name"]
        assert v["assays"] == ([v["name"][5:]] if v["name"].startswith("only-") else
                               [a for a in ASSAYS if f"without-{a}" != v["name"]])
        assert (run / "split.tsv").read_bytes() == split, v["name"]  # the same genes, folds and roles
        # the split file is named where it lies, never the temporary directory it was trained in
        assert config["split"] == f"file {(out / 'split.tsv').resolve()}"
        assert ".epx-" not in (run / "log.txt").read_text() and ".epx-" not in (run / "config.json").read_text()
        # tabular variants read their own assays' features and the gene's, never a cross-mark one
        heads = {f.split(".", 1)[0] for f in config["features"]}
        assert heads - {"gene", "tss", "strand"} == set(v["assays"]), (v["name"], heads)
    assert len(re.findall(r"^\[\d+/15\] \S+: \d assays?, test spearman", result.stderr, re.M)) == 15
    assert re.sub(r"\s+", "", result.stderr).endswith(f"wrote{out}")


def test_leaderboard_rows_for_every_cell_line_and_variant(ablation):
    from epx.outputs import epx_kind

    out, result = ablation
    board = pd.read_csv(out / "leaderboard.tsv", sep="\t")
    assert list(board.columns) == ["part", "cell_line", "variant", "assays", "n", "metric", "value", "ci_low",
                                   "ci_high", "reference", "diff", "diff_low", "diff_high"]
    spearman = board[board["metric"] == "spearman"]
    for part in ("test", "oof"):
        for cell in ("X1", "X2", "X3"):
            rows = spearman[(spearman["part"] == part) & (spearman["cell_line"] == cell)]
            assert sorted(rows["variant"]) == sorted(VARIANTS), (part, cell)
    assert set(board["reference"]) == {"all"}
    ref = spearman[spearman["variant"] == "all"]
    assert (ref["diff"] == 0).all() and ref["diff_low"].isna().all()
    others = spearman[spearman["variant"] != "all"]
    assert (others["ci_low"] <= others["value"]).all() and (others["value"] <= others["ci_high"]).all()
    assert (others["diff_low"] <= others["diff"]).all() and (others["diff"] <= others["diff_high"]).all()
    only = board[board["variant"] == "only-H3K36me3"]
    assert set(only["assays"]) == {"H3K36me3"}
    assert epx_kind(out / "leaderboard.png") == "plot" and epx_kind(out) == "ablation"
    assert "only-H3K36me3" in result.stdout and "without-DNase" in result.stdout  # the table at the end


def test_the_runs_inside_are_runs(ablation, run):
    out, _ = ablation
    result = run("report", out / "runs" / "all", out / "runs" / "only-H3K4me3", "--format", "tsv",
                 "--bootstrap", "100", "--no-baselines")
    assert result.exit_code == 0, result.stderr
    assert {"all", "only-H3K4me3"} <= set(pd.read_csv(io.StringIO(result.stdout), sep="\t")["entry"])


def test_force_replaces_an_ablation_but_not_a_user_file(demo_dataset, tmp_path, run):
    out = tmp_path / "abl"
    args = ["ablate", demo_dataset, "--model", "ridge", "--assays", "all", "--chr-kfold", "3", "--bootstrap", "100",
            "-o", out]
    assert run(*args).exit_code == 0
    assert_user_error(run(*args), "--force")
    result = run(*args, "--force")
    assert result.exit_code == 0, result.stderr
    (out / "runs" / "all" / "notes.txt").write_text("mine")
    assert_user_error(run(*args, "--force"), "runs/all/notes.txt", "epx did not write")
    assert (out / "runs" / "all" / "notes.txt").read_text() == "mine"
    a_run = tmp_path / "run"
    assert run("train", demo_dataset, "--model", "ridge", "--chr-kfold", "3", "--shap-rows", "0", "-o", a_run).exit_code == 0
    assert_user_error(run(*args[:-1], a_run, "--force"), "is a run (epx train), not an ablation")


def test_cross_cell_split_and_one_variant(demo_dataset, tmp_path, run):
    out = tmp_path / "abl"
    result = run("ablate", demo_dataset, "--model", "ridge", "--assays", "all", "--chr-kfold", "3",
                 "--train-cells", "X1,X2", "--test-cells", "X3", "--bootstrap", "100", "-o", out)
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "runs" / "all" / "config.json").read_text())
    assert config["train_cells"] == ["X1", "X2"] and config["predict_cells"] == ["X3"]
    assert (out / "runs" / "all" / "split.tsv").read_bytes() == (out / "split.tsv").read_bytes()
    split = pd.read_csv(out / "split.tsv", sep="\t")
    assert set(split.loc[split["cell_line"] == "X3", "role"]) == {"test"}
    board = pd.read_csv(out / "leaderboard.tsv", sep="\t")
    assert set(board["cell_line"]) == {"X1", "X2", "X3"}  # X3, never trained on, scored in its genes' folds


def test_seeds_pass_through(demo_dataset, tmp_path, run):
    out = tmp_path / "abl"
    result = run("ablate", demo_dataset, "--model", "ridge", "--assays", "all", "--chr-kfold", "3", "--seeds", "2",
                 "--bootstrap", "100", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "ablation.json").read_text())["seeds"] == 2
    assert json.loads((out / "runs" / "all" / "config.json").read_text())["seeds"] == 2
    zero = run("ablate", demo_dataset, "--model", "ridge", "--assays", "all", "--chr-kfold", "3", "--seeds", "0",
               "-o", tmp_path / "zero")
    assert_user_error(zero, "--seeds")
    assert not (tmp_path / "zero").exists()


def test_refusals_are_one_line_and_write_nothing(demo_dataset, one_assay, tmp_path, run):
    out = tmp_path / "abl"
    assert_user_error(run("ablate", demo_dataset, "--model", "ridge", "--assays", "each,eech", "--chr-kfold", "3",
                          "-o", out), "unknown --assays mode 'eech'", "leave-one-out")
    assert_user_error(run("ablate", one_assay, "--model", "ridge", "--assays", "leave-one-out", "--chr-kfold", "3",
                          "-o", out), "leave-one-out needs two or more assays", "H3K4me3")
    # a model that fails in the first variant, after the split was written: nothing is left behind
    import importlib.util

    if importlib.util.find_spec("torch") is not None:  # the neural models are installed only with torch
        assert_user_error(run("ablate", one_assay, "--model", "cnn", "--chr-kfold", "3", "-o", out), "binned")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_train_assays(demo_dataset, tmp_path, run):
    out = tmp_path / "run"
    result = run("train", demo_dataset, "--model", "ridge", "--chr-kfold", "3", "--assays", "H3K4me3,H3K27ac",
                 "--assays", "H3K4me3", "--shap-rows", "0", "-o", out)
    assert result.exit_code == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["assays"] == ["H3K4me3", "H3K27ac"] and config["dataset_assays"] == ASSAYS
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--chr-kfold", "3", "--assays", "H3K4me3,H3K99",
                          "-o", tmp_path / "bad"), "'H3K99' is not in the dataset", ", ".join(ASSAYS))
    assert not (tmp_path / "bad").exists()


def test_help_and_completion_of_the_modes(demo_dataset, run):
    from test_completion import both

    text = run("ablate", "--help").stdout
    for fragment in ("Usage: epx ablate [OPTIONS] DATASET", "--assays [each|leave-one-out|all]", "--split FILE",
                     "--loco", "--chr-kfold K", "--holdout CHROMS", "--test CHROMS", "--train-cells CELLS",
                     "--test-cells CELLS", "--param KEY=VALUE", "--seeds K", "--bootstrap N", "-o, --output DIR"):
        assert fragment in text, fragment
    assert "--assays ASSAYS" in run("train", "--help").stdout
    assert both(f"epx ablate {demo_dataset} --assays each,") == ["each,leave-one-out", "each,all"]
    assert both(f"epx train {demo_dataset} --assays H3K4") == ["H3K4me3", "H3K4me1"]


@pytest.fixture(scope="module")
def binned(demo_study, tmp_path_factory):
    """A small binned dataset: two assays, two cell lines, 20 bins."""
    out = tmp_path_factory.mktemp("binned") / "ds"
    result = _invoke("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                     *demo_labels(demo_study, ("X1", "X2")), "--cells", "X1,X2", "--assays", "H3K4me3,H3K36me3",
                     "--bins", "20", "-o", out, "--workers", "1")
    assert result.exit_code == 0, result.stderr
    return out


def test_a_torch_model(binned, tmp_path, run):
    pytest.importorskip("torch")
    out = tmp_path / "cnn"
    result = run("ablate", binned, "--model", "cnn", "--assays", "each,leave-one-out,all", "--chr-kfold", "2",
                 "--param", "max_epochs=2", "--param", "threads=1", "--param", "channels=4", "--param", "hidden=8",
                 "--param", "verbose=false", "--bootstrap", "100", "-o", out)
    assert result.exit_code == 0, result.stderr
    names = ["only-H3K4me3", "only-H3K36me3", "without-H3K4me3", "without-H3K36me3", "all"]
    assert [v["name"] for v in json.loads((out / "ablation.json").read_text())["variants"]] == names
    for name in names:
        config = json.loads((out / "runs" / name / "config.json").read_text())
        assert config["input_kind"] == "binned" and config["params"]["max_epochs"] == 2
    assert json.loads((out / "runs" / "only-H3K36me3" / "config.json").read_text())["assays"] == ["H3K36me3"]
    board = pd.read_csv(out / "leaderboard.tsv", sep="\t")
    assert set(board["cell_line"]) == {"X1", "X2"} and set(board["variant"]) == set(names)
    assert (out / "leaderboard.png").stat().st_size > 0
