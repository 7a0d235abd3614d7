"""Gene tables: auto-detect ML4G TSV, BED6, GTF and TSS-column TSV; return one canonical table.

The canonical gene table has one row per gene and the columns ``GENE_COLUMNS``:
``gene_id, gene_name, chrom, start, end, strand, tss``. Coordinates are 0-based half-open;
``tss`` is the 0-based position of the first transcribed base; ``chrom`` is canonical (``chr1``).

Comment lines are skipped in every format: blank lines, lines starting with ``#`` (GTF's ``#!``
and ``##`` headers too) and UCSC ``track``/``browser`` lines. One exception: a ``#`` line directly
before the first row that names the columns (as many tab-separated fields as that row, none of
them a number, as UCSC's table browser writes ``#chrom<TAB>start<TAB>...``) is the header, with
its ``#`` removed. A table with a header and no rows is refused ("no genes").
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from epx.errors import GeneTableError, require_file
from epx.io.chroms import canonical_chrom
from epx.io.labels import is_number

GENE_COLUMNS = ["gene_id", "gene_name", "chrom", "start", "end", "strand", "tss"]
FORMATS = ("ml4g", "bed", "gtf", "tss-tsv")
BUILDS = ("hg38", "hg19")

ML4G_COLUMNS = ["gene_name", "chr", "gene_start", "gene_end", "TSS_start", "TSS_end", "strand"]

# Candidate column names (lower-case) for the generic TSS-column TSV.
_TSV_ALIASES = {
    "gene_id": ["gene_id", "geneid", "ensembl_gene_id", "id"],
    "gene_name": ["gene_name", "genename", "symbol", "gene_symbol", "name", "gene"],
    "chrom": ["chrom", "chr", "chromosome", "seqname", "seqnames"],
    "start": ["start", "gene_start", "txstart", "start_position"],
    "end": ["end", "gene_end", "txend", "end_position"],
    "strand": ["strand"],
    "tss": ["tss", "tss_position", "transcription_start_site"],
}


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")


_BROWSER_LINE = re.compile(r"(track|browser)(\s|$)")
NO_ROWS = "no genes: the file has a header and no rows"


def _is_comment(line: str) -> bool:
    """Blank lines, ``#`` lines and UCSC ``track``/``browser`` lines carry no gene."""
    return not line.strip() or line.startswith("#") or _BROWSER_LINE.match(line) is not None


def _hash_header(comment: str | None, first_row: str) -> list[str] | None:
    """The column names of a ``#`` line just before the first row, or None when it is a comment.

    It names the columns when it has as many tab-separated fields (>= 3) as the first row, none
    empty or numeric, while the first row has a number (so it is data, not a header itself)."""
    if comment is None or comment.startswith(("##", "#!")):
        return None
    names = [f.strip() for f in comment[1:].split("\t")]
    row = first_row.split("\t")
    if len(names) < 3 or len(names) != len(row) or any(not f or is_number(f) for f in names):
        return None
    return names if any(is_number(f.strip()) for f in row) else None


def _data_lines(path: Path, limit: int | None = None) -> tuple[list[tuple[int, str]], list[str] | None]:
    """The non-comment lines as (1-based line number, text), and the column names of a ``#``
    header line when there is one (see the module docstring)."""
    lines: list[tuple[int, str]] = []
    last_comment: str | None = None
    header = None
    with _open_text(path) as fh:
        for n, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if _is_comment(line):
                if not lines and line.startswith("#"):
                    last_comment = line
                continue
            if not lines:
                header = _hash_header(last_comment, line)
            lines.append((n, line))
            if limit is not None and len(lines) >= limit:
                break
    return lines, header


def _first_data_lines(path: Path, n: int = 5) -> list[str]:
    """The first lines that matter for format detection: a ``#`` header (without its ``#``)
    followed by the first data lines."""
    lines, header = _data_lines(path, limit=n)
    return (["\t".join(header)] if header else []) + [line for _, line in lines]


def detect_format(path: Path) -> str:
    """Guess the gene-table format from the file's first data lines."""
    lines = _first_data_lines(path)
    if not lines:
        raise GeneTableError("no genes: the file is empty or has only comment lines", path=path)
    header = [c.strip() for c in lines[0].split("\t")]
    if len(lines) == 1 and len(header) >= 2 and not any(is_number(c) for c in header):
        raise GeneTableError(NO_ROWS, path=path)
    lowered = {c.lower() for c in header}
    if len(header) >= 6 and header[1].lower() in ("start", "chromstart", "txstart") and len(lines) > 1:
        second = lines[1].split("\t")
        if second[1].strip().isdigit() and second[2].strip().isdigit():
            return "bed"  # BED6 with a header line
    if {"tss_start", "tss_end"} <= lowered or set(ML4G_COLUMNS[:4]) <= set(header):
        return "ml4g"
    fields = header
    numeric_bed = len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit()
    if any(c.lower().startswith("tss") for c in header) and not numeric_bed:
        return "tss-tsv"
    if len(fields) >= 9 and fields[3].isdigit() and fields[4].isdigit() and fields[6] in "+-.":
        return "gtf"
    if len(fields) >= 3 and fields[1].isdigit() and fields[2].isdigit():
        return "bed"
    raise GeneTableError(
        "cannot tell the gene-table format; expected an ML4G TSV (gene_name, chr, gene_start, "
        "gene_end, TSS_start, TSS_end, strand), BED6, GTF or a TSV with a TSS column",
        path=path,
    )


def read_genes(
    paths: str | Path | Sequence[str | Path],
    fmt: str | None = None,
    build: str | None = None,
) -> pd.DataFrame:
    """Read one or more gene tables into the canonical gene table.

    Several files (e.g. ML4G train, val and test info tables) are concatenated; a gene listed
    identically in two files is kept once, a gene listed differently is an error.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    check_build(build)
    tables = []
    for p in paths:
        path = require_file(p, "gene table")
        kind = fmt or detect_format(path)
        reader = {"ml4g": _read_ml4g, "bed": _read_bed, "gtf": _read_gtf, "tss-tsv": _read_tss_tsv}
        if kind not in reader:
            raise GeneTableError(f"unknown gene-table format {kind!r}; use one of {', '.join(FORMATS)}")
        table = reader[kind](path, build) if kind == "tss-tsv" else reader[kind](path)
        if table.empty:
            raise GeneTableError("no genes: the file has no gene rows", path=path)
        table["_source"] = str(path)
        tables.append(table)
    genes = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        genes = genes.drop_duplicates(subset=GENE_COLUMNS).reset_index(drop=True)
    _check_unique(genes)
    return genes[GENE_COLUMNS].reset_index(drop=True)


def check_build(build: str | None) -> None:
    """Refuse a genome build epx has no per-build gene-table columns for (``hg37``, ``GRCh38``)."""
    if build is not None and build not in BUILDS:
        raise GeneTableError(f"unknown genome build {build!r}; known builds: {', '.join(sorted(BUILDS))} "
                             f"(per-build gene-table columns are named like tss_hg19 or chr_hg38)")


# -- validation helpers ------------------------------------------------------------------------


def _to_int(table: pd.DataFrame, column: str, path: Path, line_offset: int, id_col: str) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() | (values != np.floor(values.fillna(0)))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise GeneTableError(
            f"gene {table[id_col].iloc[i]!r}: non-numeric {column} {table[column].iloc[i]!r}",
            path=path,
            line=int(table["_line"].iloc[i]) if "_line" in table else i + line_offset,
        )
    return values.astype("int64")


def _finish(
    path: Path,
    raw: pd.DataFrame,
    *,
    gene_id: pd.Series,
    gene_name: pd.Series,
    chrom: pd.Series,
    start: pd.Series,
    end: pd.Series,
    strand: pd.Series,
    tss: pd.Series,
) -> pd.DataFrame:
    """Validate strands and coordinates and assemble the canonical columns."""
    lines = raw["_line"].to_numpy()
    strand = strand.astype(str).str.strip()
    bad = ~strand.isin(["+", "-"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise GeneTableError(
            f"gene {gene_id.iloc[i]!r}: unknown strand {strand.iloc[i]!r} (expected + or -)",
            path=path,
            line=int(lines[i]),
        )
    bad = (start.to_numpy() > end.to_numpy()) | (start.to_numpy() < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GeneTableError(
            f"gene {gene_id.iloc[i]!r}: start {start.iloc[i]} > end {end.iloc[i]}"
            if start.iloc[i] > end.iloc[i]
            else f"gene {gene_id.iloc[i]!r}: negative start {start.iloc[i]}",
            path=path,
            line=int(lines[i]),
        )
    if (tss.to_numpy() < 0).any():
        i = int(np.flatnonzero(tss.to_numpy() < 0)[0])
        raise GeneTableError(f"gene {gene_id.iloc[i]!r}: negative TSS", path=path, line=int(lines[i]))
    names = gene_name.astype(str).where(gene_name.notna(), gene_id.astype(str))
    out = pd.DataFrame(
        {
            "gene_id": gene_id.astype(str).str.strip().to_numpy(),
            "gene_name": names.str.strip().to_numpy(),
            "chrom": _canonical_column(chrom),
            "start": start.to_numpy(dtype="int64"),
            "end": end.to_numpy(dtype="int64"),
            "strand": strand.to_numpy(),
            "tss": tss.to_numpy(dtype="int64"),
            "_line": lines,
        }
    )
    empty = out["gene_id"].isin(["", "nan", "None"])
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise GeneTableError("empty gene id", path=path, line=int(lines[i]))
    return out


def _canonical_column(chrom: pd.Series) -> np.ndarray:
    """Canonical names, computed once per distinct chromosome (tables have ~25 of them)."""
    values = chrom.astype(str).str.strip()
    mapping = {c: canonical_chrom(c) for c in pd.unique(values)}
    return values.map(mapping).to_numpy(dtype=object)


def _check_unique(genes: pd.DataFrame) -> None:
    dup = genes["gene_id"].duplicated(keep=False)
    if dup.any():
        rows = genes[dup]
        gid = rows["gene_id"].iloc[0]
        first = rows[rows["gene_id"] == gid]
        where = [f"{s}:{ln}" for s, ln in zip(first["_source"], first["_line"], strict=True)][:2]
        raise GeneTableError(
            f"duplicate gene id {gid!r} at {' and '.join(where)} "
            f"({int(dup.sum())} rows have a repeated id); gene ids must be unique",
            path=first["_source"].iloc[0],
        )


def _read_table(path: Path, header: bool, columns: int | None = None) -> pd.DataFrame:
    """The tab-separated rows of a gene table as strings, comment lines skipped, with the 1-based
    file line of each row in ``_line``. ``header``: the first row (or a ``#`` header line) names
    the columns; ``columns``: keep only the first N columns (no header)."""
    lines, hash_header = _data_lines(path)
    numbers = [n for n, _ in lines]
    texts = [text for _, text in lines]
    if header:
        if hash_header is not None:
            texts.insert(0, "\t".join(hash_header))
        else:
            numbers = numbers[1:]
        if len(texts) <= 1:
            raise GeneTableError(NO_ROWS, path=path)
    try:
        table = pd.read_csv(
            io.StringIO("\n".join(texts) + "\n"),
            sep="\t",
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            usecols=range(columns) if columns else None,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise GeneTableError(f"cannot parse as tab-separated text ({exc})", path=path) from exc
    table["_line"] = numbers if len(numbers) == len(table) else range(1, len(table) + 1)
    return table


# -- readers -------------------------------------------------------------------------------------


def _read_ml4g(path: Path) -> pd.DataFrame:
    """ML4G CAGE tables. TSS_start..TSS_end is a 50 bp window starting at the TSS and running
    downstream, so the TSS is TSS_start on + and TSS_end - 1 on -. Coordinates are taken as
    0-based half-open, as in BED."""
    raw = _read_table(path, header=True)
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in ML4G_COLUMNS if c not in raw.columns]
    if missing:
        raise GeneTableError(f"missing column(s) {', '.join(missing)} for an ML4G gene table", path=path)
    ints = {c: _to_int(raw, c, path, 2, "gene_name") for c in ML4G_COLUMNS[2:6]}
    plus = raw["strand"].str.strip() == "+"
    tss = ints["TSS_start"].where(plus, ints["TSS_end"] - 1)
    return _finish(
        path,
        raw,
        gene_id=raw["gene_name"],
        gene_name=raw["gene_name"],
        chrom=raw["chr"],
        start=ints["gene_start"],
        end=ints["gene_end"],
        strand=raw["strand"],
        tss=tss,
    )


def _read_bed(path: Path) -> pd.DataFrame:
    """BED6 (chrom, start, end, name, score, strand); the TSS is start on + and end - 1 on -.

    A first line naming the columns (``chrom start end ...``) is skipped as a header."""
    rows = []
    lines = []
    data, _ = _data_lines(path)
    for n, line in data:
        fields = line.split("\t")
        if not rows and len(fields) >= 3 and not fields[1].strip().isdigit() and fields[1].strip().lower() in ("start", "chromstart", "txstart"):
            continue
        if len(fields) < 6:
            raise GeneTableError(
                f"BED gene table needs 6 columns (chrom, start, end, name, score, strand), "
                f"found {len(fields)}",
                path=path,
                line=n,
            )
        rows.append(fields[:6])
        lines.append(n)
    if not rows:
        raise GeneTableError(NO_ROWS, path=path)
    raw = pd.DataFrame(rows, columns=["chrom", "start", "end", "name", "score", "strand"])
    raw["_line"] = lines
    start = _to_int(raw, "start", path, 1, "name")
    end = _to_int(raw, "end", path, 1, "name")
    plus = raw["strand"].str.strip() == "+"
    return _finish(
        path,
        raw,
        gene_id=raw["name"],
        gene_name=raw["name"],
        chrom=raw["chrom"],
        start=start,
        end=end,
        strand=raw["strand"],
        tss=start.where(plus, end - 1),
    )


def _gtf_attribute(attrs: pd.Series, key: str) -> pd.Series:
    return attrs.str.extract(rf'(?:^|;)\s*{key}\s+"([^"]*)"', expand=False)


def _read_gtf(path: Path) -> pd.DataFrame:
    """GTF ``gene`` records (1-based inclusive) converted to 0-based half-open."""
    raw = _read_table(path, header=False, columns=9)
    if raw.shape[1] != 10:
        raise GeneTableError(f"cannot parse as GTF: {raw.shape[1] - 1} columns, expected 9", path=path)
    raw.columns = ["chrom", "source", "feature", "start", "end", "score", "strand", "frame", "attrs", "_line"]
    raw = raw[raw["feature"] == "gene"].reset_index(drop=True)
    if raw.empty:
        raise GeneTableError("GTF has no 'gene' records", path=path)
    raw["gene_id"] = _gtf_attribute(raw["attrs"], "gene_id")
    if raw["gene_id"].isna().any():
        i = int(np.flatnonzero(raw["gene_id"].isna().to_numpy())[0])
        raise GeneTableError("gene record without a gene_id attribute", path=path, line=int(raw["_line"][i]))
    start = _to_int(raw, "start", path, 1, "gene_id") - 1
    end = _to_int(raw, "end", path, 1, "gene_id")
    plus = raw["strand"].str.strip() == "+"
    return _finish(
        path,
        raw,
        gene_id=raw["gene_id"],
        gene_name=_gtf_attribute(raw["attrs"], "gene_name"),
        chrom=raw["chrom"],
        start=start,
        end=end,
        strand=raw["strand"],
        tss=start.where(plus, end - 1),
    )


def _pick(columns: list[str], field: str, build: str | None) -> str | None:
    """Find the column for ``field``, preferring one suffixed with the build (``tss_hg19``)."""
    lowered = {c.lower(): c for c in columns}
    for alias in _TSV_ALIASES[field]:
        if build:
            for sep in ("_", ".", "-"):
                if f"{alias}{sep}{build}" in lowered:
                    return lowered[f"{alias}{sep}{build}"]
        if alias in lowered:
            return lowered[alias]
    return None


def _read_tss_tsv(path: Path, build: str | None) -> pd.DataFrame:
    """A TSV with a TSS column, 1-based like Ensembl/BioMart exports.

    Files with per-build columns (``tss_hg38``, ``tss_hg19``) need ``--build``. When a build has a
    TSS but no gene body (``genes_hg38_hg19.tsv`` for hg19), the body is carried over from the
    other build, shifted by the TSS offset, since liftover is locally a translation.
    """
    raw = _read_table(path, header=True)
    raw.columns = [c.strip() for c in raw.columns]
    columns = [c for c in raw.columns if c != "_line"]
    builds_present = [b for b in BUILDS if any(c.lower().endswith(b) for c in columns)]
    if builds_present and build is None:
        raise GeneTableError(
            f"has columns for several genome builds ({', '.join(builds_present)}); "
            f"choose one with --build {'|'.join(builds_present)}",
            path=path,
        )
    if build is not None and builds_present and build not in builds_present:
        raise GeneTableError(
            f"has no columns for build {build}; it has {', '.join(builds_present)}", path=path
        )
    cols = {f: _pick(columns, f, build) for f in _TSV_ALIASES}
    if cols["strand"] is None:  # strand rarely changes between builds: borrow the other build's
        cols["strand"] = next((_pick(columns, "strand", b) for b in builds_present if _pick(columns, "strand", b)), None)
    required = ["chrom", "strand", "tss"]
    missing = [f for f in required if cols[f] is None]
    if cols["gene_id"] is None and cols["gene_name"] is None:
        missing.insert(0, "gene_id or gene_name")
    if missing:
        raise GeneTableError(f"missing column(s) {', '.join(missing)} for a TSS-column gene table", path=path)
    id_col = cols["gene_id"] or cols["gene_name"]
    # Rows without coordinates for the chosen build (unmapped genes) are skipped, not errors.
    missing_values = {"", "NA", "NaN", "nan", "None", "."}
    has_coords = ~raw[cols["tss"]].str.strip().isin(missing_values) & ~raw[cols["chrom"]].str.strip().isin(missing_values)
    raw = raw[has_coords].reset_index(drop=True)
    tss = _to_int(raw, cols["tss"], path, 2, id_col) - 1
    if cols["start"] is not None and cols["end"] is not None:
        start = _to_int(raw, cols["start"], path, 2, id_col) - 1
        end = _to_int(raw, cols["end"], path, 2, id_col)
    else:
        other = [b for b in builds_present if b != build]
        body = [(_pick(columns, "start", b), _pick(columns, "end", b), _pick(columns, "tss", b)) for b in other]
        body = [b for b in body if all(b)]
        other_chrom = [_pick(columns, "chrom", b) for b in other]
        if body and other_chrom[0]:
            s_col, e_col, t_col = body[0]
            same_chrom = _canonical_column(raw[other_chrom[0]]) == _canonical_column(raw[cols["chrom"]])
            shift = (tss + 1 - pd.to_numeric(raw[t_col], errors="coerce")).where(same_chrom)
            start = (pd.to_numeric(raw[s_col], errors="coerce") - 1 + shift).fillna(tss)
            end = (pd.to_numeric(raw[e_col], errors="coerce") + shift).fillna(tss + 1)
            start, end = start.clip(lower=0).astype("int64"), end.clip(lower=1).astype("int64")
        else:
            start, end = tss, tss + 1
    strand = raw[cols["strand"]].str.strip().replace({"1": "+", "-1": "-", "+1": "+"})
    return _finish(
        path,
        raw,
        gene_id=raw[id_col],
        gene_name=raw[cols["gene_name"]] if cols["gene_name"] else raw[id_col],
        chrom=raw[cols["chrom"]],
        start=start,
        end=end,
        strand=strand,
        tss=tss,
    )
