"""Per-track feature columns on disk, and the feature tables written from them in bounded memory.

``epx featurize`` used to keep every track's feature table until the last track finished, then
stack them into one (genes x cell lines) x features frame, add the derived families, normalise a
float64 copy and hand both tables to pandas: peak memory grew by ~34 MB per track (20,000 genes).
Here each finished track's table is written to a scratch file at once (float64, one contiguous
column after another), and the dataset's ``features_raw.parquet`` and ``features.parquet`` are
written cell line by cell line in row groups of a few MB, so memory is bounded by one row chunk
and one cell line's derived features, whatever the number of tracks.

The values are those of the in-memory path (every cell line's table stacked, then
``derive_features`` and ``normalise_features``) bit for bit: derived features are row-wise (one cell line's marks), and
the per-cell-line mean and sd of each column are reduced over a C-ordered (genes, >= 2 columns)
block, which numpy sums row after row exactly as it does the whole cell line's block.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from epx.features.derived import (
    DERIVED_INPUTS,
    UNSCALED,
    derived_columns,
    log_features,
    zscore_stats,
)

CHUNK_BYTES = 8 << 20  # float64 values per row chunk or column block


def spill_table(table: pd.DataFrame, path: str | Path) -> list[str]:
    """Write one track's feature table to ``path`` (float64, column after column); its columns."""
    np.ascontiguousarray(table.to_numpy(dtype=np.float64).T).tofile(path)
    return [str(c) for c in table.columns]


@dataclass
class FeatureSpill:
    """The per-track feature files of one featurize run, in a scratch directory."""

    directory: Path
    n_genes: int
    tracks: dict[tuple[str, str, str], tuple[Path, list[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, cell: int, assay: int, kind: str) -> Path:
        return self.directory / f"c{cell}_a{assay}_{kind}.f64"

    def add(self, key: tuple[str, str, str], path: Path, columns: list[str]) -> None:
        self.tracks[key] = (path, columns)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def raw_order(self, assays: list[str]) -> list[str]:
        """Base feature columns in dataset order: by assay, then bigWig before BED, then the engine's order."""
        columns: list[str] = []
        for (_cell, assay, kind), (_path, cols) in self.tracks.items():
            tag = "bw" if kind == "bigwig" else "bed"
            for c in cols:
                name = f"{assay}.{tag}.{c}"
                if name not in columns:
                    columns.append(name)
        return sorted(columns, key=lambda c: (assays.index(c.split(".")[0]), c.split(".")[1], columns.index(c)))

    def _sources(self, cell: str) -> dict[str, tuple[Path, int]]:
        """Base feature name -> (scratch file, column) for one cell line's tracks."""
        out: dict[str, tuple[Path, int]] = {}
        for (c, assay, kind), (path, cols) in self.tracks.items():
            if c == cell:
                tag = "bw" if kind == "bigwig" else "bed"
                for j, col in enumerate(cols):
                    out[f"{assay}.{tag}.{col}"] = (path, j)
        return out

    def write_tables(self, genes: pd.DataFrame, cells: list[str], assays: list[str], raw_path: Path,
                     norm_path: Path) -> list[str]:
        """Write ``features_raw.parquet`` and ``features.parquet``; return the feature names."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = self.n_genes
        order = self.raw_order(assays)
        gene_ids = genes["gene_id"].to_numpy()
        writers: dict[str, pq.ParquetWriter] = {}
        names: list[str] = []
        try:
            for cell in cells:
                reader = _ColumnReader(self._sources(cell), n)
                inputs = pd.DataFrame({c: reader.read(c) for c in order if c.partition(".")[2] in DERIVED_INPUTS})
                derived = derived_columns(inputs, genes, assays, n_rows=n)
                del inputs
                names = [*order, *derived]
                scaled = [c for c in names if c not in UNSCALED]
                mean, sd = self._stats(reader, derived, scaled)
                rows = int(max(1, min(n, CHUNK_BYTES // (8 * max(len(names), 1)))))
                for r0 in range(0, n, rows):
                    r1 = min(n, r0 + rows)
                    raw = {c: (derived[c][r0:r1] if c in derived else reader.read(c, r0, r1)) for c in names}
                    logged = log_features(np.vstack([raw[c] for c in scaled]).T, scaled)
                    z = ((logged - mean) / sd).astype(np.float32)
                    del logged
                    norm = dict(raw)
                    for k, c in enumerate(scaled):
                        norm[c] = z[:, k]
                    for kind, values, path in (("raw", raw, raw_path), ("norm", norm, norm_path)):
                        frame = pd.DataFrame(values)
                        frame.insert(0, "cell_line", cell)
                        frame.insert(0, "gene_id", gene_ids[r0:r1])
                        table = pa.Table.from_pandas(frame, preserve_index=False)
                        if kind not in writers:
                            writers[kind] = pq.ParquetWriter(path, table.schema)
                        writers[kind].write_table(table)
                        del frame, table
                    del raw, norm, z
                reader.close()
        finally:
            for w in writers.values():
                w.close()
        return names

    @staticmethod
    def _stats(reader: _ColumnReader, derived: dict[str, np.ndarray], scaled: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of the logged values of each scaled column over the cell line's genes,
        reduced over C-ordered blocks of >= 2 columns (the same sums as the whole block)."""
        n = reader.n
        width = int(max(2, CHUNK_BYTES // (8 * max(n, 1))))
        mean = np.empty(len(scaled))
        sd = np.empty(len(scaled))
        k = len(scaled)
        starts = list(range(0, k, width))
        for s in starts:
            lo = s if k - s >= 2 or k < 2 else k - 2  # a one-column block would be summed pairwise
            hi = min(k, s + width)
            cols = scaled[lo:hi]
            block = np.empty((n, len(cols)))
            for j, c in enumerate(cols):
                block[:, j] = derived[c] if c in derived else reader.read(c)
            m, d = zscore_stats(log_features(block, cols))
            mean[lo:hi], sd[lo:hi] = m, d
        return mean, sd


class _ColumnReader:
    """Reads one cell line's base feature columns (or row ranges of them) from the scratch files
    with plain reads, never a memory map, so nothing read stays resident; absent -> NaN."""

    def __init__(self, sources: dict[str, tuple[Path, int]], n: int) -> None:
        self.sources = sources
        self.n = n
        self.files: dict[Path, object] = {}

    def read(self, name: str, r0: int = 0, r1: int | None = None) -> np.ndarray:
        r1 = self.n if r1 is None else r1
        out = np.empty(r1 - r0)
        if name not in self.sources:
            out.fill(np.nan)
            return out
        path, j = self.sources[name]
        fh = self.files.get(path)
        if fh is None:
            fh = self.files[path] = open(path, "rb")  # noqa: SIM115 - closed by close()
        fh.seek((j * self.n + r0) * 8)
        if fh.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise OSError(f"short read from {path}")
        return out

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
        self.files.clear()
