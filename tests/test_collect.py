"""`epx train --fold/--only-seed` writes partial runs; `epx collect` assembles them into the run one
`epx train` process writes: the same predictions, metrics, models and config, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_user_error

FAST = ["-p", "n_estimators=40", "-p", "rounds_without_valid=40", "-p", "learning_rate=0.1"]
CV = ["--chr-kfold", "3", "--test", "chr1", "--train-cells", "X1", "--test-cells", "X3"]
RIDGE = ["--model", "ridge", *CV]
LGBM = ["--model", "lgbm", *CV, *FAST, "--seeds", "2", "--shap-rows", "30"]
TABLES = ("oof", "test", "seed_predictions", "shap")
FILES = ("metrics.json", "config.json", "split.tsv", "dataset_genes.txt", "importance.tsv")


def _train(dataset, out: Path, *args) -> Path:
    from typer.testing import CliRunner

    from epx.cli import app

    result = CliRunner().invoke(app, ["train", str(dataset), *map(str, args), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def runs(demo_dataset, tmp_path_factory):
    """One-process runs and their parts: ridge by fold; lgbm with 2 seeds by fold and by seed."""
    root = tmp_path_factory.mktemp("collect")
    return {
        "ridge": _train(demo_dataset, root / "ridge", *RIDGE),
        "ridge_parts": [_train(demo_dataset, root / f"ridge_{f}", *RIDGE, "--fold", f) for f in ("k0", "k1", "k2")],
        "lgbm": _train(demo_dataset, root / "lgbm", *LGBM),
        "lgbm_parts": [_train(demo_dataset, root / "lgbm_k0", *LGBM, "--fold", "k0"),
                       _train(demo_dataset, root / "lgbm_k12_s0", *LGBM, "--fold", "k1,k2", "--only-seed", "0"),
                       _train(demo_dataset, root / "lgbm_k12_s1", *LGBM, "--fold", "k1", "--fold", "k2",
                              "--only-seed", "1")],
        "root": root,
    }


def _same_run(one: Path, collected: Path) -> None:
    for name in TABLES:
        if (one / f"{name}.parquet").is_file() or (collected / f"{name}.parquet").is_file():
            pd.testing.assert_frame_equal(pd.read_parquet(one / f"{name}.parquet"),
                                          pd.read_parquet(collected / f"{name}.parquet"), check_exact=True)
    for name in FILES:
        assert (one / name).is_file() == (collected / name).is_file(), name
        if (one / name).is_file():
            assert (one / name).read_bytes() == (collected / name).read_bytes(), name
    mine = sorted(p.relative_to(one) for p in (one / "models").rglob("*"))
    assert mine == sorted(p.relative_to(collected) for p in (collected / "models").rglob("*"))
    for rel in mine:
        if (one / rel).is_file():
            assert (one / rel).read_bytes() == (collected / rel).read_bytes(), rel
    assert "partial" not in json.loads((collected / "config.json").read_text())


def test_fold_parts_collect_to_the_one_process_run(runs, run, demo_dataset, tmp_path):
    parts = runs["ridge_parts"]
    config = json.loads((parts[1] / "config.json").read_text())
    assert config["partial"]["folds"] == ["k1"] and config["partial"]["all_folds"] == ["k0", "k1", "k2"]
    assert sorted(p.name for p in (parts[1] / "models").iterdir()) == ["fold_k1"]
    out = tmp_path / "collected"
    result = run("collect", *reversed(parts), "-o", out)  # the parts' order does not matter
    assert result.exit_code == 0, result.stderr
    _same_run(runs["ridge"], out)
    # consumers take the collected run as they take the one-process run
    a, b = tmp_path / "pred_one", tmp_path / "pred_collected"
    assert run("predict", runs["ridge"], demo_dataset, "-o", a).exit_code == 0
    assert run("predict", out, demo_dataset, "-o", b).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(a / "predictions.parquet"), pd.read_parquet(b / "predictions.parquet"),
                                  check_exact=True)
    report = run("report", runs["ridge"], out, "--format", "tsv")
    assert report.exit_code == 0, report.stderr
    # --force replaces a collected run
    assert run("collect", *parts, "-o", out, "--force").exit_code == 0
    _same_run(runs["ridge"], out)


def test_fold_and_seed_parts_collect_to_the_seed_ensemble(runs, run, tmp_path):
    out = tmp_path / "collected"
    result = run("collect", *runs["lgbm_parts"], "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "2-seed ensemble" in " ".join(result.stdout.split())
    _same_run(runs["lgbm"], out)
    assert sorted(p.name for p in (out / "models").iterdir()) == [f"fold_k{f}_seed{s}" for f in range(3) for s in range(2)]
    log = (out / "log.txt").read_text()
    assert all(f"fold k{f} seed {s}:" in log for f in range(3) for s in range(2))


@pytest.mark.parametrize("command", ["predict", "report", "stack", "submit", "explain"])
def test_consumers_refuse_a_partial_run(runs, run, demo_dataset, demo_study, tmp_path, command):
    part = runs["ridge_parts"][0]
    args = {"predict": [part, demo_dataset, "-o", tmp_path / "p"], "report": [part],
            "stack": [part, runs["ridge"], "-o", tmp_path / "s"],
            "submit": [part, "--cell", "X3", "--genes", demo_study / "test_genes.tsv", "--last-name", "Doe",
                       "--first-name", "Jane", "-o", tmp_path / "z"],
            "explain": [part]}[command]
    assert_user_error(run(command, *args), "partial run", "epx collect")
    assert not any(tmp_path.iterdir())


def test_train_refuses_an_unknown_fold_or_seed(demo_dataset, run, tmp_path):
    assert_user_error(run("train", demo_dataset, *RIDGE, "--fold", "k7", "-o", tmp_path / "a"),
                      "unknown fold 'k7'", "k0, k1, k2")
    assert_user_error(run("train", demo_dataset, *RIDGE, "--seeds", "2", "--seed", "4", "--only-seed", "1",
                          "-o", tmp_path / "b"), "--only-seed 1", "4, 5")
    assert_user_error(run("train", demo_dataset, *RIDGE, "--only-seed", "x", "-o", tmp_path / "c"), "--only-seed", "'x'")
    assert not any(tmp_path.iterdir())


def test_collect_refuses_parts_that_do_not_make_one_run(runs, run, demo_dataset, tmp_path):
    k0, k1, k2 = runs["ridge_parts"]
    lgbm = runs["lgbm_parts"]
    out = tmp_path / "out"
    other = _train(demo_dataset, runs["root"] / "ridge_log1p_k2", *RIDGE, "--target", "log1p", "--fold", "k2")
    twice = _train(demo_dataset, runs["root"] / "ridge_k1_again", *RIDGE, "--fold", "k1")
    cases = [
        ((k0, k1, other), ("parts of different runs", "target differs")),
        ((k0, k1, lgbm[0]), ("parts of different runs", "model differs")),
        ((k0, k2), ("fold k1 is missing", "--fold k1")),
        ((lgbm[0], lgbm[1]), ("seed 1 of fold k1 is missing", "--only-seed 1")),
        ((k0, k1, twice, k2), ("fold k1 is in two parts",)),
        ((lgbm[0], lgbm[1], lgbm[2], lgbm[1]), ("is listed twice",)),
        ((k0, k1, k2, demo_dataset), ("not an epx run",)),
        ((k0, k1, k2, tmp_path / "nowhere"), ("partial run not found",)),
        ((runs["ridge"],), ("a complete run, not a part",)),
    ]
    for parts, fragments in cases:
        assert_user_error(run("collect", *parts, "-o", out), *fragments)
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []
