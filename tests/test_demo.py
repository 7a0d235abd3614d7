"""The synthetic demo study: real files in real formats, learnable, deterministic and atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pytest

from epx.demo import ASSAYS, CELL_LINES, CHROM_SIZES, write_demo
from epx.errors import EpxError, OutputExistsError

ML4G_HEADER = "gene_name\tchr\tgene_start\tgene_end\tTSS_start\tTSS_end\tstrand"
KEYS = {"genes", "chrom_sizes", "manifest", "labels_X1", "labels_X2", "labels_X3", "test_genes"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict[str, Path], list[str]]:
    messages: list[str] = []
    out = tmp_path_factory.mktemp("demo") / "study"
    paths = write_demo(out, n_genes=400, seed=0, progress=messages.append)
    return out, paths, messages


def _genes(directory: Path) -> pd.DataFrame:
    return pd.read_csv(directory / "genes.tsv", sep="\t")


def _tss(genes: pd.DataFrame) -> np.ndarray:
    return np.where(genes["strand"] == "+", genes["TSS_start"], genes["TSS_end"] - 1)


def _promoter_means(bw_path: Path, genes: pd.DataFrame, flank: int = 1000) -> np.ndarray:
    bw = pyBigWig.open(str(bw_path))
    try:
        values = [
            bw.stats(c, int(t) - flank, int(t) + flank, type="mean", exact=True)[0]
            for c, t in zip(genes["chr"], _tss(genes), strict=True)
        ]
    finally:
        bw.close()
    return np.array([0.0 if v is None else v for v in values])


def _labels(directory: Path, cell: str) -> pd.DataFrame:
    return pd.read_csv(directory / "labels" / f"{cell}.tsv", sep="\t")


def test_returns_main_paths_that_exist(demo):
    out, paths, messages = demo
    assert set(paths) == KEYS
    assert all(p.is_file() and out in p.parents for p in paths.values())
    assert (out / "README.md").read_text().count("seed=0") == 1
    assert messages, "progress callback was never called"
    leftovers = [p.name for p in out.parent.iterdir() if p.name != out.name]
    assert leftovers == [], "the temporary build directory was not cleaned up"


def test_chrom_sizes(demo):
    out, paths, _ = demo
    rows = [line.split("\t") for line in paths["chrom_sizes"].read_text().splitlines()]
    assert [r[0] for r in rows] == list(CHROM_SIZES)
    assert "chrX" in CHROM_SIZES and len(rows) == 8
    assert all(4_000_000 <= int(r[1]) <= 12_000_000 for r in rows)


def test_gene_table_is_ml4g(demo):
    out, paths, _ = demo
    assert paths["genes"].read_text().splitlines()[0] == ML4G_HEADER
    genes = _genes(out)
    assert len(genes) == 400
    assert genes["gene_name"].is_unique
    assert set(genes["strand"]) == {"+", "-"}
    assert 0.35 < (genes["strand"] == "+").mean() < 0.65
    length = genes["gene_end"] - genes["gene_start"]
    assert length.between(500, 300_000).all()
    assert 8_000 < length.median() < 40_000
    assert (genes["TSS_end"] - genes["TSS_start"] == 50).all()
    assert (genes["TSS_start"] >= genes["gene_start"]).all()
    assert (genes["TSS_end"] <= genes["gene_end"]).all()
    plus = genes["strand"] == "+"
    assert (genes.loc[plus, "TSS_start"] == genes.loc[plus, "gene_start"]).mean() > 0.5
    assert (genes.loc[~plus, "TSS_end"] == genes.loc[~plus, "gene_end"]).mean() > 0.5
    sizes = genes["chr"].map(CHROM_SIZES)
    assert (genes["gene_start"] >= 0).all() and (genes["gene_end"] <= sizes).all()
    assert genes["chr"].value_counts().nunique() > 1, "gene counts per chromosome should vary"
    test = pd.read_csv(paths["test_genes"], sep="\t")
    assert paths["test_genes"].read_text().splitlines()[0] == ML4G_HEADER
    assert set(test["chr"]) == {"chr1"}
    assert test["gene_name"].tolist() == genes.loc[genes["chr"] == "chr1", "gene_name"].tolist()


@pytest.mark.parametrize("cell", CELL_LINES)
def test_labels_are_cage_like(demo, cell):
    out, paths, _ = demo
    assert paths[f"labels_{cell}"].read_text().splitlines()[0] == "gene_name\tgex"
    labels = _labels(out, cell)
    assert labels["gene_name"].tolist() == _genes(out)["gene_name"].tolist()
    gex = labels["gex"].to_numpy()
    assert (gex >= 0).all()
    assert 0.35 <= (gex == 0).mean() <= 0.65
    positive = gex[gex > 0]
    assert positive.max() > 20 * np.median(positive), "expected a heavy tail"
    assert 500 < positive.max() < 100_000


def test_cell_lines_share_but_differ(demo):
    out, _, _ = demo
    logs = pd.DataFrame({c: np.log1p(_labels(out, c)["gex"]) for c in CELL_LINES})
    corr = logs.corr(method="spearman")
    off = corr.to_numpy()[~np.eye(3, dtype=bool)]
    assert (off > 0.3).all() and (off < 0.95).all()


def test_manifest(demo):
    out, paths, _ = demo
    manifest = pd.read_csv(paths["manifest"], sep="\t")
    assert list(manifest.columns) == ["cell_line", "assay", "kind", "path"]
    assert len(manifest) == 42
    assert set(manifest["kind"]) == {"bigwig", "bed"}
    assert set(zip(manifest["cell_line"], manifest["assay"], manifest["kind"], strict=True)) == {
        (c, a, k) for c in CELL_LINES for a in ASSAYS for k in ("bigwig", "bed")
    }
    for rel in manifest["path"]:
        assert not Path(rel).is_absolute()
        assert (paths["manifest"].parent / rel).is_file()


def test_bigwigs_open_and_mark_expressed_promoters(demo):
    out, _, _ = demo
    genes = _genes(out)
    for cell in CELL_LINES:
        expressed = _labels(out, cell)["gex"].to_numpy() > 0
        for assay in ASSAYS:
            bw = pyBigWig.open(str(out / "tracks" / cell / f"{assay}.bw"))
            assert bw.isBigWig()
            assert bw.chroms() == CHROM_SIZES
            bw.close()
        for assay in ("H3K4me3", "H3K27ac", "DNase"):
            signal = _promoter_means(out / "tracks" / cell / f"{assay}.bw", genes)
            assert signal[expressed].mean() > 1.5 * signal[~expressed].mean(), (cell, assay)
        repressed = _promoter_means(out / "tracks" / cell / "H3K27me3.bw", genes)
        assert repressed[~expressed].mean() > repressed[expressed].mean()


def test_bigwigs_leave_gaps_without_data(demo):
    out, _, _ = demo
    bw = pyBigWig.open(str(out / "tracks" / "X1" / "H3K4me3.bw"))
    try:
        covered = bw.header()["nBasesCovered"]
        assert covered < 0.5 * sum(CHROM_SIZES.values())
        assert bw.intervals("chr1", 0, 50_000) is None or len(bw.intervals("chr1", 0, 50_000)) == 0
    finally:
        bw.close()


def test_h3k4me3_predicts_expression(demo):
    out, _, _ = demo
    signal = _promoter_means(out / "tracks" / "X1" / "H3K4me3.bw", _genes(out))
    gex = _labels(out, "X1")["gex"]
    rho = pd.Series(signal).corr(gex, method="spearman")
    assert 0.3 < rho < 0.95


def test_narrowpeaks(demo):
    out, _, _ = demo
    for cell in CELL_LINES:
        for assay in ASSAYS:
            path = out / "tracks" / cell / f"{assay}.narrowPeak"
            peaks = pd.read_csv(path, sep="\t", header=None, dtype={0: str})
            assert peaks.shape[1] == 10 and len(peaks) > 10, path
            assert (peaks[5] == ".").all()
            assert (peaks[1] < peaks[2]).all() and (peaks[1] >= 0).all()
            assert peaks[4].between(0, 1000).all()
            assert (peaks[9] >= 0).all() and (peaks[9] < peaks[2] - peaks[1]).all()
            assert peaks[3].is_unique
            for _, group in peaks.groupby(0, sort=False):
                assert group[1].is_monotonic_increasing


def test_peaks_include_non_promoter_sites(demo):
    out, _, _ = demo
    genes = _genes(out)
    peaks = pd.read_csv(out / "tracks" / "X1" / "H3K27ac.narrowPeak", sep="\t", header=None)
    tss = _tss(genes)
    far = 0
    for chrom, group in peaks.groupby(0):
        t = np.sort(tss[genes["chr"] == chrom])
        mid = (group[1] + group[9]).to_numpy()
        i = np.clip(np.searchsorted(t, mid), 1, len(t) - 1)
        dist = np.minimum(np.abs(mid - t[i - 1]), np.abs(mid - t[i]))
        far += int((dist > 10_000).sum())
    assert far > 20


def test_x3_peaks_use_ensembl_names(demo):
    out, _, _ = demo
    ensembl = {c[3:] for c in CHROM_SIZES}
    for assay in ASSAYS:
        x3 = pd.read_csv(out / "tracks" / "X3" / f"{assay}.narrowPeak", sep="\t", header=None, dtype={0: str})
        assert set(x3[0]) <= ensembl
        x1 = pd.read_csv(out / "tracks" / "X1" / f"{assay}.narrowPeak", sep="\t", header=None, dtype={0: str})
        assert set(x1[0]) <= set(CHROM_SIZES)
    bw = pyBigWig.open(str(out / "tracks" / "X3" / "H3K4me3.bw"))
    assert "chr1" in bw.chroms()
    bw.close()


def test_deterministic_refuses_and_overwrites(demo, tmp_path):
    out, _, _ = demo
    again = tmp_path / "again"
    write_demo(again, n_genes=400, seed=0)
    for rel in ["genes.tsv", "test_genes.tsv", "labels/X1.tsv", "labels/X2.tsv", "labels/X3.tsv",
                "manifest.tsv", "tracks/X2/H3K4me3.bw", "tracks/X3/DNase.narrowPeak"]:
        assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel

    with pytest.raises(OutputExistsError):
        write_demo(again, n_genes=400, seed=1)
    assert (again / "genes.tsv").read_bytes() == (out / "genes.tsv").read_bytes()

    (again / "thesis.tex").write_text("a user's file")  # --force never deletes what epx did not write
    with pytest.raises(EpxError, match="holds thesis.tex, which epx did not write"):
        write_demo(again, n_genes=400, seed=1, force=True)
    assert (again / "thesis.tex").read_text() == "a user's file"
    (again / "thesis.tex").unlink()
    write_demo(again, n_genes=400, seed=1, force=True)
    assert (again / "genes.tsv").read_bytes() != (out / "genes.tsv").read_bytes()
    assert (again / "labels" / "X1.tsv").read_bytes() != (out / "labels" / "X1.tsv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def test_too_few_genes_is_an_error(tmp_path):
    with pytest.raises(EpxError):
        write_demo(tmp_path / "tiny", n_genes=3)
    assert not (tmp_path / "tiny").exists()


def test_default_size(tmp_path):
    out = tmp_path / "full"
    paths = write_demo(out)
    genes = pd.read_csv(paths["genes"], sep="\t")
    assert len(genes) == 2000
    per_chrom = genes["chr"].value_counts()
    assert set(per_chrom.index) == set(CHROM_SIZES)
    assert (per_chrom >= 100).all()
    assert per_chrom.nunique() > 1
    for bw in (out / "tracks").glob("*/*.bw"):
        assert bw.stat().st_size < 5_000_000, bw
    signal = _promoter_means(out / "tracks" / "X1" / "H3K4me3.bw", genes)
    rho = pd.Series(signal).corr(pd.read_csv(paths["labels_X1"], sep="\t")["gex"], method="spearman")
    assert 0.4 < rho < 0.9
    for cell in CELL_LINES:
        gex = pd.read_csv(paths[f"labels_{cell}"], sep="\t")["gex"]
        assert 0.35 <= (gex == 0).mean() <= 0.65
        assert 1_000 < gex.max() < 100_000, "the maximum should be in the thousands"
