"""``epx merge``: combine the parts of a featurize split by cell line, assay and/or chromosome.

A part is what ``epx featurize --cells``, ``--assays`` or ``--chroms`` writes; its ``dataset.json``
records ``partial``: what the part holds (``chroms``, ``cells``, ``assays``; null = all), what the
whole holds (``of``: the manifest's tracks in order, every chromosome of the gene table, the gene
count) and, with ``--chroms``, the rows of its genes in the whole gene table (``gene_rows``, as
half-open runs).

**Why the result is what one featurize writes.** Every number a track job computes depends only on
the track file, the featurize parameters and the gene itself (its windows and bins), never on the
other genes or tracks; the parts store those numbers unnormalised (``features_raw.parquet``, the
``bins*.npy`` arrays). What depends on more than one gene or track is recomputed here, from the
merged raw values and with featurize's own functions (:func:`epx.featurize.write_feature_tables`,
:func:`epx.featurize.dataset_meta`): the derived feature families (across assays), the
normalisation of the tabular features (over every gene of a cell line) and of the bins
(``_bin_statistics``, streamed over the merged file in the same order). Each merged track's table
goes to a scratch file as featurize's track jobs' do (:mod:`epx.features.spill`) and the feature
tables are written from them by the same writer, so even their parquet row groups are featurize's.
So a part's own normalised features and statistics are never used: a chromosome part is
normalised over its own genes only, which is why ``epx train`` refuses one.

Every data file and ``dataset.json`` come out byte for byte as one featurize over everything writes
them (tested); only the output marker ``.epx-output.json`` differs (it records when it was written).

Refused, in one line, before anything is written: fewer than two datasets; a directory that is not
a dataset, or one written by ``epx import`` or with ``--pairs``/``--fasta``; parts featurized with
different parameters, gene tables, manifests or labels; the same (cell line, assay, chromosome) in
two parts; and a (cell line, assay, chromosome) of the whole in no part.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx.dataset import load_dataset, read_parquet_file, write_dataset
from epx.errors import DatasetError, EpxError
from epx.io.chroms import chrom_sort_key

Track = tuple[str, str, str]  # (cell line, assay, kind)


class _Part:
    """One dataset to merge: its meta, what it holds and where its genes go in the whole."""

    def __init__(self, path: str | Path) -> None:
        ds = load_dataset(path)
        self.path, self.meta = ds.path, ds.meta
        meta = self.meta
        if meta.get("kind") != "featurize" or not meta.get("tracks"):
            raise DatasetError("epx merge combines datasets epx featurize wrote from tracks (--manifest); "
                               "this one was not", path=self.path)
        for key, option in (("regions", "--pairs"), ("sequence", "--fasta")):
            if key in meta:
                raise DatasetError(f"this dataset was featurized with {option}; epx merge combines tabular features "
                                   f"and bins only (featurize the whole dataset with {option} instead)", path=self.path)
        part = meta.get("partial") or {}
        self.tracks: list[Track] = [(t["cell_line"], t["assay"], t["kind"]) for t in meta["tracks"]]
        self.records = {key: t for key, t in zip(self.tracks, meta["tracks"], strict=True)}
        self.fingerprints = {(t["cell_line"], t["assay"], t["kind"]): t for t in meta["fingerprint"]["tracks"]}
        self.genes = ds.genes
        of = part.get("of") or {"genes": len(self.genes), "chroms": meta["chroms"], "tracks": [list(t) for t in self.tracks]}
        self.of_genes = int(of["genes"])
        self.of_chroms: list[str] = list(of["chroms"])
        self.of_tracks: list[Track] = [tuple(t) for t in of["tracks"]]
        self.chroms: list[str] = list(part.get("chroms") or self.of_chroms)
        if part.get("chroms"):
            rows = np.concatenate([np.arange(a, b) for a, b in part["gene_rows"]] or [np.zeros(0, np.int64)])
        else:
            rows = np.arange(len(self.genes))
        if len(rows) != len(self.genes) or (len(rows) and (rows.min() < 0 or rows.max() >= self.of_genes)):
            raise DatasetError("damaged dataset: its partial.gene_rows do not match its gene table; re-run the "
                               "epx featurize that wrote it", path=self.path)
        self.rows = rows.astype(np.int64)

    @property
    def name(self) -> str:
        return str(self.path)


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    for key in dict.fromkeys([*a, *b]):
        if a.get(key) != b.get(key):
            return key
    return None


def _content(entries: Any) -> Any:
    """A fingerprint without paths: the same bytes elsewhere are the same input."""
    if isinstance(entries, dict) and "blake2b" in entries:
        return (entries.get("size"), entries.get("blake2b"))
    if isinstance(entries, dict):
        return {k: _content(v) for k, v in entries.items()}
    if isinstance(entries, list):
        return [_content(v) for v in entries]
    return entries


def _check_agree(parts: list[_Part]) -> None:
    """Parameters, gene table, manifest and labels: the same in every part."""
    first = parts[0]
    for other in parts[1:]:
        pair = f"{first.name} and {other.name}"
        key = _first_difference(first.meta["params"], other.meta["params"])
        if key is not None:
            raise EpxError(f"{pair} were featurized with different parameters: {key} is "
                           f"{first.meta['params'].get(key)!r} vs {other.meta['params'].get(key)!r}; "
                           "featurize every part with the same options")
        fa, fb = first.meta["fingerprint"], other.meta["fingerprint"]
        if (_content(fa["genes"]) != _content(fb["genes"]) or first.of_genes != other.of_genes
                or first.of_chroms != other.of_chroms):
            raise EpxError(f"{pair} were featurized from different gene tables; featurize every part from the same "
                           "--genes")
        if _content(fa.get("manifest")) != _content(fb.get("manifest")) or first.of_tracks != other.of_tracks:
            raise EpxError(f"{pair} were featurized from different manifests; featurize every part from the same "
                           "--manifest")
        if _content(fa.get("labels")) != _content(fb.get("labels")):
            raise EpxError(f"{pair} were featurized with different labels; give every part the same --labels")


def _describe(track: Track) -> str:
    return f"cell line {track[0]}, assay {track[1]} ({track[2]})"


def _check_cover(parts: list[_Part]) -> None:
    """Each (track, chromosome) of the whole in exactly one part."""
    whole = parts[0]
    holder: dict[tuple[Track, str], _Part] = {}
    for part in parts:
        for track in part.tracks:
            if track not in whole.of_tracks:
                raise EpxError(f"{part.name} holds {_describe(track)}, which its manifest lacks; re-run the "
                               "epx featurize that wrote it")
            for chrom in part.chroms:
                other = holder.setdefault((track, chrom), part)
                if other is not part:
                    raise EpxError(f"{other.name} and {part.name} both hold {_describe(track)} for the genes on "
                                   f"{chrom}; give each cell line, assay and chromosome to one part only")
    nowhere = [c for c in whole.of_chroms if not any((t, c) in holder for t in whole.of_tracks)]
    if nowhere:
        raise EpxError(f"no part holds the genes on {_shown(nowhere)}; featurize them (--chroms {','.join(nowhere)}) "
                       "and merge that part too")
    for track in whole.of_tracks:
        missing = [c for c in whole.of_chroms if (track, c) not in holder]
        if missing:
            raise EpxError(f"no part holds {_describe(track)} for the genes on {_shown(missing)}; featurize that "
                           f"part (--cells {track[0]} --assays {track[1]} --chroms {','.join(missing)}) and merge it too")


def _shown(chroms: list[str]) -> str:
    return ", ".join(chroms[:5]) + ("..." if len(chroms) > 5 else "")


def _whole_genes(parts: list[_Part]) -> pd.DataFrame:
    """The whole gene table, every part's genes in their rows (each row once)."""
    n = parts[0].of_genes
    frames = [p.genes.assign(_row=p.rows) for p in parts]
    table = pd.concat(frames, ignore_index=True).drop_duplicates("_row").sort_values("_row", kind="stable")
    if not np.array_equal(table["_row"].to_numpy(), np.arange(n)):  # cannot happen once the cover is checked
        raise EpxError("the parts do not hold every gene of the gene table")
    table = table.drop(columns="_row").reset_index(drop=True)
    return table.astype(parts[0].genes.dtypes.to_dict())


def _whole_labels(parts: list[_Part], genes: pd.DataFrame) -> pd.DataFrame | None:
    """The labels as featurize reads them: per --labels cell line, in gene-table order."""
    order = list(parts[0].meta["fingerprint"].get("labels") or {})
    if not order:
        return None
    frames = [load_dataset(p.path).labels for p in parts]
    labels = pd.concat(frames, ignore_index=True).drop_duplicates(["gene_id", "cell_line"])
    position = pd.Series(np.arange(len(genes)), index=genes["gene_id"].to_numpy())
    key = pd.DataFrame({"cell": labels["cell_line"].map({c: i for i, c in enumerate(order)}).to_numpy(),
                        "row": position.reindex(labels["gene_id"].to_numpy()).to_numpy()})
    labels = labels.iloc[np.lexsort((key["row"].to_numpy(), key["cell"].to_numpy()))]
    return labels.reset_index(drop=True).astype(frames[0].dtypes.to_dict())


def _track_tables(parts: list[_Part], tracks: list[Track], n_genes: int) -> Iterator[tuple[Track, pd.DataFrame]]:
    """Each track's raw base features (what its featurize job returned), over every gene, one at a time."""
    raw = {id(p): read_parquet_file(p.path / "features_raw.parquet", "dataset features") for p in parts}
    for track in tracks:
        cell, assay, kind = track
        prefix = f"{assay}.{'bw' if kind == 'bigwig' else 'bed'}."
        pieces, rows = [], []
        for part in parts:
            if track not in part.tracks:
                continue
            table = raw[id(part)]
            mine = table[table["cell_line"].to_numpy() == cell]
            cols = [c for c in table.columns if c.startswith(prefix)]
            pieces.append(mine[cols].rename(columns={c: c[len(prefix):] for c in cols}).reset_index(drop=True))
            rows.append(part.rows)
        order = np.argsort(np.concatenate(rows), kind="stable")
        table = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
        table = table.iloc[order].reset_index(drop=True)
        assert len(table) == n_genes
        yield track, table


def _fill_bins(parts: list[_Part], bin_files: dict[str, tuple[str, str]], cells: list[str], assays: list[str]) -> None:
    """Copy every part's bins and coverage into the whole's arrays, at its genes, cell lines and assays."""
    for part in parts:
        geometries = {g["name"]: g for g in part.meta.get("geometries") or []}
        if not geometries:  # a part of BED tracks only has no bins; theirs stay 0, as featurize leaves them
            continue
        runs = np.split(part.rows, np.flatnonzero(np.diff(part.rows) != 1) + 1)
        for name, (vfile, cfile) in bin_files.items():
            for src_name, dst in ((geometries[name]["file"], vfile), (geometries[name]["coverage"], cfile)):
                src = np.load(part.path / src_name, mmap_mode="r")
                out = np.load(dst, mmap_mode="r+")
                pc, pa = part.meta["cell_lines"], part.meta["assays"]
                for cell, assay, kind in part.tracks:
                    if kind != "bigwig":
                        continue
                    start = 0
                    for run in runs:
                        if not len(run):
                            continue
                        out[run[0]:run[-1] + 1, cells.index(cell), assays.index(assay)] = \
                            src[start:start + len(run), pc.index(cell), pa.index(assay)]
                        start += len(run)
                out.flush()
                del out, src


def merge(datasets: Sequence[str | Path], output: str | Path, *, force: bool = False) -> dict[str, Any]:
    """Combine the parts ``datasets`` into the dataset directory ``output``; returns a summary."""
    from epx.features.spill import FeatureSpill, spill_table
    from epx.featurize import FeaturizeParams, _open_arrays, dataset_meta, write_feature_tables
    from epx.outputs import atomic_dir, check_output, refuse_overlap

    if len(datasets) < 2:
        raise EpxError("epx merge needs two or more datasets (the parts written by epx featurize --cells, --assays "
                       "or --chroms)")
    output = Path(output)
    refuse_overlap(output, list(datasets))
    check_output(output, force, "dataset")
    parts = [_Part(p) for p in datasets]
    _check_agree(parts)
    _check_cover(parts)
    whole = parts[0]
    tracks = whole.of_tracks
    cells = list(dict.fromkeys(t[0] for t in tracks))
    assays = list(dict.fromkeys(t[1] for t in tracks))
    holder = {t: p for p in parts for t in p.tracks}
    records = [holder[t].records[t] for t in tracks]
    fingerprint = dict(whole.meta["fingerprint"])
    fingerprint["selection"] = {"assays": sorted({t[1] for t in tracks}), "cells": sorted(set(cells))}
    fingerprint["tracks"] = [holder[t].fingerprints[t] for t in tracks]
    params_meta = dict(whole.meta["params"])
    build = params_meta.pop("build", None)
    params = FeaturizeParams(**params_meta)
    genes = _whole_genes(parts)
    labels = _whole_labels(parts, genes)
    has_bigwig = any(t[2] == "bigwig" for t in tracks)
    with atomic_dir(output, "dataset", force=force) as tmp:
        bin_files = {}
        if has_bigwig and params.bins:
            bin_files, _ = _open_arrays(tmp, len(genes), cells, assays, params, None)
            _fill_bins(parts, bin_files, cells, assays)
        # as featurize: each track's table to a scratch file, then the feature tables through its writer
        spill = FeatureSpill(tmp / ".features-scratch", len(genes))
        for track, table in _track_tables(parts, tracks, len(genes)):
            out = spill.path(cells.index(track[0]), assays.index(track[1]), track[2])
            spill.add(track, out, spill_table(table, out))
            del table
        names = write_feature_tables(tmp, genes, cells, assays, spill)
        meta = dataset_meta(genes, records, params, build, fingerprint, names, bin_files)
        meta.setdefault("inputs", {"tabular": True, "binned": bool(bin_files)})  # as featurize records it
        write_dataset(tmp, genes=genes, labels=labels, meta=meta, binned=bool(bin_files))
    return {"dataset": str(output), "parts": len(parts), "genes": len(genes), "cell_lines": cells, "assays": assays,
            "features": len(names), "chroms": sorted(set(genes["chrom"]), key=chrom_sort_key)}
