"""Loading and cross-checking the user's inputs: gene table(s), labels and a track manifest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from epx.io.genes import read_genes
from epx.io.labels import parse_label_option, read_label_files
from epx.io.manifest import check_gene_chroms, read_manifest


@dataclass
class Inputs:
    genes: pd.DataFrame
    labels: pd.DataFrame | None = None
    manifest: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # "cell/assay/kind" -> file format
    all_tracks: pd.DataFrame | None = None  # the whole manifest, before --assays/--cells


def load_inputs(
    genes: Sequence[str | Path],
    *,
    manifest: str | Path | None = None,
    labels: Sequence[str] = (),
    build: str | None = None,
    assays: Sequence[str] = (),
    cells: Sequence[str] = (),
) -> Inputs:
    """Read everything and check it fits together; problems raise one-line EpxErrors.

    ``assays``/``cells`` select manifest rows (unknown names are an error naming what exists).
    """
    gene_table = read_genes(list(genes), build=build)
    parsed = [parse_label_option(item) for item in labels]
    label_files = dict(parsed)
    if len(label_files) < len(parsed):
        from collections import Counter

        from epx.errors import LabelError

        cell = next(c for c, n in Counter(c for c, _ in parsed).items() if n > 1)
        raise LabelError(f"--labels gives cell line {cell!r} twice; give one file per cell line")
    label_table = read_label_files(label_files, gene_table) if label_files else None
    result = Inputs(genes=gene_table, labels=label_table)
    if manifest is not None:
        result.all_tracks = read_manifest(manifest)
        result.manifest = select_tracks(result.all_tracks, assays, cells, manifest)
        missing = check_gene_chroms(gene_table, result.manifest, result.formats)
        for track, chroms in missing.items():
            n = int(gene_table["chrom"].isin(chroms).sum())
            effect = ("count as having no peaks there" if track.endswith("/bed")
                      else "get NaN features (and empty bins)")
            result.warnings.append(
                f"{track}: {n:,} genes on {len(chroms)} chromosome(s) absent from the track "
                f"(e.g. {', '.join(chroms[:3])}) {effect}"
            )
        if label_table is not None:
            extra = sorted(set(label_table["cell_line"]) - set(result.manifest["cell_line"]))
            if extra:
                result.warnings.append(f"labels for cell line(s) {', '.join(extra)} have no tracks in the manifest")
    return result


def select_tracks(tracks: pd.DataFrame, assays: Sequence[str], cells: Sequence[str], path) -> pd.DataFrame:
    from epx.errors import ManifestError

    for column, wanted in (("assay", assays), ("cell_line", cells)):
        if not wanted:
            continue
        unknown = [w for w in wanted if w not in set(tracks[column])]
        if unknown:
            have = ", ".join(dict.fromkeys(tracks[column]))
            raise ManifestError(f"no {column.replace('_', ' ')} {', '.join(unknown)} in the manifest (it has {have})", path=path)
        tracks = tracks[tracks[column].isin(wanted)]
    return tracks.reset_index(drop=True)

