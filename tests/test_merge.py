"""epx featurize --cells/--assays/--chroms parts, and epx merge: the merged dataset is byte for byte
what one featurize over everything writes; bad merges are one line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error

ALL_CHROMS = ["chr1", "chr2", "chr3", "chr4", "chr5", "chr6", "chr7", "chrX"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from epx.demo import write_demo

    root = tmp_path_factory.mktemp("merge") / "study"
    write_demo(root, n_genes=240, seed=5)
    assert sorted(set(pd.read_csv(root / "genes.tsv", sep="\t")["chr"])) == sorted(ALL_CHROMS)
    return root


def _featurize(study: Path, out: Path, *extra: str) -> list[str]:
    return ["featurize", "--genes", str(study / "genes.tsv"), "--manifest", str(study / "manifest.tsv"),
            "--labels", f"X1={study / 'labels' / 'X1.tsv'}", "--labels", f"X3={study / 'labels' / 'X3.tsv'}",
            "--bins", "100x100,500x20", "--workers", "2", "-o", str(out), *extra]


@pytest.fixture(scope="module")
def featurized(study, tmp_path_factory):
    """featurize ARGS -> the dataset directory (each distinct call once per module)."""
    from typer.testing import CliRunner

    from epx.cli import app

    root = tmp_path_factory.mktemp("parts")
    made: dict[tuple[str, ...], Path] = {}

    def _make(*extra: str) -> Path:
        if extra not in made:
            out = root / f"ds{len(made)}"
            result = CliRunner().invoke(app, _featurize(study, out, *extra), catch_exceptions=False)
            assert result.exit_code == 0, result.stderr
            made[extra] = out
        return made[extra]

    return _make


def assert_same_dataset(merged: Path, full: Path) -> None:
    names = sorted(p.name for p in full.iterdir() if p.name != ".epx-output.json")
    assert sorted(p.name for p in merged.iterdir() if p.name != ".epx-output.json") == names
    assert {"bins.npy", "bins_coverage.npy", "bins_500x20.npy", "features.parquet", "features_raw.parquet",
            "genes.parquet", "labels.parquet", "dataset.json"} <= set(names)
    for name in names:
        a, b = merged / name, full / name
        if name.endswith(".npy"):
            x, y = np.load(a), np.load(b)
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
        elif name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), check_exact=True)
        assert a.read_bytes() == b.read_bytes(), name  # every file byte for byte, dataset.json included
    # only the output marker differs: it records when it was written
    assert json.loads((merged / ".epx-output.json").read_text())["paths"] == \
        json.loads((full / ".epx-output.json").read_text())["paths"]


SPLITS = {
    "chroms": [("--chroms", "chr1"), ("--chroms", "chr2,chr3,chr4"), ("--chroms", "chr5,chr6,chr7,chrX")],
    "cells": [("--cells", "X2"), ("--cells", "X1,X3")],
    "assays": [("--assays", "H3K27ac,H3K4me3,DNase"), ("--assays", "H3K27me3,H3K36me3,H3K4me1,H3K9me3")],
    # X1 whole; X2 and X3 split by chromosome
    "grid": [("--cells", "X1"), ("--cells", "X2,X3", "--chroms", "chr1,chr2"),
             ("--cells", "X2,X3", "--chroms", "chr3,chr4,chr5,chr6,chr7,chrX")],
}


@pytest.mark.parametrize("split", list(SPLITS))
def test_merge_is_one_featurize(split, featurized, run, tmp_path):
    full = featurized()
    parts = [featurized(*args) for args in SPLITS[split]]
    for part in parts:
        assert "partial" in json.loads((part / "dataset.json").read_text())
    result = run("merge", *reversed(parts), "-o", tmp_path / "merged")
    assert result.exit_code == 0, result.stderr
    assert_same_dataset(tmp_path / "merged", full)


def test_part_records_what_it_holds(featurized):
    meta = json.loads((featurized("--chroms", "chr2,chr3,chr4") / "dataset.json").read_text())
    part = meta["partial"]
    assert part["chroms"] == ["chr2", "chr3", "chr4"] and part["cells"] is None and part["assays"] is None
    assert part["of"]["chroms"] == ALL_CHROMS and part["of"]["genes"] == 240 and len(part["of"]["tracks"]) == 42
    assert meta["chroms"] == ["chr2", "chr3", "chr4"]
    assert sum(b - a for a, b in part["gene_rows"]) == len(pd.read_parquet(featurized("--chroms", "chr2,chr3,chr4")
                                                                          / "genes.parquet"))
    # a part is never taken for the whole (no-op re-run)
    assert "partial" not in json.loads((featurized() / "dataset.json").read_text())
    assert meta["fingerprint"]["selection"]["chroms"] == ["chr2", "chr3", "chr4"]


def test_train_refuses_a_chromosome_part(featurized, run, tmp_path):
    part = featurized("--chroms", "chr1")
    result = run("train", part, "--model", "ridge", "-o", tmp_path / "run")
    assert_user_error(result, "epx merge", "chr1")
    assert not (tmp_path / "run").exists()


def test_featurize_chroms_unknown(study, run, tmp_path):
    result = run(*_featurize(study, tmp_path / "ds", "--chroms", "chr9"))
    assert_user_error(result, "--chroms chr9", "chr1, chr2")
    assert not (tmp_path / "ds").exists()


def _refused(run, tmp_path, parts, *fragments):
    out = tmp_path / "merged"
    result = run("merge", *parts, "-o", out)
    assert_user_error(result, *fragments)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".merged")]


def test_merge_refuses_different_parameters(featurized, run, tmp_path):
    a, b = featurized("--chroms", "chr1"), featurized("--chroms", "chr2,chr3,chr4,chr5,chr6,chr7,chrX",
                                                      "--tss-window", "200")
    _refused(run, tmp_path, [a, b], "different parameters", "tss_window", "100", "200", str(a), str(b))


def test_merge_refuses_different_genes(study, featurized, run, tmp_path):
    genes = pd.read_csv(study / "genes.tsv", sep="\t")
    genes.loc[len(genes) - 1, "gene_end"] += 10  # one gene a little longer
    other = study.parent / "other_genes.tsv"
    genes.to_csv(other, sep="\t", index=False)
    a = featurized("--cells", "X1")
    b = tmp_path / "b"
    args = _featurize(study, b, "--cells", "X2,X3")
    args[args.index("--genes") + 1] = str(other)
    assert run(*args).exit_code == 0
    _refused(run, tmp_path, [a, b], "different gene tables")


def test_merge_refuses_different_labels(study, featurized, run, tmp_path):
    a = featurized("--cells", "X1")
    b = tmp_path / "b"
    args = _featurize(study, b, "--cells", "X2,X3")
    args[args.index(f"X3={study / 'labels' / 'X3.tsv'}")] = f"X3={study / 'labels' / 'X2.tsv'}"
    assert run(*args).exit_code == 0
    _refused(run, tmp_path, [a, b], "different labels")


def test_merge_refuses_overlaps(featurized, run, tmp_path):
    _refused(run, tmp_path, [featurized("--cells", "X1"), featurized("--cells", "X1,X3"), featurized("--cells", "X2")],
             "both hold cell line X1", "chr1")
    _refused(run, tmp_path, [featurized("--chroms", "chr1"), featurized()], "both hold", "on chr1")


def test_merge_refuses_gaps(featurized, run, tmp_path):
    _refused(run, tmp_path, [featurized("--chroms", "chr1"), featurized("--chroms", "chr2,chr3,chr4")],
             "no part holds the genes on chr5, chr6, chr7, chrX", "--chroms chr5,chr6,chr7,chrX")
    _refused(run, tmp_path, [featurized("--cells", "X1"), featurized("--cells", "X2,X3", "--chroms", "chr1,chr2")],
             "no part holds cell line X2", "chr3")
    _refused(run, tmp_path, [featurized("--assays", "H3K27ac,H3K4me3,DNase"), featurized("--cells", "X2")],
             "both hold cell line X2, assay H3K27ac")


def test_merge_refuses_what_is_not_a_part(featurized, run, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    _refused(run, tmp_path, [featurized("--cells", "X1"), tmp_path / "notes"], "not an epx dataset", "notes")
    _refused(run, tmp_path, [featurized("--cells", "X1")], "two or more datasets")
    _refused(run, tmp_path, [featurized("--cells", "X1"), tmp_path / "missing"], "not found")


def test_merge_output_rules(featurized, run, tmp_path):
    parts = [featurized("--cells", "X1"), featurized("--cells", "X2"), featurized("--cells", "X3")]
    out = tmp_path / "merged"
    assert run("merge", *parts, "-o", out).exit_code == 0
    assert_user_error(run("merge", *parts, "-o", out), "--force")
    assert run("merge", *parts, "-o", out, "--force").exit_code == 0
    assert_same_dataset(out, featurized())
    shutil.rmtree(out)
