"""The split contract: which (gene, cell line) rows train, validate and test in each fold.

Every model is trained through :func:`iter_folds` on the same split table, so model families
are compared on identical folds. A split table has one row per (gene_id, cell_line) and the
columns ``SPLIT_COLUMNS``:

- ``fold``: the fold label (a chromosome for LOCO, ``k0``.. for K-fold schemes, ``holdout``);
- ``role``: ``cv`` (in the cross-validation pool: test in its own fold, train in the others),
  ``train`` / ``valid`` / ``test`` (fixed roles, the holdout protocol and cross-cell test rows),
  or ``none`` (not used, e.g. a test cell line's genes on training chromosomes).

Cross-cell: rows of ``test_cells`` are only ever tested, on the genes of the fold being held out,
and rows of ``train_cells`` are only ever trained on. Whole chromosomes are held out together, so
nearby genes (which share regulatory signal) never straddle train and test.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from epx.errors import InputFileError, SplitError, require_file
from epx.io.chroms import canonical_chrom, chrom_sort_key

SPLIT_COLUMNS = ["gene_id", "cell_line", "chrom", "fold", "role"]
SCHEMES = ("loco", "chr-kfold", "holdout", "random")
ROLES = ("cv", "train", "valid", "test", "none")
ALL_CELLS = "*"
RANDOM_WARNING = (
    "random gene-level folds put neighbouring genes, which share regulatory signal, on both "
    "sides of a split: positional leakage inflates scores; prefer --loco or --chr-kfold"
)


@dataclass(frozen=True)
class Fold:
    """One fold as positional index arrays into the split table."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def _chrom_folds_balanced(counts: pd.Series, k: int, seed: int) -> dict[str, int]:
    """Group whole chromosomes into k folds with balanced gene counts (greedy, largest first).

    Ties between equally sized chromosomes are broken by a seeded shuffle, so the seed matters
    but the result is deterministic.
    """
    rng = np.random.default_rng(seed)
    chroms = list(counts.index)
    order = rng.permutation(len(chroms))
    ranked = sorted(range(len(chroms)), key=lambda i: (-int(counts.iloc[i]), int(order[i])))
    loads = [0] * k
    assignment: dict[str, int] = {}
    for i in ranked:
        target = min(range(k), key=lambda f: (loads[f], f))
        assignment[chroms[i]] = target
        loads[target] += int(counts.iloc[i])
    return assignment


def _check_chroms(names: Sequence[str], available: set[str], what: str) -> list[str]:
    chroms = [canonical_chrom(c) for c in names]
    absent = [c for c in chroms if c not in available]
    if absent:
        raise SplitError(
            f"{what} chromosome(s) {', '.join(absent)} have no genes; the genes are on "
            f"{', '.join(sorted(available, key=chrom_sort_key)[:6])}{', ...' if len(available) > 6 else ''}"
        )
    return chroms


def make_split(
    genes: pd.DataFrame,
    scheme: str,
    *,
    k: int | None = None,
    valid_chroms: Sequence[str] = (),
    test_chroms: Sequence[str] = (),
    cells: Sequence[str] = (),
    train_cells: Sequence[str] = (),
    test_cells: Sequence[str] = (),
    seed: int = 0,
) -> pd.DataFrame:
    """Build a split table for a canonical gene table.

    ``cells`` lists every cell line (default ``*``: the split applies to every cell line of a
    dataset). With ``test_cells`` the split is cross-cell: ``train_cells`` (default: the other
    cells) train and ``test_cells`` are evaluated on held-out genes only.
    """
    if scheme not in SCHEMES:
        raise SplitError(f"unknown split scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if genes.empty:
        raise SplitError("the gene table is empty")
    available = set(genes["chrom"])
    test_chroms = _check_chroms(test_chroms, available, "test")
    valid_chroms = _check_chroms(valid_chroms, available, "validation")
    both = set(test_chroms) & set(valid_chroms)
    if both:
        raise SplitError(f"chromosome(s) {', '.join(sorted(both))} are both validation and test")

    train_cells, test_cells = list(train_cells), list(test_cells)
    overlap = set(train_cells) & set(test_cells)
    if overlap:
        raise SplitError(f"cell line(s) {', '.join(sorted(overlap))} are in both --train-cells and --test-cells")
    all_cells = list(dict.fromkeys([*cells, *train_cells, *test_cells])) or [ALL_CELLS]
    if test_cells and not train_cells:
        train_cells = [c for c in all_cells if c not in test_cells]
    if test_cells and not train_cells:
        raise SplitError("cross-cell split needs at least one training cell line (--train-cells)")
    unknown = [c for c in [*train_cells, *test_cells] if cells and c not in cells]
    if unknown:
        raise SplitError(f"cell line(s) {', '.join(unknown)} are not in the dataset ({', '.join(cells)})")

    chrom = genes["chrom"].to_numpy()
    fold = np.empty(len(genes), dtype=object)
    role = np.full(len(genes), "cv", dtype=object)
    is_test = np.isin(chrom, test_chroms)
    pool = ~is_test
    pool_chroms = sorted(set(chrom[pool]), key=chrom_sort_key)

    if scheme == "holdout":
        if not valid_chroms:
            raise SplitError("--holdout needs at least one validation chromosome")
        role[:] = "train"
        role[np.isin(chrom, valid_chroms)] = "valid"
        fold[:] = "holdout"
        if not (role == "train").any():
            raise SplitError("holdout leaves no training genes: every chromosome is validation or test")
    elif scheme == "loco":
        if len(pool_chroms) < 2:
            raise SplitError(f"leave-one-chromosome-out needs genes on >= 2 chromosomes, found {len(pool_chroms)}")
        fold[pool] = chrom[pool]
    elif scheme == "chr-kfold":
        if k is None or k < 2:
            raise SplitError("--chr-kfold needs K >= 2")
        if k > len(pool_chroms):
            raise SplitError(
                f"--chr-kfold {k} would leave a fold empty: the genes lie on only {len(pool_chroms)} chromosome(s)"
            )
        counts = pd.Series(chrom[pool]).value_counts().reindex(pool_chroms)
        assignment = _chrom_folds_balanced(counts, k, seed)
        fold[pool] = [f"k{assignment[c]}" for c in chrom[pool]]
    elif scheme == "random":
        if k is None or k < 2:
            raise SplitError("--random needs K >= 2")
        n_pool = int(pool.sum())
        if k > n_pool:
            raise SplitError(f"--random {k} would leave a fold empty: only {n_pool} genes")
        rng = np.random.default_rng(seed)
        labels = np.arange(n_pool) % k
        fold[pool] = [f"k{i}" for i in rng.permutation(labels)]
    if valid_chroms and scheme != "holdout":
        raise SplitError("validation chromosomes (--holdout) cannot be combined with a CV scheme; "
                         "CV schemes validate on inner folds")
    fold[is_test] = "test"
    role[is_test] = "test"

    base = pd.DataFrame(
        {"gene_id": genes["gene_id"].to_numpy(), "chrom": chrom, "fold": fold, "role": role}
    )
    frames = []
    for cell in all_cells:
        frame = base.copy()
        frame.insert(1, "cell_line", cell)
        if cell in test_cells:
            # A test cell line is only evaluated, on held-out genes: its CV rows are tested in
            # their own fold; in holdout its validation/test chromosomes are tested.
            if scheme == "holdout":
                frame["role"] = np.where(frame["role"].isin(["test"]), "test", "none")
                if not test_chroms:
                    frame["role"] = np.where(base["role"] == "valid", "test", "none")
            else:
                frame.loc[frame["role"] == "cv", "role"] = "test"
        frames.append(frame)
    split = pd.concat(frames, ignore_index=True)[SPLIT_COLUMNS]
    validate_split(split)
    return split


def validate_split(split: pd.DataFrame, path: str | Path | None = None) -> None:
    """Check a split table: columns, roles, no duplicate rows, and every fold usable."""
    missing = [c for c in SPLIT_COLUMNS if c not in split.columns]
    if missing:
        raise SplitError(f"split table is missing column(s) {', '.join(missing)}" + (f" ({path})" if path else ""))
    bad = ~split["role"].isin(ROLES)
    if bad.any():
        raise SplitError(f"unknown role {split['role'][bad].iloc[0]!r}; roles are {', '.join(ROLES)}")
    dup = split.duplicated(["gene_id", "cell_line"])
    if dup.any():
        r = split[dup].iloc[0]
        raise SplitError(f"gene {r.gene_id!r} appears twice for cell line {r.cell_line!r}")
    for f in iter_folds(split):
        if len(f.train) == 0:
            raise SplitError(f"fold {str(f.name)!r} has no training rows")
        if len(f.test) == 0 and len(f.valid) == 0:
            raise SplitError(f"fold {str(f.name)!r} has nothing to validate or test")


def iter_folds(split: pd.DataFrame) -> Iterator[Fold]:
    """Yield the outer folds of a split as (train, valid, test) positional index sets.

    CV schemes: for each fold label, its ``cv``/``test`` rows are the test set and the other
    ``cv`` rows train. Rows with role ``test`` and fold ``test`` (held-out test chromosomes) are
    tested in every fold. Holdout: a single fold from the fixed roles.
    """
    role = split["role"].to_numpy()
    fold = split["fold"].to_numpy().astype(str)
    fixed_test = np.flatnonzero((role == "test") & (fold == "test"))
    labels = [str(f) for f in pd.unique(fold) if f not in ("test", "holdout")]
    if not labels:
        yield Fold(
            name="holdout",
            train=np.flatnonzero(role == "train"),
            valid=np.flatnonzero(role == "valid"),
            test=np.flatnonzero(role == "test"),
        )
        return
    labels = sorted(labels, key=lambda f: chrom_sort_key(f) if f.startswith("chr") else (9, int(f[1:]) if f[1:].isdigit() else f))
    for label in labels:
        in_fold = fold == label
        yield Fold(
            name=label,
            train=np.flatnonzero((role == "cv") & ~in_fold),
            valid=np.empty(0, dtype=np.int64),
            test=np.union1d(np.flatnonzero(in_fold & np.isin(role, ["cv", "test"])), fixed_test),
        )


def expand_cells(split: pd.DataFrame, cells: Sequence[str]) -> pd.DataFrame:
    """Replace ``*`` rows (a split over genes only) by one copy per dataset cell line."""
    if not (split["cell_line"] == ALL_CELLS).any():
        return split
    generic = split[split["cell_line"] == ALL_CELLS]
    frames = [generic.assign(cell_line=c) for c in cells]
    rest = split[split["cell_line"] != ALL_CELLS]
    return pd.concat([rest, *frames], ignore_index=True)[SPLIT_COLUMNS]


def write_split(split: pd.DataFrame, path: str | Path) -> None:
    split[SPLIT_COLUMNS].to_csv(path, sep="\t", index=False)


def read_split(path: str | Path) -> pd.DataFrame:
    path = require_file(path, "split file")
    try:
        split = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise InputFileError(f"cannot parse split file ({exc})", path=path) from exc
    missing = [c for c in SPLIT_COLUMNS if c not in split.columns]
    if missing:
        raise SplitError(f"{path}: not a split file, missing column(s) {', '.join(missing)}")
    validate_split(split, path)
    return split


def summarize(split: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per fold: genes held out, genes in train/valid/test, and the share of nonzero labels."""
    value = None
    if labels is not None and not labels.empty:
        value = split.merge(labels[["gene_id", "cell_line", "value"]], on=["gene_id", "cell_line"], how="left")["value"].to_numpy()
    fixed = (split["fold"] == "test").to_numpy()
    rows = []
    for f in iter_folds(split):
        own = split.iloc[[i for i in f.test if not fixed[i]]] if fixed.any() else split.iloc[f.test]
        chroms = sorted(set(own["chrom"]), key=chrom_sort_key)
        entry = {
            "fold": f.name,
            "held out": ",".join(chroms[:3]) + (f" +{len(chroms) - 3}" if len(chroms) > 3 else ""),
            "train": split.iloc[f.train]["gene_id"].nunique(),
            "valid": split.iloc[f.valid]["gene_id"].nunique(),
            "test": split.iloc[f.test]["gene_id"].nunique(),
        }
        if value is not None:
            for part, idx in (("train", f.train), ("test", f.test)):
                v = value[idx]
                v = v[~np.isnan(v)]
                entry[f"{part} >0"] = f"{(v > 0).mean():.1%}" if v.size else "-"
        rows.append(entry)
    return pd.DataFrame(rows)


def load_split_input(
    path: str | Path, labels: Sequence[str], build: str | None
) -> tuple[pd.DataFrame, list[str], pd.DataFrame | None]:
    """A gene table or a dataset directory -> (genes, cell lines, labels)."""
    p = Path(path)
    if p.is_dir():
        from epx.dataset import load_dataset

        ds = load_dataset(p)
        return ds.genes, list(ds.cell_lines), ds.labels
    from epx.io.inputs import load_inputs

    inputs = load_inputs([p], labels=labels, build=build)
    cells = sorted(inputs.labels["cell_line"].unique()) if inputs.labels is not None else []
    return inputs.genes, cells, inputs.labels
