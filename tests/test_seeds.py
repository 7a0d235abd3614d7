"""`epx train --seeds K`: seed ensembles for every model, and their spread in `epx report`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error, train_run_dir

from epx.metrics import evaluate

FAST = ["-p", "n_estimators=60", "-p", "rounds_without_valid=60", "-p", "learning_rate=0.1"]
CV = ["--chr-kfold", "3", "--test", "chr1", "--train-cells", "X1", "--test-cells", "X3"]


@pytest.fixture(scope="module")
def seeded(demo_dataset, tmp_path_factory):
    """Three-seed runs of lgbm (bagging and feature sampling: seeds differ) and ridge (closed form)."""
    return {
        "lgbm": train_run_dir(tmp_path_factory, "lgbm3", demo_dataset, "--model", "lgbm", *CV, *FAST, "--seeds", "3",
                              "--shap-rows", "40"),
        "ridge": train_run_dir(tmp_path_factory, "ridge3", demo_dataset, "--model", "ridge", *CV, "--seeds", "3",
                               "--seed", "5"),
    }


def _ensemble_is_the_seed_mean(out, seeds):
    per_seed = pd.read_parquet(out / "seed_predictions.parquet")
    assert list(per_seed.columns) == ["gene_id", "cell_line", "fold", "part", "seed", "y_pred"]
    assert sorted(per_seed["seed"].unique()) == seeds
    for part in ("oof", "test"):
        table = pd.read_parquet(out / f"{part}.parquet")
        mine = per_seed[per_seed["part"] == part]
        assert (mine.groupby("seed").size() == len(table)).all()  # every row, once per seed
        mean = mine.groupby(["gene_id", "cell_line"])["y_pred"].mean()
        np.testing.assert_allclose(mean.loc[list(zip(table["gene_id"], table["cell_line"], strict=True))].to_numpy(),
                                   table["y_pred"].to_numpy(), rtol=1e-12, atol=1e-12)
    return per_seed


def test_lgbm_seed_ensemble(seeded):
    out, result = seeded["lgbm"]
    models = sorted(p.name for p in (out / "models").iterdir())
    assert models == [f"fold_k{f}_seed{s}" for f in range(3) for s in range(3)]
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0 and config["seeds"] == 3 and config["seed_values"] == [0, 1, 2]
    per_seed = _ensemble_is_the_seed_mean(out, [0, 1, 2])
    oof = per_seed[per_seed["part"] == "oof"].pivot(index=["gene_id", "cell_line"], columns="seed", values="y_pred")
    assert (oof[0] != oof[1]).any()  # bagging and feature sampling follow the seed
    metrics = json.loads((out / "metrics.json").read_text())
    block = metrics["seeds"]
    assert block["seeds"] == [0, 1, 2] and set(block) == {"seeds", "oof", "test"}
    table = pd.read_parquet(out / "oof.parquet")
    for cell, part in table.groupby("cell_line"):
        sp = block["oof"]["by_cell_line"][cell]["spearman"]
        assert len(sp["values"]) == 3 and sp["sd"] > 0
        assert sp["mean"] == pytest.approx(np.mean(sp["values"])) and sp["sd"] == pytest.approx(np.std(sp["values"], ddof=1))
        # each value is that seed's own metric; the overall block stays the ensemble's
        s1 = per_seed[(per_seed["part"] == "oof") & (per_seed["seed"] == 1)].set_index(["gene_id", "cell_line"])
        y1 = s1.loc[list(zip(part["gene_id"], part["cell_line"], strict=True)), "y_pred"].to_numpy()
        assert sp["values"][1] == pytest.approx(evaluate(part["y_true"].to_numpy(), y1, False)["spearman"])
        ensemble = metrics["overall"]["oof"]["by_cell_line"][cell]
        assert ensemble["spearman"] == pytest.approx(evaluate(part["y_true"].to_numpy(), part["y_pred"].to_numpy(), False)["spearman"])
    assert set(metrics["overall"]["oof"]) == {"all", "by_cell_line"}
    assert set(block["test"]["all"]["spearman"]) == {"mean", "sd", "values"}
    # importance and SHAP: one table per fold, averaged over the seeds' models
    imp = pd.read_csv(out / "importance.tsv", sep="\t")
    assert sorted(imp["fold"].unique()) == ["k0", "k1", "k2"] and not imp.duplicated(["fold", "feature"]).any()
    shap = pd.read_parquet(out / "shap.parquet")
    assert len(shap) == 3 * 40
    log = (out / "log.txt").read_text()
    assert "seeds=0,1,2" in log and all(f"fold k{f} seed {s}:" in log for f in range(3) for s in range(3))
    stdout = " ".join(result.stdout.split())
    assert "3-seed ensemble" in stdout and "oof X1 seeds" in stdout


def test_ridge_is_deterministic_so_its_seeds_agree(seeded):
    out, _ = seeded["ridge"]
    assert sorted(p.name for p in (out / "models").iterdir()) == [f"fold_k{f}_seed{s}" for f in range(3) for s in (5, 6, 7)]
    assert json.loads((out / "config.json").read_text())["seed_values"] == [5, 6, 7]
    _ensemble_is_the_seed_mean(out, [5, 6, 7])
    block = json.loads((out / "metrics.json").read_text())["seeds"]
    for part in ("oof", "test"):
        for m in block[part]["by_cell_line"].values():
            assert m["spearman"]["sd"] == 0 and len(set(m["spearman"]["values"])) == 1  # ridge ignores its seed


def test_one_seed_writes_what_it_always_did(demo_dataset, tmp_path, run):
    out = tmp_path / "one"
    assert run("train", demo_dataset, "--model", "ridge", *CV, "--seeds", "1", "-o", out).exit_code == 0
    assert sorted(p.name for p in (out / "models").iterdir()) == ["fold_k0", "fold_k1", "fold_k2"]
    assert not (out / "seed_predictions.parquet").exists()
    assert "seeds" not in json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "config.json").read_text())["seeds"] == 1


def test_predict_averages_every_seed(seeded, demo_dataset, run, tmp_path):
    out, _ = seeded["lgbm"]
    result = run("predict", out, demo_dataset, "-o", tmp_path / "pred")
    assert result.exit_code == 0, result.stderr
    preds = pd.read_parquet(tmp_path / "pred" / "predictions.parquet").set_index(["gene_id", "cell_line"])
    test = pd.read_parquet(out / "test.parquet").set_index(["gene_id", "cell_line"])
    for col in ("y_pred", "proba", "y_score"):
        np.testing.assert_allclose(preds.loc[test.index, col], test[col], rtol=1e-6, atol=1e-9)
    config = json.loads((tmp_path / "pred" / "config.json").read_text())
    assert sorted(config["models"]) == ["fold_k0", "fold_k1", "fold_k2"]
    assert all(len(members) == 3 for members in config["models"].values())


def test_holdout_inner_folds_and_seeds(demo_dataset, tmp_path, run):
    out = tmp_path / "ho"
    result = run("train", demo_dataset, "--model", "lgbm", "--holdout", "chr2", "--test", "chr1", "--train-cells", "X1",
                 "--test-cells", "X3", "--inner", "chr-kfold", "2", "--seeds", "2", *FAST, "--shap-rows", "0", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        f"fold_holdout_seed{s}_inner{j}" for s in (0, 1) for j in (0, 1)]
    per_seed = _ensemble_is_the_seed_mean(out, [0, 1])
    assert set(per_seed["part"]) == {"test"} and set(per_seed["cell_line"]) == {"X1", "X3"}
    block = json.loads((out / "metrics.json").read_text())["seeds"]
    assert set(block) == {"seeds", "test"} and block["test"]["by_cell_line"]["X3"]["spearman"]["sd"] > 0
    pred = run("predict", out, demo_dataset, "-o", tmp_path / "pred", "--cells", "X3")
    assert pred.exit_code == 0, pred.stderr
    preds = pd.read_parquet(tmp_path / "pred" / "predictions.parquet").set_index("gene_id")
    test = pd.read_parquet(out / "test.parquet").query("cell_line == 'X3'").set_index("gene_id")
    np.testing.assert_allclose(preds.loc[test.index, "y_pred"], test["y_pred"], rtol=1e-6, atol=1e-9)


def test_report_shows_the_seed_spread(seeded, run, tmp_path):
    lgbm, ridge = seeded["lgbm"][0], seeded["ridge"][0]
    stack = tmp_path / "stack"
    assert run("stack", lgbm, ridge, "--rule", "mean", "-o", stack).exit_code == 0  # stacks the ensembles
    result = run("report", lgbm, ridge, stack, "--bootstrap", "100", "--format", "json")
    assert result.exit_code == 0, result.stderr
    per_seed = pd.read_parquet(lgbm / "seed_predictions.parquet")
    for row in json.loads(result.stdout):
        part, cell, entry, metric = row["part"], row["cell_line"], row["entry"], row["metric"]
        if entry == "stack" or entry.startswith("tss:"):
            assert row["n_seeds"] is None and row["seed_mean"] is None and row["seed_sd"] is None
            continue
        assert row["n_seeds"] == 3
        if entry == "ridge3":
            assert row["seed_sd"] == 0 and row["seed_mean"] == pytest.approx(row["value"])
        elif metric == "spearman":  # each seed scored on the same genes as the ensemble
            truth = pd.read_parquet(lgbm / f"{part}.parquet").query("cell_line == @cell").set_index("gene_id")["y_true"]
            mine = per_seed[(per_seed["part"] == part) & (per_seed["cell_line"] == cell)]
            values = [evaluate(truth.to_numpy(), g.set_index("gene_id").loc[truth.index, "y_pred"].to_numpy(), False)["spearman"]
                      for _, g in mine.groupby("seed")]
            assert row["seed_mean"] == pytest.approx(np.mean(values)) and row["seed_sd"] == pytest.approx(np.std(values, ddof=1))
            assert row["seed_sd"] > 0
    tsv = run("report", lgbm, stack, "--bootstrap", "100", "--format", "tsv").stdout.splitlines()
    header = tsv[0].split("\t")
    assert header[-3:] == ["seed_mean", "seed_sd", "n_seeds"]
    assert {r.split("\t")[header.index("n_seeds")] for r in tsv[1:]} == {"3", "NA"}
    md = run("report", lgbm, ridge, stack, "--bootstrap", "100", "--format", "md").stdout
    assert "| spearman across seeds |" in md.splitlines()[0]
    assert "(3 seeds) |" in md and "+- 0.000 (3 seeds)" in md
    assert all(line.endswith("|  |") for line in md.splitlines() if "| stack |" in line or "tss:" in line)
    table = run("report", lgbm, "--bootstrap", "100", env={"COLUMNS": "250"})
    assert "spearman across seeds" in table.stdout and "(3 seeds)" in table.stdout
    assert "oof X1 seeds" in table.stdout  # the run's own per-fold table, with its seed rows
    plain = run("report", stack, "--bootstrap", "100", "--format", "md").stdout
    assert "across seeds" not in plain  # no seeded entry, no column


def test_seeds_below_one_are_refused(demo_dataset, run, tmp_path):
    assert_user_error(run("train", demo_dataset, "--model", "ridge", *CV, "--seeds", "0", "-o", tmp_path / "r"),
                      "--seeds must be at least 1")
    assert not (tmp_path / "r").exists()


def test_report_refuses_damaged_seed_predictions(seeded, run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(seeded["ridge"][0], copy)
    pd.read_parquet(copy / "seed_predictions.parquet").drop(columns="y_pred").to_parquet(copy / "seed_predictions.parquet")
    assert_user_error(run("report", copy, "--bootstrap", "100"), "seed_predictions.parquet", "no y_pred column")
