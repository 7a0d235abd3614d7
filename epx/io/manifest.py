"""Track manifests: one row per (cell_line, assay, kind, path), from TSV or YAML.

Relative paths are resolved against the manifest's own directory, so a study folder can move.
Common column spellings are accepted (``cell``/``sample``, ``mark``/``target``, ``file``), and
the kind may be omitted when the file name says it (``.bw``, ``.bigWig``, ``.bed``, ``.narrowPeak``).
YAML manifests are either a list of rows (``tracks: [{cell_line, assay, kind, path}, ...]``) or
nested as ``{cell_line: {assay: {bigwig: path, bed: path}}}``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from epx.errors import ManifestError, require_file

KINDS = ("bigwig", "bed")
MANIFEST_COLUMNS = ["cell_line", "assay", "kind", "path"]
_COLUMN_ALIASES = {
    "cell": "cell_line", "cellline": "cell_line", "cell_type": "cell_line", "sample": "cell_line", "biosample": "cell_line",
    "mark": "assay", "target": "assay", "experiment": "assay",
    "type": "kind", "format": "kind", "file_type": "kind",
    "file": "path", "filename": "path", "file_path": "path",
}
_KIND_BY_SUFFIX = {".bw": "bigwig", ".bigwig": "bigwig", ".bed": "bed", ".narrowpeak": "bed", ".broadpeak": "bed"}
_KIND_ALIASES = {
    "bigwig": "bigwig", "bw": "bigwig", "bigWig": "bigwig",
    "bed": "bed", "narrowpeak": "bed", "broadpeak": "bed", "peaks": "bed", "bed3": "bed",
}


def _rows_from_yaml(path: Path) -> list[tuple[int | None, dict]]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ManifestError(f"invalid YAML ({getattr(exc, 'problem', exc)})", path=path,
                            line=mark.line + 1 if mark else None) from exc
    if isinstance(data, dict) and "tracks" in data:
        data = data["tracks"]
    rows: list[tuple[int | None, dict]] = []
    if isinstance(data, list):
        for item in data:
            if not isinstance(item, dict):
                raise ManifestError(f"each track must be a mapping, got {item!r}", path=path)
            rows.append((None, item))
    elif isinstance(data, dict):
        for cell, assays in data.items():
            if not isinstance(assays, dict):
                raise ManifestError(f"cell line {cell!r}: expected a mapping of assays", path=path)
            for assay, kinds in assays.items():
                if not isinstance(kinds, dict):
                    raise ManifestError(f"{cell}/{assay}: expected a mapping of kind: path", path=path)
                for kind, p in kinds.items():
                    rows.append((None, {"cell_line": cell, "assay": assay, "kind": kind, "path": p}))
    else:
        raise ManifestError("expected a list of tracks or a cell_line -> assay -> kind mapping", path=path)
    return rows


def _rows_from_tsv(path: Path) -> list[tuple[int | None, dict]]:
    lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    content = [(n, ln) for n, ln in enumerate(lines, start=1) if ln.strip() and not ln.startswith("#")]
    if not content:
        raise ManifestError("manifest is empty", path=path)
    header_line, header = content[0]
    sep = "\t" if "\t" in header else ","
    columns = [_COLUMN_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in header.split(sep)]
    missing = [c for c in MANIFEST_COLUMNS if c not in columns and c != "kind"]
    if missing:
        raise ManifestError(
            f"missing column(s) {', '.join(missing)}; the header must name cell_line, assay, kind, path",
            path=path, line=header_line,
        )
    rows: list[tuple[int | None, dict]] = []
    for n, ln in content[1:]:
        fields = [f.strip() for f in ln.split(sep)]
        if len(fields) < len(columns):
            raise ManifestError(f"expected {len(columns)} columns, found {len(fields)}", path=path, line=n)
        rows.append((n, dict(zip(columns, fields, strict=False))))
    return rows


def _kind_from_suffix(path: str) -> str:
    """bigwig/bed from a file name (``.bw``, ``.bigWig``, ``.bed``, ``.narrowPeak.gz``, ...), else ''."""
    name = path.lower().removesuffix(".gz")
    return next((kind for suffix, kind in _KIND_BY_SUFFIX.items() if name.endswith(suffix)), "")


def read_manifest(path: str | Path, check_files: bool = True) -> pd.DataFrame:
    """Read and validate a manifest; paths come back absolute."""
    path = require_file(path, "manifest")
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    rows = _rows_from_yaml(path) if is_yaml else _rows_from_tsv(path)
    records = []
    seen: dict[tuple[str, str, str], int | None] = {}
    for line, row in rows:
        if not str(row.get("kind", "") or "").strip():
            row = {**row, "kind": _kind_from_suffix(str(row.get("path", "")))}
        missing = [c for c in MANIFEST_COLUMNS if not str(row.get(c, "") or "").strip()]
        if missing:
            raise ManifestError(f"row is missing {', '.join(missing)}", path=path, line=line)
        kind_raw = str(row["kind"]).strip()
        kind = _KIND_ALIASES.get(kind_raw, _KIND_ALIASES.get(kind_raw.lower()))
        if kind is None:
            raise ManifestError(
                f"unknown kind {kind_raw!r} for {row['cell_line']}/{row['assay']}; use bigwig or bed",
                path=path, line=line,
            )
        track = Path(str(row["path"]).strip()).expanduser()
        if not track.is_absolute():
            track = (path.parent / track).resolve()
        if check_files and not track.is_file():
            raise ManifestError(
                f"{row['cell_line']}/{row['assay']} {kind} file not found: {track}", path=path, line=line
            )
        key = (str(row["cell_line"]).strip(), str(row["assay"]).strip(), kind)
        if "." in key[1] or "." in key[0]:
            raise ManifestError(f"'.' separates the parts of feature names, so it cannot appear in a cell line or "
                                f"assay name ({key[0]}/{key[1]}); use '_' or '-' instead", path=path, line=line)
        if key in seen:
            raise ManifestError(f"duplicate track {'/'.join(key)}", path=path, line=line)
        seen[key] = line
        records.append({"cell_line": key[0], "assay": key[1], "kind": kind, "path": str(track), "line": line})
    if not records:
        raise ManifestError("manifest lists no tracks", path=path)
    return pd.DataFrame.from_records(records)


def track_overview(path: str | Path, kind: str) -> tuple[set[str], str]:
    """Chromosome names a track file uses and what the file is (``bigWig``, ``narrowPeak``,
    ``BED9``, ...), read with epx's own readers, which validate the file and refuse damage in
    one line (pyBigWig's C library crashes the process on some damaged files)."""
    if kind == "bigwig":
        from epx.io.bigwig import BigWigReader
        from epx.io.chroms import alias_map

        with BigWigReader(path) as reader:
            alias_map(reader.chroms(), path=path)  # one chromosome spelled two ways is refused
            return set(reader.chroms()), "bigWig"
    from epx.io.bed import bed_overview

    names, flavour, _col = bed_overview(path)
    return names, flavour


def check_gene_chroms(
    genes: pd.DataFrame, manifest: pd.DataFrame, formats: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """Fail when no gene chromosome is in any track; otherwise report per-track missing chromosomes.

    Returns ``{track label: [gene chromosomes absent from that track]}`` for the caller to warn
    about; fills ``formats`` (track label -> file format) when given.
    """
    from epx.io.chroms import canonical_chrom

    gene_chroms = set(genes["chrom"].unique())
    missing_by_track: dict[str, list[str]] = {}
    union: set[str] = set()
    for row in manifest.itertuples():
        names, fmt = track_overview(row.path, row.kind)
        chroms = {canonical_chrom(c) for c in names}
        label = f"{row.cell_line}/{row.assay}/{row.kind}"
        if formats is not None:
            formats[label] = fmt
        union |= chroms
        missing = sorted(gene_chroms - chroms)
        if missing:
            missing_by_track[label] = missing
    if not gene_chroms & union:
        example = ", ".join(sorted(gene_chroms)[:3])
        tracks = ", ".join(sorted(union)[:3]) or "none"
        raise ManifestError(
            f"no gene chromosome ({example}, ...) appears in any track (tracks have {tracks}, ...); "
            "check that the gene table and tracks use the same genome build"
        )
    return missing_by_track
