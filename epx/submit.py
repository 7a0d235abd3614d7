"""``epx submit``: the ML4G submission file, checked and zipped.

``gex_predicted.csv`` has an unnamed row-index column, then ``gene_name`` and ``gex_predicted``,
one row per test gene in the gene table's order, inside ``LastName_FirstName_Project1.zip``.
Only held-out predictions are submitted: a cell line the run (or any run of a stack) trained on
is refused, naming the first requested gene that was a training row where there is one.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx.errors import EpxError
from epx.io.genes import read_genes
from epx.outputs import atomic_file
from epx.stack import read_run, training_rows

CSV_NAME = "gex_predicted.csv"


def submission_table(run_dir: str | Path, cell: str, genes_path: str | Path) -> pd.DataFrame:
    run = read_run(run_dir)
    preds = pd.concat([run["test"], run["oof"]], ignore_index=True)
    preds = preds[preds["cell_line"] == cell]
    if preds.empty:
        cells = sorted(set(run["test"].get("cell_line", [])) | set(run["oof"]["cell_line"]))
        raise EpxError(f"{run_dir}: no predictions for cell line {cell!r} (it has {', '.join(cells)}); "
                       f"train with --test-cells {cell}")
    preds = preds.drop_duplicates("gene_id", keep="first").set_index("gene_id")
    genes = read_genes(genes_path)
    check_held_out(run_dir, cell, genes["gene_id"])
    if "trained_on" in preds.columns:  # epx predict marks rows its run was trained on
        inside = genes.loc[genes["gene_id"].isin(preds.index[preds["trained_on"].to_numpy(bool)]), "gene_id"]
        if len(inside):
            raise EpxError(f"{run_dir}: gene {inside.iloc[0]!r} of cell line {cell!r} was a training row of the run "
                           f"that predicted it ({len(inside)} such genes; column trained_on), so its prediction is "
                           "not held out; predict a cell line or dataset the run did not train on")
    missing = genes.loc[~genes["gene_id"].isin(preds.index), "gene_id"]
    if len(missing):
        raise EpxError(f"{run_dir}: no {cell} prediction for {len(missing)} of {len(genes)} genes in {genes_path} "
                       f"(e.g. {', '.join(missing.iloc[:3])})")
    values = preds.loc[genes["gene_id"], "y_pred"].to_numpy(np.float64)
    if np.isnan(values).any():
        bad = genes["gene_id"].to_numpy()[np.isnan(values)]
        raise EpxError(f"{run_dir}: {len(bad)} NaN prediction(s) for {cell} (e.g. {', '.join(bad[:3])})")
    table = pd.DataFrame({"gene_name": genes["gene_name"].to_numpy(), "gex_predicted": values.astype(np.float64)})
    check_submission(table, genes)
    return table


def check_held_out(run_dir: str | Path, cell: str, gene_ids: pd.Series) -> None:
    """Refuse to submit predictions of a cell line the run (or a run of the stack) trained on:
    they are not held-out predictions, whatever their file says."""
    trained = training_rows(run_dir)
    trained = trained[trained["cell_line"] == cell]
    if trained.empty:
        return
    hit = trained[trained["gene_id"].isin(gene_ids) | (trained["gene_id"] == "*")]
    fix = f"submit predictions of a cell line the run did not train on (epx train --train-cells OTHERS --test-cells {cell})"
    if (hit["gene_id"] != "*").any():
        hit = hit[hit["gene_id"] != "*"].set_index("gene_id")
        first = next(g for g in gene_ids if g in hit.index)
        row = hit.loc[[first]].iloc[0]
        raise EpxError(f"{run_dir}: gene {first!r} of cell line {cell!r} was a training row (role {row['role']} in "
                       f"{Path(row['run']) / 'split.tsv'}), so its prediction is not held out; {fix}")
    where = trained["run"].iloc[0]
    by = "" if Path(where) == Path(run_dir).resolve() else f" (by {where})"
    raise EpxError(f"{run_dir}: cell line {cell!r} was trained on{by}, so its predictions are not held out; {fix}")


def check_submission(table: pd.DataFrame, genes: pd.DataFrame) -> None:
    """The assertions the ML4G graders apply."""
    if list(table.columns) != ["gene_name", "gex_predicted"]:
        raise EpxError(f"submission columns must be gene_name, gex_predicted, got {list(table.columns)}")
    if len(table) != len(genes) or (table["gene_name"].to_numpy() != genes["gene_name"].to_numpy()).any():
        raise EpxError("submission rows must be the test genes, one each, in the gene table's order")
    if table["gene_name"].duplicated().any():
        raise EpxError(f"duplicate gene name {table['gene_name'][table['gene_name'].duplicated()].iloc[0]!r} in the submission")
    if table["gex_predicted"].dtype.kind != "f" or table["gex_predicted"].isna().any():
        raise EpxError("gex_predicted must be float with no NaN")


def write_submission(run_dir: str | Path, cell: str, genes_path: str | Path, last: str, first: str,
                     out_dir: str | Path = ".", force: bool = False) -> dict[str, Any]:
    for name, value in (("--last-name", last), ("--first-name", first)):
        if not value.strip() or any(ch in value for ch in "/\\ "):
            raise EpxError(f"{name} must be a non-empty name without spaces or slashes, got {value!r}")
    table = submission_table(run_dir, cell, genes_path)
    zip_path = Path(out_dir) / f"{last}_{first}_Project1.zip"
    with atomic_file(zip_path, "submission", force=force, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(CSV_NAME, table.to_csv(index=True))
    v = table["gex_predicted"]
    return {"zip": str(zip_path), "rows": len(table), "min": float(v.min()), "median": float(v.median()),
            "max": float(v.max()), "zero": float((v == 0).mean())}
