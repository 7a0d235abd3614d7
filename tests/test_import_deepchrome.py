"""`epx import deepchrome`: DeepDiff / DeepChrome CSVs -> an epx dataset, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error

from epx.dataset import load_dataset

MARKS = ["H3K4me3", "H3K27me3", "H3K36me3"]
N_BINS = 10
ROLES = {"train": [1, 2], "valid": [3, 4], "test": [5, 6]}  # gene numbers per role
CELLS = ["Cell1", "Cell2"]
# Expression counts of the six genes; three extra genes make the whole-file median 5
# (sorted 0,1,2,3,5,10,20,40,80), where the median of the six genes alone would be 15.
EXPR = {1: 0, 2: 5, 3: 10, 4: 20, 5: 40, 6: 80}
EXTRA_EXPR = {7: 1, 8: 2, 9: 3}
UNMAPPED = "ENSG00000000099"


def ensg(n: int) -> str:
    return f"ENSG{n:011d}"


def signal(gene: int, cell: int, mark: int, b: int) -> int:
    """A distinct count per (gene, cell line, mark, 1-based bin)."""
    return 1000 * cell + 100 * gene + 10 * mark + b


def write_annotation(path: Path, genes=range(1, 10)) -> Path:
    """A TSS-column TSV (1-based TSS) with versioned ids, on chr1 and chr2."""
    rows = ["gene_id\tgene_name\tchrom\tstart\tend\tstrand\ttss"]
    for n in genes:
        strand = "+" if n % 2 else "-"
        start = 10_000 * n
        rows.append(f"{ensg(n)}.{n}\tG{n}\t{'chr1' if n <= 3 else 'chr2'}\t{start}\t{start + 5000}\t{strand}\t"
                    f"{start if strand == '+' else start + 5000}")
    path.write_text("\n".join(rows) + "\n")
    return path


def deepdiff_lines(cell: int, genes: list[int], n_bins: int = N_BINS) -> list[str]:
    return [f"{ensg(g)}_G{g}_{b}," + ",".join(str(signal(g, cell, m, b)) for m in range(len(MARKS)))
            for g in genes for b in range(1, n_bins + 1)]


@pytest.fixture
def deepdiff(tmp_path: Path) -> Path:
    """2 cell lines x train/valid/test files, 6 genes (+1 not in the annotation), 10 bins."""
    d = tmp_path / "dd"
    d.mkdir()
    for c, cell in enumerate(CELLS, start=1):
        for role, genes in ROLES.items():
            extra = [99] if role == "train" else []
            lines = deepdiff_lines(c, genes)
            if extra:
                lines += [f"{UNMAPPED}_GONE_{b},1,1,1" for b in range(1, N_BINS + 1)]
            (d / f"{cell}.{role}.csv").write_text("\n".join(lines) + "\n")
        expr = {**EXPR, **EXTRA_EXPR}
        # Cell2 counts are doubled: the same median rule, a different median.
        (d / f"{cell}.expr.csv").write_text("".join(f"{ensg(g)},{v * c}\n" for g, v in expr.items()))
    write_annotation(tmp_path / "genes.tsv")
    return d


def _import(run, tmp_path, *inputs, out="ds", extra=()):
    return run("import", "deepchrome", *inputs, "-o", tmp_path / out, "--marks", ",".join(MARKS),
               "--annotation", tmp_path / "genes.tsv", "--build", "hg38", *extra)


def _no_output(tmp_path: Path, name: str = "ds") -> None:
    assert not (tmp_path / name).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{name}.")]  # no temporaries


def test_deepdiff_dataset_contents(tmp_path, deepdiff, run):
    result = _import(run, tmp_path, deepdiff)
    assert result.exit_code == 0, result.stderr
    assert "1 of 7 genes are not in the annotation" in result.stderr and UNMAPPED in result.stderr
    assert "train 2 / valid 2 / test 2" in result.stdout

    ds = load_dataset(tmp_path / "ds")
    assert ds.cell_lines == CELLS and ds.assays == MARKS
    assert ds.meta["bin_size"] == 100 and ds.meta["n_bins"] == N_BINS
    assert ds.meta["source"]["format"] == "deepdiff" and len(ds.meta["source"]["files"]) == 6
    assert "orientation" in ds.meta
    # genes: first-seen order (train, valid, test files), unversioned ids, canonical columns
    assert ds.genes["gene_id"].tolist() == [ensg(n) for n in range(1, 7)]
    assert list(ds.genes.columns) == ["gene_id", "gene_name", "chrom", "start", "end", "strand", "tss"]
    assert ds.genes["chrom"].tolist() == ["chr1"] * 3 + ["chr2"] * 3

    bins = ds.bins()
    assert bins.shape == (6, 2, 3, N_BINS) and bins.dtype == np.float32
    g = ds.gene_index([ensg(4)])[0]
    expected = [[signal(4, 2, m, b) for b in range(1, N_BINS + 1)] for m in range(3)]
    np.testing.assert_array_equal(bins[g, 1], expected)
    assert (ds.bins_coverage() == 1).all()
    normalised = ds.bins(normalised=True)
    assert normalised.shape == bins.shape and np.isfinite(normalised).all()
    np.testing.assert_allclose(normalised.mean(axis=(0, 3)), 0, atol=1e-4)

    labels = ds.labels.set_index(["cell_line", "gene_id"])
    for c, cell in enumerate(CELLS, start=1):
        for n, v in EXPR.items():
            assert labels.loc[(cell, ensg(n)), "value"] == v * c
            # count >= median of the whole file (5 * c): gene 2 sits exactly on the median
            assert labels.loc[(cell, ensg(n)), "binary"] == (1.0 if n >= 2 else 0.0)
    assert len(labels) == 12

    split = ds.holdout_split()
    assert len(split) == 12 and set(split["fold"]) == {"holdout"}
    roles = split.set_index(["cell_line", "gene_id"])["role"]
    for cell in CELLS:
        for role, genes in ROLES.items():
            assert [roles[(cell, ensg(n))] for n in genes] == [role, role]
    assert split.set_index("gene_id")["chrom"].to_dict()[ensg(5)] == "chr2"

    names = [f"{m}.bin.{s}" for m in MARKS for s in [*(f"w{i}" for i in range(10)), "mean", "tss"]]
    assert ds.feature_names == names
    raw = ds.features(raw=True)
    assert list(raw.columns) == ["gene_id", "cell_line", *names] and len(raw) == 12
    row = raw[(raw["gene_id"] == ensg(4)) & (raw["cell_line"] == "Cell2")].iloc[0]
    assert row["H3K27me3.bin.mean"] == pytest.approx(np.mean(expected[1]))
    assert row["H3K27me3.bin.w3"] == expected[1][3]  # 10 bins -> one bin per window
    assert row["H3K36me3.bin.tss"] == pytest.approx(np.mean(expected[2]))  # fewer than 20 bins: all
    norm = ds.features()
    assert list(norm.columns) == list(raw.columns)
    for cell in CELLS:  # log1p, then z-score per (cell line, feature) over genes
        logged = np.log1p(raw[raw["cell_line"] == cell][names].to_numpy())
        z = (logged - logged.mean(axis=0)) / logged.std(axis=0)
        np.testing.assert_allclose(norm[norm["cell_line"] == cell][names].to_numpy(), z, rtol=1e-6, atol=1e-9)


def test_central_bins(tmp_path, deepdiff, run):
    assert _import(run, tmp_path, deepdiff, out="full").exit_code == 0
    result = _import(run, tmp_path, deepdiff, extra=("--bins", "4"))
    assert result.exit_code == 0, result.stderr
    full, ds = load_dataset(tmp_path / "full"), load_dataset(tmp_path / "ds")
    assert ds.bins().shape == (6, 2, 3, 4) and ds.meta["n_bins"] == 4
    np.testing.assert_array_equal(ds.bins(), full.bins()[:, :, :, 3:7])  # bins 4..7 of 1..10
    assert ds.meta["window_bp"] == [-200, 200]
    assert "H3K4me3.bin.w3" in ds.feature_names and "H3K4me3.bin.w4" not in ds.feature_names
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["params"]["n_bins"] == 4

    for bad, fragment in (("5", "cannot be centred in 10 bins"), ("12", "more than the 10 bins")):
        result = _import(run, tmp_path, deepdiff, out="bad", extra=("--keep-bins", bad))
        assert_user_error(result, f"--keep-bins {bad}", fragment)
        _no_output(tmp_path, "bad")


def _toy_lines(genes: list[int], labels: list[int], n_bins: int = 6, header: bool = True) -> str:
    lines = ["GeneID,BinID," + ",".join(MARKS) + ",label"] if header else []
    for g, y in zip(genes, labels, strict=True):
        lines += [f"{g:06d},{b}," + ",".join(str(signal(g, 1, m, b)) for m in range(3)) + f",{y}"
                  for b in range(1, n_bins + 1)]
    return "\n".join(lines) + "\n"


def test_deepchrome_toy_format(tmp_path, run):
    write_annotation(tmp_path / "genes.tsv")
    d = tmp_path / "toy"
    d.mkdir()
    (d / "toy_train.csv").write_text(_toy_lines([1, 2, 3], [1, 0, 1]))
    (d / "toy_val.csv").write_text(_toy_lines([4], [0], header=False))
    (d / "toy_test.csv").write_text(_toy_lines([5, 6], [1, 0]))
    files = [d / "toy_train.csv", d / "toy_val.csv", d / "toy_test.csv"]
    result = _import(run, tmp_path, *files)
    assert result.exit_code == 0, result.stderr
    ds = load_dataset(tmp_path / "ds")
    assert ds.meta["source"]["format"] == "deepchrome" and ds.cell_lines == ["toy"]
    assert ds.genes["gene_id"].tolist() == [ensg(n) for n in range(1, 7)]  # 000001 -> ENSG00000000001
    assert ds.bins().shape == (6, 1, 3, 6)
    np.testing.assert_array_equal(ds.bins()[1, 0, 2], [signal(2, 1, 2, b) for b in range(1, 7)])
    labels = ds.labels.set_index("gene_id")
    assert labels["value"].tolist() == [1, 0, 1, 0, 1, 0] and labels["binary"].tolist() == [1, 0, 1, 0, 1, 0]
    roles = ds.holdout_split().set_index("gene_id")["role"]
    assert roles[ensg(4)] == "valid" and roles[ensg(6)] == "test" and roles[ensg(1)] == "train"

    # An explicit expression file replaces the file labels: binary is count >= median (20).
    expr = tmp_path / "counts.csv"
    expr.write_text("gene,count\n" + "".join(f"{ensg(n)}.2,{v}\n" for n, v in EXPR.items()))
    result = _import(run, tmp_path, *files, out="ds2", extra=("--expr", f"toy={expr}"))
    assert result.exit_code == 0, result.stderr
    labels = load_dataset(tmp_path / "ds2").labels
    assert labels["value"].tolist() == list(EXPR.values())
    assert labels["binary"].tolist() == [0, 0, 0, 1, 1, 1]  # median of 0,5,10,20,40,80 is 15

    # A file without a role: everything trains, no holdout split.
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "toy.csv").write_text(_toy_lines([1, 2], [1, 0]))
    result = _import(run, tmp_path, tmp_path / "plain", out="ds3")
    assert result.exit_code == 0, result.stderr
    assert load_dataset(tmp_path / "ds3").holdout_split() is None


def test_wrong_number_of_mark_columns(tmp_path, deepdiff, run):
    path = deepdiff / "Cell1.valid.csv"
    lines = path.read_text().splitlines()
    lines[6] += ",7"
    path.write_text("\n".join(lines) + "\n")
    result = _import(run, tmp_path, deepdiff)
    assert_user_error(result, f"{path}:7", "expected 4 comma-separated fields", "found 5")
    _no_output(tmp_path)
    # --marks naming fewer columns than the files have: line 1 of the first file
    result = run("import", "deepchrome", deepdiff / "Cell1.train.csv", "-o", tmp_path / "ds",
                 "--marks", "H3K4me3,H3K27me3", "--annotation", tmp_path / "genes.tsv")
    assert_user_error(result, f"{deepdiff / 'Cell1.train.csv'}:1", "expected 3", "found 4")
    _no_output(tmp_path)


def test_non_contiguous_bins(tmp_path, deepdiff, run):
    path = deepdiff / "Cell2.test.csv"
    lines = path.read_text().splitlines()
    del lines[N_BINS + 4]  # gene 6, bin 5
    path.write_text("\n".join(lines) + "\n")
    result = _import(run, tmp_path, deepdiff)
    assert_user_error(result, f"{path}:{N_BINS + 5}", repr(ensg(6)), "found bin 6 where bin 5")
    _no_output(tmp_path)


def test_gene_in_two_roles(tmp_path, deepdiff, run):
    extra = "\n".join(deepdiff_lines(1, [1])) + "\n"
    (deepdiff / "Cell1.test.csv").write_text((deepdiff / "Cell1.test.csv").read_text() + extra)
    result = _import(run, tmp_path, deepdiff)
    assert_user_error(result, f"{deepdiff / 'Cell1.test.csv'}:{2 * N_BINS + 1}", repr(ensg(1)),
                      "roles train and test")
    _no_output(tmp_path)


def test_no_gene_in_annotation(tmp_path, deepdiff, run):
    write_annotation(tmp_path / "genes.tsv", genes=range(20, 25))
    result = _import(run, tmp_path, deepdiff)
    assert_user_error(result, str(tmp_path / "genes.tsv"), "none of the 7 genes")
    _no_output(tmp_path)


def test_existing_output_and_bad_expr(tmp_path, deepdiff, run):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert_user_error(_import(run, tmp_path, deepdiff), str(out), "--force")
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep"
    assert_user_error(_import(run, tmp_path, deepdiff, extra=("--force",)), "not written by epx")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    (out / "mine.txt").unlink()
    assert _import(run, tmp_path, deepdiff).exit_code == 0  # an empty directory is fine without --force
    assert _import(run, tmp_path, deepdiff, extra=("--force",)).exit_code == 0
    assert load_dataset(out).has_binned

    for bad, fragment in (("Cell1", "CELL=FILE"), ("=x.csv", "CELL=FILE"),
                          (f"Cell9={deepdiff / 'Cell1.expr.csv'}", "'Cell9', which has no input file"),
                          (f"Cell1={tmp_path / 'none.csv'}", "expression file not found")):
        assert_user_error(_import(run, tmp_path, deepdiff, out="other", extra=("--expr", bad)), fragment)
        _no_output(tmp_path, "other")


def _auroc(score: np.ndarray, y: np.ndarray) -> float:
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        from scipy.stats import rankdata

        ranks = rankdata(score)
        pos = y == 1
        n1, n0 = int(pos.sum()), int((~pos).sum())
        return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    return float(roc_auc_score(y, score))


@pytest.mark.shared_data
def test_real_attentivechrome(tmp_path, shared, run):
    src = shared / "attentivechrome"
    files = [src / f"{cell}.{role}.csv" for cell in ("Cell1", "Cell2") for role in ("train", "valid", "test")]
    result = run("import", "deepchrome", *files, "-o", tmp_path / "ac",
                 "--marks", "H3K4me1,H3K4me3,H3K9me3,H3K27me3,H3K36me3",
                 "--annotation", shared / "gene_annotation" / "genes_hg38_hg19.tsv", "--build", "hg19",
                 "--bins", "100")
    assert result.exit_code == 0, result.stderr
    ds = load_dataset(tmp_path / "ac")
    assert ds.cell_lines == ["Cell1", "Cell2"]
    # 600 genes in the files; 19 (retired Ensembl ids) are not in the annotation
    assert len(ds.genes) == 581 and "19 of 600 genes" in result.stderr
    assert ds.bins().shape == (581, 2, 5, 100)
    split = ds.holdout_split()
    counts = split.groupby(["cell_line", "role"]).size()
    assert counts[("Cell1", "test")] == counts[("Cell2", "test")] == 196  # 200 test genes, 196 mapped
    assert set(split[split["role"] == "test"]["gene_id"]) <= set(ds.genes["gene_id"])
    assert np.isfinite(ds.bins(normalised=True)).all()
    table = ds.features(raw=True).merge(ds.labels, on=["gene_id", "cell_line"])
    cell1 = table[table["cell_line"] == "Cell1"]
    assert len(cell1) == 581
    assert 0.45 < cell1["binary"].mean() < 0.65
    assert _auroc(cell1["H3K4me3.bin.tss"].to_numpy(), cell1["binary"].to_numpy()) > 0.85
    # raw bins are the file's counts, central 100 of 200 bins
    gene = "ENSG00000130749"
    rows = pd.read_csv(src / "Cell1.train.csv", header=None, nrows=200)
    assert rows[0].iloc[0].startswith(gene)
    np.testing.assert_array_equal(ds.bins()[ds.gene_index([gene])[0], 0], rows.iloc[50:150, 1:].to_numpy().T)


def test_gene_missing_in_one_cell_line(tmp_path, deepdiff, run):
    (deepdiff / "Cell2.test.csv").write_text("\n".join(deepdiff_lines(2, [5])) + "\n")
    result = _import(run, tmp_path, deepdiff)
    assert result.exit_code == 0, result.stderr
    assert "1 of 6 genes have no rows for cell line Cell2" in result.stderr
    ds = load_dataset(tmp_path / "ds")
    g = ds.gene_index([ensg(6)])[0]
    assert (ds.bins()[g, 1] == 0).all() and (ds.bins_coverage()[g, 1] == 0).all()
    assert (ds.bins_coverage()[g, 0] == 1).all()
    for table in (ds.features(), ds.labels, ds.holdout_split()):
        assert len(table) == 11 and not ((table["gene_id"] == ensg(6)) & (table["cell_line"] == "Cell2")).any()
