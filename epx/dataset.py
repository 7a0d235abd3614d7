"""The dataset directory: the data contract every model backend reads.

Layout (written atomically by ``epx featurize`` and ``epx import``)::

    DATASET/
      dataset.json            epx version, parameters, inputs (size + checksum), cell lines,
                              assays, feature list, normalisation statistics
      genes.parquet           the canonical gene table
      labels.parquet          gene_id, cell_line, value (raw expression); may be empty
      features.parquet        gene_id, cell_line + normalised tabular features (log1p, z-score
                              per cell line and feature)
      features_raw.parquet    the same features before normalisation
      bins.npy                float32 (genes, cell lines, assays, bins): mean signal per bin,
                              strand-oriented (downstream to the right), uncovered bases = 0
      bins_coverage.npy       float16, same shape: fraction of each bin with data
      holdout.tsv             (optional) a split shipped with imported data

With ``epx featurize --fasta REF --sequence-window L``, ``dataset.json`` has a ``sequence`` entry
(the FASTA's absolute path, size, content sample, and L); no sequence is stored: sequence models
get windows built from the FASTA per batch (``Dataset.sequence_rows``). A dataset featurized with
``--fasta`` and without ``--manifest`` has no features or bins, only the reference and labels.

``load_dataset(path)`` gives typed access; the binned arrays are memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from epx._version import __version__
from epx.errors import DatasetError

if TYPE_CHECKING:
    from epx.sequence.windows import SequenceRows

DATASET_FORMAT = 1
META_FILE = "dataset.json"
GEOMETRY_KEYS = ("tss_window", "tss_mode", "promoter", "flank", "n_bins", "bin_size")


def read_parquet_file(path: str | Path, what: str = "epx file") -> pd.DataFrame:
    """A parquet file epx wrote; damage is one line naming it, not a pyarrow traceback."""
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise DatasetError(f"{what} is missing", path=path) from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ValueError...
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0]
        reason = reason.split("': ", 1)[-1]  # pyarrow repeats the path: "Could not open ... 'PATH': why"
        raise DatasetError(f"damaged {what} ({reason}); re-run the epx command that wrote it", path=path) from None


def read_json_file(path: str | Path, what: str = "epx file") -> dict[str, Any]:
    """A JSON object epx wrote (dataset.json, config.json, metrics.json), or one line saying why not."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetError(f"{what} is missing", path=path) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"damaged {what} ({exc}); re-run the epx command that wrote it", path=path) from None
    if not isinstance(data, dict):
        raise DatasetError(f"damaged {what}: expected a JSON object, found {type(data).__name__}; re-run the epx "
                           "command that wrote it", path=path)
    return data


def file_fingerprint(path: str | Path, chunk: int = 1 << 22) -> dict[str, Any]:
    """Size and BLAKE2b checksum of an input file (fast, streamed)."""
    p = Path(path)
    h = hashlib.blake2b(digest_size=16)
    with open(p, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return {"path": str(p.resolve()), "size": p.stat().st_size, "blake2b": h.hexdigest()}


def log1p_zscore(values: np.ndarray, axis: int | tuple[int, ...] = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log1p (of non-negative values) then z-score along ``axis``; returns (z, mean, sd)."""
    logged = np.log1p(np.clip(values, 0, None))
    mean = np.nanmean(logged, axis=axis, keepdims=True)
    sd = np.nanstd(logged, axis=axis, keepdims=True)
    sd = np.where((sd > 0) & np.isfinite(sd), sd, 1.0)
    return (logged - mean) / sd, mean, sd


def write_dataset(
    directory: Path,
    *,
    genes: pd.DataFrame,
    labels: pd.DataFrame | None,
    meta: dict[str, Any],
    features: pd.DataFrame | None = None,
    features_raw: pd.DataFrame | None = None,
    bins: np.ndarray | None = None,
    bins_coverage: np.ndarray | None = None,
    binned: bool = False,
) -> None:
    """Write the dataset files into ``directory`` (a temporary directory the caller renames).
    ``binned``: the binned arrays are already in ``directory`` (featurize's workers wrote them)."""
    directory.mkdir(parents=True, exist_ok=True)
    genes.reset_index(drop=True).to_parquet(directory / "genes.parquet", index=False)
    if labels is None:
        labels = pd.DataFrame({"gene_id": pd.Series(dtype=str), "cell_line": pd.Series(dtype=str),
                               "value": pd.Series(dtype="float64")})
    labels.reset_index(drop=True).to_parquet(directory / "labels.parquet", index=False)
    if features is not None:
        features.to_parquet(directory / "features.parquet", index=False)
    if features_raw is not None:
        features_raw.to_parquet(directory / "features_raw.parquet", index=False)
    if bins is not None:
        np.save(directory / "bins.npy", bins.astype(np.float32, copy=False))
        if bins_coverage is not None:
            np.save(directory / "bins_coverage.npy", bins_coverage.astype(np.float16, copy=False))
    full = {"format": DATASET_FORMAT, "epx_version": __version__, **meta}
    full.setdefault("inputs", {"tabular": features is not None, "binned": bins is not None or binned})
    (directory / META_FILE).write_text(json.dumps(full, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dataset_geometry(meta: dict[str, Any]) -> dict[str, Any]:
    """The featurize geometry a model depends on (windows and bins), from ``dataset.json``."""
    params = dict(meta.get("params") or {})
    params.setdefault("n_bins", meta.get("n_bins"))
    params.setdefault("bin_size", meta.get("bin_size"))
    return {k: params[k] for k in GEOMETRY_KEYS if params.get(k) is not None}


@dataclass
class Dataset:
    """Typed, lazy access to a dataset directory."""

    path: Path
    meta: dict[str, Any]

    @property
    def cell_lines(self) -> list[str]:
        return list(self.meta["cell_lines"])

    @property
    def assays(self) -> list[str]:
        return list(self.meta["assays"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta.get("features", []))

    @property
    def has_tabular(self) -> bool:
        return (self.path / "features.parquet").is_file()

    @property
    def has_binned(self) -> bool:
        return (self.path / "bins.npy").is_file()

    @property
    def geometries(self) -> list[dict[str, Any]]:
        """Every bin geometry (name, bin_size, n_bins, file, coverage, normalisation), the default
        (``bins.npy``) first. Datasets written before geometries existed have one."""
        if "geometries" in self.meta:
            return list(self.meta["geometries"])
        if not self.has_binned:
            return []
        bin_size, n_bins = self.meta.get("bin_size"), self.meta.get("n_bins")
        if not bin_size:  # imported matrices without a recorded bin width
            bin_size = (self.meta.get("params") or {}).get("bin_size") or 0
        if not n_bins:
            n_bins = BinRowReader(self.path / "bins.npy").shape[3]
        return [{"name": f"{bin_size}x{n_bins}", "bin_size": bin_size, "n_bins": n_bins, "file": "bins.npy",
                 "coverage": "bins_coverage.npy", "normalisation": self.meta.get("bins_normalisation")}]

    @property
    def geometry_names(self) -> list[str]:
        return [g["name"] for g in self.geometries]

    def geometry(self, name: str | None = None) -> dict[str, Any]:
        """One geometry by name (None: the default); a DatasetError naming the featurize option otherwise."""
        geometries = self.geometries
        if not geometries:
            raise DatasetError("this dataset has no binned tracks (re-run epx featurize without --no-bins)",
                               path=self.path)
        if name is None:
            return geometries[0]
        for g in geometries:
            if g["name"] == name:
                return g
        raise DatasetError(f"the dataset has no bin geometry {name} (it has {', '.join(self.geometry_names)}); "
                           f"re-run epx featurize with --bins {','.join([*self.geometry_names, name])}", path=self.path)

    @property
    def has_regions(self) -> bool:
        return "regions" in self.meta and (self.path / "regions.parquet").is_file()

    @cached_property
    def regions(self) -> pd.DataFrame:
        """Distal regions: gene_id, cell_line, slot, chrom, start, end, score (featurize --pairs)."""
        if not self.has_regions:
            raise DatasetError("this dataset has no distal regions (re-run epx featurize with --pairs FILE)",
                               path=self.path)
        return read_parquet_file(self.path / "regions.parquet", "dataset regions")

    @property
    def has_sequence(self) -> bool:
        """A reference FASTA was recorded (``epx featurize --fasta``): sequence models can read it."""
        return isinstance(self.meta.get("sequence"), dict)

    @property
    def sequence_window(self) -> int | None:
        return int(self.meta["sequence"]["window"]) if self.has_sequence else None

    def sequence_rows(self, gene_pos: Any = None, window: int | None = None) -> SequenceRows:
        """One-hot reference windows of the genes at ``gene_pos`` (rows of ``genes``, repeats
        allowed: one per (gene, cell line) row; None: every gene), built from the FASTA per batch:
        see :class:`epx.sequence.windows.SequenceRows`. ``window`` defaults to the recorded one.
        A FASTA that moved or changed since featurize is one line naming it."""
        from epx.sequence.windows import SequenceRows, resolve_fasta

        if not self.has_sequence:
            raise DatasetError("this dataset has no reference sequence; re-run epx featurize --fasta REF "
                               "--sequence-window L", path=self.path)
        info = self.meta["sequence"]
        fasta = resolve_fasta(info, self.path)
        pos = np.arange(len(self.genes)) if gene_pos is None else np.asarray(gene_pos, dtype=np.int64)
        genes = self.genes
        return SequenceRows(fasta, genes["chrom"].to_numpy(object)[pos], genes["tss"].to_numpy(np.int64)[pos],
                            int(window or info["window"]), strand=genes["strand"].to_numpy(object)[pos])

    @property
    def input_kinds(self) -> list[str]:
        return [k for k, ok in (("tabular", self.has_tabular), ("binned", self.has_binned),
                                ("sequence", self.has_sequence)) if ok]

    @cached_property
    def genes(self) -> pd.DataFrame:
        return read_parquet_file(self.path / "genes.parquet", "dataset gene table")

    @cached_property
    def labels(self) -> pd.DataFrame:
        return read_parquet_file(self.path / "labels.parquet", "dataset labels")

    def gene_index(self, gene_ids: Any) -> np.ndarray:
        """Row positions in ``genes`` (and in the first axis of ``bins``) of the given gene ids."""
        index = pd.Index(self.genes["gene_id"])
        pos = index.get_indexer(pd.Index(gene_ids))
        if (pos < 0).any():
            missing = pd.Index(gene_ids)[pos < 0]
            raise DatasetError(f"gene {missing[0]!r} is not in the dataset ({(pos < 0).sum()} unknown)", path=self.path)
        return pos

    def features_of_assays(self, names: list[str], assays: Any) -> list[str]:
        """The features that read only the chosen assays: each assay's own (``ASSAY.``) and the
        gene's (length, strand, ...). Features computed across marks (``balance.``, ``index.``,
        ...) are left out, since they would let the other assays back in."""
        chosen = set(assays)
        others = set(self.assays) - chosen
        gene_level = ("gene.", "tss.", "strand.")
        keep = []
        for name in names:
            head = name.split(".", 1)[0]
            if head in chosen or (name.startswith(gene_level) and head not in others):
                keep.append(name)
        return keep

    def features(self, raw: bool = False, cell_lines: list[str] | None = None) -> pd.DataFrame:
        """Tabular features: one row per (gene_id, cell_line)."""
        name = "features_raw.parquet" if raw else "features.parquet"
        if not (self.path / name).is_file():
            raise DatasetError("this dataset has no tabular features (re-run epx featurize)", path=self.path)
        table = read_parquet_file(self.path / name, "dataset features")
        if cell_lines is not None:
            table = table[table["cell_line"].isin(cell_lines)].reset_index(drop=True)
        return table

    def bins(self, normalised: bool = False) -> np.ndarray:
        """Binned tracks (genes, cell lines, assays, bins), memory-mapped; optionally log1p +
        z-scored with the per (cell line, assay) statistics recorded at featurize time."""
        if not self.has_binned:
            raise DatasetError("this dataset has no binned tracks", path=self.path)
        arr = np.load(self.path / "bins.npy", mmap_mode="r")
        if not normalised:
            return arr
        return self.bin_rows(slice(None), slice(None), normalised=True)

    def bin_rows(self, gene_pos: Any, cell_pos: Any, normalised: bool = False,
                 stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Binned tracks (rows, assays, bins) of chosen (gene, cell line) rows, read from the
        memory-mapped array and normalised for those rows only (models stream batches of rows).
        ``stats`` = (mean, sd) per (cell line, assay) replaces the recorded statistics."""
        if not self.has_binned:
            raise DatasetError("this dataset has no binned tracks", path=self.path)
        arr = np.asarray(np.load(self.path / "bins.npy", mmap_mode="r")[gene_pos, cell_pos], dtype=np.float32)
        if not normalised:
            return arr
        if stats is None:  # per (cell line, assay), recorded at featurize time
            stats = (self.meta["bins_normalisation"]["mean"], self.meta["bins_normalisation"]["sd"])
        mean = np.asarray(stats[0], dtype=np.float32)[cell_pos][..., None]
        sd = np.asarray(stats[1], dtype=np.float32)[cell_pos][..., None]
        return ((np.log1p(np.clip(arr, 0, None)) - mean) / sd).astype(np.float32)

    def bin_stats(self, gene_pos: np.ndarray, geometry: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, sd) of log1p bins per (cell line, assay) over the given genes: the statistics
        ``bins_normalisation`` records, for another gene set."""
        arr = np.load(self.path / self.geometry(geometry)["file"], mmap_mode="r")
        shape = arr.shape[1:3]
        mean, sd = np.zeros(shape, np.float64), np.ones(shape, np.float64)
        for c in range(shape[0]):
            logged = np.log1p(np.clip(np.asarray(arr[gene_pos, c], dtype=np.float64), 0, None))
            mean[c] = logged.mean(axis=(0, 2))
            s = logged.std(axis=(0, 2))
            sd[c] = np.where(s > 0, s, 1.0)
        return mean, sd

    def bin_view(self, gene_pos: np.ndarray, cell_pos: np.ndarray, assays: list[str] | None = None,
                 stats: tuple[np.ndarray, np.ndarray] | None = None, geometry: str | None = None) -> BinnedRows:
        """Normalised binned tracks of chosen rows at one geometry (None: the default), read
        lazily: see :class:`BinnedRows`."""
        if not self.has_binned:
            raise DatasetError("this dataset has no binned tracks (re-run epx featurize without --no-bins)",
                               path=self.path)
        geo = self.geometry(geometry)
        assay_pos = None if assays is None else np.array([self.assays.index(a) for a in assays])
        if stats is None:
            stats = (geo["normalisation"]["mean"], geo["normalisation"]["sd"])
        return BinnedRows(self.path / geo["file"], np.asarray(gene_pos), np.asarray(cell_pos), assay_pos, stats)

    def region_view(self, gene_pos: np.ndarray, cell_pos: np.ndarray, assays: list[str] | None = None,
                    geometries: list[str] | None = None,
                    stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> RegionRows:
        """Distal regions of chosen rows at the chosen geometries, read lazily: see :class:`RegionRows`."""
        info = self.meta["regions"] if self.has_regions else None
        if info is None:
            raise DatasetError("this dataset has no distal regions (re-run epx featurize with --pairs FILE)",
                               path=self.path)
        names = list(geometries or self.geometry_names)
        table = self.regions
        r = int(info["max_regions"])
        gidx = pd.Index(self.genes["gene_id"]).get_indexer(table["gene_id"])
        cidx = pd.Index(self.cell_lines).get_indexer(table["cell_line"])
        ok = (gidx >= 0) & (cidx >= 0)
        shape = (len(self.genes), len(self.cell_lines), r)
        score = np.zeros(shape, np.float32)
        index = np.full(shape, -1, np.int64)
        slot = table["slot"].to_numpy(np.int64)[ok]
        score[gidx[ok], cidx[ok], slot] = table["score"].to_numpy(np.float32)[ok]
        index[gidx[ok], cidx[ok], slot] = table["region"].to_numpy(np.int64)[ok]
        n_distinct = int(table["region"].max()) + 1 if len(table) else 0
        width = np.zeros(n_distinct, np.int64)
        width[table["region"].to_numpy(np.int64)] = (table["end"] - table["start"]).to_numpy(np.int64)
        assay_pos = None if assays is None else np.array([self.assays.index(a) for a in assays])
        parts = {}
        for name in names:
            geo = self.geometry(name)
            if name not in info["files"]:
                raise DatasetError(f"the dataset's distal regions lack geometry {name}; re-run epx featurize",
                                   path=self.path)
            st = (stats or {}).get(name) or (geo["normalisation"]["mean"], geo["normalisation"]["sd"])
            parts[name] = (self.path / info["files"][name], int(geo["bin_size"]), int(info["frames"][name]), st)
        return RegionRows(np.asarray(gene_pos), np.asarray(cell_pos), score, index, width, parts, assay_pos)

    def bins_coverage(self) -> np.ndarray:
        return np.load(self.path / "bins_coverage.npy", mmap_mode="r")

    def fold(self, split: pd.DataFrame, name: str, raw: bool = False) -> dict[str, pd.DataFrame]:
        """Tabular features with labels (``value``) of one fold's train, valid and test rows.

        ``split`` is a split table (``epx split``, ``epx.split.make_split``); ``*`` rows expand to
        this dataset's cell lines. The same fold definitions drive ``epx train``.
        """
        from epx.split import expand_cells, iter_folds

        split = expand_cells(split, self.cell_lines).reset_index(drop=True)
        folds = {f.name: f for f in iter_folds(split)}
        if name not in folds:
            raise DatasetError(f"split has no fold {name!r} (folds: {', '.join(folds)})", path=self.path)
        table = split[["gene_id", "cell_line"]].merge(self.features(raw=raw), on=["gene_id", "cell_line"], how="left")
        table = table.merge(self.labels[["gene_id", "cell_line", "value"]], on=["gene_id", "cell_line"], how="left")
        f = folds[name]
        return {part: table.iloc[idx].reset_index(drop=True) for part, idx in (("train", f.train), ("valid", f.valid), ("test", f.test))}

    def holdout_split(self) -> pd.DataFrame | None:
        """A split shipped with the data (e.g. the AttentiveChrome train/valid/test genes)."""
        p = self.path / "holdout.tsv"
        if not p.is_file():
            return None
        from epx.split import read_split

        return read_split(p)


class BinRowReader:
    """Rows (gene, cell line) of ``bins.npy`` (or any array whose first axes are genes and cell
    lines, such as a regions file) read with ``os.pread``, not through a memory map.

    Pages of a memory-mapped file count in the process's resident memory once touched, so an
    epoch over a 616 MB bins file would add 616 MB to the peak RSS; reads land in buffers that are
    freed with the batch instead (the page cache still makes rereads cheap). Rows adjacent in the
    file are read together, so sorted scans read large blocks.
    """

    def __init__(self, path: Path, ndim: int = 4) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(fh)
            self.offset = fh.tell()
        if fortran or len(shape) != ndim:
            raise DatasetError(f"{self.path.name} must be a C-ordered {ndim}-d (genes, cell lines, ...) array, found shape "
                               f"{shape}{' in Fortran order' if fortran else ''}; re-run epx featurize", path=self.path)
        self.shape: tuple[int, ...] = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.row_shape = self.shape[2:]
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self._fh: Any = None

    def read(self, genes: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Raw rows (n, *row_shape), e.g. (n, assays, bins), in the order asked."""
        import os

        if self._fh is None:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - kept open for the reader's lifetime
        flat = np.asarray(genes, dtype=np.int64) * self.shape[1] + np.asarray(cells, dtype=np.int64)
        out = np.empty((len(flat), *self.row_shape), dtype=self.dtype)
        if not len(flat):
            return out
        order = np.argsort(flat, kind="stable")
        ordered = flat[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1  # runs of rows adjacent in the file
        fd = self._fh.fileno()
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(flat)], strict=True):
            size = int(b - a) * self.row_bytes
            data = os.pread(fd, size, self.offset + int(ordered[a]) * self.row_bytes)
            if len(data) != size:
                raise DatasetError("bins.npy is truncated; re-run epx featurize", path=self.path)
            out[order[a:b]] = np.frombuffer(data, dtype=self.dtype).reshape(int(b - a), *self.row_shape)
        return out

    def __del__(self) -> None:
        if self._fh is not None:
            self._fh.close()


class BinnedRows:
    """Binned tracks (rows, assays, bins) of chosen (gene, cell line) rows, normalised on read.

    A lazy stand-in for ``FoldData.X`` of binned models: indexing (``view[idx]``) reads only those
    rows of ``bins.npy`` (:class:`BinRowReader`) and log1p + z-scores them with the per (cell line,
    assay) statistics, so a model streams batches and nothing holds the array, normalised or not
    (20,000 genes x 11 cell lines x 7 assays x 100 bins is 616 MB on disk).
    ``np.asarray(view)`` materialises every row, for models that want it all at once.
    """

    def __init__(self, path: Path, gene_pos: np.ndarray, cell_pos: np.ndarray, assay_pos: np.ndarray | None,
                 stats: tuple[Any, Any], reader: BinRowReader | None = None) -> None:
        self.path = Path(path)
        self.gene_pos = np.asarray(gene_pos, dtype=np.int64)
        self.cell_pos = np.asarray(cell_pos, dtype=np.int64)
        self.assay_pos = None if assay_pos is None else np.asarray(assay_pos, dtype=np.int64)
        self.mean = np.asarray(stats[0], dtype=np.float32)
        self.sd = np.asarray(stats[1], dtype=np.float32)
        if self.assay_pos is not None:  # normalise only the assays asked for
            self.mean, self.sd = self.mean[:, self.assay_pos], self.sd[:, self.assay_pos]
        self._reader = reader

    @property
    def reader(self) -> BinRowReader:
        if self._reader is None:
            self._reader = BinRowReader(self.path)
        return self._reader

    @property
    def shape(self) -> tuple[int, int, int]:
        _, _, n_assays, n_bins = self.reader.shape
        return (len(self.gene_pos), n_assays if self.assay_pos is None else len(self.assay_pos), n_bins)

    @property
    def ndim(self) -> int:
        return 3

    dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.gene_pos)

    def take(self, idx: Any) -> BinnedRows:
        """A view of a subset of rows (nothing is read)."""
        view = BinnedRows(self.path, self.gene_pos[idx], self.cell_pos[idx], None, (self.mean, self.sd), self._reader)
        view.assay_pos = self.assay_pos  # the statistics are already those of the chosen assays
        return view

    def _raw(self, genes: np.ndarray, cells: np.ndarray) -> np.ndarray:
        raw = self.reader.read(genes, cells)
        return raw if self.assay_pos is None else raw[:, self.assay_pos]

    def __getitem__(self, idx: Any) -> np.ndarray:
        """Normalised rows ``idx`` (an int, a slice or an index array), in the order asked."""
        genes, cells = self.gene_pos[idx], self.cell_pos[idx]
        scalar = np.ndim(genes) == 0
        genes, cells = np.atleast_1d(genes), np.atleast_1d(cells)
        raw = self._raw(genes, cells).astype(np.float32, copy=False)
        out = (np.log1p(np.clip(raw, 0, None)) - self.mean[cells][..., None]) / self.sd[cells][..., None]
        out = out.astype(np.float32, copy=False)
        return out[0] if scalar else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(len(self))] if len(self) else np.zeros((0, *self.shape[1:]), np.float32)
        return out if dtype is None else out.astype(dtype)

    def require_finite(self, rows: pd.DataFrame, assays: list[str]) -> None:
        """One line naming the first gene, cell line and assay whose bins hold NaN or inf."""
        bad = self.first_non_finite()
        if bad is not None:
            row, assay = bad
            raise DatasetError(f"binned tracks hold NaN or inf for gene {rows['gene_id'].iat[row]!r} in cell line "
                               f"{rows['cell_line'].iat[row]!r}, assay {assays[assay]!r}; re-run epx featurize "
                               "(or fix the imported matrix)", path=self.path)

    def first_non_finite(self, chunk: int = 8192) -> tuple[int, int] | None:
        """(row, assay) of the first row holding NaN or inf in the raw signal, or None."""
        for start in range(0, len(self), chunk):
            stop = min(start + chunk, len(self))
            bad = ~np.isfinite(self._raw(self.gene_pos[start:stop], self.cell_pos[start:stop]))
            if bad.any():
                row, assay, _ = np.argwhere(bad)[0]
                return start + int(row), int(assay)
        return None


class RegionRows:
    """Distal regions (pCREs) of chosen (gene, cell line) rows, read and normalised per batch.

    ``view[idx]`` gives a dict: ``score`` (n, R) float32 (0 where no region), ``present`` (n, R)
    bool, and per geometry ``NAME`` (n, R, assays, frame) float32 (log1p + z-scored with the
    geometry's promoter statistics, 0 outside the region) and ``NAME.mask`` (n, R, frame) bool
    (True on the region's bins, centred in the frame as Chromoformer does). ``frames`` maps each
    geometry to its frame length in bins. Each distinct region's own bins are stored once (genes
    share pcHi-C fragments; no padding on disk) and read with ``os.pread`` per batch.
    """

    def __init__(self, gene_pos: np.ndarray, cell_pos: np.ndarray, score: np.ndarray, index: np.ndarray,
                 width: np.ndarray, parts: dict[str, tuple[Path, int, int, tuple[Any, Any]]],
                 assay_pos: np.ndarray | None) -> None:
        self.gene_pos = np.asarray(gene_pos, dtype=np.int64)
        self.cell_pos = np.asarray(cell_pos, dtype=np.int64)
        self._score, self._index, self._width, self.parts, self.assay_pos = score, index, width, parts, assay_pos
        self._files: dict[str, Any] = {}
        self.n_regions = int(score.shape[2])
        self.frames = {name: frame for name, (_p, _w, frame, _s) in parts.items()}

    def __len__(self) -> int:
        return len(self.gene_pos)

    def take(self, idx: Any) -> RegionRows:
        view = RegionRows(self.gene_pos[idx], self.cell_pos[idx], self._score, self._index, self._width, self.parts,
                          self.assay_pos)
        view._files = self._files
        return view

    def _layout(self, name: str, bin_size: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Bins and first stored bin of every distinct region (epx.features.windows.region_layout)."""
        key = f"{name}.layout"
        if key not in self._files:
            counts = np.minimum(-(-self._width // bin_size), frame)
            self._files[key] = (counts, np.cumsum(counts) - counts)
        return self._files[key]

    def _file(self, name: str) -> tuple[Any, int, tuple[int, ...], np.dtype]:
        """(open file, data offset, shape (cells, region bins, assays), dtype) of a geometry's regions."""
        if name not in self._files:
            path = self.parts[name][0]
            fh = open(path, "rb")  # noqa: SIM115 - kept open for the view's lifetime
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            if fortran or len(shape) != 3:
                raise DatasetError(f"{path.name} must be a C-ordered (cell lines, region bins, assays) array, found "
                                   f"shape {shape}; re-run epx featurize", path=path)
            self._files[name] = (fh, fh.tell(), tuple(int(x) for x in shape), np.dtype(dtype))
        return self._files[name]

    def __getitem__(self, idx: Any) -> dict[str, np.ndarray]:
        import os

        genes = np.atleast_1d(self.gene_pos[idx])
        cells = np.atleast_1d(self.cell_pos[idx])
        ids = self._index[genes, cells]  # (n, R), -1 where no region
        present = ids >= 0
        width = np.where(present, self._width[np.maximum(ids, 0)], 0)
        out = {"score": np.where(present, self._score[genes, cells], 0).astype(np.float32), "present": present}
        rows, slots = np.nonzero(present)
        for name, (_path, bin_size, frame, stats) in self.parts.items():
            fh, start, shape, dtype = self._file(name)
            n_cells, total, n_all = shape
            mean = np.asarray(stats[0], dtype=np.float32)
            sd = np.asarray(stats[1], dtype=np.float32)
            if self.assay_pos is not None:
                mean, sd = mean[:, self.assay_pos], sd[:, self.assay_pos]
            counts, offsets = self._layout(name, bin_size, frame)
            n = np.minimum(-(-width // bin_size), frame)
            left = -(-(frame - n) // 2)
            k = np.arange(frame)
            mask = (k >= left[..., None]) & (k < (left + n)[..., None]) & present[..., None]  # (n, R, frame)
            n_assays = n_all if self.assay_pos is None else len(self.assay_pos)
            values = np.zeros((len(genes), self.n_regions, n_assays, frame), np.float32)
            row_bytes = n_all * dtype.itemsize
            for r, s in zip(rows, slots, strict=True):
                region, cell = ids[r, s], cells[r]
                count = int(counts[region])
                size = count * row_bytes
                data = os.pread(fh.fileno(), size, start + (int(cell) * total + int(offsets[region])) * row_bytes)
                if len(data) != size:
                    raise DatasetError(f"{Path(_path).name} is truncated; re-run epx featurize", path=_path)
                raw = np.frombuffer(data, dtype=dtype).reshape(count, n_all)
                if self.assay_pos is not None:
                    raw = raw[:, self.assay_pos]
                z = (np.log1p(np.clip(raw, 0, None)) - mean[cell]) / sd[cell]  # (count, assays)
                values[r, s, :, left[r, s]:left[r, s] + count] = z.T
            out[name] = values
            out[f"{name}.mask"] = mask
        return out


def refuse_part(ds: Dataset) -> None:
    """A part split by chromosome (``epx featurize --chroms``) is normalised over its own genes
    only: its features are not final until ``epx merge`` combines the parts."""
    part = ds.meta.get("partial") or {}
    if part.get("chroms"):
        raise DatasetError(f"this dataset is a part (genes on {', '.join(part['chroms'])} only) of a featurize split "
                           "by chromosome; combine the parts with epx merge PART... -o DATASET first", path=ds.path)


def load_dataset(path: str | Path) -> Dataset:
    """Open a dataset directory written by ``epx featurize`` or ``epx import``."""
    p = Path(path)
    meta_path = p / META_FILE
    if not p.is_dir():
        raise DatasetError("dataset directory not found", path=p)
    if not meta_path.is_file():
        raise DatasetError(f"not an epx dataset (no {META_FILE}); create one with epx featurize", path=p)
    meta = read_json_file(meta_path, META_FILE)
    if meta.get("format") != DATASET_FORMAT:
        raise DatasetError(f"dataset format {meta.get('format')} is not supported (expected {DATASET_FORMAT})", path=p)
    for name in ("genes.parquet", "labels.parquet"):
        if not (p / name).is_file():
            raise DatasetError(f"incomplete dataset: {name} is missing", path=p)
    return Dataset(path=p, meta=meta)
