"""epx.cohort: expression across individuals against the mean, the elastic net, Enformer and the stack.

A simulated cohort: 300 individuals with genotype dosages per gene window, some genes with 1-3
causal variants of known effect, others null; a fake "Enformer" that is either informative beyond
the window's common variants (it sees rare variants the elastic net is not given), or noise.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import assert_user_error

from epx.cohort import (
    CohortError,
    ExpressionError,
    check_individuals,
    cohort_leaderboard,
    elastic_net_inner_oof,
    elastic_net_oof,
    evaluate_cohort,
    individual_folds,
    read_expression,
    stacked_oof,
    strip_version,
    write_cohort_report,
)
from epx.outputs import atomic_dir, epx_kind

FAST = {"inner_k": 3, "n_alphas": 20}  # the defaults (5, 100) are PrediXcan's; these keep the tests quick
N_IND = 300
H2 = 0.3


def simulate(n_genes: int = 12, n_var: int = 30, h2: float = H2, enformer: str = "informative",
             null_genes: int = 3, seed: int = 1, noise_only: bool = False):
    """Expression (genes x individuals), long predictions, dosages, samples, and the causal variants."""
    rng = np.random.default_rng(seed)
    inds = [f"GTEX-{i:04X}" for i in range(N_IND)]
    expr, dosages, preds, causal_ids, effects = {}, {}, [], {}, {}
    for g in range(n_genes):
        gene = f"ENSG{g:011d}"
        X = rng.binomial(2, rng.uniform(0.1, 0.5, n_var), size=(N_IND, n_var)).astype(np.float64)
        ids = [f"chr1:{1000 + 10 * j}:A:G" for j in range(n_var)]
        rare = rng.normal(size=N_IND)  # what Enformer sees and the elastic net is not given
        if g < null_genes or noise_only:
            cis, causal, beta = np.zeros(N_IND), np.array([], int), np.array([])
        else:
            causal = rng.choice(n_var, size=1 + g % 3, replace=False)
            beta = rng.choice([-1.0, 1.0], len(causal)) * rng.uniform(0.6, 1.0, len(causal))
            cis = X[:, causal] @ beta
            scale = np.sqrt(h2) / cis.std()
            cis, beta = (cis - cis.mean()) * scale, beta * scale
        y = cis + (0.0 if noise_only else 0.5 * rare) + rng.normal(size=N_IND) * np.sqrt(max(1 - h2, 0.1))
        if noise_only:
            y = rng.normal(size=N_IND)
        track = rare + 0.3 * rng.normal(size=N_IND) if enformer == "informative" else rng.normal(size=N_IND)
        expr[gene] = 5 + y
        dosages[gene] = (ids, X)
        causal_ids[gene] = {ids[c] for c in causal}
        effects[gene] = dict(zip([ids[c] for c in causal], beta, strict=True))
        preds.append(pd.DataFrame({"gene_id": f"{gene}.4", "individual": inds, "CAGE:blood": track,
                                   "DNASE:blood": rng.normal(size=N_IND)}))
    expression = pd.DataFrame(expr, index=inds).T
    expression.index.name = "gene_id"
    return expression, pd.concat(preds, ignore_index=True), dosages, inds, causal_ids, effects


@pytest.fixture(scope="module")
def informative():
    expression, preds, dosages, samples, causal, effects = simulate()
    result = evaluate_cohort(expression, preds, dosages, samples=samples, k=5, seed=0, **FAST)
    return result, causal, effects


# -- the elastic net and the stack ------------------------------------------------------------------


def test_elastic_net_recovers_the_causal_variants_and_the_heritability(informative):
    result, causal, effects = informative
    table = result.per_gene.set_index("gene_id")
    for gene, ids in causal.items():
        chosen = result.weights[(result.weights["gene_id"] == gene) & (result.weights["n_folds"] >= 4)]
        if not ids:  # null genes: at most a stray variant, and no real prediction
            assert len(chosen) <= 2, chosen
            continue
        assert ids <= set(chosen["variant_id"]), (gene, ids, chosen)
        # the strongest selected variant is causal, with the simulated sign
        top = chosen.loc[chosen["beta_mean"].abs().idxmax()]
        assert top["variant_id"] in ids and np.sign(top["beta_mean"]) == np.sign(effects[gene][top["variant_id"]])
    causal_genes = [g for g, ids in causal.items() if ids]
    # y = cis (variance H2) + 0.25 from what only "Enformer" sees + noise (1 - H2): the window's variants
    # explain H2 / 1.25 of it
    expected_r2 = H2 / (1 + 0.25)
    r2 = table.loc[causal_genes, "elastic_net_r2"].median()
    r = table.loc[causal_genes, "elastic_net_pearson"].median()
    assert abs(r2 - expected_r2) < 0.08, r2
    assert abs(r - np.sqrt(expected_r2)) < 0.08, r
    assert (table.loc[causal_genes, "n_variants"] == 30).all()


def test_stack_with_an_informative_enformer_beats_the_elastic_net(informative):
    result, _, _ = informative
    s = result.summary["methods"]
    assert s["stacked"]["median_pearson"] > s["elastic_net"]["median_pearson"] + 0.1, s
    assert s["enformer"]["median_pearson"] > 0.3
    assert s["mean"]["n_defined"] == 0 and s["mean"]["median_pearson"] is None  # a constant: no correlation
    assert s["mean"]["median_r2"] < 0.0  # held-out R^2 of the training mean: just below 0
    assert s["enformer"]["median_r2"] is None  # not fitted: no R^2


def test_stack_with_a_noise_enformer_is_not_much_worse_than_the_elastic_net():
    expression, preds, dosages, samples, causal, _ = simulate(enformer="noise", null_genes=0, n_genes=8)
    result = evaluate_cohort(expression, preds, dosages, samples=samples, k=5, seed=0, **FAST)
    s = result.summary["methods"]
    assert abs(s["enformer"]["median_pearson"]) < 0.1
    assert s["stacked"]["median_pearson"] > s["elastic_net"]["median_pearson"] - 0.03, s


def test_pure_noise_expression_gives_no_correlation():
    """Nothing leaks: with y pure noise no method correlates with the held-out individuals."""
    expression, preds, dosages, samples, _, _ = simulate(noise_only=True, n_genes=10, enformer="noise")
    result = evaluate_cohort(expression, preds, dosages, samples=samples, k=5, seed=0, **FAST)
    for method in ("elastic_net", "enformer", "stacked"):
        values = result.per_gene[f"{method}_pearson"].dropna()
        if len(values):
            assert abs(values.median()) < 0.1, (method, values.tolist())
    assert result.per_gene["mean_pearson"].isna().all()


def test_the_stacks_elastic_net_feature_is_out_of_fold_within_the_training_individuals():
    """Private variants (each carried by one individual) let a model memorise its training rows: the
    nested score must not see them, so it does not correlate with y on the training rows."""
    rng = np.random.default_rng(3)
    n = 60
    y = rng.normal(size=n)
    X = np.eye(n)  # individual i alone carries variant i
    folds = np.arange(n) % 5
    inner = elastic_net_inner_oof(X, y, folds, seed=0, **FAST)
    assert np.isnan(inner[folds == 2, 2]).all() and np.isfinite(inner[folds != 2, 2]).all()
    for f in range(5):
        train = folds != f
        # out of fold, a private variant is monomorphic (absent) in the fitting rows: the score is a
        # training mean, carrying nothing of y_i
        assert abs(np.corrcoef(inner[train, f], y[train])[0, 1]) < 0.35
    oof, fits = elastic_net_oof(X, y, folds, seed=0, **FAST)
    assert abs(np.corrcoef(oof, y)[0, 1]) < 0.4
    stacked, coef = stacked_oof(rng.normal(size=(n, 2)), oof, inner, y, folds)
    assert stacked.shape == (n,) and coef.shape == (5, 3)


def test_genes_without_variants_or_with_constant_expression_predict_the_training_mean():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    folds = np.arange(50) % 5
    oof, fits = elastic_net_oof(np.zeros((50, 0)), y, folds)
    expected = np.array([y[folds != f].mean() for f in folds])
    np.testing.assert_allclose(oof, expected)
    assert (fits.n_nonzero == 0).all() and np.isnan(fits.alpha).all()
    mono = np.column_stack([np.ones(50), rng.binomial(2, 0.3, 50)])  # one monomorphic variant
    oof, fits = elastic_net_oof(mono, np.full(50, 2.0), folds)
    np.testing.assert_allclose(oof, 2.0)
    assert fits.coef.shape == (5, 2) and (fits.coef[:, 0] == 0).all()


def test_gene_without_variants_has_no_elastic_net_correlation():
    expression, preds, dosages, samples, _, _ = simulate(n_genes=2, null_genes=0)
    del dosages["ENSG00000000001"]  # no variant in its window
    result = evaluate_cohort(expression, preds, dosages, samples=samples, k=5, seed=0, **FAST)
    row = result.per_gene.set_index("gene_id").loc["ENSG00000000001"]
    assert row["n_variants"] == 0 and np.isnan(row["elastic_net_pearson"]) and row["en_nonzero_max"] == 0
    assert np.isfinite(row["enformer_pearson"]) and np.isfinite(row["stacked_pearson"])


# -- folds and individuals --------------------------------------------------------------------------


def test_individual_folds_are_seeded_balanced_and_independent_of_order():
    inds = [f"I{i}" for i in range(103)]
    a = individual_folds(inds, 5, seed=7)
    assert a == individual_folds(list(reversed(inds)), 5, seed=7)
    assert a != individual_folds(inds, 5, seed=8)
    sizes = np.bincount(list(a.values()))
    assert sizes.max() - sizes.min() <= 1 and len(sizes) == 5
    with pytest.raises(CohortError, match="at least 2 folds"):
        individual_folds(inds, 1, seed=0)
    with pytest.raises(CohortError, match="too few"):
        individual_folds(inds[:7], 5, seed=0)


def test_evaluation_is_deterministic():
    expression, preds, dosages, samples, _, _ = simulate(n_genes=3, null_genes=1)
    one = evaluate_cohort(expression, preds, dosages, samples=samples, k=5, seed=4, **FAST)
    two = evaluate_cohort(expression, preds, dosages, samples=samples, k=5, seed=4, **FAST)
    pd.testing.assert_frame_equal(one.per_gene, two.per_gene)
    pd.testing.assert_frame_equal(one.heldout, two.heldout)


def test_expression_individuals_without_genotypes_are_named():
    expr = [f"GTEX-{i}" for i in range(8)]
    with pytest.raises(CohortError) as err:
        check_individuals(expr, expr[:1])
    message = str(err.value)
    assert "7 of 8" in message and "GTEX-1, GTEX-2, GTEX-3, GTEX-4, GTEX-5, ..." in message and "\n" not in message
    check = check_individuals(expr, expr[:6], allow_missing=True)
    assert check.kept == expr[:6] and check.missing == expr[6:] and "GTEX-6, GTEX-7" in check.warning()
    with pytest.raises(CohortError, match="no expression individual has genotypes"):
        check_individuals(expr, ["X"], allow_missing=True)


# -- the expression table ---------------------------------------------------------------------------

HEADER = "#chr\tstart\tend\tgene_id\tGTEX-1117F\tGTEX-111CU\tGTEX-111FC\n"


def test_read_expression_gtex_layout_plain_and_bgzipped(tmp_path):
    body = "chr1\t29552\t29553\tENSG00000227232.5\t0.1\t-0.2\t1.5\nchr1\t135894\t135895\tENSG00000268903.1\tNA\t0.3\t2\n"
    plain = tmp_path / "Whole_Blood.v8.normalized_expression.bed"
    plain.write_text(HEADER + body)
    frame = read_expression(plain)
    assert list(frame.index) == ["ENSG00000227232", "ENSG00000268903"]
    assert list(frame.columns) == ["GTEX-1117F", "GTEX-111CU", "GTEX-111FC"]
    assert np.isnan(frame.loc["ENSG00000268903", "GTEX-1117F"]) and frame.loc["ENSG00000227232", "GTEX-111FC"] == 1.5
    assert frame.attrs["genes"].loc["ENSG00000227232", "gene_id_original"] == "ENSG00000227232.5"
    packed = tmp_path / "expr.bed.gz"
    if shutil.which("bgzip"):
        subprocess.run(["bgzip", "-c", str(plain)], stdout=packed.open("wb"), check=True)
    else:
        packed.write_bytes(gzip.compress(plain.read_bytes()))
    pd.testing.assert_frame_equal(read_expression(packed), frame)
    assert list(read_expression(plain, genes={"ENSG00000268903.9"}).index) == ["ENSG00000268903"]
    assert strip_version("ENSG00000182378.14_PAR_Y") == "ENSG00000182378_PAR_Y" and strip_version("TP53") == "TP53"


@pytest.mark.parametrize("text, fragments", [
    ("", ["empty expression file"]),
    (HEADER, [":2:", "no genes"]),
    ("#chr\tstart\tend\tGTEX-1\tGTEX-2\n", [":1:", "column 4", "gene_id", "'GTEX-1'"]),
    ("#chr\tstart\tend\tgene_id\n", [":1:", "no individual columns"]),
    ("#chr\tstart\tend\tgene_id\tA\tB\tA\n", [":1:", "individual A is listed twice"]),
    (HEADER + "chr1\t1\t2\tENSG1.1\t1\t2\t3\nchr1\t5\t6\tENSG2\t1\tx7\t3\n", [":3:", "'x7'", "gene ENSG2", "GTEX-111CU"]),
    (HEADER + "chr1\t1\t2\tENSG1.1\t1\t2\t3\nchr1\t5\t6\tENSG1.2\t1\t2\t3\n", [":3:", "ENSG1.1 is listed twice", "ENSG1.2"]),
    (HEADER + "chr1\t1\t2\tENSG1.1\t1\t2\n", ["rows have 6 columns but the header has 7"]),
])
def test_read_expression_errors_name_the_file_and_line(tmp_path, text, fragments):
    path = tmp_path / "expr.bed"
    path.write_text(text)
    with pytest.raises(ExpressionError) as err:
        read_expression(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# -- the report -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def personalize_dir(informative, tmp_path_factory):
    result, _, _ = informative
    out = tmp_path_factory.mktemp("personalize") / "blood"
    with atomic_dir(out, kind="personalize") as tmp:
        write_cohort_report(result, tmp)
    return out


def test_report_files(personalize_dir, informative):
    result, _, _ = informative
    assert epx_kind(personalize_dir) == "personalize"
    assert epx_kind(personalize_dir / "scatter.png") == "plot"
    per_gene = pd.read_csv(personalize_dir / "per_gene.tsv", sep="\t")
    assert len(per_gene) == 12 and {"elastic_net_pearson", "enformer_spearman", "stacked_r2", "en_nonzero_median"} <= set(per_gene.columns)
    held = pd.read_parquet(personalize_dir / "heldout_predictions.parquet")
    assert len(held) == 12 * N_IND and set(held["fold"]) == {0, 1, 2, 3, 4}
    summary = json.loads((personalize_dir / "summary.json").read_text())
    assert summary["methods"]["mean"]["median_pearson"] is None and summary["config"]["k"] == 5
    rows = {r["method"]: r for r in cohort_leaderboard(personalize_dir)}
    assert list(rows) == ["mean", "elastic_net", "enformer", "stacked"]
    assert rows["stacked"]["median_pearson"] == pytest.approx(result.summary["methods"]["stacked"]["median_pearson"])


def test_epx_report_shows_the_methods_side_by_side(run, personalize_dir, tmp_path):
    result = run("report", personalize_dir, "--bootstrap", "200", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for word in ("median pearson", "median spearman", "wrong sign", "elastic_net", "enformer", "stacked", "mean"):
        assert word in out, (word, out)
    board = json.loads(run("report", personalize_dir, "--format", "json", "--bootstrap", "200",
                           "--baseline", "elastic_net").stdout)
    stacked = next(r for r in board if r["entry"] == "stacked" and r["metric"] == "median pearson")
    assert stacked["reference"] == "elastic_net" and stacked["diff"] > 0 and stacked["diff_low"] > 0
    mean = next(r for r in board if r["entry"] == "mean" and r["metric"] == "median pearson")
    assert mean["value"] is None and mean["n"] == 0
    plot = tmp_path / "board.png"
    assert run("report", personalize_dir, "--bootstrap", "200", "--plot", plot).exit_code == 0 and plot.is_file()
    other = tmp_path / "not-personalize"
    other.mkdir()
    assert_user_error(run("report", personalize_dir, other), "not an epx personalize directory")
    empty = tmp_path / "no-eval"
    with atomic_dir(empty, kind="personalize") as tmp:
        (tmp / "predictions.tsv").write_text("gene_id\n")
    assert_user_error(run("report", empty), "no cohort evaluation here")
