"""chromoformer through the real CLI: featurize with three geometries and contact pairs, train,
predict, explain (which distal regions the model used), and the refusals around them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error, demo_labels

pytest.importorskip("torch")

SMALL = ["--param", "d_embed=16", "--param", "reg_d_model=16", "--param", "reg_heads=2", "--param", "reg_layers=1",
         "--param", "pair_layers=1", "--param", "embed_ff=32", "--param", "pair_ff=32", "--param", "head_hidden=16",
         "--param", "lr=1e-3", "--param", "max_epochs=2", "--param", "verbose=false"]


@pytest.fixture(scope="module")
def study_with_pairs(demo_study, tmp_path_factory):
    """The demo study, a BEDPE linking 60% of the genes to 1-3 regions 30-100 kb away, and the
    dataset featurized with two geometries and those pairs."""
    from typer.testing import CliRunner

    from epx.cli import app
    from epx.io.genes import read_genes

    root = tmp_path_factory.mktemp("cf")
    genes = read_genes(demo_study / "genes.tsv")
    rng = np.random.default_rng(0)
    rows = []
    for r in genes.itertuples():
        if rng.random() < 0.6:
            for _ in range(int(rng.integers(1, 4))):
                d = int(rng.integers(30_000, 100_000)) * (1 if rng.random() < 0.5 else -1)
                s = max(0, r.tss + d)
                rows.append((r.chrom, max(0, r.tss - 2000), r.tss + 2000, r.chrom, s, s + int(rng.integers(1000, 5000)),
                             ".", round(float(rng.uniform(5, 30)), 3)))
    pairs = root / "pairs.bedpe"
    pd.DataFrame(rows).to_csv(pairs, sep="\t", header=False, index=False)
    ds = root / "ds"
    args = ["featurize", "--genes", str(demo_study / "genes.tsv"), "--manifest", str(demo_study / "manifest.tsv"),
            *demo_labels(demo_study, ("X1", "X2")), "--bins", "2000x20,500x80", "--pairs", str(pairs), "-o", str(ds),
            "--workers", "2"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    run_dir = root / "run"
    result = CliRunner().invoke(app, ["train", str(ds), "--model", "chromoformer", "--bins", "2000x20,500x80",
                                      "--target", "log1p", "--holdout", "chr2", "--test", "chr3", "--train-cells", "X1",
                                      *SMALL, "-o", str(run_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return {"root": root, "pairs": pairs, "ds": ds, "run": run_dir}


def test_train_records_geometries_and_regions(study_with_pairs):
    config = json.loads((study_with_pairs["run"] / "config.json").read_text())
    assert config["geometries"] == ["2000x20", "500x80"] and config["regions"] is True
    assert config["region_params"] == {"max_regions": 8, "max_region_width": 40000}
    metrics = json.loads((study_with_pairs["run"] / "metrics.json").read_text())
    test = metrics["overall"]["test"]["all"]
    assert test["n"] > 0 and np.isfinite(test["pearson"])
    meta = json.loads((next((study_with_pairs["run"] / "models").iterdir()) / "torch.json").read_text())
    assert meta["shapes"]["geometries"] == {"2000x20": 20, "500x80": 80} and meta["shapes"]["n_regions"] == 8


def test_predict_and_explain_use_the_regions(run, study_with_pairs, tmp_path):
    paths = study_with_pairs
    result = run("predict", paths["run"], paths["ds"], "--cells", "X2", "-o", tmp_path / "pred")
    assert result.exit_code == 0, result.stderr
    result = run("explain", paths["run"], "-o", tmp_path / "expl", "--rows", "60")
    assert result.exit_code == 0, result.stderr
    regions = pd.read_csv(tmp_path / "expl" / "regions.tsv", sep="\t")
    assert list(regions.columns) == ["gene_id", "cell_line", "group", "slot", "chrom", "start", "end", "score", "weight"]
    assert len(regions) > 0 and (regions["weight"] >= 0).all() and (regions["weight"] <= 1).all()
    # slot 0 is each gene's strongest contact
    assert (regions.groupby(["gene_id", "cell_line"]).apply(lambda t: t.sort_values("slot")["score"].is_monotonic_decreasing)).all()
    assert (tmp_path / "expl" / "regions.png").stat().st_size > 0


def test_predict_refuses_a_dataset_without_the_regions_or_geometries(run, demo_study, study_with_pairs, tmp_path):
    base = ["featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
            "--cells", "X3", "--workers", "1"]
    assert run(*base, "--bins", "2000x20,500x80", "-o", tmp_path / "nopairs").exit_code == 0
    result = run("predict", study_with_pairs["run"], tmp_path / "nopairs", "-o", tmp_path / "out")
    assert_user_error(result, "no distal regions", "--pairs")
    assert run(*base, "--bins", "2000x20", "--pairs", study_with_pairs["pairs"], "-o", tmp_path / "onegeo").exit_code == 0
    result = run("predict", study_with_pairs["run"], tmp_path / "onegeo", "-o", tmp_path / "out")
    assert_user_error(result, "500x80", "--bins 2000x20,500x80")
    assert not (tmp_path / "out").exists()


def test_train_refuses_a_missing_geometry_naming_the_option(run, study_with_pairs, tmp_path):
    result = run("train", study_with_pairs["ds"], "--model", "chromoformer", "--random", "2", "-o", tmp_path / "r")
    assert_user_error(result, "100x400", "--bins 2000x20,500x80,100x400", "epx train --bins")
    assert not (tmp_path / "r").exists()
    result = run("train", study_with_pairs["ds"], "--model", "cnn", "--bins", "2000x20,500x80", "--random", "2",
                 "-o", tmp_path / "r")
    assert_user_error(result, "reads one bin geometry")


def test_two_processes_train_chromoformer_on_its_dict_batches(study_with_pairs, tmp_path):
    """DDP with a multi-input model: every process reads its share of dict batches (bins at two
    resolutions, regions, masks); Lightning re-runs the real epx command for the second process."""
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "LOCAL_RANK", "NODE_RANK"))}
    proc = subprocess.run([str(Path(sys.executable).with_name("epx")), "train", str(study_with_pairs["ds"]), "--model",
                           "chromoformer", "--bins", "2000x20,500x80", "--target", "log1p", "--holdout", "chr2",
                           "--test", "chr3", "--train-cells", "X1", *SMALL, "--param", "devices=2", "-o", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(next((out / "models").glob("*/torch.json")).read_text())
    assert meta["history"]["processes"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(metrics["overall"]["test"]["all"]["pearson"])
