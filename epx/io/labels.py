"""Expression labels: one file per cell line (gene, value), matched to the gene table.

Derived targets are computed here and only here, so every backend sees identical targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from epx.errors import LabelError, require_file
from epx.ranks import rankdata

TARGETS = ("raw", "log1p", "rank", "nonzero", "binary")
TARGET_HELP = {
    "raw": "the expression value as given",
    "log1p": "log(1 + value)",
    "rank": "normalised rank in [0, 1] per cell line (average ties)",
    "nonzero": "1 if value > 0 else 0",
    "binary": "1 if value is above the cell line's median else 0",
}


def parse_label_option(text: str) -> tuple[str, Path]:
    """Parse ``CELL=FILE`` from the command line."""
    if "=" not in text:
        raise LabelError(f"--labels expects CELL=FILE, got {text!r}")
    cell, _, path = text.partition("=")
    if not cell.strip() or not path.strip():
        raise LabelError(f"--labels expects CELL=FILE, got {text!r}")
    return cell.strip(), Path(path.strip())


def read_labels(path: str | Path, genes: pd.DataFrame) -> pd.Series:
    """Read one label file and return values indexed by the gene table's gene_id.

    The first column names a gene (gene_id, or gene_name when ids do not match), the second (or
    a column called gex/value/expression/rpkm/count) holds the value. A header is detected when
    the value column of the first line is not numeric. Labels for genes absent from the gene
    table are an error: they usually mean the wrong gene table or build.
    """
    path = require_file(path, "label file")
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline()
    sep = "\t" if "\t" in first else ","
    fields = first.rstrip("\n\r").split(sep)
    if len(fields) < 2:
        raise LabelError("label file needs two columns (gene, value)", path=path, line=1)
    has_header = not is_number(fields[-1]) or not is_number(fields[1])
    raw = pd.read_csv(path, sep=sep, header=0 if has_header else None, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if raw.shape[1] < 2:
        raise LabelError("label file needs two columns (gene, value)", path=path, line=1)
    value_col = raw.columns[1]
    lowered = {str(c).lower(): c for c in raw.columns}
    for name in ("gex", "value", "expression", "rpkm", "tpm", "count", "label"):
        if name in lowered:
            value_col = lowered[name]
            break
    offset = 2 if has_header else 1
    if raw.empty:
        raise LabelError("label file has a header but no data rows", path=path)
    names = raw[raw.columns[0]].astype(str).str.strip()
    values = pd.to_numeric(raw[value_col].str.strip(), errors="coerce")
    if values.isna().any():
        i = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise LabelError(
            f"gene {names.iloc[i]!r}: non-numeric value {raw[value_col].iloc[i]!r}", path=path, line=i + offset
        )
    by_id = names.isin(genes["gene_id"])
    unversioned = None
    if by_id.mean() < 0.5:
        # ENSG00000141956.9 vs ENSG00000141956: match ids without their version suffixes
        strip = lambda s: s.astype(str).str.replace(r"\.\d+$", "", regex=True)  # noqa: E731
        table_ids = strip(genes["gene_id"])
        if table_ids.is_unique and strip(names).isin(table_ids).mean() >= 0.5:
            unversioned = dict(zip(table_ids, genes["gene_id"], strict=True))
    if by_id.mean() >= 0.5:
        key = names
        known = by_id
        index = genes["gene_id"]
    elif unversioned is not None:
        key = strip(names).map(unversioned)
        known = key.notna()
        index = genes["gene_id"]
    else:
        known = names.isin(genes["gene_name"])
        # Names shared by several genes (GENCODE's Y_RNA, ...) are only a problem if labelled.
        ambiguous = set(genes["gene_name"][genes["gene_name"].duplicated()])
        hit = names[names.isin(ambiguous)]
        if len(hit):
            i = int(np.flatnonzero(names.isin(ambiguous).to_numpy())[0])
            raise LabelError(
                f"gene name {hit.iloc[0]!r} belongs to several genes in the gene table; label by gene_id instead",
                path=path, line=i + offset,
            )
        unique = genes[~genes["gene_name"].isin(ambiguous)]
        key = names.map(dict(zip(unique["gene_name"], unique["gene_id"], strict=True)))
        index = genes["gene_id"]
    if not known.all():
        unknown = names[~known]
        i = int(np.flatnonzero((~known).to_numpy())[0])
        raise LabelError(
            f"gene {unknown.iloc[0]!r} is not in the gene table ({len(unknown)} unknown gene(s), "
            f"e.g. {', '.join(map(repr, unknown.iloc[:3]))}); check the gene table and genome build",
            path=path,
            line=i + offset,
        )
    if key.duplicated().any():
        i = int(np.flatnonzero(key.duplicated().to_numpy())[0])
        raise LabelError(f"gene {names.iloc[i]!r} is listed twice", path=path, line=i + offset)
    series = pd.Series(values.to_numpy(dtype="float64"), index=key.to_numpy(), name="value")
    return series.reindex(index[index.isin(series.index)])


def read_label_files(files: Mapping[str, str | Path], genes: pd.DataFrame) -> pd.DataFrame:
    """Read ``{cell_line: file}`` into a long table (gene_id, cell_line, value)."""
    files = dict(files)
    frames = []
    for cell, path in files.items():
        s = read_labels(path, genes)
        frames.append(pd.DataFrame({"gene_id": s.index, "cell_line": cell, "value": s.to_numpy()}))
    if not frames:
        return pd.DataFrame({"gene_id": [], "cell_line": [], "value": []})
    return pd.concat(frames, ignore_index=True)


def derive_target(values: np.ndarray | pd.Series, kind: str) -> np.ndarray:
    """Compute a derived target from raw expression values of ONE cell line."""
    v = np.asarray(values, dtype="float64")
    if kind == "raw":
        return v.copy()
    if kind == "log1p":
        return np.log1p(np.clip(v, 0, None))
    if kind == "rank":  # (rank - 1) / (n - 1) over the labelled values; NaN stays NaN
        n = int(np.count_nonzero(~np.isnan(v)))
        if n <= 1:
            return np.where(np.isnan(v), np.nan, 0.0)
        return (rankdata(v) - 1.0) / (n - 1.0)
    if kind == "nonzero":
        return (v > 0).astype("float64")
    if kind == "binary":
        return (v > np.median(v)).astype("float64")
    raise LabelError(f"unknown target {kind!r}; use one of {', '.join(TARGETS)}")


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
