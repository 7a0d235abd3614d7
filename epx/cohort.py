"""Cohort evaluation for ``epx personalize``: does a prediction track expression *across individuals*?

Across individuals, Enformer's per-gene correlation with measured expression is near zero (Sasse et
al. 2023: median r 0.006, 45% of genes negative) while a PrediXcan-style elastic net on the same
genes reaches a median r of about 0.24. So every number epx reports for a personalised prediction
stands beside baselines, all scored per gene on the same held-out individuals:

* ``mean``: the training individuals' mean expression. Its correlation is undefined (NaN, a
  constant); its value is in the held-out R^2 and MSE, the floor every other method must clear.
* ``elastic_net``: PrediXcan's model, an elastic net (l1_ratio 0.5) on the genotype dosages of the
  gene's window, standardised within the training individuals, its penalty chosen by an inner
  cross-validation over the training individuals only (``ElasticNetCV``).
* ``enformer``: Enformer's own prediction per individual (the mean of the selected tracks). No
  fitting: its correlation is computed directly, on the same individuals as the others.
* ``stacked``: a ridge regression (``RidgeCV``, penalty by leave-one-out over the training
  individuals) on the standardised per-track Enformer outputs plus the elastic-net score.

**Folds.** Individuals (not genes) are split into ``k`` folds by :func:`individual_folds`, a seeded
permutation of the sorted individual IDs (the same for every gene and independent of column
order). Every individual is predicted once, by models that never saw it.

**No leakage in the stack.** The stacker of outer fold ``f`` is trained on the training individuals
of ``f``; their elastic-net feature must not come from a model that was fitted on them. So for each
outer fold the training individuals are split again (``inner_k`` folds), an elastic net (with its own
inner ``ElasticNetCV``) is fitted on all but one inner fold and scores the left-out inner fold: the
training rows' elastic-net feature is out-of-fold *within the outer training set*
(:func:`elastic_net_inner_oof`). The held-out individuals' feature is the outer elastic net's
prediction (fitted on all the outer training individuals, never on them). The held-out individuals'
expression is used by nothing but the final scoring.

**Correlations are of fold-centred predictions.** Each fold's model carries its own intercept, the
training mean, and a training mean is anti-correlated with the held-out values (it is the total minus
them): pooling the raw predictions of a model that predicts nothing gives r of about
``-sqrt((k - 1) / n)``, not 0. The Pearson and Spearman of fitted methods are therefore computed on
the prediction minus its fold's training mean of the expression (a per-fold constant known before the
held-out individuals are seen); R^2 and MSE use the raw predictions. A method whose centred
prediction is constant (the mean predictor; an elastic net that selected no variant in any fold)
has an undefined correlation (NaN): summaries report medians over the genes where it is defined and
say how many those are (``n_defined``), and ``median_pearson_zero`` counts undefined as r = 0.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx.errors import EpxError, InputFileError
from epx.metrics import mse, pearson, r2, spearman

METHODS = ("mean", "elastic_net", "enformer", "stacked")
METHOD_LABELS = {
    "mean": "mean (training mean)",
    "elastic_net": "elastic net (PrediXcan-style)",
    "enformer": "Enformer",
    "stacked": "stacked (Enformer tracks + EN)",
}
BED_COLUMNS = ("chrom", "start", "end", "gene_id")
KEY_COLUMNS = ("gene_id", "individual")
SUMMARY_FILE = "summary.json"
PER_GENE_FILE = "per_gene.tsv"
PER_GENE_EXACT = "per_gene.parquet"
HELDOUT_FILE = "heldout_predictions.parquet"
WEIGHTS_FILE = "en_weights.tsv"
FOLDS_FILE = "folds.tsv"
SCATTER_FILE = "scatter.png"
MISSING_VALUES = ("", "NA", "NaN", "nan", "na", "N/A", ".")
_VERSION = re.compile(r"^(ENS[A-Z]*\d+)\.\d+(_PAR_Y)?$")


class ExpressionError(InputFileError):
    """An expression table is malformed."""


class CohortError(EpxError):
    """Expression, genotypes and predictions do not fit together."""


# -- expression ------------------------------------------------------------------------------------


def strip_version(gene_id: str) -> str:
    """``ENSG00000123456.7`` -> ``ENSG00000123456`` (Ensembl IDs only; ``_PAR_Y`` is kept)."""
    m = _VERSION.match(gene_id)
    return m.group(1) + (m.group(2) or "") if m else gene_id


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":  # gzip or bgzip (a series of gzip members)
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_expression(path: str | Path, genes: Iterable[str] | None = None) -> pd.DataFrame:
    """A GTEx-style expression table: ``#chr start end gene_id`` then one column per individual.

    Returns a float frame indexed by ``gene_id`` with the version suffix stripped (the key used to
    match predictions), one column per individual in file order. ``attrs["genes"]`` holds
    chrom, start, end and the original ``gene_id`` per row; ``attrs["path"]`` the file. ``genes``
    (IDs with or without version) keeps only those rows. Empty cells and NA are missing (NaN); any
    other non-numeric value, a duplicate gene or individual, a missing column or an empty table is
    a one-line :class:`ExpressionError` naming the file and line.
    """
    from epx.errors import require_file

    p = require_file(path, "expression file")
    try:
        with _open_text(p) as fh:
            header_line, skipped = "", 0
            for header_line in fh:
                if not header_line.startswith("##"):
                    break
                skipped += 1
            else:
                header_line = ""
            if not header_line.strip():
                raise ExpressionError("empty expression file (expected a header '#chr start end gene_id "
                                      "INDIVIDUAL...')", path=p, line=skipped + 1 if skipped else None)
            header = header_line.rstrip("\r\n").split("\t")
            _check_header(header, p, skipped + 1)
            table = pd.read_csv(fh, sep="\t", header=None, dtype=str, keep_default_na=False,
                                na_filter=False, quoting=3, engine="c")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise ExpressionError(f"cannot read the expression file: {exc}", path=p) from None
    except pd.errors.EmptyDataError:
        table = pd.DataFrame(columns=range(len(header)))
    except pd.errors.ParserError as exc:
        raise ExpressionError(f"malformed expression table: {str(exc).splitlines()[0]}", path=p) from None
    first_line = skipped + 2
    if table.shape[1] != len(header):
        raise ExpressionError(f"rows have {table.shape[1]} columns but the header has {len(header)}",
                              path=p, line=first_line)
    if table.empty:
        raise ExpressionError("no genes: the expression table has a header but no rows", path=p,
                              line=first_line)
    table.columns = list(BED_COLUMNS) + header[4:]
    table.index = np.arange(first_line, first_line + len(table))  # file line numbers
    ids = table["gene_id"].str.strip()
    if (ids == "").any():
        raise ExpressionError("empty gene_id", path=p, line=int(ids.index[(ids == "").to_numpy()][0]))
    stripped = ids.map(strip_version)
    dup = stripped.duplicated(keep=False)
    if dup.any():
        lines = stripped.index[dup.to_numpy()]
        first = stripped[lines[0]]
        other = next(int(ln) for ln in lines[1:] if stripped[ln] == first)
        raise ExpressionError(f"gene {ids[lines[0]]} is listed twice (also line {other}"
                              f"{', as ' + ids[other] if ids[other] != ids[lines[0]] else ''})", path=p, line=other)
    if genes is not None:
        wanted = {strip_version(g) for g in genes}
        keep = stripped.isin(wanted).to_numpy()
        table, ids, stripped = table[keep], ids[keep], stripped[keep]
    individuals = header[4:]
    values = _numeric(table[individuals], ids, p)
    frame = pd.DataFrame(values, index=pd.Index(stripped.to_numpy(), name="gene_id"), columns=individuals)
    frame.columns.name = "individual"
    frame.attrs["genes"] = pd.DataFrame({"chrom": table["chrom"].to_numpy(), "start": table["start"].to_numpy(),
                                         "end": table["end"].to_numpy(), "gene_id_original": ids.to_numpy()},
                                        index=frame.index)
    frame.attrs["path"] = str(p)
    return frame


def _check_header(header: list[str], path: Path, line: int) -> None:
    names = [h.strip().lstrip("#").lower() for h in header]
    expected = (("chr", "chrom", "chromosome"), ("start",), ("end",), ("gene_id", "gene", "phenotype_id", "pid", "id"))
    for i, (want, label) in enumerate(zip(expected, ("#chr", "start", "end", "gene_id"), strict=True)):
        if i >= len(names) or names[i] not in want:
            found = f"'{header[i]}'" if i < len(header) else "nothing"
            raise ExpressionError(f"column {i + 1} of the header must be {label} (found {found}); expected "
                                  "'#chr start end gene_id' then one column per individual", path=path, line=line)
    individuals = [h.strip() for h in header[4:]]
    if not individuals:
        raise ExpressionError("no individual columns after '#chr start end gene_id'", path=path, line=line)
    if "" in individuals:
        raise ExpressionError(f"column {individuals.index('') + 5} of the header has no individual name",
                              path=path, line=line)
    seen: dict[str, int] = {}
    for i, name in enumerate(individuals):
        if name in seen:
            raise ExpressionError(f"individual {name} is listed twice (columns {seen[name] + 5} and {i + 5})",
                                  path=path, line=line)
        seen[name] = i
    header[4:] = individuals


def _numeric(cells: pd.DataFrame, ids: pd.Series, path: Path) -> np.ndarray:
    raw = cells.to_numpy(dtype=object)
    try:
        return raw.astype(np.float64)  # the fast path: every cell a number
    except ValueError:
        pass
    out = np.empty(raw.shape, dtype=np.float64)
    for j, column in enumerate(cells.columns):
        converted = pd.to_numeric(cells[column].str.strip().replace(list(MISSING_VALUES), np.nan), errors="coerce")
        bad = converted.isna().to_numpy() & ~cells[column].str.strip().isin(MISSING_VALUES).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            line = int(cells.index[row])
            raise ExpressionError(f"non-numeric expression {raw[row, j]!r} for gene {ids.iloc[row]}, individual "
                                  f"{column}", path=path, line=line)
        out[:, j] = converted.to_numpy(np.float64)
    return out


# -- individuals and folds -------------------------------------------------------------------------


def individual_folds(individuals: Sequence[str], k: int, seed: int) -> dict[str, int]:
    """Assign each individual a fold 0..k-1: a seeded permutation of the sorted IDs, dealt round
    robin, so fold sizes differ by at most one and the folds do not depend on the input order."""
    unique = sorted(set(individuals))
    if len(unique) < len(individuals):
        dup = next(i for i in individuals if list(individuals).count(i) > 1)
        raise CohortError(f"individual {dup} is listed twice")
    if k < 2:
        raise CohortError(f"cross-validation over individuals needs at least 2 folds (got {k})")
    if len(unique) < 2 * k:
        raise CohortError(f"{len(unique)} individuals are too few for {k} folds (need at least {2 * k})")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[j]: int(pos % k) for pos, j in enumerate(order)}


@dataclass
class IndividualCheck:
    """The expression individuals that have genotypes (in expression order), and those that do not."""

    kept: list[str]
    missing: list[str]

    def warning(self) -> str | None:
        if not self.missing:
            return None
        return (f"{len(self.missing):,} expression individual(s) have no genotypes and are left out "
                f"({_some(self.missing)})")


def _some(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names):,} in all)" if len(names) > n else "")


def check_individuals(expression_individuals: Sequence[str], genotype_samples: Sequence[str],
                      allow_missing: bool = False) -> IndividualCheck:
    """Every expression individual must have genotypes; otherwise a one-line :class:`CohortError`
    naming up to 5 of them and how many, unless ``allow_missing`` (then they are returned in
    ``missing`` for the caller to warn about and dropped from ``kept``). Genotyped individuals
    without expression are simply not evaluated."""
    samples = set(genotype_samples)
    kept = [i for i in expression_individuals if i in samples]
    missing = [i for i in expression_individuals if i not in samples]
    if missing and not allow_missing:
        raise CohortError(f"{len(missing):,} of {len(expression_individuals):,} expression individuals have no "
                          f"genotypes: {_some(missing)}; check the sample IDs (GTEx: GTEX-XXXX) or pass "
                          "--allow-missing-individuals to evaluate the others")
    if not kept:
        raise CohortError("no expression individual has genotypes: the sample IDs do not match "
                          f"(expression: {_some(list(expression_individuals), 3)}; genotypes: {_some(list(genotype_samples), 3)})")
    return IndividualCheck(kept=kept, missing=missing)


# -- the elastic net --------------------------------------------------------------------------------


@dataclass
class ElasticNetFolds:
    """Per outer fold, the fitted elastic net: coefficients per allele (0 for dropped variants)."""

    folds: list[int]                # the fold ids, in the order of the arrays' first axis
    coef: np.ndarray                # (n_folds, n_var) effect per ALT allele (dosage scale)
    coef_std: np.ndarray            # (n_folds, n_var) effect per SD of dosage (the fitted scale)
    intercept: np.ndarray           # (n_folds,)
    alpha: np.ndarray               # (n_folds,) chosen penalty (NaN where nothing was fitted)
    train_mean: np.ndarray          # (n_folds,) training mean of y
    polymorphic: np.ndarray         # (n_var,) bool: the variant varies among these individuals

    @property
    def n_nonzero(self) -> np.ndarray:
        return (self.coef != 0).sum(axis=1)

    def selection_counts(self) -> np.ndarray:
        """Per variant, in how many folds it has a non-zero coefficient."""
        return (self.coef != 0).sum(axis=0)


def _fit_en(X: np.ndarray, y: np.ndarray, seed: int, inner_k: int, l1_ratio: float,
            n_alphas: int) -> tuple[np.ndarray, np.ndarray, float, float, np.ndarray, np.ndarray]:
    """One elastic net on training rows: (coef per allele, coef per SD, intercept, alpha, mu, sd).
    Monomorphic variants (in these rows) get 0; missing dosages are imputed by the training mean."""
    n, p = X.shape
    mu = np.nanmean(X, axis=0) if p else np.zeros(0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    Xf = np.where(np.isnan(X), mu, X) if p else X
    sd = Xf.std(axis=0) if p else np.zeros(0)
    use = sd > 1e-12
    coef = np.zeros(p)
    coef_std = np.zeros(p)
    y_mean = float(y.mean())
    if not use.any() or np.ptp(y) == 0 or n < max(2 * inner_k, 6):
        return coef, coef_std, y_mean, float("nan"), mu, sd
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import ElasticNetCV
    from sklearn.model_selection import KFold

    Z = (Xf[:, use] - mu[use]) / sd[use]
    model = ElasticNetCV(l1_ratio=l1_ratio, cv=KFold(inner_k, shuffle=True, random_state=seed),
                         max_iter=5000, tol=1e-4, **_alphas_option(n_alphas))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Z, y)
    coef_std[use] = model.coef_
    coef[use] = model.coef_ / sd[use]
    intercept = float(model.intercept_) - float(np.dot(coef[use], mu[use]))
    return coef, coef_std, intercept, float(model.alpha_), mu, sd


def _alphas_option(n_alphas: int) -> dict[str, int]:
    """The size of the penalty path: ``alphas=N`` since scikit-learn 1.7, ``n_alphas=N`` before."""
    import sklearn

    major, minor = (int(x) for x in re.findall(r"\d+", sklearn.__version__)[:2])
    return {"alphas": n_alphas} if (major, minor) >= (1, 7) else {"n_alphas": n_alphas}


def _predict_en(X: np.ndarray, coef: np.ndarray, intercept: float, mu: np.ndarray) -> np.ndarray:
    if X.shape[1] == 0:
        return np.full(X.shape[0], intercept)
    return intercept + np.where(np.isnan(X), mu, X) @ coef


def _as_inputs(dosages: np.ndarray | None, y: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64)
    folds = np.asarray(folds)
    X = np.zeros((len(y), 0)) if dosages is None else np.asarray(dosages, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != len(y) or folds.shape != y.shape:
        raise ValueError(f"dosages {X.shape}, y {y.shape} and folds {folds.shape} do not match")
    if not np.isfinite(y).all():
        raise ValueError("y must be finite (drop the individuals without expression first)")
    return X, y, folds


def elastic_net_oof(dosages: np.ndarray | None, y: np.ndarray, folds: np.ndarray, seed: int = 0, *,
                    inner_k: int = 5, l1_ratio: float = 0.5, n_alphas: int = 100) -> tuple[np.ndarray, ElasticNetFolds]:
    """Out-of-fold PrediXcan-style predictions: per fold, ``ElasticNetCV`` (l1_ratio 0.5, penalty
    by ``inner_k``-fold CV within the training individuals) on the standardised dosages
    ``(n_ind, n_var)``. Variants monomorphic among the training individuals are dropped; without
    variants, or with a constant ``y``, a fold predicts its training mean."""
    X, y, folds = _as_inputs(dosages, y, folds)
    ids = sorted(set(folds.tolist()))
    n_var = X.shape[1]
    oof = np.empty(len(y))
    out = ElasticNetFolds(folds=ids, coef=np.zeros((len(ids), n_var)), coef_std=np.zeros((len(ids), n_var)),
                          intercept=np.zeros(len(ids)), alpha=np.full(len(ids), np.nan),
                          train_mean=np.zeros(len(ids)), polymorphic=np.ptp(np.nan_to_num(X, nan=0.0), axis=0) > 0
                          if n_var and len(y) else np.zeros(n_var, bool))
    for i, f in enumerate(ids):
        test = folds == f
        coef, coef_std, intercept, alpha, mu, _ = _fit_en(X[~test], y[~test], seed, inner_k, l1_ratio, n_alphas)
        oof[test] = _predict_en(X[test], coef, intercept, mu)
        out.coef[i], out.coef_std[i], out.intercept[i], out.alpha[i] = coef, coef_std, intercept, alpha
        out.train_mean[i] = y[~test].mean()
    return oof, out


def elastic_net_inner_oof(dosages: np.ndarray | None, y: np.ndarray, folds: np.ndarray, seed: int = 0, *,
                          inner_k: int = 5, l1_ratio: float = 0.5, n_alphas: int = 100) -> np.ndarray:
    """The elastic-net score of each outer fold's *training* individuals, out-of-fold within them.

    Returns ``(n_ind, n_folds)`` (columns in sorted fold order): entry ``[i, f]`` is the prediction
    for individual ``i`` by an elastic net fitted on the training individuals of outer fold ``f``
    minus ``i``'s inner fold; NaN where ``i`` is in fold ``f`` (a held-out individual: no model of
    fold ``f`` may see it). This is the stacker's training feature."""
    from sklearn.model_selection import KFold

    X, y, folds = _as_inputs(dosages, y, folds)
    ids = sorted(set(folds.tolist()))
    inner = np.full((len(y), len(ids)), np.nan)
    for j, f in enumerate(ids):
        train = np.flatnonzero(folds != f)
        splitter = KFold(min(inner_k, len(train)), shuffle=True, random_state=seed + 1 + j)
        for fit_rows, score_rows in splitter.split(train):
            a, b = train[fit_rows], train[score_rows]
            coef, _, intercept, _, mu, _ = _fit_en(X[a], y[a], seed, inner_k, l1_ratio, n_alphas)
            inner[b, j] = _predict_en(X[b], coef, intercept, mu)
    return inner


def stacked_oof(track_outputs: np.ndarray, en_oof: np.ndarray, en_inner: np.ndarray, y: np.ndarray,
                folds: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions of the stacked model, and its coefficients per fold.

    Per outer fold ``f``, a ``RidgeCV`` over standardised features (penalty by leave-one-out
    within the training individuals) is fitted on the training individuals' features
    ``[track_outputs, en_inner[:, f]]`` and predicts the held-out individuals from
    ``[track_outputs, en_oof]``. Returns ``(oof (n_ind,), coef (n_folds, n_tracks + 1))``; the
    coefficients are per SD of each feature, the elastic-net score last. ``seed`` is unused (the
    ridge is deterministic) and kept for a uniform signature."""
    from sklearn.linear_model import RidgeCV

    del seed
    y = np.asarray(y, dtype=np.float64)
    folds = np.asarray(folds)
    T = np.asarray(track_outputs, dtype=np.float64).reshape(len(y), -1)
    ids = sorted(set(folds.tolist()))
    oof = np.empty(len(y))
    coefs = np.zeros((len(ids), T.shape[1] + 1))
    for j, f in enumerate(ids):
        test = folds == f
        train_X = np.column_stack([T[~test], en_inner[~test, j]])
        test_X = np.column_stack([T[test], en_oof[test]])
        mu, sd = train_X.mean(axis=0), train_X.std(axis=0)
        use = sd > 1e-12 * np.maximum(1.0, np.abs(mu))
        if not use.any() or np.ptp(y[~test]) == 0:
            oof[test] = y[~test].mean()
            continue
        Z = (train_X[:, use] - mu[use]) / sd[use]
        model = RidgeCV(alphas=np.logspace(-3, 4, 15)).fit(Z, y[~test])
        oof[test] = model.predict((test_X[:, use] - mu[use]) / sd[use])
        coefs[j, use] = model.coef_
    return oof, coefs


# -- per-gene evaluation ----------------------------------------------------------------------------


@dataclass
class GeneInputs:
    """One gene's aligned inputs over the individuals that have its expression."""

    gene_id: str
    individuals: list[str]
    y: np.ndarray               # (n,)
    folds: np.ndarray           # (n,)
    tracks: np.ndarray          # (n, n_tracks) Enformer outputs per track
    enformer: np.ndarray        # (n,) Enformer's own prediction
    variant_ids: list[str]
    dosages: np.ndarray         # (n, n_var)


@dataclass
class CohortResult:
    per_gene: pd.DataFrame      # one row per gene: sizes, pearson/spearman/r2/mse per method
    summary: dict[str, Any]     # per method: median/mean r, fraction wrong sign, counts; the settings
    heldout: pd.DataFrame       # gene_id, individual, fold, expression, one column per method
    weights: pd.DataFrame       # elastic-net variants: gene_id, variant_id, n_folds, mean beta
    folds: dict[str, int] = field(default_factory=dict)


def _fold_centred(pred: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The prediction minus its fold's training mean of y (see the module docstring)."""
    out = np.empty(len(pred))
    for f in np.unique(folds):
        test = folds == f
        out[test] = pred[test] - y[~test].mean()
    return out


def _constant(x: np.ndarray) -> bool:
    x = x[np.isfinite(x)]
    return x.size == 0 or np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max()))


def _scores(y: np.ndarray, pred: np.ndarray, centred: np.ndarray | None, fitted: bool) -> dict[str, float]:
    corr_on = pred if centred is None else centred
    undefined = _constant(corr_on)
    return {
        "pearson": float("nan") if undefined else pearson(y, corr_on),
        "spearman": float("nan") if undefined else spearman(y, corr_on),
        "r2": r2(y, pred) if fitted else float("nan"),
        "mse": mse(y, pred) if fitted else float("nan"),
    }


def evaluate_gene(g: GeneInputs, seed: int = 0, *, inner_k: int = 5, l1_ratio: float = 0.5,
                  n_alphas: int = 100) -> tuple[dict[str, Any], dict[str, np.ndarray], pd.DataFrame]:
    """Score the four methods on one gene: (per-gene row, held-out predictions by method, EN weights)."""
    y, folds = g.y, g.folds
    poly = np.ptp(np.nan_to_num(g.dosages, nan=0.0), axis=0) > 0 if g.dosages.shape[1] else np.zeros(0, bool)
    X = g.dosages[:, poly]
    variant_ids = [v for v, keep in zip(g.variant_ids, poly, strict=True) if keep]
    mean_pred = y - _fold_centred(y, y, folds)  # each fold's training mean
    en_pred, en = elastic_net_oof(X, y, folds, seed, inner_k=inner_k, l1_ratio=l1_ratio, n_alphas=n_alphas)
    en_inner = elastic_net_inner_oof(X, y, folds, seed, inner_k=inner_k, l1_ratio=l1_ratio, n_alphas=n_alphas)
    st_pred, _ = stacked_oof(g.tracks, en_pred, en_inner, y, folds, seed)
    preds = {"mean": mean_pred, "elastic_net": en_pred, "enformer": g.enformer, "stacked": st_pred}
    row: dict[str, Any] = {"gene_id": g.gene_id, "n_individuals": len(y), "n_variants": len(variant_ids),
                           "n_tracks": g.tracks.shape[1]}
    for method, pred in preds.items():
        fitted = method != "enformer"
        centred = _fold_centred(pred, y, folds) if fitted else None
        for metric, value in _scores(y, pred, centred, fitted).items():
            row[f"{method}_{metric}"] = value
    nonzero = en.n_nonzero
    row["en_nonzero_median"] = float(np.median(nonzero)) if len(nonzero) else 0.0
    row["en_nonzero_min"] = int(nonzero.min()) if len(nonzero) else 0
    row["en_nonzero_max"] = int(nonzero.max()) if len(nonzero) else 0
    counts = en.selection_counts()
    chosen = np.flatnonzero(counts)
    weights = pd.DataFrame({
        "gene_id": g.gene_id,
        "variant_id": [variant_ids[i] for i in chosen],
        "n_folds": counts[chosen].astype(int),
        "beta_mean": en.coef[:, chosen].mean(axis=0),  # per ALT allele, 0 in folds that dropped it
        "beta_std_mean": en.coef_std[:, chosen].mean(axis=0),
    })
    return row, preds, weights


def _prediction_columns(predictions: pd.DataFrame) -> tuple[list[str], str | None]:
    missing = [c for c in KEY_COLUMNS if c not in predictions.columns]
    if missing:
        raise CohortError(f"the predictions have no {missing[0]} column")
    tracks = [c for c in predictions.columns if c not in (*KEY_COLUMNS, "enformer")]
    own = "enformer" if "enformer" in predictions.columns else None
    if not tracks and own is None:
        raise CohortError("the predictions have no track column and no 'enformer' column")
    return tracks or [own], own


def gene_inputs(expression: pd.DataFrame, predictions: pd.DataFrame,
                dosages: Mapping[str, tuple[Sequence[str], np.ndarray]], samples: Sequence[str],
                folds: Mapping[str, int]) -> Iterable[GeneInputs]:
    """Align expression, predictions and dosages gene by gene over the individuals in ``folds``.

    ``dosages[gene_id] = (variant_ids, matrix)`` with one row per ``samples`` entry (ALT allele
    counts, NaN = missing); a gene absent from ``dosages`` has no variant in its window."""
    track_cols, own = _prediction_columns(predictions)
    sample_row = {s: i for i, s in enumerate(samples)}
    dosage_by_gene = {strip_version(g): v for g, v in dosages.items()}
    preds = predictions.assign(gene_id=predictions["gene_id"].astype(str).map(strip_version))
    for gene, block in preds.groupby("gene_id", sort=True):
        if gene not in expression.index:
            continue
        row = expression.loc[gene]
        dup = block["individual"].duplicated()
        if dup.any():
            raise CohortError(f"gene {gene}: individual {block['individual'][dup.to_numpy()].iloc[0]} has two "
                              "prediction rows")
        block = block.set_index("individual")
        individuals = [i for i in row.index if i in folds and np.isfinite(row[i])]
        absent = [i for i in individuals if i not in block.index]
        if absent:
            raise CohortError(f"gene {gene}: no prediction for {len(absent):,} individual(s) with expression "
                              f"({_some(absent)})")
        missing_rows = [i for i in individuals if i not in sample_row]
        if missing_rows:
            raise CohortError(f"gene {gene}: no genotypes for {_some(missing_rows)}")
        tracks = block.loc[individuals, track_cols].to_numpy(np.float64)
        enformer = block.loc[individuals, own].to_numpy(np.float64) if own else tracks.mean(axis=1)
        if not (np.isfinite(tracks).all() and np.isfinite(enformer).all()):
            raise CohortError(f"gene {gene}: the predictions hold NaN or infinite values")
        variant_ids, matrix = dosage_by_gene.get(gene, ([], np.zeros((len(samples), 0))))
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape != (len(samples), len(variant_ids)):
            raise CohortError(f"gene {gene}: dosages are {matrix.shape}, expected ({len(samples)} samples, "
                              f"{len(variant_ids)} variants)")
        rows = np.array([sample_row[i] for i in individuals], dtype=np.int64)
        yield GeneInputs(gene_id=str(gene), individuals=individuals, y=row[individuals].to_numpy(np.float64),
                         folds=np.array([folds[i] for i in individuals]), tracks=tracks, enformer=enformer,
                         variant_ids=list(variant_ids), dosages=matrix[rows])


class CohortEvaluator:
    """:func:`evaluate_cohort` one gene at a time, so a cohort's dosages (a +-1 Mb window of a
    whole-genome VCF holds tens of thousands of variants per gene) never all sit in memory:
    ``add`` scores a gene as soon as its predictions exist and keeps only the scores."""

    def __init__(self, expression: pd.DataFrame, samples: Sequence[str], *, k: int = 5, seed: int = 0,
                 inner_k: int = 5, l1_ratio: float = 0.5, n_alphas: int = 100, min_individuals: int = 20,
                 allow_missing: bool = False):
        self.expression = expression
        self.samples = list(samples)
        self.seed = seed
        self.k = k
        self.min_individuals = min_individuals
        self.options = {"inner_k": inner_k, "l1_ratio": l1_ratio, "n_alphas": n_alphas}
        self.check = check_individuals(list(expression.columns), self.samples, allow_missing=allow_missing)
        self.folds = individual_folds(self.check.kept, k, seed)
        self.done: list[tuple[GeneInputs, tuple[dict[str, Any], dict[str, np.ndarray], pd.DataFrame]]] = []
        self.too_few: list[str] = []
        self.predicted: set[str] = set()
        self.tracks: list[str] = []
        self.first_predicted: str | None = None

    def inputs(self, predictions: pd.DataFrame,
               dosages: Mapping[str, tuple[Sequence[str], np.ndarray]]) -> list[GeneInputs]:
        """Align (see :func:`gene_inputs`) and sort out genes with too few individuals."""
        self.predicted |= set(predictions["gene_id"].astype(str).map(strip_version))
        self.first_predicted = self.first_predicted or next(iter(predictions["gene_id"].astype(str)), None)
        self.tracks = _prediction_columns(predictions)[0]
        need = max(self.min_individuals, 2 * self.k)
        out = []
        for g in gene_inputs(self.expression, predictions, dosages, self.samples, self.folds):
            (out if len(g.y) >= need else self.too_few).append(g if len(g.y) >= need else g.gene_id)
        return out

    def add(self, predictions: pd.DataFrame, dosages: Mapping[str, tuple[Sequence[str], np.ndarray]]) -> None:
        """Score the genes of ``predictions`` (usually one) now."""
        for g in self.inputs(predictions, dosages):
            self.done.append((g, evaluate_gene(g, self.seed, **self.options)))

    def result(self) -> CohortResult:
        if not self.done:
            shared = self.predicted & set(self.expression.index)
            raise CohortError("no gene to evaluate: " + (
                f"{len(self.too_few)} gene(s) have fewer than {self.min_individuals} individuals with expression"
                if shared else f"no predicted gene is in the expression table (e.g. predicted "
                f"{self.first_predicted or '?'}, expression {next(iter(self.expression.index), '?')})"))
        per_gene = pd.DataFrame([row for _, (row, _, _) in self.done])
        heldout = pd.concat([pd.DataFrame({"gene_id": g.gene_id, "individual": g.individuals, "fold": g.folds,
                                           "expression": g.y, **preds}) for g, (_, preds, _) in self.done],
                            ignore_index=True)
        weights = pd.concat([w for _, (_, _, w) in self.done], ignore_index=True)
        config = {"k": self.k, "seed": self.seed, **self.options, "min_individuals": self.min_individuals,
                  "n_individuals": len(self.check.kept), "individuals_without_genotypes": len(self.check.missing),
                  "genes_predicted": len(self.predicted),
                  "genes_without_expression": len(self.predicted - set(self.expression.index)),
                  "genes_too_few_individuals": len(self.too_few), "tracks": self.tracks}
        return CohortResult(per_gene=per_gene, summary=summarize(per_gene, config), heldout=heldout,
                            weights=weights, folds=self.folds)


def evaluate_cohort(expression: pd.DataFrame, predictions: pd.DataFrame,
                    dosages: Mapping[str, tuple[Sequence[str], np.ndarray]], *, samples: Sequence[str],
                    k: int = 5, seed: int = 0, inner_k: int = 5, l1_ratio: float = 0.5, n_alphas: int = 100,
                    min_individuals: int = 20, allow_missing: bool = False, n_jobs: int = 1) -> CohortResult:
    """Score mean, elastic net, Enformer and the stack per gene on held-out individuals.

    ``expression``: :func:`read_expression`'s frame. ``predictions``: long table ``gene_id,
    individual``, one column per Enformer track and optionally ``enformer`` (else the tracks' mean).
    ``dosages``: per gene, ``(variant_ids, (len(samples), n_var) matrix)``; ``samples``: the
    genotype samples in the matrices' row order. Genes with fewer than ``min_individuals``
    individuals with expression are skipped (counted in the summary)."""
    ev = CohortEvaluator(expression, samples, k=k, seed=seed, inner_k=inner_k, l1_ratio=l1_ratio,
                         n_alphas=n_alphas, min_individuals=min_individuals, allow_missing=allow_missing)
    inputs = ev.inputs(predictions, dosages)
    if n_jobs == 1:
        done = [evaluate_gene(g, seed, **ev.options) for g in inputs]
    else:
        from joblib import Parallel, delayed

        done = Parallel(n_jobs=n_jobs)(delayed(evaluate_gene)(g, seed, **ev.options) for g in inputs)
    ev.done = list(zip(inputs, done, strict=True))
    return ev.result()


def summarize(per_gene: pd.DataFrame, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per method: genes, genes with a defined r, median and mean Pearson and Spearman, the
    fraction of genes with the wrong sign (Pearson < 0, of those defined), median R^2."""
    methods = {}
    for method in METHODS:
        r = per_gene[f"{method}_pearson"].to_numpy(np.float64)
        rho = per_gene[f"{method}_spearman"].to_numpy(np.float64)
        fit = per_gene[f"{method}_r2"].to_numpy(np.float64)
        ok = np.isfinite(r)
        methods[method] = {
            "label": METHOD_LABELS[method],
            "n_genes": int(len(r)),
            "n_defined": int(ok.sum()),
            "median_pearson": _stat(np.median, r[ok]),
            "mean_pearson": _stat(np.mean, r[ok]),
            "median_pearson_zero": _stat(np.median, np.where(ok, r, 0.0)),
            "median_spearman": _stat(np.median, rho[np.isfinite(rho)]),
            "mean_spearman": _stat(np.mean, rho[np.isfinite(rho)]),
            "frac_wrong_sign": _stat(lambda v: float((v < 0).mean()), r[ok]),
            "median_r2": _stat(np.median, fit[np.isfinite(fit)]),
        }
    return {"kind": "cohort", "n_genes": int(len(per_gene)), "methods": methods, "config": dict(config or {}),
            "notes": ("Pearson/Spearman per gene across held-out individuals (folds over individuals); fitted "
                      "methods are correlated after subtracting each fold's training mean; medians over genes "
                      "with a defined r (n_defined), median_pearson_zero counts undefined as 0; frac_wrong_sign: "
                      "r < 0. The stack's elastic-net feature is nested out-of-fold within each outer training "
                      "set. Enformer is not fitted (no R^2/MSE).")}


def _stat(fn, values: np.ndarray) -> float | None:
    return float(fn(values)) if len(values) else None


# -- the report ------------------------------------------------------------------------------------


def write_cohort_report(result: CohortResult, directory: str | Path) -> list[Path]:
    """Write per_gene.tsv, summary.json, heldout_predictions.parquet, en_weights.tsv, folds.tsv and
    scatter.png into ``directory`` (created if needed; meant to be inside ``atomic_dir``)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    result.per_gene.to_csv(d / PER_GENE_FILE, sep="\t", index=False, na_rep="NA", float_format="%.6g")
    result.per_gene.to_parquet(d / PER_GENE_EXACT, index=False)  # full precision, for `epx collect`
    (d / SUMMARY_FILE).write_text(json.dumps(_json_safe(result.summary), indent=1) + "\n")
    result.heldout.to_parquet(d / HELDOUT_FILE, index=False)
    result.weights.to_csv(d / WEIGHTS_FILE, sep="\t", index=False, float_format="%.6g")
    pd.DataFrame({"individual": list(result.folds), "fold": list(result.folds.values())}).to_csv(
        d / FOLDS_FILE, sep="\t", index=False)
    scatter(result.per_gene, d / SCATTER_FILE)
    return [d / name for name in (PER_GENE_FILE, PER_GENE_EXACT, SUMMARY_FILE, HELDOUT_FILE, WEIGHTS_FILE, FOLDS_FILE,
                                  SCATTER_FILE)]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def scatter(per_gene: pd.DataFrame, path: str | Path) -> None:
    """Per-gene held-out Pearson: Enformer vs elastic net, and stacked vs elastic net."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from epx.outputs import save_figure

    x = per_gene["elastic_net_pearson"].to_numpy(np.float64)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), sharex=True, sharey=True)
    for ax, method in zip(axes, ("enformer", "stacked"), strict=True):
        y = per_gene[f"{method}_pearson"].to_numpy(np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.axhline(0, color="#bbbbbb", lw=0.8)
        ax.axvline(0, color="#bbbbbb", lw=0.8)
        ax.plot([-1, 1], [-1, 1], color="#d62728", lw=1, ls="--", label="y = x")
        ax.scatter(x[ok], y[ok], s=10, alpha=0.6, color="#3b7dd8", edgecolors="none")
        med_x = np.median(x[np.isfinite(x)]) if np.isfinite(x).any() else float("nan")
        med_y = np.median(y[np.isfinite(y)]) if np.isfinite(y).any() else float("nan")
        ax.set_title(f"{METHOD_LABELS[method]} vs elastic net\n{ok.sum():,} genes; median r {med_y:.3f} vs {med_x:.3f}",
                     fontsize=10)
        ax.set_xlabel("elastic net: Pearson r per gene (held-out individuals)")
        ax.set_ylabel(f"{METHOD_LABELS[method]}: Pearson r per gene")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.suptitle("Across individuals: per-gene correlation with measured expression")
    fig.tight_layout()
    save_figure(fig, path)


def find_summary(directory: str | Path) -> Path:
    """The cohort summary of a personalize output: ``DIR/summary.json`` or ``DIR/cohort/summary.json``."""
    d = Path(directory)
    for candidate in (d / SUMMARY_FILE, d / "cohort" / SUMMARY_FILE):
        if candidate.is_file():
            return candidate
    raise InputFileError("no cohort evaluation here (no summary.json): run epx personalize with --expression "
                         "measurements to compare Enformer with the elastic-net baseline", path=d)


def _read_summary(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    path = find_summary(directory)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(f"damaged cohort summary: {exc}", path=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        raise InputFileError("damaged cohort summary: no 'methods'", path=path)
    return path, data


def cohort_leaderboard(directory: str | Path) -> list[dict[str, Any]]:
    """One row per method from a cohort evaluation's summary: method, label, n_genes, n_defined,
    median_pearson, median_spearman, frac_wrong_sign, median_r2 (None where undefined)."""
    _, data = _read_summary(directory)
    keys = ("n_genes", "n_defined", "median_pearson", "median_spearman", "frac_wrong_sign", "median_r2")
    return [{"method": m, "label": s.get("label", m), **{k: s.get(k) for k in keys}}
            for m, s in data["methods"].items()]


def read_per_gene(directory: str | Path) -> pd.DataFrame:
    """A cohort evaluation's per-gene table."""
    path = find_summary(directory).parent / PER_GENE_FILE
    if not path.is_file():
        raise InputFileError("damaged cohort evaluation: per_gene.tsv is missing", path=path.parent)
    try:
        return pd.read_csv(path, sep="\t", na_values=["NA"], keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise InputFileError(f"damaged per-gene table: {exc}", path=path) from None


BOARD_METRICS = {"median pearson": "pearson", "median spearman": "spearman", "wrong sign": "pearson"}


def cohort_board(directories: Sequence[tuple[str, Path]], *, reference: str | None = None, n_boot: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """``epx report``'s long table for cohort evaluations: per directory (``cell_line`` column) and
    method (``entry``), the median Pearson and Spearman across genes and the fraction of genes with
    the wrong sign, each with a 95% bootstrap interval over genes and a paired difference against
    the reference method (``reference``, else the best median Spearman). ``n``: genes with a
    defined correlation."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for name, directory in directories:
        table = read_per_gene(directory)
        present = [m for m in METHODS if f"{m}_pearson" in table.columns]
        if reference is not None and reference not in present:
            raise EpxError(f"--baseline {reference!r} is not a method of {name} ({', '.join(present)})")
        n = len(table)
        values = {m: {metric: table[f"{m}_{col}"].to_numpy(np.float64) for metric, col in BOARD_METRICS.items()}
                  for m in present}
        points = {m: {metric: _board_stat(metric, v[None, :])[0] for metric, v in vals.items()} for m, vals in values.items()}
        boots = {m: {metric: np.empty(n_boot) for metric in BOARD_METRICS} for m in present}
        chunk = max(1, min(n_boot, 5_000_000 // max(n, 1)))
        for start in range(0, n_boot, chunk):
            idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
            for m in present:
                for metric, v in values[m].items():
                    boots[m][metric][start:start + len(idx)] = _board_stat(metric, v[idx])
        ref = reference or max(present, key=lambda m: _low(points[m]["median spearman"]))
        for m in sorted(present, key=lambda m: -_low(points[m]["median spearman"])):
            n_def = int(np.isfinite(values[m]["median pearson"]).sum())
            for metric in BOARD_METRICS:
                lo, hi = _ci(boots[m][metric])
                row = {"part": "held-out", "cell_line": name, "entry": m, "n": n_def, "metric": metric,
                       "value": points[m][metric], "ci_low": lo, "ci_high": hi, "reference": ref,
                       "diff": points[m][metric] - points[ref][metric], "diff_low": None, "diff_high": None}
                if m != ref:
                    row["diff_low"], row["diff_high"] = _ci(boots[m][metric] - boots[ref][metric])
                rows.append(row)
    return pd.DataFrame(rows)


def _board_stat(metric: str, v: np.ndarray) -> np.ndarray:
    """Per row of ``v`` (resamples x genes): the median of the finite values, or the fraction < 0."""
    finite = np.isfinite(v)
    count = finite.sum(axis=1)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if metric == "wrong sign":
            out = np.where(count > 0, (np.where(finite, v, 0.0) < 0).sum(axis=1) / count, np.nan)
        else:
            out = np.nanmedian(v, axis=1) if v.size else np.full(len(v), np.nan)
    return np.where(count > 0, out, np.nan)


def _ci(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if values.size < 10:
        return None, None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _low(v: float) -> float:
    return -np.inf if v != v else v
