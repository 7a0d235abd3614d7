"""The ``sequence`` input kind end to end: featurize --fasta records a reference, sequence models get
one-hot windows built from it per batch (kmer-ridge, epx-example's k-mer ridge), under the same
split and files as every other model."""

from __future__ import annotations

import json
import re
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, assert_user_error, write_bigwig, write_ml4g

WINDOW = 2000
SPACING = 1500  # TSSs this far apart: a gene's central 400 bp never overlap another's
MOTIF = "GGGCGGGGC"  # a GC box: expression grows with its copies near the TSS
CHROMS = {"chr1": 40, "chr2": 40, "chr3": 40, "chr4": 40}


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory):
    """epx-example as it installs from this tree: a distribution whose ``epx.models`` entry points
    are those of plugins/epx-example/pyproject.toml, first on sys.path, so kmer-ridge is found even
    where the installed (editable) epx-example predates it."""
    text = (ROOT / "plugins" / "epx-example" / "pyproject.toml").read_text()  # no tomllib on Python 3.10
    version = re.search(r'^version = "([^"]+)"', text, re.M).group(1)
    section = text.split('[project.entry-points."epx.models"]', 1)[1].split("\n[", 1)[0]
    eps = dict(re.findall(r'^([\w-]+) = "([^"]+)"', section, re.M))
    assert "kmer-ridge" in eps, eps
    site = tmp_path_factory.mktemp("site")
    info = site / f"epx_example-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: epx-example\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[epx.models]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "plugins" / "epx-example" / "src"))
        mp.syspath_prepend(str(site))
        for name in [m for m in sys.modules if m == "epx_example" or m.startswith("epx_example.")]:
            mp.delitem(sys.modules, name)
        yield


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A genome (FASTA with Ensembl names 1..4, soft-masked stretches, 60-column lines), genes on
    both strands (one window runs off each chromosome's start, one off its end) and labels that
    grow with the GC-box count around each TSS."""
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("seqstudy")
    genome: dict[str, bytearray] = {}
    genes, labels = [], []
    n = 0
    for chrom, count in CHROMS.items():
        length = SPACING * (count + 1)
        seq = bytearray(rng.choice(np.frombuffer(b"ACGT", np.uint8), length).tobytes())
        for i in range(count):
            tss = 300 + SPACING * i if i < count - 1 else length - 200  # first/last windows: N-padded
            copies = int(rng.integers(0, 7))
            for c in range(copies):  # non-overlapping slots within 180 bp of the TSS
                at = tss - 180 + 40 * c + int(rng.integers(0, 20))
                seq[at:at + len(MOTIF)] = MOTIF.encode()
            strand = "+" if n % 2 == 0 else "-"
            g = f"G{n:03d}"
            genes.append((g, chrom, tss if strand == "+" else tss - 499, tss + 500 if strand == "+" else tss + 1,
                          tss, tss + 1, strand))
            labels.append((g, float(np.exp(0.5 * copies + rng.normal(scale=0.4)))))
            n += 1
        soft = slice(length // 3, length // 3 + 500)
        seq[soft] = seq[soft].lower()
        genome[chrom] = seq
    fasta = root / "ref.fa"
    with open(fasta, "w") as fh:
        for chrom, seq in genome.items():
            fh.write(f">{chrom.removeprefix('chr')} assembled\n")
            text = seq.decode()
            fh.write("".join(text[i:i + 60] + "\n" for i in range(0, len(text), 60)))
    genes_path = write_ml4g(root / "genes.tsv", genes)
    (root / "labels.tsv").write_text("gene\tvalue\n" + "".join(f"{g}\t{v:.5f}\n" for g, v in labels))
    return {"root": root, "fasta": fasta, "genes": genes_path, "labels": root / "labels.tsv",
            "genome": {c: bytes(s) for c, s in genome.items()}}


def _featurize(run, study, out, *extra):
    return run("featurize", "--genes", study["genes"], "--fasta", study["fasta"], "--labels", f"C1={study['labels']}",
               "-o", out, *extra)


@pytest.fixture(scope="module")
def dataset(study, tmp_path_factory):
    from typer.testing import CliRunner

    from epx.cli import app

    out = tmp_path_factory.mktemp("ds") / "seq"
    args = ["featurize", "--genes", str(study["genes"]), "--fasta", str(study["fasta"]), "--labels",
            f"C1={study['labels']}", "--sequence-window", str(WINDOW), "-o", str(out)]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "8 gene(s) run past a chromosome end" in result.stderr  # the first and last of each chromosome
    return out


@pytest.fixture(scope="module")
def kmer_run(example_plugin, dataset, tmp_path_factory):
    from typer.testing import CliRunner

    from epx.cli import app

    tmp = tmp_path_factory.mktemp("kmer")
    runner = CliRunner()
    split = runner.invoke(app, ["split", str(dataset), "--chr-kfold", "4", "-o", str(tmp / "split.tsv")],
                          catch_exceptions=False)
    assert split.exit_code == 0, split.stderr
    out = tmp / "run"
    result = runner.invoke(app, ["train", str(dataset), "--model", "kmer-ridge", "--split", str(tmp / "split.tsv"),
                                 "--target", "log1p", "-p", "span=400", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out


def test_dataset_records_the_reference_not_the_sequence(dataset, study):
    meta = json.loads((dataset / "dataset.json").read_text())
    seq = meta["sequence"]
    assert seq["fasta"] == str(study["fasta"].resolve()) and seq["window"] == WINDOW and seq["tss_index"] == WINDOW // 2
    assert seq["size"] == study["fasta"].stat().st_size and len(seq["sample_blake2b"]) == 32
    assert seq["padded_genes"] == 8
    assert meta["inputs"] == {"tabular": False, "binned": False, "sequence": True}
    assert meta["cell_lines"] == ["C1"]
    stored = sum(p.stat().st_size for p in dataset.iterdir())
    assert stored < sum(len(s) for s in study["genome"].values())  # no sequence in the dataset
    from epx.dataset import load_dataset

    ds = load_dataset(dataset)
    assert ds.has_sequence and ds.input_kinds == ["sequence"] and ds.sequence_window == WINDOW


def _expected(study, chrom: str, start: int, end: int) -> bytes:
    seq = study["genome"][chrom]
    lo, hi = max(start, 0), min(end, len(seq))
    return b"N" * (lo - start) + seq[lo:hi] + b"N" * (end - hi)


def test_windows_are_pyfaidx_reads_forward_strand_n_padded(dataset, study):
    import pyfaidx

    from epx.dataset import load_dataset
    from epx.sequence.onehot import one_hot

    ds = load_dataset(dataset)
    genes = ds.genes
    view = ds.sequence_rows()
    assert view.shape == (len(genes), WINDOW, 4) and view.dtype == np.float32
    fa = pyfaidx.Fasta(str(study["fasta"]), as_raw=True, sequence_always_upper=False)
    checked = {"minus": 0, "padded": 0}
    batch = view[np.arange(len(genes))]
    for i, g in enumerate(genes.itertuples()):
        start = int(g.tss) - WINDOW // 2
        name = g.chrom.removeprefix("chr")
        size = len(fa[name])
        read = fa[name][max(start, 0):min(start + WINDOW, size)].encode()
        expected = b"N" * max(-start, 0) + read + b"N" * max(start + WINDOW - size, 0)
        assert expected == _expected(study, g.chrom, start, start + WINDOW)
        assert view.sequences(i)[0] == expected  # case preserved, never reverse-complemented
        np.testing.assert_array_equal(batch[i], one_hot(expected))
        np.testing.assert_array_equal(view[i], one_hot(expected))
        checked["minus"] += g.strand == "-"
        checked["padded"] += start < 0 or start + WINDOW > size
        if start < 0:
            assert not batch[i][: -start].any() and batch[i][-start:].sum(axis=1).all()
    assert checked["minus"] == len(genes) // 2 and checked["padded"] == 8
    # the TSS base is at index WINDOW // 2
    g = genes.iloc[5]
    assert view.sequences(5)[0][WINDOW // 2] == study["genome"][g.chrom][int(g.tss)]
    # a subset view and a resized (narrower, then wider) window around the same TSS
    sub = view.take(np.array([3, 1]))
    np.testing.assert_array_equal(sub[0], batch[3])
    narrow = view.resize(101)
    assert narrow.sequences(3)[0] == view.sequences(3)[0][WINDOW // 2 - 50:WINDOW // 2 + 51]
    assert view.resize(5000).sequences(3)[0][2500 - WINDOW // 2:2500 + WINDOW // 2] == view.sequences(3)[0]
    assert list(view.strand[:2]) == ["+", "-"]


def test_kmer_ridge_learns_the_motif_on_held_out_chromosomes(kmer_run, dataset):
    from scipy.stats import spearmanr

    config = json.loads((kmer_run / "config.json").read_text())
    assert config["input_kind"] == "sequence" and config["sequence"]["window"] == WINDOW
    assert config["model"] == "kmer-ridge" and config["params"]["span"] == 400
    oof = pd.read_parquet(kmer_run / "oof.parquet")
    assert len(oof) == sum(CHROMS.values()) and set(oof["fold"]) == {"k0", "k1", "k2", "k3"}
    # every gene predicted by a model that never saw its chromosome; the GC box drives expression
    rho = spearmanr(oof["y_true"], oof["y_pred"]).statistic
    assert rho > 0.6, rho
    metrics = json.loads((kmer_run / "metrics.json").read_text())
    assert metrics["overall"]["oof"]["all"]["spearman"] == pytest.approx(rho, abs=1e-6)


def test_predict_on_a_sequence_dataset(run, kmer_run, dataset, tmp_path):
    out = tmp_path / "pred"
    result = run("predict", kmer_run, dataset, "-o", out)
    assert result.exit_code == 0, result.stderr
    table = pd.read_parquet(out / "predictions.parquet")
    assert len(table) == sum(CHROMS.values()) and np.isfinite(table["y_pred"]).all()
    assert table["trained_on"].all()  # in-sample: the run trained on these very genes
    oof = pd.read_parquet(kmer_run / "oof.parquet").set_index("gene_id")["y_pred"]
    # the fold ensemble of in-sample models tracks the out-of-fold predictions
    assert np.corrcoef(table.set_index("gene_id").loc[oof.index, "y_pred"], oof)[0, 1] > 0.8


def test_models_lists_the_sequence_kind(run, example_plugin):
    entries = {e["name"]: e for e in json.loads(run("models", "--json").stdout)}
    assert entries["kmer-ridge"]["input_kind"] == "sequence" and entries["kmer-ridge"]["error"] is None
    assert entries["ridge"]["input_kind"] == "tabular"


def test_kmer_ridge_conforms(example_plugin, tmp_path):
    from epx.models.testing import check_model

    check_model("kmer-ridge", tmp_path)


def test_tracks_and_reference_in_one_dataset(run, study, example_plugin, tmp_path):
    """--manifest and --fasta together: tabular, binned and sequence inputs for the same genes; a
    dataset featurized without --fasta refuses sequence models in one line."""
    sizes = {c: len(s) for c, s in study["genome"].items()}
    bw = write_bigwig(tmp_path / "a.bw", sizes, [(c, 0, n, 1.0) for c, n in sizes.items()])
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(f"cell_line\tassay\tkind\tpath\nC1\tH3K4me3\tbigwig\t{bw}\n")
    both = tmp_path / "both"
    result = run("featurize", "--genes", study["genes"], "--manifest", manifest, "--fasta", study["fasta"],
                 "--sequence-window", "500", "--labels", f"C1={study['labels']}", "-o", both, "--workers", "1")
    assert result.exit_code == 0, result.stderr
    from epx.dataset import load_dataset

    ds = load_dataset(both)
    assert ds.input_kinds == ["tabular", "binned", "sequence"] and ds.sequence_window == 500
    # the sequence model and a tabular one under one split file, side by side in epx report
    assert run("split", both, "--chr-kfold", "2", "-o", tmp_path / "split.tsv").exit_code == 0
    for model, extra in (("kmer-ridge", ("-p", "span=400")), ("ridge", ())):
        result = run("train", both, "--model", model, "--split", tmp_path / "split.tsv", "--target", "log1p",
                     *extra, "-o", tmp_path / model)
        assert result.exit_code == 0, result.stderr
    report = run("report", tmp_path / "kmer-ridge", tmp_path / "ridge", "--format", "json", "--bootstrap", "100")
    assert report.exit_code == 0, report.stderr
    rows = {(r["entry"], r["metric"]): r for r in json.loads(report.stdout) if r["part"] == "oof"}
    kmer, flat = rows[("kmer-ridge", "spearman")], rows[("ridge", "spearman")]
    assert kmer["n"] == flat["n"] == sum(CHROMS.values())  # the same genes, the same folds
    assert kmer["value"] > 0.5 and flat["diff_high"] < 0  # a flat track carries no signal; the GC box does
    tracks_only = tmp_path / "tracks"
    assert run("featurize", "--genes", study["genes"], "--manifest", manifest, "--labels", f"C1={study['labels']}",
               "-o", tracks_only, "--workers", "1").exit_code == 0
    assert_user_error(run("train", tracks_only, "--model", "kmer-ridge", "--chr-kfold", "2", "--target", "log1p",
                          "-o", tmp_path / "r"),
                      "'kmer-ridge' needs sequence input", "epx featurize --fasta REF --sequence-window L")
    assert not (tmp_path / "r").exists()


def test_gene_outside_the_fasta_is_refused(run, study, tmp_path):
    genes = tmp_path / "genes.tsv"
    genes.write_text(study["genes"].read_text() + "G999\tchr9\t100\t600\t100\t101\t+\n")
    out = tmp_path / "ds"
    result = run("featurize", "--genes", genes, "--fasta", study["fasta"], "--labels", f"C1={study['labels']}",
                 "-o", out)
    assert_user_error(result, "gene 'G999' is on chr9", str(study["fasta"]))
    assert not out.exists()


def test_missing_fasta_and_bad_options(run, study, tmp_path):
    out = tmp_path / "ds"
    assert_user_error(run("featurize", "--genes", study["genes"], "--fasta", tmp_path / "nope.fa", "-o", out,
                          "--labels", f"C1={study['labels']}"),
                      "nope.fa", "reference FASTA not found")
    assert_user_error(_featurize(run, study, out, "--sequence-window", "0"), "--sequence-window must be", ">= 1")
    assert_user_error(run("featurize", "--genes", study["genes"], "--sequence-window", "100", "-o", out,
                          "--labels", f"C1={study['labels']}"), "featurize needs --manifest (or --fasta)")
    assert_user_error(run("featurize", "--genes", study["genes"], "--fasta", study["fasta"], "-o", out),
                      "takes its cell lines from --labels")
    assert not out.exists()


def test_a_moved_or_changed_fasta_is_named(run, study, example_plugin, tmp_path, monkeypatch):
    fasta = tmp_path / "ref.fa"
    shutil.copy(study["fasta"], fasta)
    ds = tmp_path / "ds"
    result = run("featurize", "--genes", study["genes"], "--fasta", fasta, "--sequence-window", "300",
                 "--labels", f"C1={study['labels']}", "-o", ds, "--force")
    assert result.exit_code == 0, result.stderr
    moved = tmp_path / "moved.fa"
    fasta.rename(moved)
    train = ("train", ds, "--model", "kmer-ridge", "--chr-kfold", "2", "--target", "log1p", "-p", "span=200")
    assert_user_error(run(*train, "-o", tmp_path / "r1"), str(fasta), "is missing", "--fasta", "EPX_FASTA")
    monkeypatch.setenv("EPX_FASTA", str(moved))  # the same file at its new place is accepted
    assert run(*train, "-o", tmp_path / "r2").exit_code == 0
    with open(moved, "r+b") as fh:  # same size, another base: a different reference
        fh.seek(len(">1 assembled\n") + 10)
        base = fh.read(1)
        fh.seek(-1, 1)
        fh.write(b"A" if base != b"A" else b"C")
    assert_user_error(run(*train, "-o", tmp_path / "r3"), str(moved), "changed since epx featurize", "--fasta")


def test_predict_refuses_another_window_or_no_reference(run, kmer_run, study, tmp_path):
    other = tmp_path / "w1000"
    assert _featurize(run, study, other, "--sequence-window", "1000").exit_code == 0
    assert_user_error(run("predict", kmer_run, other, "-o", tmp_path / "p"),
                      "--sequence-window 1000", f"--sequence-window {WINDOW}")
    assert not (tmp_path / "p").exists()


def test_ablation_of_a_sequence_model_is_refused(run, example_plugin, dataset, tmp_path):
    assert_user_error(run("ablate", dataset, "--model", "kmer-ridge", "--chr-kfold", "2", "-o", tmp_path / "ab"),
                      "'kmer-ridge' reads reference sequence", "no assays to ablate")
    assert_user_error(run("train", dataset, "--model", "kmer-ridge", "--chr-kfold", "2", "--assays", "H3K4me3",
                          "-o", tmp_path / "r"), "--assays chooses tracks")


def test_unlabelled_reference_dataset_for_prediction(run, kmer_run, study, tmp_path):
    """Without --manifest or --labels, --cells names the cell lines to predict."""
    ds = tmp_path / "unlabelled"
    result = run("featurize", "--genes", study["genes"], "--fasta", study["fasta"], "--sequence-window", str(WINDOW),
                 "--cells", "X9", "-o", ds)
    assert result.exit_code == 0, result.stderr
    assert json.loads((ds / "dataset.json").read_text())["cell_lines"] == ["X9"]
    out = tmp_path / "pred"
    assert run("predict", kmer_run, ds, "-o", out).exit_code == 0
    table = pd.read_parquet(out / "predictions.parquet")
    assert set(table["cell_line"]) == {"X9"} and len(table) == sum(CHROMS.values())
    assert not (out / "metrics.json").exists()


def test_enformer_head_beside_kmer_ridge_on_one_split(kmer_run, dataset, tmp_path):
    """The Enformer backend (tiny random weights, written in the real layout) trains on the same
    dataset and split file as kmer-ridge; its reference windows are re-read at the model's own
    length and land in the prediction cache `epx personalize` uses; `epx report` ranks both."""
    pytest.importorskip("epx_enformer", reason="plugins/epx-enformer is installed by scripts/install.sh with torch")
    import os
    import sqlite3

    from epx_enformer.tiny import write_tiny_enformer
    from typer.testing import CliRunner

    from epx.cli import app

    weights = write_tiny_enformer(tmp_path / "tiny")
    runner = CliRunner()
    out = tmp_path / "enformer-run"
    result = runner.invoke(app, ["train", str(dataset), "--model", "enformer", "--split", str(kmer_run / "split.tsv"),
                                 "--target", "log1p", "-p", f"weights={weights}", "-p", "device=cpu",
                                 "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    oof = pd.read_parquet(out / "oof.parquet")
    assert len(oof) == sum(CHROMS.values()) and np.isfinite(oof["y_pred"]).all()
    cache = os.path.join(os.environ["XDG_CACHE_HOME"], "epx", "personalize.sqlite")
    with sqlite3.connect(cache) as db:
        assert db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0] >= sum(CHROMS.values())
    report = runner.invoke(app, ["report", str(kmer_run), str(out), "--format", "tsv"], catch_exceptions=False)
    assert report.exit_code == 0, report.stderr
    entries = {line.split("\t")[2] for line in report.stdout.splitlines()[1:]}
    assert {kmer_run.name, out.name} <= entries, entries  # both runs scored on the same genes
