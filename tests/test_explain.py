"""`epx explain` on binned (neural) runs: attention and saliency through the real CLI, on a tiny
imported DeepChrome dataset and tiny epx-torch models (the `attention` and `saliency` hooks)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error, write_plugin

pytest.importorskip("torch")

from epx.dataset import load_dataset  # noqa: E402
from epx.explain import outer_fold  # noqa: E402
from epx.models.contract import FoldData  # noqa: E402
from epx.models.plugins import get_spec  # noqa: E402
from epx.outputs import epx_kind  # noqa: E402

MARKS = ["H3K4me3", "H3K27me3", "H3K36me3"]
N_GENES, N_BINS = 40, 10
TINY = ["-p", "max_epochs=2", "-p", "threads=1", "-p", "verbose=false", "-p", "batch_size=8"]
MODELS = {
    "bilstm-attn": ["-p", "lstm_hidden=4", "-p", "mark_hidden=2"],
    "cnn": ["-p", "channels=4", "-p", "hidden=8", "--target", "binary"],
}
PNG = b"\x89PNG\r\n\x1a\n"


def _write_deepchrome(d) -> None:
    """DeepChrome CSVs (GeneID, BinID, one column per mark, label) for train, val and test genes,
    with an annotation: H3K4me3 around the TSS marks expressed genes (label 1)."""
    rng = np.random.default_rng(0)
    d.mkdir()
    rows = ["gene_id\tgene_name\tchrom\tstart\tend\tstrand\ttss"]
    for g in range(1, N_GENES + 1):
        strand, start = "+-"[g % 2], 10_000 * g
        rows.append(f"ENSG{g:011d}\tG{g}\tchr{1 + (g > N_GENES // 2)}\t{start}\t{start + 5000}\t{strand}\t"
                    f"{start if strand == '+' else start + 5000}")
    (d / "genes.tsv").write_text("\n".join(rows) + "\n")
    for role, genes in (("train", range(1, 25)), ("val", range(25, 31)), ("test", range(31, N_GENES + 1))):
        lines = ["GeneID,BinID," + ",".join(MARKS) + ",label"]
        for g in genes:
            y = g % 2
            for b in range(1, N_BINS + 1):
                k4 = rng.poisson(20 if y and 4 <= b <= 7 else 2)
                lines.append(f"{g:06d},{b},{k4},{rng.poisson(2 if y else 10)},{rng.poisson(5)},{y}")
        (d / f"toy_{role}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(runner, dataset, {model: run}): one dataset, a bilstm-attn and a cnn run trained on it."""
    from typer.testing import CliRunner

    from epx.cli import app

    root = tmp_path_factory.mktemp("explain")
    _write_deepchrome(root / "csv")

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)

    csvs = [root / "csv" / f"toy_{r}.csv" for r in ("train", "val", "test")]
    result = run("import", "deepchrome", *csvs, "-o", root / "ds", "--marks", ",".join(MARKS),
                 "--annotation", root / "csv" / "genes.tsv", "--build", "hg38")
    assert result.exit_code == 0, result.stderr
    runs = {}
    for model, extra in MODELS.items():
        runs[model] = root / model
        result = run("train", root / "ds", "--model", model, *TINY, *extra, "-o", runs[model])
        assert result.exit_code == 0, result.stderr
    return run, root / "ds", runs


def _explained(tiny, model, out, *extra, run_dir=None):
    run, _, runs = tiny
    result = run("explain", run_dir or runs[model], "-o", out, *extra)
    assert result.exit_code == 0, result.stderr
    for name in ("attention.parquet", "bins.png", "marks.png", "summary.tsv", "config.json"):
        assert (out / name).is_file(), name
    for name in ("bins.png", "marks.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert epx_kind(out) == "explanation"
    return result, pd.read_parquet(out / "attention.parquet"), pd.read_csv(out / "summary.tsv", sep="\t")


def _saliency(ds_path, model_dir, rows: pd.DataFrame) -> np.ndarray:
    """The cnn's own saliency hook on rows of the (one cell line) dataset."""
    ds = load_dataset(ds_path)
    genes = rows["gene_id"].astype(str).tolist()
    X = np.asarray(ds.bin_view(ds.gene_index(genes), np.zeros(len(genes), int), MARKS))
    model = get_spec("cnn").load_class().load(model_dir)
    return model.saliency(FoldData(X=X, y=None, rows=rows[["gene_id", "cell_line"]], feature_names=MARKS))


def test_attention_of_a_bilstm_run(tiny, tmp_path):
    _, _, runs = tiny
    result, table, summary = _explained(tiny, "bilstm-attn", tmp_path / "e")
    assert list(table.columns) == ["gene_id", "cell_line", "group", "kind", "assay", "bin", "bp", "weight"]
    assert set(table["kind"]) == {"bin", "mark"}  # the model's own mark weights: no saliency asked
    test = pd.read_parquet(runs["bilstm-attn"] / "test.parquet")
    assert table["gene_id"].nunique() == len(test) == 10
    bins = table[table["kind"] == "bin"]
    assert len(bins) == len(test) * len(MARKS) * N_BINS
    sums = bins.groupby(["gene_id", "assay"], observed=True)["weight"].sum()
    np.testing.assert_allclose(sums, 1, atol=1e-5)  # bin attention: a distribution over each mark's bins
    marks = table[table["kind"] == "mark"]
    assert marks["bin"].isna().all() and marks["bp"].isna().all()
    np.testing.assert_allclose(marks.groupby("gene_id", observed=True)["weight"].sum(), 1, atol=1e-5)
    # bp from the TSS: 10 bins of 100 bp centred on it, downstream to the right
    assert sorted(bins["bp"].unique()) == list(range(-500, 500, 100))
    # groups: the run's rank target above / at or below the cell line's median
    merged = table.drop_duplicates("gene_id").merge(test, on="gene_id")
    above = merged["y_true"] > merged["y_true"].median()
    assert (merged["group"] == np.where(above, "expressed", "silent")).all()
    assert summary["assay"].tolist() and sorted(summary["assay"]) == sorted(MARKS)
    assert summary["rank"].tolist() == [1, 2, 3] and summary["weight"].is_monotonic_decreasing
    assert summary["weight"].sum() == pytest.approx(1, abs=1e-4)
    assert set(summary["measure"]) == {"mean mark attention"}
    assert "mean mark attention" in result.stdout and "H3K4me3" in result.stdout
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert config["models"] == {"holdout": ["fold_holdout"]} and config["rows_from"] == "test.parquet"


def test_saliency_of_a_cnn_run(tiny, tmp_path):
    """A model without attention: Captum input x gradient per row, mark and bin, exactly what the
    model's own saliency hook returns for those rows."""
    _, ds_path, runs = tiny
    result, table, summary = _explained(tiny, "cnn", tmp_path / "e", "--rows", "6")
    assert set(table["kind"]) == {"saliency"}
    assert table["gene_id"].nunique() == 6 and len(table) == 6 * len(MARKS) * N_BINS
    assert np.isfinite(table["weight"]).all() and (table["weight"] != 0).any()
    # binary target: y_true 1 is expressed, 0 silent
    test = pd.read_parquet(runs["cnn"] / "test.parquet").set_index("gene_id")
    rows = table.drop_duplicates("gene_id")
    assert (rows["group"] == np.where(test.loc[rows["gene_id"], "y_true"] == 1, "expressed", "silent")).all()
    # the same numbers as the hook called directly on the same rows
    direct = _saliency(ds_path, runs["cnn"] / "models" / "fold_holdout", rows)
    assert direct.shape == (6, len(MARKS), N_BINS)
    np.testing.assert_allclose(table["weight"].to_numpy().reshape(direct.shape), direct, rtol=1e-4, atol=1e-6)
    assert set(summary["measure"]) == {"mean |input x gradient|, summed over bins"}
    np.testing.assert_allclose(summary.set_index("assay").loc[MARKS, "weight"], np.abs(direct).sum(axis=2).mean(axis=0),
                               rtol=1e-4)
    # the sample is seeded: the same rows again, and --force replaces the explanation
    again = tiny[0]("explain", runs["cnn"], "-o", tmp_path / "e", "--rows", "6", "--force")
    assert again.exit_code == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "e" / "attention.parquet"), table)


def test_out_of_fold_rows_are_explained_by_their_fold(tiny, tmp_path):
    """Without test rows, each out-of-fold row gets the saliency of the fold model that predicted it."""
    run, ds_path, _ = tiny
    result = run("train", ds_path, "--model", "cnn", "--chr-kfold", "2", *TINY, *MODELS["cnn"], "-p", "max_epochs=1",
                 "-o", tmp_path / "r")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "e"
    _, table, _ = _explained(tiny, "cnn", out, "--rows", "8", run_dir=tmp_path / "r")
    config = json.loads((out / "config.json").read_text())
    assert config["rows_from"] == "oof.parquet" and config["models"] == {"k0": ["fold_k0"], "k1": ["fold_k1"]}
    oof = pd.read_parquet(tmp_path / "r" / "oof.parquet").set_index("gene_id")
    rows = table.drop_duplicates("gene_id")
    folds = oof.loc[rows["gene_id"], "fold"].to_numpy()
    assert set(folds) == {"k0", "k1"}
    assert [outer_fold(d) for d in ("fold_k0", "fold_k0_inner1", "fold_k0_seed2", "fold_k0_inner1_seed2")] == ["k0"] * 4
    weights = table["weight"].to_numpy().reshape(len(rows), len(MARKS), N_BINS)
    for fold in ("k0", "k1"):
        mine = folds == fold
        direct = _saliency(ds_path, tmp_path / "r" / "models" / f"fold_{fold}", rows[mine])
        np.testing.assert_allclose(weights[mine], direct, rtol=1e-4, atol=1e-6)


def test_refusals(tiny, tmp_path):
    run, ds_path, runs = tiny
    bilstm = runs["bilstm-attn"]
    assert_user_error(run("explain", bilstm), "-o DIR")
    assert_user_error(run("explain", bilstm, "-o", tmp_path / "e", "--plot", tmp_path / "p.png"), "--plot", "-o DIR")
    assert_user_error(run("explain", bilstm, "-o", bilstm / "explained"), "inside the input")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert_user_error(run("explain", bilstm, "-o", tmp_path / "mine", "--force"), "not written by epx")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    # a run whose fold models are gone
    empty = tmp_path / "no-models"
    shutil.copytree(bilstm, empty)
    shutil.rmtree(empty / "models")
    (empty / "models").mkdir()
    assert_user_error(run("explain", empty, "-o", tmp_path / "e"), "no fold models")
    # tabular runs keep their options: -o and --rows are for binned runs
    ridge = tmp_path / "ridge"
    assert run("train", ds_path, "--model", "ridge", "-o", ridge).exit_code == 0
    assert_user_error(run("explain", ridge, "-o", tmp_path / "e", "--rows", "5"), "-o, --rows", "binned")
    assert not (tmp_path / "e").exists()


def test_moved_dataset(tiny, tmp_path):
    """The dataset a run was trained on moved: named, and --dataset DIR points at it."""
    run, ds_path, _ = tiny
    ds = tmp_path / "ds"
    shutil.copytree(ds_path, ds)
    result = run("train", ds, "--model", "cnn", *TINY, *MODELS["cnn"], "-p", "max_epochs=1", "-o", tmp_path / "r")
    assert result.exit_code == 0, result.stderr
    ds.rename(tmp_path / "moved")
    assert_user_error(run("explain", tmp_path / "r", "-o", tmp_path / "e"), str(ds), "--dataset DIR", "re-run epx train")
    assert not (tmp_path / "e").exists()
    result = run("explain", tmp_path / "r", "-o", tmp_path / "e", "--dataset", tmp_path / "moved", "--rows", "3")
    assert result.exit_code == 0, result.stderr
    assert "fingerprint" not in result.stderr  # the same dataset, moved: no warning
    assert json.loads((tmp_path / "e" / "config.json").read_text())["dataset"] == str((tmp_path / "moved").resolve())


def test_model_without_attention_or_saliency(tiny, tmp_path, monkeypatch):
    """A binned plugin with neither hook (a real entry point on sys.path) is refused in one line."""
    run, ds_path, _ = tiny
    write_plugin(tmp_path, "flat", """
        import numpy as np
        from epx.models.plugins import ModelSpec

        spec = ModelSpec(name="flat", description="mean signal", input_kind="binned", tasks=("rank",),
                         model="epx_flat:Flat")

        class Flat:
            def __init__(self, params, task, seed=0): pass
            def fit(self, train, valid=None): pass
            def predict(self, data): return np.asarray(data.X[np.arange(len(data))]).mean(axis=(1, 2))
            def save(self, directory): directory.mkdir(parents=True, exist_ok=True)
            @classmethod
            def load(cls, directory): return cls({}, "rank")
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run("train", ds_path, "--model", "flat", "-o", tmp_path / "r").exit_code == 0
    assert_user_error(run("explain", tmp_path / "r", "-o", tmp_path / "e"), "'flat'", "attention(data)",
                      "saliency(data)")
    assert not (tmp_path / "e").exists()
