"""``epx featurize``: gene table + track manifest -> the dataset directory every backend reads.

One job per track (bigWig or BED) runs in a worker process (paths, not file handles, cross the
process boundary); each job streams its file chromosome by chromosome through the engines in
:mod:`epx.features.windows` (bigWig) and :mod:`epx.features.peaks` (BED). The core then assembles features per cell
line, adds derived feature families, normalises (log1p, then z-score per cell line and feature),
and writes the dataset atomically.
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
    derive_features,
    feature_catalogue,
    normalise_features,
    profile_entropy,
)
from epx.features.windows import STATS, BinSpec, WindowSpec
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

    def __post_init__(self) -> None:
        if self.tss_mode not in ("one-sided", "both"):
            raise EpxError(f"--tss-mode must be one-sided or both, got {self.tss_mode!r}")
        for name in ("tss_window", "promoter", "flank", "n_bins", "bin_size"):
            if getattr(self, name) <= 0:
                raise EpxError(f"--{name.replace('_', '-')} must be positive")

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


def _bigwig_job(path: str, genes: pd.DataFrame, params: FeaturizeParams) -> tuple[pd.DataFrame, Any, Any]:
    from epx.features.windows import bigwig_features

    res = bigwig_features(path, genes, params.windows(), BW_STATS, params.bin_spec(), SLOPE_WINDOWS)
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
    # float32 storage; overlapping items can push a bin past float32's range: clip, never inf.
    f32 = np.finfo(np.float32).max
    bins = np.clip(res.bins, -f32, f32).astype(np.float32) if res.bins is not None else None
    cov = res.bin_coverage.astype(np.float16) if res.bin_coverage is not None else None
    return table, bins, cov


def _bed_job(path: str, genes: pd.DataFrame, params: FeaturizeParams, chrom_sizes: dict[str, int] | None) -> pd.DataFrame:
    from epx.features.peaks import peak_features

    table = peak_features(path, genes, params.windows(), chrom_sizes=chrom_sizes)
    table.columns = [c if c == "tss_distance" else c.replace("_", ".", 1) for c in table.columns]
    return table.rename(columns={"tss_distance": "tss.distance"})


def _run_track(kind: str, path: str, genes: pd.DataFrame, params: FeaturizeParams, sizes: dict[str, int] | None):
    if kind == "bigwig":
        return _bigwig_job(path, genes, params)
    return _bed_job(path, genes, params, sizes), None, None


def _fingerprint(genes_paths: Sequence[Path], manifest: Path, labels: Sequence[str], tracks: pd.DataFrame,
                 params: FeaturizeParams, build: str | None) -> dict[str, Any]:
    label_paths = [item.partition("=")[2] for item in labels]
    return {
        "params": {**asdict(params), "build": build},
        "selection": {"assays": sorted(set(tracks["assay"])), "cells": sorted(set(tracks["cell_line"]))},
        "genes": [file_fingerprint(p) for p in genes_paths],
        "manifest": file_fingerprint(manifest),
        "labels": {item.partition("=")[0]: file_fingerprint(p) for item, p in zip(labels, label_paths, strict=True)},
        "tracks": [
            {"cell_line": r.cell_line, "assay": r.assay, "kind": r.kind, **file_fingerprint(r.path)}
            for r in tracks.itertuples()
        ],
    }


def _is_up_to_date(output: Path, fingerprint: dict[str, Any]) -> bool:
    meta_path = output / META_FILE
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return False
    return meta.get("fingerprint") == json.loads(json.dumps(fingerprint))


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
) -> dict[str, Any]:
    """Build a dataset directory. Returns a summary; ``{"up_to_date": True}`` when nothing changed."""
    output = Path(output)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise EpxError(f"--workers must be a whole number >= 1, got {workers!r}; omit it to use all cores")
    inputs = load_inputs(genes, manifest=manifest, labels=labels, build=build, assays=assays, cells=cells)
    for message in inputs.warnings:
        console.warn(message)
    tracks = inputs.manifest
    assert tracks is not None
    fingerprint = _fingerprint([Path(g) for g in genes], Path(manifest), labels, tracks, params, build)
    if output.exists() and not force and _is_up_to_date(output, fingerprint):
        return {"up_to_date": True, "dataset": str(output)}
    refuse_overlap(output, [*genes, manifest, *(item.partition("=")[2] for item in labels)])
    check_output(output, force, "dataset")  # before the work: foreign files, writability
    with atomic_dir(output, "dataset", force=force) as tmp:  # locked until the dataset is in place
        gene_table, cells, assays, bins, feature_names = _compute_and_write(
            tmp, inputs, tracks, params, build, fingerprint, workers, progress)
    return {
        "up_to_date": False,
        "dataset": str(output),
        "genes": len(gene_table),
        "cell_lines": cells,
        "assays": assays,
        "features": len(feature_names),
        "bins": None if bins is None else list(bins.shape),
    }


def _kinds(tracks: pd.DataFrame, kind: str) -> list[str]:
    return list(dict.fromkeys(tracks.loc[tracks["kind"] == kind, "assay"]))


def _chrom_sizes(tracks: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Chromosome sizes per cell line from its bigWig headers (BED files know none)."""
    from epx.io.bigwig import BigWigReader

    out: dict[str, dict[str, int]] = {}
    for r in tracks[tracks["kind"] == "bigwig"].itertuples():
        with BigWigReader(r.path) as reader:
            out.setdefault(r.cell_line, {}).update(reader.chroms())
    return out


def _assemble(genes: pd.DataFrame, cells: list[str], assays: list[str], results: dict, params: FeaturizeParams):
    """Per-cell feature tables (missing assays -> NaN columns) and the binned-track array."""
    frames = []
    columns: list[str] = []
    for (_cell, assay, kind), (table, _b, _c) in results.items():
        tag = "bw" if kind == "bigwig" else "bed"
        for c in table.columns:
            name = f"{assay}.{tag}.{c}"
            if name not in columns:
                columns.append(name)
    order = sorted(columns, key=lambda c: (assays.index(c.split(".")[0]), c.split(".")[1], columns.index(c)))
    for cell in cells:
        parts = {}
        for (c, assay, kind), (table, _b, _cov) in results.items():
            if c != cell:
                continue
            tag = "bw" if kind == "bigwig" else "bed"
            for col in table.columns:
                parts[f"{assay}.{tag}.{col}"] = table[col].to_numpy()
        frame = pd.DataFrame({name: parts.get(name, np.full(len(genes), np.nan)) for name in order})
        frame.insert(0, "cell_line", cell)
        frame.insert(0, "gene_id", genes["gene_id"].to_numpy())
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True)

    bins = cov = None
    if params.bins and any(kind == "bigwig" for (_c, _a, kind) in results):
        bins = np.zeros((len(genes), len(cells), len(assays), params.n_bins), dtype=np.float32)
        cov = np.zeros_like(bins, dtype=np.float16)
        for (cell, assay, kind), (_t, b, c) in results.items():
            if kind == "bigwig" and b is not None:
                bins[:, cells.index(cell), assays.index(assay)] = b
                cov[:, cells.index(cell), assays.index(assay)] = c
    return raw, bins, cov


def _compute_and_write(tmp: Path, inputs, tracks: pd.DataFrame, params: FeaturizeParams, build: str | None,
                       fingerprint: dict[str, Any], workers: int | None, progress: bool):
    """Run every track job, assemble and normalise, and write the dataset files into ``tmp``."""
    gene_table = inputs.genes
    cells = list(dict.fromkeys(tracks["cell_line"]))
    assays = list(dict.fromkeys(tracks["assay"]))
    sizes = _chrom_sizes(tracks)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tracks)))

    results: dict[tuple[str, str, str], tuple] = {}
    jobs = list(tracks.itertuples())
    with console.progress(progress) as bar:
        overall = bar.add_task(f"featurize {len(jobs)} tracks", total=len(jobs))
        per_track = {(r.cell_line, r.assay, r.kind): bar.add_task(f"  {r.cell_line}/{r.assay} {r.kind}", total=1, visible=False)
                     for r in jobs}
        if n_workers == 1:
            for r in jobs:
                key = (r.cell_line, r.assay, r.kind)
                bar.update(per_track[key], visible=True)
                results[key] = _run_track(r.kind, r.path, gene_table, params, sizes.get(r.cell_line))
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
                    futures[pool.submit(_run_track, r.kind, r.path, gene_table, params, sizes.get(r.cell_line))] = key
                    bar.update(per_track[key], visible=True)

                for _ in range(min(n_workers, len(pending))):
                    submit_next()
                while futures:
                    fut = next(as_completed(futures))
                    key = futures.pop(fut)
                    results[key] = fut.result()  # an EpxError in a worker surfaces here, one line
                    bar.update(per_track[key], completed=1, visible=False)
                    bar.advance(overall)
                    if pending:
                        submit_next()

    raw, bins, bins_cov = _assemble(gene_table, cells, assays, results, params)
    raw = derive_features(raw, gene_table, assays)
    normalised = normalise_features(raw)
    feature_names = [c for c in raw.columns if c not in ("gene_id", "cell_line")]
    meta: dict[str, Any] = {
        "kind": "featurize",
        # for shell completion of --test/--holdout without reading the gene table
        "chroms": sorted(set(gene_table["chrom"]), key=chrom_sort_key),
        "cell_lines": cells,
        "assays": assays,
        "features": feature_names,
        "feature_descriptions": dict(feature_catalogue(_kinds(tracks, "bigwig"), _kinds(tracks, "bed"), params)),
        "params": {**asdict(params), "build": build},
        "fingerprint": fingerprint,
        "tracks": [{**r, "format": inputs.formats.get(f"{r['cell_line']}/{r['assay']}/{r['kind']}")}
                   for r in tracks.drop(columns=["line"]).to_dict(orient="records")],
        "bin_size": params.bin_size,
        "n_bins": params.n_bins if bins is not None else 0,
        "normalisation": "log1p (signed for signed features), then z-score per cell line and feature",
    }
    if bins is not None:
        logged = np.log1p(np.clip(bins, 0, None))
        meta["bins_normalisation"] = {
            "mean": logged.mean(axis=(0, 3)).tolist(),
            "sd": np.where(logged.std(axis=(0, 3)) > 0, logged.std(axis=(0, 3)), 1.0).tolist(),
            "uncovered": "bases without data count as 0 in a bin; bins_coverage.npy records the covered fraction",
        }
    label_table = inputs.labels
    write_dataset(tmp, genes=gene_table, labels=label_table, meta=meta, features=normalised,
                  features_raw=raw, bins=bins, bins_coverage=bins_cov)
    return gene_table, cells, assays, bins, feature_names
