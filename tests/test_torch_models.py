"""The neural backends (plugins/epx-torch) through the real CLI on real dataset files: training
streams the memory-mapped bins, `epx predict` reproduces the run, and bad input is one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.conftest import demo_labels, train_run_dir

pytest.importorskip("torch")

TINY = ["--param", "max_epochs=3", "--param", "channels=8", "--param", "hidden=16", "--param", "verbose=true"]
SPLIT = ["--holdout", "chr2", "--test", "chr1", "--train-cells", "X1", "--test-cells", "X3"]


@pytest.fixture(scope="module")
def cnn_run(demo_dataset, tmp_path_factory):
    return train_run_dir(tmp_path_factory, "cnn", demo_dataset, "--model", "cnn", "--target", "binary", *SPLIT, *TINY)


def test_cnn_trains_on_binned_tracks_with_epoch_lines(cnn_run):
    run_dir, result = cnn_run
    assert "cnn seed 0 epoch 1/3" in result.stderr and "valid auroc" in result.stderr
    meta = json.loads((run_dir / "models" / "fold_holdout" / "torch.json").read_text())
    assert meta["model"] == "cnn" and meta["assays"] == json.loads((run_dir / "config.json").read_text())["assays"]
    assert meta["n_bins"] == 100 and meta["history"]["device"] == "cpu"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the demo's expression follows its marks: even three epochs of a small CNN rank genes well
    assert metrics["overall"]["test"]["by_cell_line"]["X3"]["auroc"] > 0.7


def test_predict_reproduces_the_runs_test_predictions(cnn_run, demo_dataset, run, tmp_path):
    run_dir, _ = cnn_run
    out = tmp_path / "pred"
    assert run("predict", run_dir, demo_dataset, "-o", out, "--cells", "X3").exit_code == 0
    pred = pd.read_parquet(out / "predictions.parquet")
    test = pd.read_parquet(run_dir / "test.parquet").query("cell_line == 'X3'")
    merged = test.merge(pred, on=["gene_id", "cell_line"], suffixes=("_run", "_predict"))
    assert len(merged) == len(test) > 50
    np.testing.assert_allclose(merged["y_pred_predict"], merged["y_pred_run"], rtol=1e-5, atol=1e-6)


def test_binned_view_reads_rows_in_any_order(demo_dataset):
    from epx.dataset import load_dataset

    ds = load_dataset(demo_dataset)
    genes, cells = np.array([5, 3, 5, 400, 0]), np.array([2, 0, 1, 1, 0])
    view = ds.bin_view(genes, cells, ["DNase", "H3K4me3"])
    expected = ds.bin_rows(genes, cells, normalised=True)[:, [ds.assays.index("DNase"), ds.assays.index("H3K4me3")]]
    np.testing.assert_allclose(view[np.arange(5)], expected, rtol=1e-6)
    np.testing.assert_allclose(view[[4, 1]], expected[[4, 1]], rtol=1e-6)
    np.testing.assert_allclose(view[3], expected[3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(view.take([2, 0])), expected[[2, 0]], rtol=1e-6)
    assert view.shape == (5, 2, 100) and len(view.take(slice(1, 3))) == 2


def test_train_on_a_subset_of_assays_and_predict_checks_them(demo_dataset, run, tmp_path):
    from epx.dataset import BinnedRows, load_dataset
    from epx.models.contract import FoldData
    from epx.train import SplitOptions, _Inputs, resolve_split  # noqa: F401 - the core's own view

    ds = load_dataset(demo_dataset)
    split, _ = resolve_split(ds, SplitOptions(scheme="holdout", valid_chroms=["chr2"], test_chroms=["chr1"]), ["X1"], [])
    inputs = _Inputs(ds, split, "binned", ["H3K4me3", "DNase"])
    data = inputs.fold_data(np.arange(10), with_targets=False, target="binary")
    assert isinstance(data, FoldData) and isinstance(data.X, BinnedRows)  # streamed, never materialised
    assert data.X.shape == (10, 2, 100) and data.feature_names == ["H3K4me3", "DNase"]


@pytest.fixture(scope="module")
def nan_dataset(demo_dataset, tmp_path_factory):
    from epx.dataset import load_dataset

    copy = tmp_path_factory.mktemp("nan") / "dataset"
    shutil.copytree(demo_dataset, copy)
    bins = np.load(copy / "bins.npy")
    ds = load_dataset(copy)
    gene = ds.genes["gene_id"].iat[17]
    bins[17, 0, ds.assays.index("H3K27me3"), 40] = np.nan
    np.save(copy / "bins.npy", bins)
    return copy, gene


def test_nan_in_the_bins_is_one_line_naming_the_gene(nan_dataset, run, tmp_path):
    copy, gene = nan_dataset
    out = tmp_path / "run"
    result = run("train", copy, "--model", "cnn", *SPLIT, *TINY, "-o", out)
    assert result.exit_code == 2 and not out.exists()
    assert f"NaN or inf for gene '{gene}' in cell line 'X1', assay 'H3K27me3'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cuda_without_a_gpu_is_an_error_not_a_fallback(demo_dataset, run, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "run"
    result = run("train", demo_dataset, "--model", "cnn", *SPLIT, *TINY, "--param", "device=cuda", "-o", out)
    assert result.exit_code == 2 and not out.exists()
    assert "device=cuda was asked for" in result.stderr and "device=cpu" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_dataset_without_bins_names_the_featurize_option(demo_study, run, tmp_path):
    ds = tmp_path / "tabular"
    assert run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
               *demo_labels(demo_study, ("X1",)), "--cells", "X1", "--assays", "H3K4me3", "--no-bins", "-o", ds,
               "--workers", "1").exit_code == 0
    result = run("train", ds, "--model", "hybrid", "--holdout", "chr2", "-o", tmp_path / "run")
    assert result.exit_code == 2 and "without --no-bins" in result.stderr
    assert not (tmp_path / "run").exists()


def test_predict_refuses_a_dataset_lacking_an_assay(cnn_run, demo_study, run, tmp_path):
    run_dir, _ = cnn_run
    ds = tmp_path / "fewer"
    assert run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
               "--cells", "X3", "--assays", "H3K4me3,DNase", "-o", ds, "--workers", "1").exit_code == 0
    result = run("predict", run_dir, ds, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "lacks assay 'H3K27ac'" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["other-model", "other-version"])
def test_a_checkpoint_from_another_model_or_version_is_refused(cnn_run, demo_dataset, run, tmp_path, damage):
    run_dir, _ = cnn_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    if damage == "other-model":  # a run whose config says hybrid, holding a cnn checkpoint
        config = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**config, "model": "hybrid"}))
        expected = "this checkpoint is a 'cnn' model, not 'hybrid'"
    else:
        meta_path = copy / "models" / "fold_holdout" / "torch.json"
        meta = json.loads(meta_path.read_text())
        meta_path.write_text(json.dumps({**meta, "epx_version": "0.0.9", "format": 0}))
        expected = "written by epx 0.0.9"
    result = run("predict", copy, demo_dataset, "-o", tmp_path / "out", "--cells", "X3")
    assert result.exit_code == 2 and expected in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


THIRD_PARTY = '''
"""A third party's torch model for epx: a trunk (an nn.Module) and one class naming it."""
import torch
from torch import nn

from epx_torch.trainer import TorchModel


class MeanMLP(nn.Module):
    def __init__(self, n_assays, n_bins, *, hidden):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(n_assays * n_bins, hidden), nn.ReLU())
        self.embedding_dim = hidden

    def forward(self, x):
        return self.layers(x)


class MLPModel(TorchModel):
    name = "mlp"
    trunk = MeanMLP
'''


def test_a_third_party_torch_model_is_a_trunk_and_a_spec(tmp_path, monkeypatch):
    """docs/plugins.md's promise: a module of a few lines plus a spec passes the conformance checks."""
    from epx_torch.spec import torch_spec

    from epx.models.testing import check_model

    (tmp_path / "my_mlp.py").write_text(THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = torch_spec(name="mlp", description="An MLP over all bins.", model="my_mlp:MLPModel", params={"hidden": 16},
                      trainer={"max_epochs": 15, "patience": 5, "batch_size": 32, "verbose": False})
    check_model(spec, tmp_path / "out", n=240)
    assert len(THIRD_PARTY.splitlines()) < 30


def test_predict_refuses_another_bin_geometry(cnn_run, demo_study, run, tmp_path):
    run_dir, _ = cnn_run
    ds = tmp_path / "coarse"
    assert run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
               "--cells", "X3", "--bins", "50", "--bin-size", "200", "-o", ds, "--workers", "1").exit_code == 0
    result = run("predict", run_dir, ds, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "200x50" in result.stderr and "featurize the new data with --bins 100x100" in result.stderr
    assert not (tmp_path / "out").exists()


def test_early_stopping_rows_are_whole_genes():
    """Without a validation side the trainer holds out genes, in every cell line, never single rows."""
    from epx_torch.trainer import holdout_genes

    rows = pd.DataFrame({"gene_id": [f"g{i}" for i in range(50)] * 3, "cell_line": np.repeat(["A", "B", "C"], 50)})
    held, kept = holdout_genes(rows, 0.1, seed=4)
    held_genes, kept_genes = set(rows["gene_id"].iloc[held]), set(rows["gene_id"].iloc[kept])
    assert len(held_genes) == 5 and not held_genes & kept_genes and len(held) == 15
    np.testing.assert_array_equal(holdout_genes(rows, 0.1, seed=4)[0], held)  # seeded


@pytest.mark.parametrize(("args", "expected"), [
    (["--model", "hybrid", "--param", "heads=3"], "model 'hybrid': heads (3) must divide d_model (64)"),
    (["--model", "cnn", "--param", "kernel=500", "--param", "pool=200"], "leave no convolution on 100 bins"),
    (["--model", "cnn", "--target", "log1p", "--param", "lr=1e9", "--param", "grad_clip=0", "--param", "max_epochs=2",
      "--param", "channels=4", "--param", "hidden=4"], "training diverged"),
    (["--model", "cnn", "--seed", "-1"], "--seed"),
])
def test_sizes_that_cannot_work_and_divergence_are_one_line(demo_dataset, run, tmp_path, args, expected):
    out = tmp_path / "run"
    result = run("train", demo_dataset, *SPLIT, *args, "-o", out)
    assert result.exit_code == 2 and expected in result.stderr, result.stderr
    # one error line (typer boxes a usage error); epoch lines before it are progress
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert not out.exists()
