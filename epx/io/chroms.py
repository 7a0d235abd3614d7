"""Chromosome name aliasing, so UCSC-style (``chr1``, ``chrM``) and Ensembl-style (``1``, ``MT``)
files mix freely.

epx stores chromosomes in one canonical (UCSC) spelling; each track file gets a map from canonical
names to the names it actually uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from epx.errors import TrackError

_MITO = {"M", "MT"}


def canonical_chrom(name: str) -> str:
    """``1`` / ``chr1`` / ``CHR1`` -> ``chr1``; ``MT`` / ``chrM`` -> ``chrM``."""
    core = name[3:] if name[:3].lower() == "chr" else name
    if core.upper() in _MITO:
        return "chrM"
    if core.upper() in {"X", "Y"}:
        core = core.upper()
    return f"chr{core}"


def alias_map(file_chroms: Iterable[str], path: str | Path | None = None,
              hint: str = "for a bigWig: bigWigToBedGraph, rename, bedGraphToBigWig") -> dict[str, str]:
    """Map canonical chromosome names to the spelling a file uses.

    Two spellings of one chromosome in one file (``1`` and ``chr1``, ``MT`` and ``chrM``) are
    refused: which one holds the data is anyone's guess.
    """
    out: dict[str, str] = {}
    for c in file_chroms:
        key = canonical_chrom(c)
        if key in out and out[key] != c:
            raise TrackError(
                f"chromosomes {out[key]!r} and {c!r} both appear; they name the same chromosome,"
                f" so keep one spelling ({hint})",
                path=path,
            )
        out[key] = c
    return out


def chrom_sort_key(name: str) -> tuple[int, int | str]:
    """Natural order: chr1..chr22, chrX, chrY, chrM, then the rest alphabetically."""
    core = canonical_chrom(name)[3:]
    if core.isdigit():
        return (0, int(core))
    order = {"X": 1, "Y": 2, "M": 3}
    if core in order:
        return (order[core], 0)
    return (4, core)


def parse_chrom_list(text: str) -> list[str]:
    """Parse ``chr14,chr19`` or ``14 19`` into canonical names."""
    parts = [p for chunk in text.replace(";", ",").split(",") for p in chunk.split()]
    return [canonical_chrom(p) for p in parts if p]
