"""The bounded-memory feature tables of featurize (epx.features.spill) hold the values of the
in-memory path: every track's table stacked, then derive_features and normalise_features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

import epx.features.spill as spill
from epx.features.derived import derive_features, normalise_features
from epx.featurize import featurize


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert list(a.dtypes) == list(b.dtypes)
    for c in a.columns:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), c
        else:
            assert (x == y).all(), c


def _run(study, out, monkeypatch, chunk_bytes=None, assays=()):
    if chunk_bytes is not None:
        monkeypatch.setattr(spill, "CHUNK_BYTES", chunk_bytes)
    featurize([study / "genes.tsv"], study / "manifest.tsv", out, workers=1, progress=False, assays=assays)
    return pd.read_parquet(out / "features_raw.parquet"), pd.read_parquet(out / "features.parquet")


def test_streamed_tables_equal_the_in_memory_path(demo_study, tmp_path, monkeypatch):
    raw, norm = _run(demo_study, tmp_path / "ds", monkeypatch, chunk_bytes=64 << 10)  # many row groups
    assert pq.ParquetFile(tmp_path / "ds" / "features.parquet").metadata.num_row_groups > 3
    assert not (tmp_path / "ds" / ".features-scratch").exists()
    genes = pd.read_parquet(tmp_path / "ds" / "genes.parquet")
    assays = list(dict.fromkeys(c.split(".")[0] for c in raw.columns if ".bw." in c or ".bed." in c))
    base = raw[[c for c in raw.columns if c in ("gene_id", "cell_line") or ".bw." in c or ".bed." in c]]
    _same(derive_features(base, genes, assays), raw)
    _same(normalise_features(raw), norm)
    # one row group per cell line's worth of rows: the same values, bit for bit
    raw1, norm1 = _run(demo_study, tmp_path / "ds1", monkeypatch, chunk_bytes=1 << 40)
    _same(raw1, raw)
    _same(norm1, norm)


def test_per_track_columns_do_not_depend_on_the_other_tracks(demo_study, tmp_path, monkeypatch):
    raw, _ = _run(demo_study, tmp_path / "all", monkeypatch)
    sub, _ = _run(demo_study, tmp_path / "sub", monkeypatch, assays=("H3K27ac", "H3K4me3"))
    cols = [c for c in sub.columns if c.startswith(("H3K27ac.bw.", "H3K27ac.bed.", "H3K4me3.bw.", "H3K4me3.bed."))]
    assert cols
    _same(sub[["gene_id", "cell_line", *cols]], raw[["gene_id", "cell_line", *cols]])
