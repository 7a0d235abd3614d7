"""``epx stack``: combine runs over the same genes and cell lines, from prediction files only.

Rules:

- ``seed``: the ML4G rule. Final rank = mean of the runs' rank predictions (``y_score``, the
  prediction before any mask, where a run has it); mask = mean of the runs' class probabilities
  >= threshold (default 0.4); final = rank x mask.
- ``mean``: mean of the predictions.
- ``rank-mean``: mean of the predictions' normalised ranks within each cell line.
- ``nnls``: non-negative least-squares weights fitted on the out-of-fold predictions (reported).

Only the cell lines every run predicts are stacked (others are reported and dropped), so the
seed's pooled / X1-only / X2-only runs stack on the unseen cell line they all predict. Within those
cell lines the runs must cover identical genes. Stacking never loads a model library: it reads ``oof.parquet``/``test.parquet`` only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx.dataset import read_json_file, read_parquet_file
from epx.errors import EpxError, InputFileError
from epx.metrics import evaluate
from epx.outputs import atomic_dir, check_output, refuse_overlap

RULES = ("seed", "mean", "rank-mean", "nnls")
KEYS = ["gene_id", "cell_line"]


def read_run(path: str | Path) -> dict[str, Any]:
    """A run, stack or prediction directory's predictions and config."""
    p = Path(path)
    if (p / "predictions.parquet").is_file() and (p / "config.json").is_file():  # epx predict: no oof rows
        preds = read_parquet_file(p / "predictions.parquet", "predictions file")
        return {"path": p, "config": read_json_file(p / "config.json", "config.json"), "oof": preds.iloc[:0], "test": preds}
    if not (p / "oof.parquet").is_file() or not (p / "config.json").is_file():
        if (p / "config.json").is_file():
            from epx.predict import refuse_partial

            refuse_partial(p, read_json_file(p / "config.json", "config.json"))
        raise InputFileError("not an epx run directory (no oof.parquet/config.json); make one with epx train", path=p)
    return {
        "path": p,
        "config": read_json_file(p / "config.json", "config.json"),
        "oof": read_parquet_file(p / "oof.parquet", "out-of-fold predictions"),
        "test": read_parquet_file(p / "test.parquet", "test predictions") if (p / "test.parquet").is_file() else pd.DataFrame(),
    }


TRAINING_ROLES = ("cv", "train", "valid")  # split roles whose rows a run trains (or early-stops) on


def training_rows(path: str | Path, _seen: frozenset[Path] = frozenset()) -> pd.DataFrame:
    """The (gene_id, cell_line) rows a run or stack was trained on, with their ``role`` and the
    ``run`` directory; ``gene_id`` is ``*`` where only the cell line is known.

    A run's rows come from its ``split.tsv`` (roles cv, train, valid: a cv row is trained on in
    the other folds, a valid row steers early stopping), or its config's ``train_cells`` in runs
    without one. A stack's are those of its runs, or, where a run has moved, the
    ``train_cells`` the stack recorded."""
    columns = ["gene_id", "cell_line", "role", "run"]
    p = Path(path).resolve()
    config = read_json_file(p / "config.json", "config.json") if (p / "config.json").is_file() else {}
    if config.get("kind") == "stack":
        runs = [Path(r) for r in config.get("run_dirs") or config.get("runs") or []]
        found = [r for r in runs if (r / "config.json").is_file() and r.resolve() not in _seen | {p}]
        parts = [training_rows(r, _seen | {p}) for r in found]
        if len(found) < len(runs):
            parts.append(pd.DataFrame({"gene_id": "*", "cell_line": list(config.get("train_cells") or []),
                                       "role": "train", "run": str(p)}))
        parts = [part for part in parts if len(part)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    if (p / "split.tsv").is_file():
        split = pd.read_csv(p / "split.tsv", sep="\t", dtype=str, keep_default_na=False,
                            usecols=["gene_id", "cell_line", "role"])
        rows = split[split["role"].isin(TRAINING_ROLES)].reset_index(drop=True)
        return rows.assign(run=str(p))[columns]
    return pd.DataFrame({"gene_id": "*", "cell_line": list(config.get("train_cells") or []), "role": "train",
                         "run": str(p)})[columns]


def common_cells(runs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Cell lines predicted by every run (stacked) and those only some runs predict (dropped)."""
    sets = [set(r["oof"]["cell_line"]) | set(r["test"].get("cell_line", pd.Series(dtype=str))) for r in runs]
    common = set.intersection(*sets)
    if not common:
        listing = "; ".join(f"{r['path']}: {', '.join(sorted(s))}" for r, s in zip(runs, sets, strict=True))
        raise EpxError(f"the runs share no cell line ({listing}); stack runs that predict the same cell lines")
    order = [c for c in dict.fromkeys(runs[0]["oof"]["cell_line"].tolist() + runs[0]["test"].get("cell_line", pd.Series(dtype=str)).tolist()) if c in common]
    return order, sorted(set.union(*sets) - common)


def _align(runs: list[dict[str, Any]], part: str) -> list[pd.DataFrame]:
    base = runs[0][part]
    if base.empty:
        return [r[part] for r in runs]
    base_keys = base[KEYS].drop_duplicates()
    aligned = []
    for r in runs:
        table = r[part]
        if len(table) != len(base) or table[KEYS].drop_duplicates().shape[0] != base_keys.shape[0]:
            raise EpxError(_mismatch(runs[0], r, part))
        merged = base_keys.merge(table, on=KEYS, how="left", indicator=True)
        if (merged["_merge"] != "both").any():
            raise EpxError(_mismatch(runs[0], r, part))
        aligned.append(merged.drop(columns="_merge"))
    return aligned


def _mismatch(a: dict, b: dict, part: str) -> str:
    ka = set(map(tuple, a[part][KEYS].to_numpy()))
    kb = set(map(tuple, b[part][KEYS].to_numpy()))
    only_a, only_b = sorted(ka - kb), sorted(kb - ka)
    example = (only_a or only_b or [("?", "?")])[0]
    return (f"runs {a['path']} and {b['path']} cover different genes or cell lines in their {part} predictions "
            f"({len(only_a)} only in the first, {len(only_b)} only in the second, e.g. {example[0]}/{example[1]}); "
            "stack runs trained on the same dataset and split")


def _ranks(values: np.ndarray, cells: np.ndarray) -> np.ndarray:
    from epx.io.labels import derive_target

    out = np.empty(len(values))
    for c in pd.unique(cells):
        m = cells == c
        out[m] = derive_target(values[m], "rank")
    return out


def combine(tables: list[pd.DataFrame], rule: str, threshold: float, weights: np.ndarray | None) -> pd.DataFrame:
    """Apply a stacking rule to aligned prediction tables."""
    out = tables[0][[c for c in ("gene_id", "gene_name", "cell_line", "chrom", "fold", "y_true") if c in tables[0].columns]].copy()
    preds = np.vstack([t["y_pred"].to_numpy(np.float64) for t in tables])
    if rule == "seed":
        scores = np.vstack([t["y_score"].to_numpy(np.float64) if "y_score" in t.columns else t["y_pred"].to_numpy(np.float64)
                            for t in tables])
        if not all("proba" in t.columns for t in tables):
            raise EpxError("the seed rule needs class probabilities from every run (two-stage or binary models); "
                           "use --rule mean, rank-mean or nnls")
        proba = np.vstack([t["proba"].to_numpy(np.float64) for t in tables]).mean(axis=0)
        out["y_score"] = scores.mean(axis=0)
        out["proba"] = proba
        out["y_pred"] = out["y_score"] * (proba >= threshold)
    elif rule == "mean":
        out["y_pred"] = preds.mean(axis=0)
    elif rule == "rank-mean":
        cells = out["cell_line"].to_numpy()
        out["y_pred"] = np.vstack([_ranks(p, cells) for p in preds]).mean(axis=0)
    elif rule == "nnls":
        assert weights is not None
        out["y_pred"] = weights @ preds
    else:
        raise EpxError(f"unknown stacking rule {rule!r}; use one of {', '.join(RULES)}")
    return out


def fit_nnls(tables: list[pd.DataFrame]) -> np.ndarray:
    from scipy.optimize import nnls

    y = tables[0]["y_true"].to_numpy(np.float64)
    X = np.vstack([t["y_pred"].to_numpy(np.float64) for t in tables]).T
    keep = np.isfinite(y) & np.isfinite(X).all(axis=1)
    if keep.sum() < 2:
        raise EpxError("nnls stacking needs labelled out-of-fold predictions")
    w, _ = nnls(X[keep], y[keep])
    return w


def stack(run_dirs: Sequence[str | Path], output: str | Path, *, rule: str = "seed", threshold: float = 0.4,
          force: bool = False) -> dict[str, Any]:
    if len(run_dirs) < 2:
        raise EpxError("stack needs at least two run directories")
    if rule not in RULES:
        raise EpxError(f"unknown stacking rule {rule!r}; use one of {', '.join(RULES)}")
    refuse_overlap(output, run_dirs)
    output = check_output(output, force, "stack")
    resolved = [Path(p).resolve() for p in run_dirs]
    if len(set(resolved)) < len(resolved):
        raise EpxError("the same run is listed twice; stack distinct runs")
    runs = [read_run(p) for p in run_dirs]
    for key in ("task", "target"):
        values = {str(r["config"].get(key)) for r in runs}
        if len(values) > 1:
            raise EpxError(f"runs have different {key}s ({', '.join(sorted(values))}); their predictions are on "
                           f"different scales, so stack runs of one {key}")
    task = runs[0]["config"].get("task")
    target = runs[0]["config"].get("target")
    cells, dropped = common_cells(runs)
    for r in runs:
        for part in ("oof", "test"):
            if not r[part].empty:
                r[part] = r[part][r[part]["cell_line"].isin(cells)].reset_index(drop=True)
    oof = _align(runs, "oof")
    test = _align(runs, "test")
    # Holdout runs have no out-of-fold rows: compare (and fit nnls) on their test predictions.
    scored_part = "oof" if not oof[0].empty else "test"
    if rule == "nnls" and scored_part == "test":
        raise EpxError("nnls weights are fitted on out-of-fold predictions, and these runs have none "
                       "(holdout splits); use --rule mean, rank-mean or seed")
    weights = fit_nnls(oof) if rule == "nnls" else None
    stacked_oof = combine(oof, rule, threshold, weights)
    stacked_test = combine(test, rule, threshold, weights) if not test[0].empty else test[0]
    binary = task == "binary"
    comparison = []
    scored = oof if scored_part == "oof" else test
    stacked_scored = stacked_oof if scored_part == "oof" else stacked_test
    for name, table in [*[(str(r["path"]), t) for r, t in zip(runs, scored, strict=True)], ("stack", stacked_scored)]:
        if table.empty or not np.isfinite(table["y_true"].to_numpy(np.float64)).any():
            continue
        for cell, part in table.groupby("cell_line", sort=False):
            comparison.append({"run": name, "cell_line": cell, **evaluate(part["y_true"].to_numpy(), part["y_pred"].to_numpy(), binary)})
    summary = {"rule": rule, "threshold": threshold, "task": task, "target": target, "scored": scored_part,
               "runs": [str(r["path"]) for r in runs],
               "cell_lines": cells, "dropped_cell_lines": dropped,
               "weights": None if weights is None else weights.tolist(), "comparison": comparison}
    trained = pd.concat([training_rows(r["path"]) for r in runs], ignore_index=True)
    config = {"kind": "stack", "task": task, "target": target, "rule": rule, "threshold": threshold, "runs": summary["runs"],
              "weights": summary["weights"], "model": "stack",
              # for epx submit: which runs to ask what they trained on, and the answer if they move
              "run_dirs": [str(Path(r["path"]).resolve()) for r in runs],
              "train_cells": sorted(set(trained["cell_line"]))}
    with atomic_dir(output, "stack", force=force) as tmp:
        stacked_oof.to_parquet(tmp / "oof.parquet", index=False)
        stacked_test.to_parquet(tmp / "test.parquet", index=False)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(summary, indent=2, default=lambda o: None) + "\n")
    return summary
