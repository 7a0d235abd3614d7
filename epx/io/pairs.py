"""Promoter-to-region contact pairs (pcHi-C) read into a per-gene table of distal regions.

Chromoformer models a gene's promoter together with up to 8 putative cis-regulatory regions
(pCREs) that contact it in promoter-capture Hi-C; ``epx featurize --pairs`` reads signal over
the regions this module returns. Four formats are told apart by the first data line:

* BEDPE (``chrom1 start1 end1 chrom2 start2 end2 [name [score ...]]``, tab-separated, with or
  without a header line, ``#``-commented or not): a side that contains a gene's TSS is that
  gene's promoter and the other side is its region (both ways for promoter-promoter contacts); a
  gene id in the name column names the gene instead.
* CHiCAGO ``.ibed`` (tab-separated, header ``bait_chr bait_start bait_end bait_name otherEnd_chr
  otherEnd_start otherEnd_end otherEnd_name N_reads score``, extra columns allowed): the bait is
  the promoter. Its genes are the names in ``bait_name`` (``;``- or ``,``-separated gene ids,
  version-stripped too, or gene names, case-sensitive first), else (``.``, empty or no known name)
  the genes whose TSS lies in the bait. The other end is their region; when it is a bait too
  (``otherEnd_name`` not ``.``), the bait is likewise a region of the other end's genes. Score is
  the CHiCAGO ``score`` column, unfiltered.
* WashU ``longrange`` (``chrom1 start1 end1 chrom2:start2-end2,score``, tab-separated; further
  fields ignored): read as BEDPE with no name.
* Chromoformer's metadata table (CSV or TSV with a header naming ``gene_id``, ``neighbors`` as
  ``chr:start-end;...`` and ``scores`` as ``;``-separated numbers).

Coordinates are 0-based half-open in all. Every gene keeps its ``max_regions`` best-scoring
regions; regions are clipped to ``max_region_width`` around their centre and to the chromosome.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from epx.errors import EpxError, InputFileError, require_file
from epx.io.chroms import canonical_chrom
from epx.io.genes import _is_comment

TABLE_COLUMNS = ["gene_id", "slot", "chrom", "start", "end", "score"]
STAT_KEYS = ("lines", "pairs_used", "genes_with_regions", "regions_kept", "dropped_over_max",
             "clipped", "past_chrom_end", "dropped_past_end", "trans_skipped", "unknown_genes",
             "no_gene", "duplicates", "overlaps_tss")

_ENSEMBL_ID = re.compile(r"ENS[A-Z]*G\d{6,}")
_VERSION = r"\.\d+$"
_INT = re.compile(r"[+-]?\d+")
_NEIGHBOR = re.compile(r"([^:\s]+):([+-]?\d+)-([+-]?\d+)")
_EMPTY = {"", ".", "nan", "NaN", "NA", "None"}
_LONGRANGE = re.compile(r"([^:\t]+):([^\t,]+?)-([^\t,]+),([^\t]*)")
_NAME_SEP = re.compile(r"[;,]")
IBED_COLUMNS = ("bait_chr", "bait_start", "bait_end", "bait_name", "otherEnd_chr", "otherEnd_start",
                "otherEnd_end", "otherEnd_name", "N_reads", "score")
_IBED_NEEDED = tuple(c for c in IBED_COLUMNS if c != "N_reads")
EXPECTED = ("expected tab-separated BEDPE (chrom1 start1 end1 chrom2 start2 end2 [name [score]]), "
            "a CHiCAGO .ibed (header bait_chr ... otherEnd_name N_reads score), WashU longrange "
            "(chrom1 start1 end1 chrom2:start2-end2,score) or a CSV/TSV whose header names gene_id "
            "and neighbors (Chromoformer metadata)")


@dataclass
class Pairs:
    """The regions per gene (``TABLE_COLUMNS``, in gene-table order then slot), the warnings to
    show the user (one line each) and counts of what was kept and dropped (``STAT_KEYS``)."""

    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)


def read_pairs(path: str | Path, genes: pd.DataFrame, *, max_regions: int = 8,
               max_region_width: int = 40_000, chrom_sizes: dict[str, int] | None = None) -> Pairs:
    """Read a BEDPE or Chromoformer-metadata pairs file into the top regions of each gene.

    ``genes`` is the canonical gene table; ``chrom_sizes`` (canonical names) clips regions that
    run past a chromosome end."""
    if max_regions < 1:
        raise EpxError(f"--max-regions must be at least 1, got {max_regions}")
    if max_region_width < 1:
        raise EpxError(f"--max-region-width must be at least 1 bp, got {max_region_width}")
    path = require_file(path, "pairs file")
    lines = _data_lines(path)
    if not lines:
        raise InputFileError("no pairs: the file is empty or has only comment lines", path=path)
    stats = dict.fromkeys(STAT_KEYS, 0)
    warnings: list[str] = []
    kind = _detect(path, lines)
    body = lines if kind in ("bedpe", "longrange") else lines[1:]  # the others have a header
    if not body:
        raise InputFileError("no pairs: the file has a header and no rows", path=path)
    stats["lines"] = len(body)
    if kind == "long":
        cand = _read_long(path, body, genes, stats, warnings, header=lines[0][1])
    elif kind == "ibed":
        cand = _read_ibed(path, body, genes, stats, warnings, header=lines[0])
    elif kind == "longrange":
        cand = _read_bedpe(path, _longrange_as_bedpe(path, body), genes, stats, warnings)
    else:
        cand = _read_bedpe(path, body, genes, stats, warnings)
    table = _select(path, cand, genes, max_regions, max_region_width, chrom_sizes, stats, warnings)
    return Pairs(table=table, warnings=warnings, stats=stats)


# -- reading -------------------------------------------------------------------------------------


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, text) of the lines that are not blank, ``#`` or track/browser lines.
    Gzip is recognised by its magic bytes, whatever the suffix says."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
        text = fh.read()
    # Only lines starting like a comment need the full test (files have ~10^6 lines).
    return [(n, line) for n, line in enumerate(text.split("\n"), start=1)
            if not (not line or line[0] in "#tb \t" and _is_comment(line))]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _detect(path: Path, lines: list[tuple[int, str]]) -> str:
    """``bedpe`` (no header), ``bedpe-header``, ``ibed``, ``longrange`` or ``long``, from the first
    data line(s)."""
    n, first = lines[0]
    fields = first.split("\t")
    if {"bait_chr", "otherEnd_chr"} <= {f.strip() for f in fields}:
        return "ibed"
    if (len(fields) >= 4 and _is_number(fields[1]) and _is_number(fields[2])
            and _LONGRANGE.fullmatch(fields[3].strip())):
        return "longrange"
    if len(fields) >= 6 and _is_number(fields[1]) and _is_number(fields[2]):
        return "bedpe"
    names = {f.strip().strip('"').lower() for f in re.split(r"[\t,]", first)}
    if {"gene_id", "neighbors"} <= names:
        return "long"
    if len(fields) >= 6 and not _is_number(fields[1]) and not _is_number(fields[2]):
        if len(lines) == 1 or len(lines[1][1].split("\t")) >= 6:
            return "bedpe-header"
    raise InputFileError(f"cannot tell the pairs format: {EXPECTED}; this line has "
                         f"{len(fields)} tab-separated field(s)", path=path, line=n)


def _ints(values: pd.Series, name: str, numbers: np.ndarray, path: Path) -> np.ndarray:
    """Integer coordinates, or an error naming the first line that has something else."""
    parsed = pd.to_numeric(values, errors="coerce")
    if parsed.dtype.kind == "i":  # the common case, parsed in C
        return parsed.to_numpy(dtype=np.int64)
    bad = ~values.str.fullmatch(_INT.pattern).fillna(False).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputFileError(f"{name} {values.iloc[i]!r} is not an integer coordinate",
                             path=path, line=int(numbers[i]))
    return values.to_numpy().astype(np.int64)


def _check_intervals(start: np.ndarray, end: np.ndarray, numbers: np.ndarray, path: Path,
                     start_name: str = "start", end_name: str = "end") -> None:
    """Refuse negative starts and empty or negative-width intervals: an off-by-one or a swapped
    column, which would otherwise read signal from the wrong place."""
    for bad, message in ((start < 0, "negative {s} {a}"),
                         (end <= start, "{e} {b} is not greater than {s} {a} (empty or "
                          "negative-width interval)")):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputFileError(message.format(s=start_name, e=end_name, a=start[i], b=end[i]),
                                 path=path, line=int(numbers[i]))


def _scores(texts: pd.Series, numbers: np.ndarray, path: Path) -> np.ndarray:
    """Finite float scores; NaN or inf would make the top-k order meaningless."""
    values = pd.to_numeric(texts, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputFileError(f"score {texts.iloc[i]!r} is not a finite number", path=path,
                             line=int(numbers[i]))
    return values


def _canonical(chroms: pd.Series) -> np.ndarray:
    mapping = {c: canonical_chrom(c.strip()) for c in pd.unique(chroms)}
    return chroms.map(mapping).to_numpy(dtype=object)


def _match_ids(names: pd.Series, genes: pd.DataFrame) -> np.ndarray:
    """Row positions in ``genes`` of gene ids (-1 when unknown); an id that differs only by an
    Ensembl version suffix (``ENSG...5.3`` vs ``ENSG...5``) matches too, unless ambiguous."""
    ids = genes["gene_id"].astype(str).reset_index(drop=True)
    exact = pd.Series(np.arange(len(ids)), index=ids)
    stripped = ids.str.replace(_VERSION, "", regex=True)
    unique = ~stripped.duplicated(keep=False)
    loose = pd.Series(np.flatnonzero(unique), index=stripped[unique])
    pos = names.map(exact)
    miss = pos.isna()
    pos[miss] = names[miss].str.replace(_VERSION, "", regex=True).map(loose)
    return pos.fillna(-1).to_numpy(dtype=np.int64)


def _unknown_genes(path: Path, names: pd.Series, pos: np.ndarray, numbers: np.ndarray,
                   stats: dict, warnings: list[str]) -> None:
    """Skip named genes missing from the table with a warning (a genome-wide pairs file against a
    chromosome subset is normal), but refuse a file none of whose genes are known."""
    unknown = pos < 0
    if not unknown.any():
        return
    i = int(np.flatnonzero(unknown)[0])
    if unknown.all():
        raise InputFileError(
            f"none of the {names.nunique()} genes named in the pairs file are in the gene table; "
            f"was it made for another annotation? first: {names.iloc[i]}", path=path,
            line=int(numbers[i]))
    stats["unknown_genes"] = int(names[unknown].nunique())
    warnings.append(f"{path}: {stats['unknown_genes']} gene ids not in the gene table skipped "
                    f"({int(unknown.sum())} lines; first: {names.iloc[i]} at line {numbers[i]})")


def _no_scores_warning(path: Path) -> str:
    return (f"{path}: the file has no scores; every region scores 1.0, so each gene keeps the "
            "regions nearest its TSS")


def _split_fields(texts: list[str], usecols: list[int]) -> tuple[pd.DataFrame, np.ndarray]:
    """The given columns (as stripped-later strings) of tab-separated lines, and each line's field
    count."""
    nfields = np.array([t.count("\t") + 1 for t in texts])
    ncols = int(nfields.max())
    raw = pd.read_csv(io.StringIO("\n".join(texts) + "\n"), sep="\t", header=None,
                      names=range(ncols), usecols=[c for c in usecols if c < ncols], dtype=str,
                      keep_default_na=False, quoting=csv.QUOTE_NONE, skip_blank_lines=False)
    return raw, nfields


def _sides(path: Path, raw: pd.DataFrame, numbers: np.ndarray, cols, labels) -> tuple:
    """``(chrom1, start1, end1, chrom2, start2, end2)`` of a contact file's two sides: canonical
    chromosomes and checked integer coordinates; ``labels`` name the columns in errors."""
    s1, e1, s2, e2 = (_ints(raw[cols[k]].str.strip(), labels[k], numbers, path) for k in (1, 2, 4, 5))
    _check_intervals(s1, e1, numbers, path, labels[1], labels[2])
    _check_intervals(s2, e2, numbers, path, labels[4], labels[5])
    return _canonical(raw[cols[0]]), s1, e1, _canonical(raw[cols[3]]), s2, e2


def _warn_trans(path: Path, stats: dict, warnings: list[str]) -> None:
    if stats["trans_skipped"]:  # Chromoformer uses cis contacts only
        warnings.append(f"{path}: {stats['trans_skipped']} trans contacts skipped (regions on "
                        "another chromosome than their gene)")


def _frame(sides: tuple, score: np.ndarray, numbers: np.ndarray, parts: list) -> pd.DataFrame:
    """Candidate (gene, region) rows from ``parts`` of (line index, gene position, region side)."""
    c1, s1, e1, c2, s2, e2 = sides
    empty = np.zeros(0, np.int64)
    rows = np.concatenate([empty] + [p[0] for p in parts]).astype(np.int64)
    side = np.concatenate([empty] + [p[2] for p in parts])
    return pd.DataFrame({
        "gene": np.concatenate([empty] + [p[1] for p in parts]).astype(np.int64),
        "chrom": np.where(side == 1, c1[rows], c2[rows]),
        "start": np.where(side == 1, s1[rows], s2[rows]),
        "end": np.where(side == 1, e1[rows], e2[rows]),
        "score": score[rows],
        "line": numbers[rows],
    })


def _tss_parts(lookup: np.ndarray, cs, ss, es, region_side: int, genes: pd.DataFrame,
               hit: np.ndarray) -> tuple:
    """Every gene whose TSS lies in side ``(cs, ss, es)`` of the ``lookup`` lines gets the other
    side as its region; marks those lines in ``hit``."""
    r, g = _tss_hits(cs[lookup], ss[lookup], es[lookup], genes["chrom"].to_numpy(dtype=object),
                     genes["tss"].to_numpy(dtype=np.int64))
    r = lookup[r]
    hit[r] = True
    return r, g, np.full(len(r), region_side)


def _read_bedpe(path, lines, genes, stats, warnings) -> pd.DataFrame:
    """Candidate (gene, region) rows of a BEDPE file; see the module docstring."""
    numbers = np.array([n for n, _ in lines], dtype=np.int64)
    texts = [t for _, t in lines]
    raw, nfields = _split_fields(texts, list(range(8)))
    if (nfields < 6).any():
        i = int(np.flatnonzero(nfields < 6)[0])
        raise InputFileError(f"a BEDPE line needs at least 6 tab-separated fields (chrom1 start1 "
                             f"end1 chrom2 start2 end2), found {nfields[i]}", path=path,
                             line=int(numbers[i]))
    ncols = int(nfields.max())
    sides = _sides(path, raw, numbers, range(6),
                   ("chrom1", "start1", "end1", "chrom2", "start2", "end2"))
    c1, s1, e1, c2, s2, e2 = sides

    score_text = raw[7].str.strip() if ncols >= 8 else None
    if score_text is None or (score_text == ".").all():
        score = np.ones(len(raw))
        warnings.append(_no_scores_warning(path))
    else:
        if (nfields < 8).any():
            i = int(np.flatnonzero(nfields < 8)[0])
            raise InputFileError("missing score (8th column) in a file whose other lines have "
                                 "one", path=path, line=int(numbers[i]))
        score = _scores(score_text, numbers, path)

    cis = c1 == c2
    stats["trans_skipped"] = int((~cis).sum())
    gene_of_row = np.full(len(raw), -1, dtype=np.int64)
    by_name = np.zeros(len(raw), dtype=bool)
    if ncols >= 7:
        names = raw[6].str.strip()
        named = ~names.isin(_EMPTY).to_numpy()
        pos = _match_ids(names[named], genes)
        if (pos >= 0).any() or names[named].str.match(_ENSEMBL_ID.pattern).any():
            by_name = named
            _unknown_genes(path, names[named], pos, numbers[named], stats, warnings)
            gene_of_row[named] = pos

    tss_all = genes["tss"].to_numpy(dtype=np.int64)
    gchrom = genes["chrom"].to_numpy(dtype=object)

    # Named rows: the named gene's promoter is the side holding its TSS (else the nearer one).
    known = by_name & (gene_of_row >= 0) & cis
    elsewhere = known & (gchrom[np.maximum(gene_of_row, 0)] != c1)
    stats["trans_skipped"] += int(elsewhere.sum())
    _warn_trans(path, stats, warnings)
    rows = np.flatnonzero(known & ~elsewhere)
    g = gene_of_row[rows]
    t = tss_all[g]
    in1 = (s1[rows] <= t) & (t < e1[rows])
    in2 = (s2[rows] <= t) & (t < e2[rows])
    near1 = np.abs((s1[rows] + e1[rows]) / 2 - t) <= np.abs((s2[rows] + e2[rows]) / 2 - t)
    promoter1 = in1 | (~in2 & near1)
    parts = [(rows, g, np.where(promoter1, 2, 1))]

    # Unnamed cis rows: every gene whose TSS lies in a side gets the other side as its region.
    lookup = np.flatnonzero(cis & ~by_name)
    hit = np.zeros(len(raw), dtype=bool)
    parts.append(_tss_parts(lookup, c1, s1, e1, 2, genes, hit))
    parts.append(_tss_parts(lookup, c2, s2, e2, 1, genes, hit))
    stats["no_gene"] = int(len(lookup) - hit[lookup].sum())
    return _frame(sides, score, numbers, parts)


def _longrange_as_bedpe(path: Path, lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """WashU longrange lines (``chrom1 start1 end1 chrom2:start2-end2,score``) rewritten as BEDPE
    lines with name ``.``, keeping their line numbers; the BEDPE reader checks the values."""
    out = []
    for n, text in lines:
        fields = text.split("\t")
        if len(fields) < 4:
            raise InputFileError("a WashU longrange line needs 4 tab-separated fields (chrom1 "
                                 f"start1 end1 chrom2:start2-end2,score), found {len(fields)}",
                                 path=path, line=n)
        m = _LONGRANGE.fullmatch(fields[3].strip())
        if m is None:
            raise InputFileError(f"cannot read the 4th field {fields[3]!r} as chrom2:start2-end2,"
                                 "score (WashU longrange)", path=path, line=n)
        out.append((n, "\t".join(fields[:3] + [m[1], m[2], m[3], ".", m[4]])))
    return out


def _name_lookup(genes: pd.DataFrame):
    """A function from a gene name or id to gene-table positions: the id (exact, then
    version-stripped), else the name case-sensitively, else case-insensitively."""
    names = genes["gene_name"] if "gene_name" in genes.columns else genes["gene_id"]
    names = names.astype(str).reset_index(drop=True)
    exact = names.groupby(names.to_numpy()).indices
    lower = names.groupby(names.str.lower().to_numpy()).indices
    cache: dict[str, np.ndarray] = {}

    def lookup(tokens: list[str]) -> list[np.ndarray]:
        new = [t for t in dict.fromkeys(tokens) if t not in cache]
        if new:
            ids = _match_ids(pd.Series(new, dtype=object), genes)
            for t, p in zip(new, ids, strict=True):
                if p >= 0:
                    cache[t] = np.array([p], dtype=np.int64)
                else:
                    hit = exact.get(t)
                    cache[t] = np.asarray(hit if hit is not None else lower.get(t.lower(), []),
                                          dtype=np.int64)
        return [cache[t] for t in tokens]

    return lookup


def _named_genes(cells: pd.Series, chroms: np.ndarray, lookup, gchrom: np.ndarray):
    """The genes named by each cell (``;``/``,``-separated names or ids) as (cell index, gene
    position) pairs; a name shared by several genes keeps those on the cell's chromosome. Also
    whether each cell named a known gene, the unknown names and the first (cell index, name) of
    them."""
    keys = (cells + "\t" + pd.Series(chroms, index=cells.index, dtype=object)).to_numpy()
    codes, uniq = pd.factorize(keys)
    split = [key.rsplit("\t", 1) for key in uniq]
    tokens_of_key = [[t for t in (x.strip() for x in _NAME_SEP.split(cell)) if t not in _EMPTY]
                     for cell, _ in split]
    lookup([t for tokens in tokens_of_key for t in tokens])  # resolve every name at once
    per_key, unknown_of_key = [], []
    for (_, chrom), tokens in zip(split, tokens_of_key, strict=True):
        found, unknown = [], []
        for tok, cands in zip(tokens, lookup(tokens), strict=True):
            if not len(cands):
                unknown.append(tok)
                continue
            if len(cands) > 1:
                here = cands[gchrom[cands] == chrom]
                cands = here if len(here) else cands
            found.extend(cands.tolist())
        per_key.append(np.array(list(dict.fromkeys(found)), dtype=np.int64))
        unknown_of_key.append(unknown)
    count = np.array([len(g) for g in per_key], dtype=np.int64)[codes]
    flat = np.concatenate([np.zeros(0, np.int64)] + per_key)
    starts = (np.cumsum([len(g) for g in per_key]) - [len(g) for g in per_key]).astype(np.int64)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    rows = np.repeat(np.arange(len(codes)), count)
    gene = flat[np.repeat(starts[codes], count) + offset]
    unknown = {tok for toks in unknown_of_key for tok in toks}
    with_unknown = np.flatnonzero(np.array([bool(u) for u in unknown_of_key], dtype=bool)[codes])
    first = None
    if len(with_unknown):
        i = int(with_unknown[0])
        first = (i, unknown_of_key[codes[i]][0])
    return rows, gene, count > 0, unknown, first


def _read_ibed(path, lines, genes, stats, warnings, *, header: tuple[int, str]) -> pd.DataFrame:
    """Candidate (gene, region) rows of a CHiCAGO ``.ibed`` file; see the module docstring."""
    header_line, header_text = header
    names = [f.strip() for f in header_text.split("\t")]
    missing = [c for c in _IBED_NEEDED if c not in names]
    if missing:
        raise InputFileError(f"the CHiCAGO ibed header lacks {', '.join(missing)}; expected "
                             f"{' '.join(IBED_COLUMNS)} (tab-separated; extra columns allowed)",
                             path=path, line=header_line)
    col = {c: names.index(c) for c in _IBED_NEEDED}
    numbers = np.array([n for n, _ in lines], dtype=np.int64)
    raw, nfields = _split_fields([t for _, t in lines], sorted(col.values()))
    need = max(col.values()) + 1
    if (nfields < need).any():
        i = int(np.flatnonzero(nfields < need)[0])
        raise InputFileError(f"an ibed line needs at least {need} tab-separated fields (up to "
                             f"the header's {names[need - 1]} column), found {nfields[i]}",
                             path=path, line=int(numbers[i]))
    labels = ("bait_chr", "bait_start", "bait_end", "otherEnd_chr", "otherEnd_start", "otherEnd_end")
    sides = _sides(path, raw, numbers, [col[c] for c in labels], labels)
    c1, s1, e1, c2, s2, e2 = sides
    score = _scores(raw[col["score"]].str.strip(), numbers, path)

    cis = c1 == c2
    stats["trans_skipped"] = int((~cis).sum())
    gchrom = genes["chrom"].to_numpy(dtype=object)
    lookup = _name_lookup(genes)
    n = len(raw)
    assigned, elsewhere = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    parts, unknown, firsts, fell_back, resolved_any = [], set(), [], 0, False
    # The bait's genes get the other end; an other end that is a bait gives its genes the bait.
    for name_col, (cs, ss, es), region_side in (("bait_name", (c1, s1, e1), 2),
                                                ("otherEnd_name", (c2, s2, e2), 1)):
        cells = raw[col[name_col]].str.strip()
        named = ~cells.isin(_EMPTY).to_numpy()
        promoter = cis if name_col == "bait_name" else cis & named
        rows = np.flatnonzero(promoter & named)
        r, g, known, unk, first = _named_genes(cells.iloc[rows], cs[rows], lookup, gchrom)
        unknown |= unk
        if first is not None:
            firsts.append((int(numbers[rows[first[0]]]), first[1]))
        resolved_any |= bool(known.any())
        r = rows[r]
        away = gchrom[g] != cs[r]
        elsewhere[r[away]] = True
        assigned[r[~away]] = True
        parts.append((r[~away], g[~away], np.full(int((~away).sum()), region_side)))
        # No usable name: the genes whose TSS lies in this side.
        usable = np.zeros(n, dtype=bool)
        usable[rows[known]] = True
        fallback = np.flatnonzero(promoter & ~usable)
        fell_back += int(named[fallback].sum())
        parts.append(_tss_parts(fallback, cs, ss, es, region_side, genes, assigned))
    stats["trans_skipped"] += int((elsewhere & ~assigned).sum())
    _warn_trans(path, stats, warnings)
    stats["no_gene"] = int((cis & ~assigned & ~elsewhere).sum())
    if unknown:
        line, first = min(firsts)
        stats["unknown_genes"] = len(unknown)
        if resolved_any:
            warnings.append(f"{path}: {stats['unknown_genes']} bait names not in the gene table "
                            f"ignored (first: {first} at line {line}); {fell_back} baits with no "
                            "known name fell back to the genes whose TSS lies in them")
        else:
            warnings.append(f"{path}: none of the {stats['unknown_genes']} bait names are in the "
                            f"gene table (first: {first} at line {line}; names of another "
                            "annotation?); every bait falls back to the genes whose TSS lies in it")
    return _frame(sides, score, numbers, parts)


def _tss_hits(chrom: np.ndarray, start: np.ndarray, end: np.ndarray, gchrom: np.ndarray,
              tss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(interval index, gene position) for every gene TSS inside an interval, vectorised per
    chromosome with ``searchsorted`` on the sorted TSSs (files have ~10^6 lines)."""
    out_rows, out_genes = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c in pd.unique(chrom):
        gi = np.flatnonzero(gchrom == c)
        if not len(gi):
            continue
        order = gi[np.argsort(tss[gi], kind="stable")]
        sorted_tss = tss[order]
        rows = np.flatnonzero(chrom == c)
        lo = np.searchsorted(sorted_tss, start[rows], side="left")
        count = np.searchsorted(sorted_tss, end[rows], side="left") - lo
        offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        out_rows.append(np.repeat(rows, count))
        out_genes.append(order[np.repeat(lo, count) + offset])
    return np.concatenate(out_rows), np.concatenate(out_genes)


def _read_long(path, lines, genes, stats, warnings, *, header: str) -> pd.DataFrame:
    """Candidate rows of Chromoformer's metadata table: one row per gene (per cell type, in the
    original), its regions in ``neighbors`` and their scores in ``scores``."""
    sep = "\t" if "\t" in header else ","
    numbers = np.array([n for n, _ in lines], dtype=np.int64)
    text = "\n".join([header] + [t for _, t in lines]) + "\n"
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[-1]
        kind = "TSV" if sep == "\t" else "CSV"
        raise InputFileError(f"cannot parse as {kind} ({reason})", path=path) from exc
    table.columns = [str(c).strip() for c in table.columns]
    if len(table) != len(numbers):  # quoted fields spanning lines: fall back to row numbers
        numbers = np.arange(2, len(table) + 2)
    ids = table["gene_id"].str.strip()
    if (ids == "").any():
        i = int(np.flatnonzero((ids == "").to_numpy())[0])
        raise InputFileError("empty gene_id", path=path, line=int(numbers[i]))
    pos = _match_ids(ids, genes)
    _unknown_genes(path, ids, pos, numbers, stats, warnings)
    has_scores = "scores" in table.columns
    if not has_scores:
        warnings.append(_no_scores_warning(path))
    gchrom = genes["chrom"].to_numpy(dtype=object)
    out: dict[str, list] = {"gene": [], "chrom": [], "start": [], "end": [], "score": [], "line": []}
    for i in np.flatnonzero(pos >= 0):
        line, gid, g = int(numbers[i]), ids.iloc[i], int(pos[i])
        cell = table["neighbors"].iloc[i].strip()
        regions = [] if cell in _EMPTY else [p.strip() for p in cell.split(";") if p.strip()]
        scores = ["1"] * len(regions)
        if has_scores:  # a NaN score is an error, not a missing one
            scores = [p.strip() for p in table["scores"].iloc[i].split(";") if p.strip()]
        if len(scores) != len(regions):
            raise InputFileError(f"gene {gid}: {len(regions)} neighbors but {len(scores)} scores "
                                 "(both are ';'-separated lists of the same length)",
                                 path=path, line=line)
        for region, score in zip(regions, scores, strict=True):
            m = _NEIGHBOR.fullmatch(region)
            if m is None:
                raise InputFileError(f"gene {gid}: cannot read neighbor {region!r}; expected "
                                     "chr:start-end", path=path, line=line)
            chrom = canonical_chrom(m.group(1))
            if chrom != gchrom[g]:
                raise InputFileError(
                    f"gene {gid} is on {gchrom[g]} but its neighbor {region} is on {chrom}; was "
                    "the pairs file made for another gene table?", path=path, line=line)
            out["gene"].append(g)
            out["chrom"].append(chrom)
            out["start"].append(int(m.group(2)))
            out["end"].append(int(m.group(3)))
            out["score"].append(score)
            out["line"].append(line)
    cand = pd.DataFrame(out)
    lines_arr = cand["line"].to_numpy(dtype=np.int64)
    start = cand["start"].to_numpy(dtype=np.int64)
    end = cand["end"].to_numpy(dtype=np.int64)
    _check_intervals(start, end, lines_arr, path)
    return cand.assign(start=start, end=end,
                       score=_scores(cand["score"].astype(str), lines_arr, path))


# -- selection -----------------------------------------------------------------------------------


def _dedup(cand: pd.DataFrame, stats: dict) -> pd.DataFrame:
    """One row per (gene, region), with the best score: BEDPE files often list both orientations."""
    cand = cand.sort_values("score", ascending=False, kind="stable")
    dup = cand.duplicated(["gene", "chrom", "start", "end"])
    stats["duplicates"] += int(dup.sum())
    return cand[~dup.to_numpy()]


def _select(path, cand, genes, max_regions, max_width, chrom_sizes, stats, warnings) -> pd.DataFrame:
    """Clip, filter and rank the candidate regions into the final per-gene table."""
    stats["pairs_used"] = int(cand["line"].nunique())
    cand = _dedup(cand, stats)
    start, end = cand["start"].to_numpy(), cand["end"].to_numpy()
    wide = end - start > max_width
    if wide.any():
        start = np.where(wide, start + (end - start - max_width) // 2, start)
        end = np.where(wide, start + max_width, end)
        stats["clipped"] = int(wide.sum())
        warnings.append(f"{path}: {stats['clipped']} regions wider than {max_width} bp clipped "
                        f"to {max_width} bp around their centre")
    if chrom_sizes:
        sizes = {canonical_chrom(k): v for k, v in chrom_sizes.items()}
        size = cand["chrom"].map(sizes).to_numpy(dtype=np.float64)
        past = end > size  # False where the size is unknown (NaN)
        if past.any():
            end = np.where(past, np.minimum(end, np.nan_to_num(size)), end).astype(np.int64)
            stats["past_chrom_end"] = int(past.sum())
            stats["dropped_past_end"] = int((past & (start >= end)).sum())
            warnings.append(f"{path}: {stats['past_chrom_end']} regions past their chromosome "
                            f"end clipped to it ({stats['dropped_past_end']} left empty were "
                            "dropped)")
    cand = cand.assign(start=start, end=end)
    cand = cand[(cand["start"] < cand["end"]).to_numpy()]
    tss = genes["tss"].to_numpy(dtype=np.int64)[cand["gene"].to_numpy()]
    own = (cand["start"].to_numpy() <= tss) & (tss < cand["end"].to_numpy())
    stats["overlaps_tss"] = int(own.sum())  # the promoter is modelled separately
    cand, tss = cand[~own], tss[~own]
    cand = _dedup(cand, stats)  # clipping can make two regions equal
    tss = genes["tss"].to_numpy(dtype=np.int64)[cand["gene"].to_numpy()]
    distance = np.maximum(np.maximum(cand["start"].to_numpy() - tss, tss - cand["end"].to_numpy() + 1), 0)
    cand = cand.assign(_neg=-cand["score"], _dist=distance)
    cand = cand.sort_values(["gene", "_neg", "_dist", "start"], kind="stable")
    slot = cand.groupby("gene", sort=False).cumcount().to_numpy()
    stats["dropped_over_max"] = int((slot >= max_regions).sum())
    keep = slot < max_regions
    cand = cand[keep]
    if cand.empty:
        raise InputFileError(
            f"no region was assigned to any gene ({stats['lines']} lines: {stats['no_gene']} with "
            f"no TSS in either side, {stats['trans_skipped']} trans, {stats['overlaps_tss']} "
            "regions on their own gene's TSS); do the pairs and the gene table use the same "
            "genome build?", path=path)
    stats["regions_kept"] = len(cand)
    stats["genes_with_regions"] = int(cand["gene"].nunique())
    return pd.DataFrame({
        "gene_id": genes["gene_id"].astype(str).to_numpy()[cand["gene"].to_numpy()],
        "slot": slot[keep].astype(np.int64),
        "chrom": cand["chrom"].to_numpy(dtype=object),
        "start": cand["start"].to_numpy(dtype=np.int64),
        "end": cand["end"].to_numpy(dtype=np.int64),
        "score": cand["score"].to_numpy(dtype=np.float64),
    })
