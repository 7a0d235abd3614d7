"""``epx featurize``: gene table + track manifest -> the dataset directory every backend reads.

One job per track (bigWig or BED) runs in a worker process (paths, not file handles, cross the
process boundary); each job streams its file chromosome by chromosome through the engines in
:mod:`epx.features.windows` (bigWig) and :mod:`epx.features.peaks` (BED), writes its bins into the
dataset's memory-mapped arrays and its features to a scratch file (:mod:`epx.features.spill`). The
core then writes the feature tables cell line by cell line in bounded memory, with the derived
feature families and the normalisation (log1p, then z-score per cell line and feature), and
swaps the dataset into place atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx import console
from epx.dataset import META_FILE, file_fingerprint, write_dataset
from epx.errors import EpxError
from epx.features.derived import (
    feature_catalogue,
    profile_entropy,
)
from epx.features.geometry import BinSpec
from epx.features.spill import FeatureSpill
from epx.features.windows import STATS, WindowSpec
from epx.io.chroms import chrom_sort_key
from epx.io.inputs import load_inputs
from epx.outputs import atomic_dir, check_output, refuse_overlap

BW_STATS = tuple(s for s in STATS)  # mean, std, min, max, sum, coverage, slope
SLOPE_WINDOWS = ("tss", "body")  # slopes are only meaningful along the TSS window and the body


@dataclass(frozen=True)
class FeaturizeParams:
    """Window and bin geometry. Defaults follow the ML4G ablation (one-sided, strand-aware 100 bp
    TSS window) and DeepChrome (100 bins x 100 bp = TSS +- 5 kb)."""

    tss_window: int = 100
    tss_mode: str = "one-sided"
    promoter: int = 1000
    flank: int = 5000
    n_bins: int = 100
    bin_size: int = 100
    bins: bool = True
    # further bin geometries beyond (bin_size, n_bins), as (bin_size, n_bins) pairs: --bins 2000x20,500x80
    more_bins: tuple[tuple[int, int], ...] = ()
    max_regions: int = 8  # distal regions (pCREs) kept per gene from --pairs, by score
    max_region_width: int = 40_000  # wider regions are clipped around their centre; the frame of every region

    def __post_init__(self) -> None:
        if self.tss_mode not in ("one-sided", "both"):
            raise EpxError(f"--tss-mode must be one-sided or both, got {self.tss_mode!r}")
        for name in ("tss_window", "promoter", "flank", "n_bins", "bin_size", "max_regions", "max_region_width"):
            if getattr(self, name) <= 0:
                raise EpxError(f"--{name.replace('_', '-')} must be positive")
        object.__setattr__(self, "more_bins", tuple((int(w), int(n)) for w, n in self.more_bins))
        names = [b.name for b in self.bin_specs()]
        if len(set(names)) != len(names):
            raise EpxError(f"--bins gives a geometry twice ({', '.join(names)})")

    def bin_specs(self) -> tuple[BinSpec, ...]:
        """Every bin geometry, the dataset's default (``bins.npy``) first; none with --no-bins."""
        if not self.bins:
            return ()
        return (BinSpec(self.n_bins, self.bin_size), *(BinSpec(n, w) for w, n in self.more_bins))

    def windows(self) -> tuple[WindowSpec, ...]:
        """Strand-aware windows; offsets are in the direction of transcription."""
        if self.tss_mode == "one-sided":
            tss = WindowSpec("tss", "tss", 0, self.tss_window)
        else:
            half = self.tss_window // 2
            tss = WindowSpec("tss", "tss", -half, self.tss_window - half)
        return (
            tss,
            WindowSpec("promoter", "tss", -self.promoter, self.promoter),
            WindowSpec("body", "body", 0, 0),
            WindowSpec("upstream", "tss", -(self.promoter + self.flank), -self.promoter),
            WindowSpec("downstream", "tes", 0, self.flank),
        )

    def bin_spec(self) -> BinSpec | None:
        return BinSpec(self.n_bins, self.bin_size) if self.bins else None


@dataclass(frozen=True)
class ArrayTarget:
    """Where a track job writes its binned arrays: the memory-mapped ``.npy`` files of the dataset
    being written, at this track's (cell line, assay) position. Workers write their own slices, so
    no track's bins travel back to the parent or wait in memory for the others."""

    cell: int
    assay: int
    bins: dict[str, tuple[str, str]]  # geometry name -> (values file, coverage file)
    regions: dict[str, str]  # geometry name -> region file (cells, region bins, assays)


def _write_arrays(target: ArrayTarget, res: Any) -> None:
    """Write one track's bins and region bins into the dataset's memory-mapped files."""
    f32 = np.finfo(np.float32).max  # overlapping items can push a bin past float32's range: clip, never inf
    for name, (vfile, cfile) in target.bins.items():
        values, cover = res.geometry_bins[name]
        out = np.load(vfile, mmap_mode="r+")
        out[:, target.cell, target.assay] = np.clip(values, -f32, f32)
        out.flush()
        cov = np.load(cfile, mmap_mode="r+")
        cov[:, target.cell, target.assay] = cover
        cov.flush()
        del out, cov
    for name, rfile in target.regions.items():
        out = np.load(rfile, mmap_mode="r+")
        out[target.cell, :, target.assay] = res.region_bins[name]  # clipped to float32 by the engine
        out.flush()
        del out


def _bigwig_job(path: str, genes: pd.DataFrame, params: FeaturizeParams, regions: Any = None,
                target: ArrayTarget | None = None) -> pd.DataFrame:
    from epx.features.windows import bigwig_features

    res = bigwig_features(path, genes, params.windows(), BW_STATS, params.bin_specs() or None, SLOPE_WINDOWS,
                          regions=regions)
    table = res.table
    table.columns = [c.replace("_", ".", 1) for c in table.columns]
    # Many bigWigs omit zero-signal regions: a mean over covered bases alone is NaN (or inflated)
    # there, so also give the mean with bases without data counted as 0.
    for w in dict.fromkeys(c.split(".")[0] for c in table.columns):
        mean, cov = table[f"{w}.mean"].to_numpy(), table[f"{w}.coverage"].to_numpy()
        pos = list(table.columns).index(f"{w}.mean") + 1
        table.insert(pos, f"{w}.mean0", np.where(cov > 0, np.nan_to_num(mean) * cov, 0.0))
    if res.bins is not None:
        table["bins.entropy"] = profile_entropy(res.bins)
    # Genes on chromosomes the file lacks have no measurement, not zero signal: NaN everywhere
    # (their bins stay 0 with coverage 0, which the coverage mask records).
    from epx.io.bigwig import BigWigReader
    from epx.io.chroms import canonical_chrom

    with BigWigReader(path) as reader:
        present = {canonical_chrom(c) for c in reader.chroms()}
    absent = ~genes["chrom"].isin(present).to_numpy()
    if absent.any():
        table.loc[absent, :] = np.nan
    if target is not None:
        _write_arrays(target, res)
    return table


def _bed_job(path: str, genes: pd.DataFrame, params: FeaturizeParams, chrom_sizes: dict[str, int] | None) -> pd.DataFrame:
    from epx.features.peaks import peak_features

    table = peak_features(path, genes, params.windows(), chrom_sizes=chrom_sizes)
    table.columns = [c if c == "tss_distance" else c.replace("_", ".", 1) for c in table.columns]
    return table.rename(columns={"tss_distance": "tss.distance"})


def _run_track(kind: str, path: str, genes: pd.DataFrame, params: FeaturizeParams, sizes: dict[str, int] | None,
               regions: Any = None, target: ArrayTarget | None = None) -> pd.DataFrame:
    if kind == "bigwig":
        return _bigwig_job(path, genes, params, regions, target)
    return _bed_job(path, genes, params, sizes)


def _spill_track(out: str, *args: Any) -> list[str]:
    """Run one track job and write its feature table to ``out`` at once (see
    :mod:`epx.features.spill`): no track's table waits in memory for the others."""
    from epx.features.spill import spill_table

    return spill_table(_run_track(*args), out)


def _fingerprint(genes_paths: Sequence[Path], manifest: Path | None, labels: Sequence[str], tracks: pd.DataFrame | None,
                 params: FeaturizeParams, build: str | None, pairs: dict[str, Path] | None = None,
                 sequence: dict[str, Any] | None = None, cells: Sequence[str] = (),
                 chroms: Sequence[str] = ()) -> dict[str, Any]:
    label_paths = [item.partition("=")[2] for item in labels]
    out: dict[str, Any] = {
        "params": {**asdict(params), "build": build},
        "selection": {"assays": sorted(set(tracks["assay"])) if tracks is not None else [],
                      "cells": sorted(set(tracks["cell_line"])) if tracks is not None else sorted(cells)},
        "genes": [file_fingerprint(p) for p in genes_paths],
        "manifest": file_fingerprint(manifest) if manifest is not None else None,
        "labels": {item.partition("=")[0]: file_fingerprint(p) for item, p in zip(labels, label_paths, strict=True)},
        "tracks": [
            {"cell_line": r.cell_line, "assay": r.assay, "kind": r.kind, **file_fingerprint(r.path)}
            for r in tracks.itertuples()
        ] if tracks is not None else [],
    }
    if chroms:  # a part of a featurize split by chromosome (epx merge); a whole one has no entry
        out["selection"]["chroms"] = list(chroms)
    if pairs:
        out["pairs"] = {cell: file_fingerprint(p) for cell, p in pairs.items()}
    if sequence:  # the FASTA's identity (not its mtime: a copy is the same reference) and the window
        out["sequence"] = {k: sequence[k] for k in ("fasta", "size", "sample_blake2b", "window")}
    return out


def _is_up_to_date(output: Path, fingerprint: dict[str, Any]) -> bool:
    meta_path = output / META_FILE
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    return meta.get("fingerprint") == json.loads(json.dumps(fingerprint))


def resolve_pairs(items: Sequence[str], cells: Sequence[str]) -> dict[str, Path]:
    """``--pairs FILE`` (every cell line) or ``--pairs CELL=FILE`` (one cell line's contacts,
    repeatable) -> {cell line: file}; cell lines without a file get no distal regions."""
    from epx.errors import require_file

    out: dict[str, Path] = {}
    shared: Path | None = None
    for item in items:
        cell, sep, path = item.partition("=")
        if sep and cell in cells:
            if cell in out:
                raise EpxError(f"--pairs gives two files for cell line {cell!r}")
            out[cell] = require_file(path, "pairs file")
        elif sep and not Path(item).exists():
            raise EpxError(f"--pairs {item}: {cell!r} is not a cell line of the manifest "
                           f"(it has {', '.join(cells)}); use CELL=FILE, or FILE for every cell line")
        else:
            if shared is not None:
                raise EpxError("--pairs gives two files for every cell line; use CELL=FILE to give one per cell line")
            shared = require_file(item, "pairs file")
    return {c: out.get(c, shared) for c in cells if out.get(c, shared) is not None}


def featurize(
    genes: Sequence[str | Path],
    manifest: str | Path,
    output: str | Path,
    *,
    labels: Sequence[str] = (),
    params: FeaturizeParams = FeaturizeParams(),
    build: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    assays: Sequence[str] = (),
    cells: Sequence[str] = (),
    pairs: Sequence[str] = (),
    fasta: str | Path | None = None,
    sequence_window: int | None = None,
    chroms: Sequence[str] = (),
) -> dict[str, Any]:
    """Build a dataset directory. Returns a summary; ``{"up_to_date": True}`` when nothing changed.

    ``pairs``: promoter-to-region contact files (``FILE`` or ``CELL=FILE``; BEDPE, CHiCAGO ibed,
    WashU longrange or Chromoformer's long format, see :mod:`epx.io.pairs`); each gene's top
    ``params.max_regions`` regions are binned at every geometry beside the promoter bins.

    ``fasta``: a reference genome for ``sequence`` models, recorded (path, size, content sample,
    ``sequence_window``, default :data:`epx.sequence.windows.DEFAULT_WINDOW`) and never copied:
    windows are built from it per batch. Every gene's chromosome must be in it. With ``fasta`` and
    no ``manifest`` the dataset has no features or bins; its cell lines are ``cells``, else the
    labels'.

    ``chroms`` (canonical names): only the genes on these chromosomes. With ``chroms``, ``cells`` or
    ``assays`` narrower than the manifest the dataset is a *part*: ``dataset.json`` records
    ``partial`` and ``epx merge`` combines parts into what one featurize over everything writes."""
    output = Path(output)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise EpxError(f"--workers must be a whole number >= 1, got {workers!r}; omit it to use all cores")
    if fasta is None and sequence_window is not None:
        raise EpxError("--sequence-window sets the reference window of --fasta REF; give --fasta too")
    if manifest is None and fasta is None:
        raise EpxError("featurize needs --manifest (tracks) or --fasta (a reference genome for sequence models)")
    if fasta is not None:
        from epx.sequence.windows import DEFAULT_WINDOW

        sequence_window = DEFAULT_WINDOW if sequence_window is None else sequence_window
        if isinstance(sequence_window, bool) or not isinstance(sequence_window, int) or sequence_window < 1:
            raise EpxError(f"--sequence-window must be a whole number of bp >= 1, got {sequence_window!r}")
    if manifest is None:
        if assays:
            raise EpxError("--assays chooses tracks of --manifest; this dataset has no manifest")
        if pairs:
            raise EpxError("--pairs bins distal regions from tracks; give --manifest too")
    inputs = load_inputs(genes, manifest=manifest, labels=labels, build=build, assays=assays,
                         cells=cells if manifest is not None else ())
    for message in inputs.warnings:
        console.warn(message)
    tracks = inputs.manifest
    partial = _partial(inputs, chroms, fasta, pairs) if tracks is not None else None
    if chroms and tracks is None:
        raise EpxError("--chroms splits a featurize over tracks into parts for epx merge; give --manifest")
    cell_lines = _cell_lines(inputs, cells) if tracks is None else list(dict.fromkeys(tracks["cell_line"]))
    pair_files = resolve_pairs(pairs, cell_lines) if tracks is not None else {}
    if pair_files and not params.bins:
        raise EpxError("--pairs bins distal regions beside the promoter bins; drop --no-bins")
    if pair_files and tracks is not None and not (tracks["kind"] == "bigwig").any():
        raise EpxError("--pairs needs bigWig tracks: distal regions are binned from signal, and this manifest "
                       "has only BED peaks")
    sequence = _sequence_entry(inputs.genes, fasta, sequence_window) if fasta is not None else None
    fingerprint = _fingerprint([Path(g) for g in genes], None if manifest is None else Path(manifest), labels, tracks,
                               params, build, pair_files, sequence, cell_lines,
                               partial["chroms"] if partial is not None and partial["chroms"] else ())
    if output.exists() and not force and _is_up_to_date(output, fingerprint):
        return {"up_to_date": True, "dataset": str(output)}
    refuse_overlap(output, [*genes, *([manifest] if manifest is not None else []),
                            *(item.partition("=")[2] for item in labels), *pair_files.values(),
                            *([fasta] if fasta is not None else [])])
    check_output(output, force, "dataset")  # before the work: foreign files, writability
    if sequence is not None and sequence["padded_genes"]:
        console.warn(f"the {sequence['window']:,} bp reference windows of {sequence['padded_genes']:,} gene(s) run past "
                     "a chromosome end; those bases are N (all-zero one-hot)")
    with atomic_dir(output, "dataset", force=force) as tmp:  # locked until the dataset is in place
        if tracks is None:
            gene_table, assays, bins, feature_names, regions = inputs.genes, [], None, [], None
            _write_sequence_only(tmp, inputs, cell_lines, params, build, fingerprint, sequence)
            cells = cell_lines
        else:
            gene_table, cells, assays, bins, feature_names, regions = _compute_and_write(
                tmp, inputs, tracks, params, build, fingerprint, workers, progress, pair_files, sequence, partial)
    return {
        "up_to_date": False,
        "dataset": str(output),
        "genes": len(gene_table),
        "cell_lines": cells,
        "assays": assays,
        "features": len(feature_names),
        "bins": None if bins is None else list(bins),
        "geometries": [b.name for b in params.bin_specs()] if bins is not None else [],
        "regions": regions,
        "sequence": None if sequence is None else {k: sequence[k] for k in ("fasta", "window", "padded_genes")},
    }


def _gene_ranges(mask: np.ndarray) -> list[list[int]]:
    """The rows where ``mask`` is true, as half-open ``[start, stop]`` runs."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [[int(a), int(b)] for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _partial(inputs: Any, chroms: Sequence[str], fasta: Any, pairs: Sequence[str]) -> dict[str, Any] | None:
    """The ``partial`` entry of a part (``--chroms``, or ``--cells``/``--assays`` narrower than the
    manifest), or None for a whole dataset. Narrows ``inputs`` to the genes on ``chroms``.

    It records what the part holds and what the whole holds (the manifest's tracks in order, every
    chromosome of the gene table, the gene count), and with ``--chroms`` the rows of its genes in the
    whole gene table, so ``epx merge`` can check the parts and put every gene back in its place."""
    genes = inputs.genes
    all_chroms = sorted(set(genes["chrom"]), key=chrom_sort_key)
    wanted: list[str] = []
    rows = None
    if chroms:
        if fasta is not None or pairs:
            raise EpxError(f"--chroms cannot be combined with {'--fasta' if fasta is not None else '--pairs'}: "
                           "epx merge combines parts of tabular features and bins only")
        wanted = sorted(dict.fromkeys(chroms), key=chrom_sort_key)
        unknown = [c for c in wanted if c not in set(all_chroms)]
        if unknown:
            raise EpxError(f"--chroms {', '.join(unknown)}: no gene of the gene table is on it (the genes are on "
                           f"{', '.join(all_chroms[:8])}{'...' if len(all_chroms) > 8 else ''})")
        mask = genes["chrom"].isin(wanted).to_numpy()
        rows = _gene_ranges(mask)
        if len(wanted) == len(all_chroms):
            wanted, rows = [], None
        else:
            inputs.genes = genes[mask].reset_index(drop=True)
            if inputs.labels is not None:
                keep = inputs.labels["gene_id"].isin(set(inputs.genes["gene_id"]))
                inputs.labels = inputs.labels[keep].reset_index(drop=True)
    every, chosen = inputs.all_tracks, inputs.manifest
    narrower = {axis: list(dict.fromkeys(chosen[col])) for axis, col in (("cells", "cell_line"), ("assays", "assay"))
                if set(chosen[col]) != set(every[col])}
    if not wanted and not narrower:
        return None
    return {"chroms": wanted or None, "cells": narrower.get("cells"), "assays": narrower.get("assays"),
            "of": {"genes": len(genes), "chroms": all_chroms,
                   "tracks": [[r.cell_line, r.assay, r.kind] for r in every.itertuples()]},
            "gene_rows": rows}


def _cell_lines(inputs: Any, cells: Sequence[str]) -> list[str]:
    """The cell lines of a dataset without tracks: ``--cells``, else those of the labels. Labels of
    other cell lines are dropped with a warning."""
    labelled = [] if inputs.labels is None else list(dict.fromkeys(inputs.labels["cell_line"]))
    chosen = list(dict.fromkeys(cells)) or labelled
    if not chosen:
        raise EpxError("a dataset without --manifest takes its cell lines from --labels CELL=FILE; "
                       "give --labels, or name the cell lines to predict with --cells")
    dropped = [c for c in labelled if c not in chosen]
    if dropped:
        console.warn(f"labels for cell line(s) {', '.join(dropped)} are left out: not in --cells")
        inputs.labels = inputs.labels[inputs.labels["cell_line"].isin(chosen)].reset_index(drop=True)
    return chosen


def _sequence_entry(genes: pd.DataFrame, fasta: str | Path, window: int) -> dict[str, Any]:
    """The ``sequence`` entry of dataset.json: the FASTA's identity and the window, after checking
    that every gene's chromosome is in the FASTA (one line naming the first gene that is not)."""
    from epx.errors import InputFileError
    from epx.io.fasta import Reference
    from epx.sequence.windows import fasta_fingerprint, window_starts

    with Reference(fasta) as ref:
        chroms = genes["chrom"].to_numpy(object)
        present = {c: ref.has(c) for c in pd.unique(chroms)}
        absent = np.array([not present[c] for c in chroms])
        if absent.any():
            i = int(np.flatnonzero(absent)[0])
            missing = sorted({c for c, ok in present.items() if not ok}, key=chrom_sort_key)
            have = ref.chroms
            raise InputFileError(
                f"gene {genes['gene_id'].iat[i]!r} is on {chroms[i]}, which this FASTA lacks ({int(absent.sum()):,} "
                f"gene(s) on {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}; the FASTA has "
                f"{', '.join(have[:5])}{'...' if len(have) > 5 else ''}); give the genome the gene table is on, "
                "or leave those genes out", path=fasta)
        length = np.array([ref.length(c) for c in chroms], dtype=np.int64)
    start = window_starts(genes["tss"].to_numpy(np.int64), window)
    padded = int(((start < 0) | (start + window > length)).sum())
    identity = fasta_fingerprint(fasta)
    return {"fasta": identity.pop("path"), **identity, "window": int(window),
            "tss_index": int(window // 2), "padded_genes": padded,
            "strand": "forward reference strand for every gene (minus-strand genes are not reverse-complemented)",
            "encoding": "one-hot A, C, G, T; N and other codes all zero; built from the FASTA per batch"}


def _write_sequence_only(tmp: Path, inputs: Any, cells: list[str], params: FeaturizeParams, build: str | None,
                         fingerprint: dict[str, Any], sequence: dict[str, Any]) -> None:
    """A dataset with a reference and labels, no tracks: what sequence models read."""
    gene_table = inputs.genes
    meta: dict[str, Any] = {
        "kind": "featurize",
        "chroms": sorted(set(gene_table["chrom"]), key=chrom_sort_key),
        "cell_lines": cells,
        "assays": [],
        "features": [],
        "params": {**asdict(params), "build": build},
        "fingerprint": fingerprint,
        "tracks": [],
        "inputs": {"tabular": False, "binned": False, "sequence": True},
        "sequence": sequence,
    }
    write_dataset(tmp, genes=gene_table, labels=inputs.labels, meta=meta)


def _chrom_sizes(tracks: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Chromosome sizes per cell line from its bigWig headers (BED files know none)."""
    from epx.io.bigwig import BigWigReader

    out: dict[str, dict[str, int]] = {}
    for r in tracks[tracks["kind"] == "bigwig"].itertuples():
        with BigWigReader(r.path) as reader:
            out.setdefault(r.cell_line, {}).update(reader.chroms())
    return out


def _allocate(path: Path, dtype: Any, shape: tuple[int, ...]) -> None:
    """A zero-filled ``.npy`` whose blocks are reserved now: a full disk fails here, as one line,
    and not later as a SIGBUS in the worker writing through its memory map."""
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)


def _open_arrays(tmp: Path, n_genes: int, cells: list[str], assays: list[str], params: FeaturizeParams,
                 region_bins: dict[str, int] | None) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Create the zero-filled binned arrays in ``tmp`` (sparse files until written): per geometry
    ``bins[_NAME].npy`` (genes, cells, assays, bins) float32 and its float16 coverage, and with
    regions ``regions_NAME.npy`` (cells, region bins, assays) float32: the distinct regions' own
    bins back to back (``epx.features.windows.region_layout``), without the frame's padding."""
    bins: dict[str, tuple[str, str]] = {}
    regions: dict[str, str] = {}
    for k, spec in enumerate(params.bin_specs()):
        stem = "bins" if k == 0 else f"bins_{spec.name}"
        shape = (n_genes, len(cells), len(assays), spec.n_bins)
        _allocate(tmp / f"{stem}.npy", np.float32, shape)
        _allocate(tmp / f"{stem}_coverage.npy", np.float16, shape)
        bins[spec.name] = (str(tmp / f"{stem}.npy"), str(tmp / f"{stem}_coverage.npy"))
        if region_bins is not None:
            shape_r = (len(cells), region_bins[spec.name], len(assays))
            _allocate(tmp / f"regions_{spec.name}.npy", np.float32, shape_r)
            regions[spec.name] = str(tmp / f"regions_{spec.name}.npy")
    return bins, regions


def _bin_statistics(path: str, chunk_bytes: int = 16 << 20) -> dict[str, list]:
    """Mean and sd of log1p(bins) per (cell line, assay), streamed over genes from the file.

    Chunks are sized in bytes (one float64 copy of ``chunk_bytes``, worked on in place), not in
    genes: a fixed number of genes grows with every cell line and assay, and was the largest
    allocation of a wide featurize (2,048 genes x 18 cell lines x 7 assays x 100 bins: 4 float64
    temporaries of 206 MB)."""
    n, c, a, b = np.load(path, mmap_mode="r").shape
    rows = max(1, chunk_bytes // max(c * a * b * 8, 1))
    s1 = np.zeros((c, a))
    s2 = np.zeros((c, a))
    for start in range(0, n, rows):
        arr = np.load(path, mmap_mode="r")  # a map per chunk: the pages read leave the RSS with it
        logged = np.array(arr[start:start + rows], dtype=np.float64)
        del arr
        np.clip(logged, 0, None, out=logged)
        np.log1p(logged, out=logged)
        s1 += logged.sum(axis=(0, 3))
        np.multiply(logged, logged, out=logged)
        s2 += logged.sum(axis=(0, 3))
        del logged
    count = max(n * b, 1)
    mean = s1 / count
    sd = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    return {"mean": mean.tolist(), "sd": np.where(sd > 1e-12, sd, 1.0).tolist()}


def _past_chrom_end(genes: pd.DataFrame, sizes: dict[str, dict[str, int]], spec: BinSpec) -> int:
    """Genes whose bin window at ``spec`` runs past a chromosome end (those bins are padded with 0)."""
    from epx.features.windows import bin_span
    from epx.io.chroms import canonical_chrom

    longest: dict[str, int] = {}
    for per_cell in sizes.values():
        for chrom, size in per_cell.items():
            key = canonical_chrom(chrom)
            longest[key] = max(longest.get(key, 0), int(size))
    size = genes["chrom"].map(longest).to_numpy(dtype=np.float64)
    sign = np.where(genes["strand"].to_numpy() == "-", -1, 1)
    lo, hi = bin_span(genes["tss"].to_numpy(np.int64), sign, spec)
    known = np.isfinite(size)
    return int(((lo < 0) | (hi > np.nan_to_num(size, nan=np.inf)))[known].sum())


def _read_regions(pair_files: dict[str, Path], genes: pd.DataFrame, params: FeaturizeParams,
                  sizes: dict[str, dict[str, int]]) -> pd.DataFrame:
    """The distal regions of every cell line with a pairs file: gene_id, cell_line, slot, chrom,
    start, end, score (one read per distinct file)."""
    from epx.io.chroms import canonical_chrom
    from epx.io.pairs import read_pairs

    chrom_sizes: dict[str, int] = {}
    for per_cell in sizes.values():
        for chrom, size in per_cell.items():
            chrom_sizes[canonical_chrom(chrom)] = max(chrom_sizes.get(canonical_chrom(chrom), 0), int(size))
    by_file: dict[Path, pd.DataFrame] = {}
    frames = []
    for cell, path in pair_files.items():
        if path not in by_file:
            res = read_pairs(path, genes, max_regions=params.max_regions, max_region_width=params.max_region_width,
                             chrom_sizes=chrom_sizes or None)
            for message in res.warnings:
                console.warn(message)
            by_file[path] = res.table
        frames.append(by_file[path].assign(cell_line=cell))
    table = pd.concat(frames, ignore_index=True)
    # distinct regions, numbered in genomic order: each is binned and stored once, whatever the
    # number of genes (and cell lines) contacting it
    distinct = table[["chrom", "start", "end"]].drop_duplicates()
    distinct = distinct.sort_values(["chrom", "start", "end"], key=lambda c: c.map(chrom_sort_key) if c.name == "chrom" else c)
    ids = pd.Series(np.arange(len(distinct)), index=pd.MultiIndex.from_frame(distinct))
    table["region"] = ids.reindex(pd.MultiIndex.from_frame(table[["chrom", "start", "end"]])).to_numpy(np.int64)
    return table[["gene_id", "cell_line", "slot", "region", "chrom", "start", "end", "score"]]


def _region_input(regions: pd.DataFrame, params: FeaturizeParams) -> Any:
    """The distinct regions in ``region`` order, for the track jobs."""
    from epx.features.windows import RegionInput

    distinct = regions.drop_duplicates("region").sort_values("region")
    return RegionInput(chrom=distinct["chrom"].to_numpy(str), start=distinct["start"].to_numpy(np.int64),
                       end=distinct["end"].to_numpy(np.int64), max_width=params.max_region_width)


def _compute_and_write(tmp: Path, inputs, tracks: pd.DataFrame, params: FeaturizeParams, build: str | None,
                       fingerprint: dict[str, Any], workers: int | None, progress: bool,
                       pair_files: dict[str, Path] | None = None, sequence: dict[str, Any] | None = None,
                       partial: dict[str, Any] | None = None):
    """Run every track job (each writes its bins into the dataset's memory-mapped arrays and its
    features to a scratch file), then write the feature tables (:func:`write_feature_tables`) and
    the remaining dataset files into ``tmp``."""
    gene_table = inputs.genes
    cells = list(dict.fromkeys(tracks["cell_line"]))
    assays = list(dict.fromkeys(tracks["assay"]))
    sizes = _chrom_sizes(tracks)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tracks)))
    has_bigwig = bool((tracks["kind"] == "bigwig").any())
    specs = params.bin_specs() if has_bigwig else ()
    regions = _read_regions(pair_files, gene_table, params, sizes) if pair_files else None
    for spec in specs:
        past = _past_chrom_end(gene_table, sizes, spec)
        if past:
            console.warn(f"bin geometry {spec.name}: the windows of {past:,} gene(s) run past a chromosome end; "
                         "those bins are 0 with coverage 0")
    tmp.mkdir(parents=True, exist_ok=True)
    region_input = _region_input(regions, params) if regions is not None else None
    region_bins = None
    if region_input is not None:
        from epx.features.windows import region_layout

        region_bins = {spec.name: int(region_layout(region_input.start, region_input.end, spec.bin_size,
                                                    spec.frame_bins(params.max_region_width))[0].sum()) for spec in specs}
    bin_files, region_files = _open_arrays(tmp, len(gene_table), cells, assays, params, region_bins) \
        if specs else ({}, {})

    def job_args(r) -> tuple:
        target = None
        if r.kind == "bigwig" and specs:
            target = ArrayTarget(cells.index(r.cell_line), assays.index(r.assay), bin_files, region_files)
        return (r.kind, r.path, gene_table, params, sizes.get(r.cell_line),
                region_input if target is not None and target.regions else None, target)

    # each track's features go to a scratch file as it finishes (removed with tmp on failure)
    spill = FeatureSpill(tmp / ".features-scratch", len(gene_table))
    jobs = list(tracks.itertuples())
    with console.progress(progress) as bar:
        overall = bar.add_task(f"featurize {len(jobs)} tracks", total=len(jobs))
        per_track = {(r.cell_line, r.assay, r.kind): bar.add_task(f"  {r.cell_line}/{r.assay} {r.kind}", total=1, visible=False)
                     for r in jobs}
        if n_workers == 1:
            for r in jobs:
                key = (r.cell_line, r.assay, r.kind)
                bar.update(per_track[key], visible=True)
                out = spill.path(cells.index(r.cell_line), assays.index(r.assay), r.kind)
                spill.add(key, out, _spill_track(str(out), *job_args(r)))
                bar.update(per_track[key], completed=1, visible=False)
                bar.advance(overall)
        else:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                # Keep only n_workers tracks in flight, so the visible bars are the running ones.
                pending = list(jobs)
                futures: dict = {}

                def submit_next() -> None:
                    r = pending.pop(0)
                    key = (r.cell_line, r.assay, r.kind)
                    out = spill.path(cells.index(r.cell_line), assays.index(r.assay), r.kind)
                    futures[pool.submit(_spill_track, str(out), *job_args(r))] = key, out
                    bar.update(per_track[key], visible=True)

                for _ in range(min(n_workers, len(pending))):
                    submit_next()
                while futures:
                    fut = next(as_completed(futures))
                    key, out = futures.pop(fut)
                    spill.add(key, out, fut.result())  # an EpxError in a worker surfaces here, one line
                    bar.update(per_track[key], completed=1, visible=False)
                    bar.advance(overall)
                    if pending:
                        submit_next()

    feature_names = write_feature_tables(tmp, gene_table, cells, assays, spill)
    records = [{**r, "format": inputs.formats.get(f"{r['cell_line']}/{r['assay']}/{r['kind']}")}
               for r in tracks.drop(columns=["line"]).to_dict(orient="records")]
    meta = dataset_meta(gene_table, records, params, build, fingerprint, feature_names, bin_files if specs else {})
    region_summary = None
    if regions is not None:
        n_with = regions.groupby("cell_line")["gene_id"].nunique().to_dict()
        meta["regions"] = {
            "max_regions": params.max_regions, "max_region_width": params.max_region_width,
            "files": {spec.name: Path(region_files[spec.name]).name for spec in specs},
            "frames": {spec.name: spec.frame_bins(params.max_region_width) for spec in specs},
            "cell_lines": sorted(pair_files or {}), "genes_with_regions": n_with, "regions": int(len(regions)),
            "pairs": {cell: str(p) for cell, p in (pair_files or {}).items()},
            "distinct_regions": len(region_input.start), "region_bins": region_bins,
            "layout": "regions_GEOMETRY.npy: (cell lines, region bins, assays) float32, the mean signal per bin of "
                      "each distinct region, its ceil(width / bin_size) bins back to back in region order; a model "
                      "sees them centred in a frame max_region_width wide (regions.parquet maps (gene_id, "
                      "cell_line, slot) to its region)",
        }
        regions.to_parquet(tmp / "regions.parquet", index=False)
        region_summary = {"regions": int(len(regions)), "genes": n_with}
    if sequence is not None:
        meta["sequence"] = sequence
        meta["inputs"] = {"tabular": True, "binned": bool(specs), "sequence": True}
    if partial is not None:
        meta["partial"] = partial
    label_table = inputs.labels
    meta.setdefault("inputs", {"tabular": True, "binned": bool(specs)})  # the feature tables are written
    write_dataset(tmp, genes=gene_table, labels=label_table, meta=meta, binned=bool(specs))
    shape = (len(gene_table), len(cells), len(assays), params.n_bins) if specs else None
    return gene_table, cells, assays, shape, feature_names, region_summary


def write_feature_tables(tmp: Path, genes: pd.DataFrame, cells: list[str], assays: list[str],
                         spill: FeatureSpill) -> list[str]:
    """The spilled tracks' tables -> ``features_raw.parquet`` and ``features.parquet`` in ``tmp``,
    cell line by cell line in bounded memory (assembled per cell line, derived families added,
    normalised over every gene of each cell line: the values of ``derive_features`` and
    ``normalise_features`` over the stacked tables); removes the scratch files and returns the
    feature names. featurize and epx merge both write through here, so their files agree byte for
    byte (row groups included)."""
    names = spill.write_tables(genes, cells, assays, tmp / "features_raw.parquet", tmp / "features.parquet")
    spill.remove()
    return names


def dataset_meta(gene_table: pd.DataFrame, tracks: list[dict[str, Any]], params: FeaturizeParams, build: str | None,
                 fingerprint: dict[str, Any], feature_names: list[str],
                 bin_files: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """``dataset.json`` of a featurize over tracks (before regions, sequence and ``partial``);
    ``tracks`` are the manifest rows with their ``format``, ``bin_files`` the geometries' files,
    already filled (their normalisation statistics are read from them)."""
    cells = list(dict.fromkeys(t["cell_line"] for t in tracks))
    assays = list(dict.fromkeys(t["assay"] for t in tracks))
    kinds = {k: list(dict.fromkeys(t["assay"] for t in tracks if t["kind"] == k)) for k in ("bigwig", "bed")}
    specs = params.bin_specs() if bin_files else ()
    meta: dict[str, Any] = {
        "kind": "featurize",
        # for shell completion of --test/--holdout without reading the gene table
        "chroms": sorted(set(gene_table["chrom"]), key=chrom_sort_key),
        "cell_lines": cells,
        "assays": assays,
        "features": feature_names,
        "feature_descriptions": dict(feature_catalogue(kinds["bigwig"], kinds["bed"], params)),
        "params": {**asdict(params), "build": build},
        "fingerprint": fingerprint,
        "tracks": tracks,
        "bin_size": params.bin_size,
        "n_bins": params.n_bins if specs else 0,
        "normalisation": "log1p (signed for signed features), then z-score per cell line and feature",
    }
    if specs:
        geometries = []
        for spec in specs:
            vfile, cfile = bin_files[spec.name]
            stats = _bin_statistics(vfile)
            geometries.append({"name": spec.name, "bin_size": spec.bin_size, "n_bins": spec.n_bins,
                               "file": Path(vfile).name, "coverage": Path(cfile).name, "normalisation": stats})
        meta["bins_normalisation"] = {
            **geometries[0]["normalisation"],
            "uncovered": "bases without data count as 0 in a bin; bins_coverage.npy records the covered fraction",
        }
        meta["geometries"] = geometries
    return meta
