"""`epx report RUN_OR_STACK...`: the leaderboard with bootstrap intervals, through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error

from epx import metrics
from epx.report import weighted_auroc, weighted_pearson, weighted_ranks


@pytest.fixture(scope="module")
def runs(demo_dataset, demo_study, tmp_path_factory):
    from typer.testing import CliRunner

    from epx.cli import app

    runner = CliRunner()
    root = tmp_path_factory.mktemp("report")

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        return result

    out = {}
    for model in ("lgbm", "ridge"):
        out[model] = root / model
        run("train", demo_dataset, "--model", model, "--chr-kfold", "3", "--test", "chr1", "--train-cells", "X1",
            "--predict-cells", "X3", "-o", out[model], "--shap-rows", "0")
    out["stack"] = root / "stack"
    run("stack", out["lgbm"], out["ridge"], "--rule", "mean", "-o", out["stack"])
    # the same model on fewer genes: another row set
    genes = (demo_study / "genes.tsv").read_text().splitlines(keepends=True)
    (root / "fewer.tsv").write_text("".join(genes[:301]))
    kept = {line.split("\t")[0] for line in genes[1:301]}
    labels = []
    for cell in ("X1", "X3"):
        lines = (demo_study / "labels" / f"{cell}.tsv").read_text().splitlines(keepends=True)
        (root / f"{cell}.tsv").write_text(lines[0] + "".join(ln for ln in lines[1:] if ln.split("\t")[0] in kept))
        labels += ["--labels", f"{cell}={root / f'{cell}.tsv'}"]
    run("featurize", "--genes", root / "fewer.tsv", "--manifest", demo_study / "manifest.tsv",
        *labels, "--cells", "X1,X3", "--assays", "H3K4me3,H3K27ac", "-o", root / "fewer-ds")
    out["fewer"] = root / "fewer-run"
    run("train", root / "fewer-ds", "--model", "ridge", "--chr-kfold", "3", "--test", "chr1", "--train-cells", "X1",
        "--predict-cells", "X3", "-o", out["fewer"])
    return out


def test_weighted_ranks_equal_ranking_the_resampled_values():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, size=40).astype(float)  # many ties
    p = np.round(y + rng.normal(size=40), 1)
    W = rng.multinomial(40, np.full(40, 1 / 40), size=25).astype(float)
    rho = weighted_pearson(weighted_ranks(y, W), weighted_ranks(p, W), W)
    auc = weighted_auroc((y > 2).astype(float), p, W)
    for b in range(len(W)):
        idx = np.repeat(np.arange(40), W[b].astype(int))  # the resample, written out
        assert rho[b] == pytest.approx(metrics.spearman(y[idx], p[idx]), abs=1e-12)
        assert auc[b] == pytest.approx(metrics.auroc((y[idx] > 2).astype(float), p[idx]), abs=1e-12)
    ones = np.ones((1, 40))
    assert weighted_pearson(np.broadcast_to(y, ones.shape), np.broadcast_to(p, ones.shape), ones)[0] == pytest.approx(metrics.pearson(y, p))


def test_leaderboard_of_two_runs_and_a_stack(run, runs):
    result = run("report", runs["lgbm"], runs["ridge"], runs["stack"], "--format", "json", "--bootstrap", "300")
    assert result.exit_code == 0, result.stderr
    board = pd.DataFrame(json.loads(result.stdout))
    assert set(board["part"]) == {"test", "oof"}  # the stack reports its test rows too
    entries = set(board["entry"])
    assert {"lgbm", "ridge", "stack"} <= entries and "tss:H3K4me3" in entries
    sp = board[board["metric"] == "spearman"]
    assert (sp["ci_low"] <= sp["value"]).all() and (sp["value"] <= sp["ci_high"]).all()
    for (_part, _cell), g in sp.groupby(["part", "cell_line"]):
        models = g[~g["entry"].str.startswith("tss:")]
        ref = g["reference"].iloc[0]
        assert ref == models.loc[models["value"].idxmax(), "entry"]  # the best entry is the reference
        assert g.loc[g["entry"] == ref, "diff"].iloc[0] == 0
        others = g[g["entry"] != ref]
        assert (others["diff_low"] <= others["diff"]).all() and (others["diff"] <= others["diff_high"]).all()
    # the point estimates are the run's own metrics
    lg = json.loads((runs["lgbm"] / "metrics.json").read_text())
    x3 = sp[(sp["entry"] == "lgbm") & (sp["part"] == "test") & (sp["cell_line"] == "X3")]["value"].iloc[0]
    assert x3 == pytest.approx(lg["overall"]["test"]["by_cell_line"]["X3"]["spearman"], abs=1e-9)
    # paired: the interval of a difference is narrower than the sum of the two half-widths
    g = sp[(sp["part"] == "oof") & (sp["cell_line"] == "X1")].set_index("entry")
    diff_width = g.loc["ridge", "diff_high"] - g.loc["ridge", "diff_low"]
    assert diff_width < (g.loc["ridge", "ci_high"] - g.loc["ridge", "ci_low"]) + (g.loc["lgbm", "ci_high"] - g.loc["lgbm", "ci_low"])


def test_formats_baseline_and_plot(run, runs, tmp_path):
    table = run("report", runs["lgbm"], runs["ridge"], "--bootstrap", "200", "--baseline", "ridge", env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.stderr
    assert "ridge (ref)" in table.stdout and "spearman [95% CI]" in table.stdout
    ref = run("report", runs["lgbm"], runs["ridge"], "--bootstrap", "200", "--baseline", "ridge", "--format", "md")
    assert "| ridge (ref) |" in ref.stdout
    md = run("report", runs["lgbm"], runs["ridge"], "--bootstrap", "200", "--format", "md", "--no-baselines")
    assert md.stdout.startswith("| rows | cell line | entry |") and "tss:" not in md.stdout
    best = run("report", runs["lgbm"], "--bootstrap", "200", "--format", "md")
    every = run("report", runs["lgbm"], "--bootstrap", "200", "--format", "md", "--all-baselines")
    groups = {tuple(r.split(" | ")[:2]) for r in best.stdout.splitlines()[2:]}
    assert best.stdout.count("tss:") == len(groups) and every.stdout.count("tss:") == 7 * len(groups)
    tsv = run("report", runs["lgbm"], "--bootstrap", "200", "--format", "tsv")
    header = tsv.stdout.splitlines()[0].split("\t")
    assert header[:6] == ["part", "cell_line", "entry", "n", "metric", "value"]
    plot = tmp_path / "figs" / "board.png"
    result = run("report", runs["lgbm"], runs["ridge"], "--bootstrap", "200", "--plot", plot)
    assert result.exit_code == 0 and plot.read_bytes().startswith(b"\x89PNG")
    single = run("report", runs["lgbm"], "--bootstrap", "200")
    assert "per fold" in single.stdout and "mean +- sd" in single.stdout


def test_runs_over_different_genes(run, runs):
    assert_user_error(run("report", runs["lgbm"], runs["fewer"], "--bootstrap", "200"),
                      "score different genes", "--intersect")
    result = run("report", runs["lgbm"], runs["fewer"], "--bootstrap", "200", "--intersect", "--format", "json")
    assert result.exit_code == 0, result.stderr
    board = pd.DataFrame(json.loads(result.stdout))
    n_fewer = len(pd.read_parquet(runs["fewer"] / "oof.parquet").query("cell_line == 'X1'"))
    assert set(board.loc[board["part"] == "oof", "n"]) == {n_fewer}


def test_bad_requests(run, runs, tmp_path):
    bad = run("report", runs["lgbm"], "--format", "xlsx")
    assert bad.exit_code == 2 and "xlsx" in bad.stderr and "Traceback" not in bad.stderr
    assert_user_error(run("report", runs["lgbm"], "--bootstrap", "10"), "at least 100")
    assert_user_error(run("report", runs["lgbm"], runs["ridge"], "--baseline", "nope"), "'nope' is not one of")
    assert_user_error(run("report", runs["lgbm"], runs["lgbm"]), "listed twice")
    assert_user_error(run("report", tmp_path), "not an epx run")
