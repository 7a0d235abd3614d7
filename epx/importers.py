"""Importers: convert public binned data sets into an epx dataset directory.

``import_deepchrome`` reads the CSV layouts of DeepChrome / AttentiveChrome and of DeepDiff:

(a) DeepChrome / AttentiveChrome: ``GeneID,BinID,mark1..markN,label`` (an optional header line;
    a numeric GeneID such as ``000003`` is the zero-padded suffix of ``ENSG00000000003``);
(b) DeepDiff: ``ENSG_SYMBOL_bin,mark1..markN``, with a separate ``ENSG,count`` expression file
    per cell line (``--expr CELL=FILE`` or ``CELL.expr.csv`` next to the inputs).

The cell line and the role (train / valid / test) come from the file name (``Cell1.train.csv``,
``toy_valid.csv``); roles become the dataset's ``holdout.tsv``. Each file is parsed with one
vectorised ``pandas.read_csv`` after a byte-level scan that counts the fields of every line, so
malformed lines are reported with their line number without a per-row Python loop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx.errors import EpxError, GeneTableError, InputFileError, LabelError, require_file
from epx.io.labels import is_number

BIN_SIZE = 100  # bp per DeepChrome bin
N_WINDOWS = 10  # tabular features: the kept bins pooled into this many windows per mark
TSS_BINS = 20  # tabular ``.bin.tss`` feature: the central 20 bins (TSS +-1 kb)
ROLE_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                "validation": "valid", "test": "test", "testing": "test"}
ROLE_ORDER = {"train": 0, "valid": 1, "test": 2, None: 3}
EXPR_SUFFIX = ".expr.csv"
ORIENTATION = (
    "assumed, as in DeepChrome: bins run 5' to 3' in the gene's transcription orientation and "
    "are centred on the TSS (which lies between bins B/2 and B/2 + 1); no strand flipping was applied"
)
_DEEPDIFF_KEY = re.compile(r".+_\d+")
_VERSION = r"\.\d+$"


@dataclass
class _File:
    """One parsed input file."""

    path: Path
    cell: str
    role: str | None
    fmt: str  # "deepchrome" or "deepdiff"
    genes: pd.Index  # normalised gene ids in first-seen order
    code: np.ndarray  # per row: position in ``genes``
    bin: np.ndarray  # per row: 1-based bin id
    values: np.ndarray  # per row: (marks,) float32
    first_line: np.ndarray  # per gene: file line of its first row
    label: np.ndarray | None  # per gene (format a only)
    n_bins: int


# -- small helpers -------------------------------------------------------------------------------


def normalise_gene_ids(ids: pd.Series | pd.Index) -> pd.Series:
    """Strip whitespace and ``.N`` version suffixes; a bare number is a zero-padded ENSG suffix."""
    s = pd.Series(np.asarray(ids, dtype=object), dtype=object).astype(str).str.strip()
    s = s.str.replace(_VERSION, "", regex=True)
    digits = s.str.fullmatch(r"\d+")
    return s.where(~digits, "ENSG" + s.str.zfill(11))


def parse_role(path: Path) -> tuple[str, str | None]:
    """``Cell1.train.csv`` -> (``Cell1``, ``train``); ``toy_valid.csv`` -> (``toy``, ``valid``)."""
    stem = path.name[: -len(".csv")] if path.name.lower().endswith(".csv") else path.stem
    m = re.fullmatch(r"(?:(?P<cell>.*)[._-])?(?P<role>[^._-]+)", stem)
    if m and m.group("role").lower() in ROLE_ALIASES:
        return m.group("cell") or path.resolve().parent.name, ROLE_ALIASES[m.group("role").lower()]
    return stem, None


def parse_expr_option(text: str) -> tuple[str, Path]:
    """Parse ``--expr CELL=FILE``."""
    cell, sep, path = text.partition("=")
    if not sep or not cell.strip() or not path.strip():
        raise LabelError(f"--expr expects CELL=FILE (e.g. Cell1=Cell1.expr.csv), got {text!r}")
    return cell.strip(), Path(path.strip())


def _scan_lines(path: Path, sep: bytes = b",") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Vectorised pass over the raw bytes: (1-based numbers of the non-blank lines, their field
    counts, the text of the first two non-blank lines)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data += b"\n"
    buf = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate([[0], nl[:-1] + 1]).astype(np.int64) if nl.size else np.zeros(0, np.int64)
    length = nl - starts
    has_cr = np.zeros(len(nl), dtype=bool)
    if nl.size:
        has_cr = (length > 0) & (buf[np.maximum(nl - 1, 0)] == 13)
    nonblank = (length - has_cr) > 0
    seps = np.concatenate([[0], np.cumsum(buf == sep[0], dtype=np.int64)])
    fields = (seps[nl] - seps[starts] + 1)[nonblank]
    numbers = np.flatnonzero(nonblank) + 1
    head = [data[starts[i]: nl[i]].decode("utf-8", errors="replace").rstrip("\r") for i in numbers[:2] - 1]
    return numbers, fields, head


def _numeric(column: pd.Series, lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """A column as float64; the first missing or non-numeric value is a one-line error."""
    try:
        values = column.to_numpy(dtype=np.float64)  # fast path for numeric and clean text
    except (ValueError, TypeError):
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raw = column.iloc[i]
        found = "missing value" if raw is None or (isinstance(raw, float) and np.isnan(raw)) or str(raw).strip() == "" \
            else f"non-numeric value {str(raw).strip()!r}"
        raise InputFileError(f"{found} in column {what}", path=path, line=int(lines[i]))
    return values


# -- reading the binned CSVs ---------------------------------------------------------------------


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand directories into their ``*.csv`` files (skipping ``*.expr.csv``); de-duplicate."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = [f for f in p.glob("*.csv") if f.is_file() and not f.name.lower().endswith(EXPR_SUFFIX)]
            if not found:
                raise InputFileError(f"directory has no *.csv files (other than *{EXPR_SUFFIX})", path=p)
            files += sorted(found, key=lambda f: (parse_role(f)[0], ROLE_ORDER[parse_role(f)[1]], f.name))
        else:
            require_file(p, "input file")
            if p.name.lower().endswith(EXPR_SUFFIX):
                continue  # an expression file given with a shell glob: found next to the inputs anyway
            files.append(p)
    unique = list(dict.fromkeys(f.resolve() for f in files))
    if not unique:
        raise InputFileError(f"no binned CSV input files (only *{EXPR_SUFFIX} expression files)", path=Path(inputs[0]))
    return unique


def read_binned_csv(path: Path, marks: Sequence[str]) -> _File:
    """Parse one DeepChrome (a) or DeepDiff (b) file; check fields and contiguous bins 1..B."""
    n_marks = len(marks)
    numbers, fields, head = _scan_lines(path)
    if not head:
        raise InputFileError("file is empty", path=path)
    first = head[0].split(",")
    header = not all(is_number(f.strip()) for f in first[1:]) or len(first) < 2
    if header and len(head) < 2:
        raise InputFileError("file has a header line but no data rows", path=path)
    probe = head[1] if header else head[0]
    key = probe.split(",")[0].strip()
    fmt = "deepdiff" if _DEEPDIFF_KEY.fullmatch(key) and not key.isdigit() else "deepchrome"
    if header:
        numbers, fields = numbers[1:], fields[1:]
    expected = n_marks + 1 if fmt == "deepdiff" else n_marks + 3
    bad = fields != expected
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        some = f"{n_marks} mark{'s' if n_marks != 1 else ''}"
        layout = f"GENE_SYMBOL_BIN, {some}" if fmt == "deepdiff" else f"GeneID, BinID, {some}, label"
        raise InputFileError(
            f"expected {expected} comma-separated fields ({layout} as named by --marks "
            f"{','.join(marks)}), found {int(fields[i])}",
            path=path, line=int(numbers[i]),
        )
    mark_cols = [f"_m{i}" for i in range(n_marks)]
    names = (["key", *mark_cols] if fmt == "deepdiff" else ["gene", "bin", *mark_cols, "label"])
    try:
        table = pd.read_csv(
            path, header=None, names=names, skiprows=int(numbers[0]) - 1 if header else 0,
            dtype={"key": str, "gene": str}, keep_default_na=False, na_values=[""],
            skip_blank_lines=True, low_memory=False, index_col=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(f"cannot parse as CSV ({str(exc).splitlines()[0]})", path=path) from exc
    if len(table) != len(numbers):
        raise InputFileError(f"cannot parse as CSV (read {len(table)} rows from {len(numbers)} lines)", path=path)
    lines = numbers

    if fmt == "deepdiff":
        parts = table["key"].astype(str).str.strip().str.rpartition("_")
        gene_part = parts[0]
        bins = _numeric(parts[2], lines, path, "bin (the number after the last '_')")
        gene_codes, gene_keys = pd.factorize(gene_part, sort=False)
        gene_ids = normalise_gene_ids(pd.Series(gene_keys).str.partition("_")[0])
        label_col = None
    else:
        bins = _numeric(table["bin"], lines, path, "BinID")
        gene_codes, gene_keys = pd.factorize(table["gene"].astype(str).str.strip(), sort=False)
        gene_ids = normalise_gene_ids(pd.Series(gene_keys))
        label_col = _numeric(table["label"], lines, path, "label")
    if (bins != np.round(bins)).any():
        i = int(np.flatnonzero(bins != np.round(bins))[0])
        raise InputFileError(f"bin {bins[i]!r} is not an integer", path=path, line=int(lines[i]))
    bins = bins.astype(np.int64)
    values = np.empty((len(table), n_marks), dtype=np.float32)
    for j, (col, mark) in enumerate(zip(mark_cols, marks, strict=True)):
        values[:, j] = _numeric(table[col], lines, path, f"{j + 2 if fmt == 'deepdiff' else j + 3} ({mark})")

    # Two distinct raw ids may normalise to one id (ENSG1.1 and ENSG1.2): merge their codes.
    ids, remap = pd.factorize(gene_ids, sort=False)
    code = ids[gene_codes]
    genes = pd.Index(remap, dtype=object)

    # Every gene needs bins 1..B exactly once.
    order = np.lexsort((bins, code))
    c_sorted, b_sorted = code[order], bins[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(c_sorted)) + 1])
    counts = np.diff(np.concatenate([starts, [len(order)]]))
    position = np.arange(len(order)) - np.repeat(starts, counts)
    wrong = b_sorted != position + 1
    if wrong.any():
        k = int(np.flatnonzero(wrong)[0])
        raise InputFileError(
            f"gene {genes[c_sorted[k]]!r}: found bin {b_sorted[k]} where bin {position[k] + 1} was "
            "expected; each gene needs bins 1..B without gaps or repeats",
            path=path, line=int(lines[order[k]]),
        )
    # Codes are 0..G-1 in first-seen order, so group g of the sorted rows is gene g.
    first_row = np.unique(code, return_index=True)[1]
    first_line = lines[first_row]
    n_bins = int(counts[0])  # the bins of the file's first gene
    uneven = counts != n_bins
    if uneven.any():
        g = int(np.flatnonzero(uneven)[0])
        raise InputFileError(
            f"gene {genes[g]!r} has bins 1..{counts[g]} but gene {genes[0]!r} has 1..{n_bins}; "
            "every gene needs the same bins",
            path=path, line=int(first_line[g]),
        )
    label = None
    if label_col is not None:
        label = label_col[first_row]
        varies = label_col != label[code]
        if varies.any():
            i = int(np.flatnonzero(varies)[0])
            raise InputFileError(
                f"gene {genes[code[i]]!r}: label {label_col[i]:g} differs from {label[code[i]]:g} on its first row",
                path=path, line=int(lines[i]),
            )
    cell, role = parse_role(path)
    return _File(path=path, cell=cell, role=role, fmt=fmt, genes=genes, code=code, bin=bins,
                 values=values, first_line=first_line, label=label, n_bins=n_bins)


def read_expression(path: Path) -> pd.Series:
    """An ``ENSG,count`` file (comma or tab, optional header) as a Series indexed by gene id."""
    path = require_file(path, "expression file")
    probe = path.read_bytes()[:4096]
    sep = b"\t" if b"\t" in probe.split(b"\n")[0] else b","
    numbers, fields, head = _scan_lines(path, sep)
    if not head:
        raise LabelError("expression file is empty", path=path)
    first = head[0].split(sep.decode())
    header = len(first) < 2 or not is_number(first[1].strip())
    if header:
        numbers, fields = numbers[1:], fields[1:]
    if not len(numbers):
        raise LabelError("expression file has no data rows", path=path)
    bad = fields != 2
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LabelError(f"expected 2 fields (gene, count), found {int(fields[i])}", path=path, line=int(numbers[i]))
    table = pd.read_csv(path, sep=sep.decode(), header=None, names=["gene", "value"],
                        skiprows=int(numbers[0]) - 1 if header else 0, dtype={"gene": str},
                        keep_default_na=False, na_values=[""], index_col=False)
    if len(table) != len(numbers):
        raise LabelError(f"cannot parse (read {len(table)} rows from {len(numbers)} lines)", path=path)
    values = _numeric(table["value"], numbers, path, "count")
    ids = normalise_gene_ids(table["gene"])
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise LabelError(f"gene {ids.iloc[i]!r} is listed twice", path=path, line=int(numbers[i]))
    return pd.Series(values, index=pd.Index(ids.to_numpy(), dtype=object), name="value")


# -- the importer ----------------------------------------------------------------------------------


def _windows(n: int) -> np.ndarray:
    """Start offsets of ``min(N_WINDOWS, n)`` near-equal windows over ``n`` bins, plus ``n``."""
    k = min(N_WINDOWS, n)
    return np.round(np.linspace(0, n, k + 1)).astype(np.int64)


def _tss_slice(n: int) -> slice:
    k = min(TSS_BINS, n)
    if (n - k) % 2:
        k += 1
    lo = (n - k) // 2
    return slice(lo, lo + k)


def tabular_features(x: np.ndarray, marks: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(rows, marks, bins) raw counts -> (rows, features): window means, the mean, the TSS mean."""
    n = x.shape[-1]
    edges = _windows(n)
    sizes = np.diff(edges).astype(np.float64)
    win = np.add.reduceat(x.astype(np.float64), edges[:-1], axis=2) / sizes
    mean = x.mean(axis=2, dtype=np.float64)[:, :, None]
    tss = x[:, :, _tss_slice(n)].mean(axis=2, dtype=np.float64)[:, :, None]
    feats = np.concatenate([win, mean, tss], axis=2)
    names = [f"{m}.bin.{s}" for m in marks for s in [*(f"w{i}" for i in range(len(sizes))), "mean", "tss"]]
    return feats.reshape(len(x), -1), names


def import_deepchrome(
    inputs: Sequence[str | Path],
    *,
    output: Path,
    marks: Sequence[str],
    annotation: Path,
    build: str | None = "hg19",
    n_bins: int | None = None,
    expr: Sequence[str] = (),
    force: bool = False,
) -> dict[str, Any]:
    """Import DeepChrome/AttentiveChrome/DeepDiff CSVs into the dataset directory ``output``.

    Returns a summary for display; ``summary["warnings"]`` lists one-line warnings.
    """
    from epx.dataset import file_fingerprint, log1p_zscore, write_dataset
    from epx.io.genes import GENE_COLUMNS, read_genes
    from epx.outputs import atomic_dir, check_output
    from epx.split import SPLIT_COLUMNS, validate_split, write_split

    output = Path(output)
    check_output(output, force, "dataset")  # fail fast; atomic_dir checks again before writing
    marks = [m.strip() for m in marks if m.strip()]
    if not marks:
        raise EpxError("--marks must name the mark columns in file order, e.g. H3K4me1,H3K4me3,H3K9me3,H3K27me3,H3K36me3")
    if len(set(marks)) != len(marks):
        dup = next(m for m in marks if marks.count(m) > 1)
        raise EpxError(f"--marks names {dup!r} twice")
    if n_bins is not None and n_bins < 1:
        raise EpxError(f"--keep-bins must be a positive number of bins, got {n_bins}")
    expr_files = dict(parse_expr_option(e) for e in expr)
    for path in expr_files.values():
        require_file(path, "expression file")
    warnings: list[str] = []

    # 1. Read and check every file.
    files = [read_binned_csv(p, marks) for p in collect_inputs(inputs)]
    total_bins = files[0].n_bins
    for f in files[1:]:
        if f.n_bins != total_bins:
            raise InputFileError(
                f"has {f.n_bins} bins per gene but {files[0].path} has {total_bins}; all files need the same bins",
                path=f.path, line=int(f.first_line[0]),
            )
    cells = list(dict.fromkeys(f.cell for f in files))
    unknown = [c for c in expr_files if c not in cells]
    if unknown:
        raise LabelError(f"--expr names cell line {unknown[0]!r}, which has no input file (cell lines: {', '.join(cells)})")
    if n_bins is None:
        n_bins = total_bins
    if n_bins > total_bins:
        raise EpxError(f"--keep-bins {n_bins} is more than the {total_bins} bins per gene in {files[0].path}")
    if (total_bins - n_bins) % 2:
        raise EpxError(f"--keep-bins {n_bins} cannot be centred in {total_bins} bins: keep an {'even' if total_bins % 2 == 0 else 'odd'} number")
    offset = (total_bins - n_bins) // 2

    # 2. A gene appears once per cell line (one role each).
    for cell in cells:
        members = [i for i, f in enumerate(files) if f.cell == cell]
        owner = np.concatenate([np.full(len(files[i].genes), i) for i in members])
        ids = pd.Index(np.concatenate([files[i].genes.to_numpy() for i in members]))
        dup = ids.duplicated()
        if dup.any():
            k = int(np.flatnonzero(dup)[0])
            gene, second = ids[k], files[int(owner[k])]
            first = files[int(owner[int(np.flatnonzero(ids == gene)[0])])]
            roles = f" (roles {first.role} and {second.role})" if first.role != second.role else ""
            raise InputFileError(
                f"gene {gene!r} of cell line {cell!r} is also in {first.path}{roles}; a gene may appear "
                "once, with one role, per cell line",
                path=second.path, line=int(second.first_line[second.genes.get_loc(gene)]),
            )

    # 3. Map the genes to the annotation.
    annot = read_genes(annotation, build=build)
    annot = annot.assign(gene_id=annot["gene_id"].str.replace(_VERSION, "", regex=True))
    annot = annot.drop_duplicates("gene_id").set_index("gene_id", drop=False)
    all_ids = pd.Index(pd.unique(np.concatenate([f.genes.to_numpy() for f in files])))
    known = annot.index.get_indexer(all_ids) >= 0  # (Index.isin is slow on Arrow strings)
    if not known.any():
        raise GeneTableError(
            f"none of the {len(all_ids):,} genes of the input files is in the annotation (build {build}), "
            f"e.g. {', '.join(map(repr, all_ids[:3]))}; check --annotation, --build and the gene ids",
            path=annotation,
        )
    if not known.all():
        missing = all_ids[~known]
        warnings.append(
            f"{len(missing):,} of {len(all_ids):,} genes are not in the annotation (build {build}) and were "
            f"dropped, e.g. {', '.join(missing[:3])}"
        )
    gene_index = all_ids[known]
    genes = annot.loc[gene_index, GENE_COLUMNS].reset_index(drop=True)
    n_genes, n_cells, n_marks = len(genes), len(cells), len(marks)

    # 4. Fill the binned array, roles and per-file labels.
    bins = np.zeros((n_genes, n_cells, n_marks, n_bins), dtype=np.float32)
    present = np.zeros((n_genes, n_cells), dtype=bool)
    role = np.full((n_genes, n_cells), "none", dtype=object)
    file_label = np.full((n_genes, n_cells), np.nan)
    has_role = any(f.role for f in files)
    for f in files:
        c = cells.index(f.cell)
        pos = gene_index.get_indexer(f.genes)
        row_gene = pos[f.code]
        b = f.bin - 1 - offset
        keep = (row_gene >= 0) & (b >= 0) & (b < n_bins)
        bins[row_gene[keep], c, :, b[keep]] = f.values[keep]
        mapped = pos >= 0
        present[pos[mapped], c] = True
        role[pos[mapped], c] = f.role or "train"
        if f.label is not None:
            file_label[pos[mapped], c] = f.label[mapped]
    for c, cell in enumerate(cells):
        absent = int((~present[:, c]).sum())
        if absent:
            warnings.append(
                f"{absent:,} of {n_genes:,} genes have no rows for cell line {cell}: their bins are zeros "
                "with coverage 0 and they get no features, labels or split rows there"
            )
    coverage = np.broadcast_to(present[:, :, None, None], bins.shape).astype(np.float16)

    # 5. Labels: raw counts from the expression file, binary = count >= the file's median.
    label_frames = []
    expr_used: dict[str, Path] = {}
    for c, cell in enumerate(cells):
        path = expr_files.get(cell)
        if path is None:
            for d in dict.fromkeys(f.path.parent for f in files if f.cell == cell):
                if (d / f"{cell}{EXPR_SUFFIX}").is_file():
                    path = d / f"{cell}{EXPR_SUFFIX}"
                    break
        idx = np.flatnonzero(present[:, c])
        ids = genes["gene_id"].to_numpy()[idx]
        if path is not None:
            counts = read_expression(path)
            expr_used[cell] = path
            median = float(np.median(counts.to_numpy()))
            value = counts.reindex(ids).to_numpy(dtype=np.float64)
            binary = np.where(np.isnan(value), np.nan, (value >= median).astype(np.float64))
            lost = int(np.isnan(value).sum())
            if lost:
                warnings.append(f"{lost:,} genes of cell line {cell} are not in {path}: they have no label")
        elif np.isfinite(file_label[idx, c]).any():
            value = file_label[idx, c]
            binary = value.copy()
            if not np.isin(value[np.isfinite(value)], [0.0, 1.0]).all():
                warnings.append(f"labels of cell line {cell} are not 0/1; the binary label copies them as given")
        else:
            warnings.append(
                f"cell line {cell} has no expression file (pass --expr {cell}=FILE or put {cell}{EXPR_SUFFIX} "
                "next to its inputs): it has no labels"
            )
            continue
        ok = np.isfinite(value)
        label_frames.append(pd.DataFrame({"gene_id": ids[ok], "cell_line": cell, "value": value[ok],
                                          "binary": binary[ok]}))
    labels = (pd.concat(label_frames, ignore_index=True) if label_frames else
              pd.DataFrame({"gene_id": pd.Series(dtype=str), "cell_line": pd.Series(dtype=str),
                            "value": pd.Series(dtype="float64"), "binary": pd.Series(dtype="float64")}))

    # 6. Normalisation statistics and tabular features (rows: cell lines, then genes).
    logged = np.log1p(np.clip(bins, 0, None), dtype=np.float64)
    logged[~present] = np.nan
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(logged, axis=(0, 3))
        sd = np.nanstd(logged, axis=(0, 3))
    mean = np.where(np.isfinite(mean), mean, 0.0)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    del logged
    cell_of_row, gene_of_row = np.nonzero(present.T)
    raw, feature_names = tabular_features(bins[gene_of_row, cell_of_row], marks)
    norm = np.empty_like(raw)
    for c in range(n_cells):
        rows = cell_of_row == c
        if rows.any():
            norm[rows] = log1p_zscore(raw[rows], axis=0)[0]
    keys = {"gene_id": genes["gene_id"].to_numpy()[gene_of_row], "cell_line": np.asarray(cells, dtype=object)[cell_of_row]}
    features_raw = pd.concat([pd.DataFrame(keys), pd.DataFrame(raw, columns=feature_names)], axis=1)
    features = pd.concat([pd.DataFrame(keys), pd.DataFrame(norm, columns=feature_names)], axis=1)

    # 7. The shipped holdout split.
    split = None
    if has_role:
        split = pd.DataFrame({**keys, "chrom": genes["chrom"].to_numpy()[gene_of_row], "fold": "holdout",
                              "role": role[gene_of_row, cell_of_row]})[SPLIT_COLUMNS]
        found = set(split["role"])
        if "train" not in found or not found & {"valid", "test"}:
            warnings.append(f"the files give only role(s) {', '.join(sorted(found))}: no holdout.tsv was written")
            split = None
        else:
            validate_split(split)

    formats = list(dict.fromkeys(f.fmt for f in files))
    half = n_bins * BIN_SIZE // 2
    meta = {
        "importer": "deepchrome",
        "cell_lines": cells,
        "assays": marks,
        "bin_size": BIN_SIZE,
        "n_bins": n_bins,
        "window_bp": [-half, half],
        "orientation": ORIENTATION,
        "bins_values": "raw read counts per 100 bp bin as given in the input files",
        "source": {
            "format": formats[0] if len(formats) == 1 else "mixed",
            "bins_in_files": total_bins,
            "files": [{**file_fingerprint(f.path), "format": f.fmt, "cell_line": f.cell, "role": f.role}
                      for f in files],
            "expression": {cell: file_fingerprint(p) for cell, p in expr_used.items()},
            "annotation": file_fingerprint(annotation),
        },
        "labels": {
            "value": "raw expression count (or the file's label when no expression file was given)",
            "binary": "1 if the count >= the median of the cell line's whole expression file, else 0",
        },
        "bins_normalisation": {
            "method": "log1p, then z-score per (cell line, assay) over all genes and bins",
            "mean": mean.tolist(),
            "sd": sd.tolist(),
        },
        "features": feature_names,
        "features_normalisation": "log1p, then z-score per (cell line, feature) over genes",
        "params": {
            "inputs": [str(p) for p in inputs],
            "marks": marks,
            "annotation": str(annotation),
            "build": build,
            "n_bins": n_bins,
            "expr": list(expr),
        },
    }

    with atomic_dir(output, "dataset", force) as tmp:
        write_dataset(tmp, genes=genes, labels=labels, meta=meta, features=features,
                      features_raw=features_raw, bins=bins, bins_coverage=coverage)
        if split is not None:
            write_split(split, tmp / "holdout.tsv")

    summary: dict[str, Any] = {
        "format": meta["source"]["format"],
        "files": len(files),
        "cell lines": ", ".join(cells),
        "genes": n_genes,
        "marks": ", ".join(marks),
        "bins": n_bins,
        "window": f"TSS -{half:,.0f} to +{half:,.0f} bp ({n_bins} x {BIN_SIZE} bp of {total_bins})",
        "labels": f"{len(labels):,} ({labels['binary'].mean():.0%} binary 1)" if len(labels) else "none",
        "features": len(feature_names),
    }
    if split is not None:
        per_role = split.groupby("role")["gene_id"].nunique()
        summary["roles"] = " / ".join(f"{r} {per_role[r]:,}" for r in ("train", "valid", "test", "none") if r in per_role)
    summary["warnings"] = warnings
    return summary
