"""`epx personalize` end to end on the personal demo cohort with the tiny random Enformer, through
the real CLI: predictions per haplotype, the prediction cache, variant effects, evaluation, errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from epx.cli import app

pytest.importorskip("epx_enformer", reason="plugins/epx-enformer is installed by scripts/install.sh with torch")
runner = CliRunner()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("personal") / "cohort"
    result = runner.invoke(app, ["demo", str(d), "--personal"])
    assert result.exit_code == 0, result.output
    assert (d / "enformer-tiny" / "config.json").exists()
    return d


def _run(cohort: Path, out: Path, *extra: str, cache: Path | None = None):
    args = ["personalize", "--genes", str(cohort / "genes.tsv"), "--fasta", str(cohort / "reference.fa"),
            "--weights", str(cohort / "enformer-tiny"), "-o", str(out), *extra]
    if "--plink" not in extra:
        args += ["--vcf", str(cohort / "genotypes.vcf.gz")]
    args += ["--no-cache"] if cache is None else ["--cache", str(cache)]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def run(cohort, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    out = base / "out"
    result = _run(cohort, out, "--variant-effects", "--expression", str(cohort / "expression.bed"),
                  "--en-alphas", "20", "--inner-folds", "3", cache=base / "cache.sqlite")
    assert result.exit_code == 0, result.output
    return out, base / "cache.sqlite", result.output


def test_predictions_are_the_mean_of_two_haplotypes(run, cohort):
    out, _cache, _ = run
    pred = pd.read_parquet(out / "predictions.parquet")
    genes = pd.read_csv(cohort / "genes.tsv", sep="\t")
    assert set(pred["gene_id"]) == set(genes.iloc[:, 0].astype(str)) or len(set(pred["gene_id"])) == len(genes)
    assert np.allclose(pred["value"], (pred["hap1"] + pred["hap2"]) / 2)
    # haplotypes differ for some individuals (the cohort carries eQTL variants)
    assert (pred["hap1"] != pred["hap2"]).mean() > 0.05
    wide = pd.read_csv(out / "predicted_expression.tsv", sep="\t")
    assert list(wide.columns[:4]) == ["#chr", "start", "end", "gene_id"] and wide.shape[1] == 4 + 80
    summary = json.loads((out / "personalize.json").read_text())
    assert summary["windows_requested"] == summary["genes"] * (2 * 80 + 1)
    assert summary["windows_unique"] < summary["windows_requested"] / 3  # shared haplotypes predicted once
    assert summary["windows_predicted"] > 0


def test_reference_individual_equals_reference_prediction(run):
    """An individual without variants in a window gets exactly the reference prediction."""
    out, _cache, _ = run
    pred = pd.read_parquet(out / "predictions.parquet")
    ref = pd.read_csv(out / "reference.tsv", sep="\t")
    merged = pred.merge(ref, on=["gene_id", "output"], suffixes=("", "_ref"))
    same = np.isclose(merged["hap1"], merged["value_ref"])
    assert same.any()


def test_cache_resumes_and_predicts_nothing_twice(run, cohort, tmp_path):
    out, cache, _ = run
    result = _run(cohort, tmp_path / "again", cache=cache)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "again" / "personalize.json").read_text())
    assert summary["windows_predicted"] == 0 and summary["cache_hits"] == summary["windows_unique"]
    first = pd.read_parquet(out / "predictions.parquet")
    second = pd.read_parquet(tmp_path / "again" / "predictions.parquet")
    pd.testing.assert_frame_equal(first, second)
    with sqlite3.connect(cache) as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM outputs").fetchone()
    assert rows >= summary["windows_unique"]


def test_variant_effects_are_alt_minus_ref(run):
    out, _cache, _ = run
    eff = pd.read_csv(out / "variant_effects.tsv", sep="\t")
    assert len(eff) > 0
    assert np.allclose(eff["delta"], eff["alt_value"] - eff["ref_value"], atol=1e-5)
    ref = pd.read_csv(out / "reference.tsv", sep="\t")
    merged = eff.merge(ref, on=["gene_id", "output"])
    assert np.allclose(merged["ref_value"], merged["value"], atol=1e-5)
    assert (eff["delta"].abs() > 0).mean() > 0.1  # a random tiny model barely sees far variants


def test_plink_needs_a_phase_rule(cohort, tmp_path):
    result = _run(cohort, tmp_path / "p", "--plink", str(cohort / "genotypes"))
    assert result.exit_code == 2 and "--unphased as-listed" in result.output
    assert not (tmp_path / "p").exists()
    result = _run(cohort, tmp_path / "p", "--plink", str(cohort / "genotypes"), "--unphased", "as-listed")
    assert result.exit_code == 0, result.output


def test_missing_weights_say_what_to_download(cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("EPX_ENFORMER_WEIGHTS", raising=False)
    result = runner.invoke(app, ["personalize", "--genes", str(cohort / "genes.tsv"), "--fasta",
                                 str(cohort / "reference.fa"), "--vcf", str(cohort / "genotypes.vcf.gz"),
                                 "-o", str(tmp_path / "o"), "--no-cache"])
    assert result.exit_code == 2, result.output
    assert "EleutherAI/enformer-official-rough" in result.output and "--weights" in result.output
    assert not (tmp_path / "o").exists()


def test_tracks_by_name_and_absent_gpu(cohort, tmp_path):
    result = _run(cohort, tmp_path / "t", "--track", "CAGE:tiny tissue 2")
    assert result.exit_code == 0, result.output
    pred = pd.read_parquet(tmp_path / "t" / "predictions.parquet")
    assert set(pred["output"]) == {"CAGE:tiny tissue 2"}
    result = _run(cohort, tmp_path / "u", "--track", "CAGE:no such tissue")
    assert result.exit_code == 2 and "no such tissue" in result.output
    import torch

    if not torch.cuda.is_available():
        result = _run(cohort, tmp_path / "g", "--device", "cuda")
        assert result.exit_code == 2 and "cuda" in result.output.lower()
        assert not (tmp_path / "g").exists()


def test_sequences_match_between_output_and_write_sequences(cohort, tmp_path):
    """--write-sequences beside a model run writes the same windows --sequences-only does."""
    a, b = tmp_path / "a.fa", tmp_path / "b.fa"
    r1 = _run(cohort, tmp_path / "o", "--write-sequences", str(a), "--samples", "IND001,IND002")
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(app, ["personalize", "--genes", str(cohort / "genes.tsv"), "--fasta", str(cohort / "reference.fa"),
                             "--vcf", str(cohort / "genotypes.vcf.gz"), "--samples", "IND001,IND002",
                             "--sequences-only", "--window", "4096", "--write-sequences", str(b)])
    assert r2.exit_code == 0, r2.output
    assert a.read_bytes() == b.read_bytes()
    assert a.read_text().count(">") == 32 * 5


def test_elastic_net_recovers_the_simulated_eqtls(run, cohort):
    """The demo's known cis-eQTLs: the PrediXcan-style baseline finds them on held-out individuals,
    with the simulated sign; genes without one stay near zero; the report shows all methods."""
    out, _cache, output = run
    truth = pd.read_csv(cohort / "eqtls.tsv", sep="\t")
    weights = pd.read_csv(out / "en_weights.tsv", sep="\t")
    per_gene = pd.read_csv(out / "per_gene.tsv", sep="\t")
    found = truth.merge(weights, on=["gene_id", "variant_id"], how="left")
    stable = found["n_folds"].fillna(0) >= 3
    assert stable.mean() >= 0.6, found
    assert (np.sign(found.loc[stable, "beta_mean"]) == np.sign(found.loc[stable, "effect"])).all()
    causal = per_gene["gene_id"].isin(set(truth["gene_id"]))
    assert per_gene.loc[causal, "elastic_net_pearson"].median() > 0.35
    assert abs(per_gene.loc[~causal, "elastic_net_pearson"].fillna(0).median()) < 0.2
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"mean", "elastic_net", "enformer", "stacked"}
    assert summary["methods"]["elastic_net"]["median_pearson"] > summary["methods"]["enformer"]["median_pearson"]
    assert (out / "scatter.png").stat().st_size > 10_000
    assert "elastic net" in output and "Enformer" in output
    report = runner.invoke(app, ["report", str(out), "--format", "tsv"])
    assert report.exit_code == 0, report.output
    entries = {line.split("\t")[2] for line in report.stdout.splitlines()[1:]}
    assert {"elastic_net", "enformer", "stacked"} <= entries, entries


def test_expression_individuals_without_genotypes(cohort, tmp_path):
    expr = pd.read_csv(cohort / "expression.bed", sep="\t")
    expr["GHOST1"] = 0.5
    path = tmp_path / "expr.bed"
    expr.to_csv(path, sep="\t", index=False)
    result = _run(cohort, tmp_path / "o", "--expression", str(path), "--en-alphas", "5")
    assert result.exit_code == 2 and "GHOST1" in result.output and "--allow-missing-individuals" in result.output
    assert not (tmp_path / "o").exists()


def test_an_interrupted_run_resumes_from_the_cache(cohort, tmp_path):
    """What a first (partial) run predicted is never predicted again: a run over chr1 only, then
    the whole cohort, predicts only chr2's windows the second time."""
    cache = tmp_path / "cache.sqlite"
    first = _run(cohort, tmp_path / "chr1", "--chroms", "chr1", cache=cache)
    assert first.exit_code == 0, first.output
    part = json.loads((tmp_path / "chr1" / "personalize.json").read_text())
    whole = _run(cohort, tmp_path / "all", cache=cache)
    assert whole.exit_code == 0, whole.output
    done = json.loads((tmp_path / "all" / "personalize.json").read_text())
    assert done["cache_hits"] >= part["windows_unique"]
    assert done["windows_predicted"] == done["windows_unique"] - done["cache_hits"]
    assert 0 < done["windows_predicted"] < done["windows_unique"]


def test_expression_ids_match_as_the_evaluation_does(cohort, tmp_path):
    """Non-Ensembl ids keep their suffix in the evaluation (strip_version), so gene selection must
    not strip it either: the mismatch is refused before any prediction, naming both ids."""
    expr = pd.read_csv(cohort / "expression.bed", sep="\t")
    expr["gene_id"] = expr["gene_id"] + ".5"
    path = tmp_path / "expr.bed"
    expr.to_csv(path, sep="\t", index=False)
    result = _run(cohort, tmp_path / "o", "--expression", str(path), "--en-alphas", "5")
    assert result.exit_code == 2, result.output
    assert "DEMOG00001.5" in result.output and "genes DEMOG" in result.output, result.output
    assert "genes ━" not in result.output  # refused before predicting
    assert not (tmp_path / "o").exists()


def test_shards_collected_equal_one_run(cohort, run, tmp_path):
    """--shard I/N by genes (with the evaluation) and by individuals, joined by collect: the same
    predictions and per-gene scores as one process."""
    from epx.personalize import collect_personalize

    out, cache, _ = run
    parts = []
    for i in (1, 2, 3):
        part = tmp_path / f"part{i}"
        result = _run(cohort, part, "--variant-effects", "--expression", str(cohort / "expression.bed"),
                      "--en-alphas", "20", "--inner-folds", "3", "--shard", f"{i}/3", cache=cache)
        assert result.exit_code == 0, result.output
        parts.append(part)
    collected = tmp_path / "collected"
    result = runner.invoke(app, ["collect", *map(str, parts), "-o", str(collected)])
    assert result.exit_code == 0, result.output
    for name in ("predictions.parquet", "heldout_predictions.parquet", "per_gene.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(collected / name), pd.read_parquet(out / name))
    for name in ("predicted_expression.tsv", "reference.tsv", "variant_effects.tsv", "en_weights.tsv"):
        assert (collected / name).read_text() == (out / name).read_text(), name
    whole = json.loads((out / "summary.json").read_text())
    joined = json.loads((collected / "summary.json").read_text())
    assert joined["methods"] == whole["methods"]
    # by individuals (no evaluation): predictions joined back in the genotype file's order
    ind_parts = []
    for i in (1, 2):
        part = tmp_path / f"ind{i}"
        result = _run(cohort, part, "--shard", f"{i}/2", "--shard-by", "individuals", cache=cache)
        assert result.exit_code == 0, result.output
        ind_parts.append(part)
    collect_personalize(ind_parts, tmp_path / "ind")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ind" / "predictions.parquet"),
                                  pd.read_parquet(out / "predictions.parquet"))
    # parts of different runs, a missing part, the same part twice
    with pytest.raises(Exception, match="different personalize runs"):
        collect_personalize([parts[0], ind_parts[1]], tmp_path / "bad1")
    with pytest.raises(Exception, match="missing"):
        collect_personalize(parts[:2], tmp_path / "bad2")
    with pytest.raises(Exception, match="twice"):
        collect_personalize([parts[0], parts[0], parts[1]], tmp_path / "bad3")
    assert not any((tmp_path / f"bad{i}").exists() for i in (1, 2, 3))
