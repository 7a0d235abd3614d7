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
KEYS = {"genes", "chrom_sizes", "manifest", "labels_X1", "labels_X2", "labels_X3", "test_genes", "pairs", "links"}


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
                "manifest.tsv", "tracks/X2/H3K4me3.bw", "tracks/X3/DNase.narrowPeak", "tracks/X1/H3K27ac.bw",
                "pairs.bedpe", "links.tsv"]:
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


# -- distal enhancers linked by contacts (pairs.bedpe) -------------------------------------------

PAIRS_GENES = 1500
GEOMETRIES = "2000x20,500x80"
# Measured (seed 0, 1500 genes, held-out chr1-chr2): Pearson 0.601 -> 0.633, Spearman 0.629 ->
# 0.670 with the regions; on the linked genes alone Pearson 0.490 -> 0.564.
PEARSON_GAIN, SPEARMAN_GAIN, LINKED_PEARSON_GAIN = 0.025, 0.03, 0.06


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    """`epx demo` and `epx featurize --pairs` through the real CLI: (demo dir, dataset)."""
    from typer.testing import CliRunner

    import epx
    from epx.cli import app

    root = tmp_path_factory.mktemp("linked")
    study, out = root / "study", root / "dataset"
    runner = CliRunner()
    result = runner.invoke(app, ["demo", str(study), "--n-genes", str(PAIRS_GENES)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    labels = [arg for c in CELL_LINES for arg in ("--labels", f"{c}={study / 'labels' / f'{c}.tsv'}")]
    result = runner.invoke(app, ["featurize", "--genes", str(study / "genes.tsv"), "--manifest",
                                 str(study / "manifest.tsv"), *labels, "--pairs", str(study / "pairs.bedpe"),
                                 "--bins", GEOMETRIES, "--workers", "2", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "trans contacts skipped" in warnings[0], warnings
    return study, epx.load_dataset(out)


def _true_slots(study: Path, ds) -> tuple[np.ndarray, pd.DataFrame]:
    """(genes, cells, regions) bool: the dataset's region slots that hold a true linked enhancer."""
    links = pd.read_csv(study / "links.tsv", sep="\t")
    links["g"] = pd.Index(ds.genes["gene_name"]).get_indexer(links["gene_name"])
    reg = ds.regions.assign(g=pd.Index(ds.genes["gene_id"]).get_indexer(ds.regions["gene_id"]),
                            c=pd.Index(ds.cell_lines).get_indexer(ds.regions["cell_line"]))
    both = reg.merge(links, on=["g", "chrom"], suffixes=("", "_link"))
    both = both[(both["start"] <= both["start_link"]) & (both["end_link"] <= both["end"])]
    true = np.zeros((len(ds.genes), len(ds.cell_lines), int(ds.meta["regions"]["max_regions"])), dtype=bool)
    true[both["g"], both["c"], both["slot"]] = True
    return true, links


def test_linked_enhancers_are_distal_and_weighted(linked):
    study, ds = linked
    links = pd.read_csv(study / "links.tsv", sep="\t")
    assert list(links.columns) == ["gene_name", "chrom", "start", "end", "tss_distance", "weight"]
    per_gene = links.groupby("gene_name").size()
    assert 0.33 < len(per_gene) / PAIRS_GENES < 0.47
    assert per_gene.between(1, 3).all() and set(per_gene) == {1, 2, 3}
    assert (links["end"] - links["start"]).between(1_000, 4_000).all()
    # nothing of an enhancer (its extent plus the tails of its marks) within TSS +- 20 kb
    from epx.demo import _LINKED_EXTENT

    near_edge = links["tss_distance"].abs() - (links["end"] - links["start"]) / 2 - max(map(abs, _LINKED_EXTENT))
    assert links["tss_distance"].abs().between(30_000, 150_000).all() and (near_edge > 20_000).all()
    # and outside its own gene and the gene's 5 kb downstream flank
    genes = _genes(study).set_index("gene_name").loc[links["gene_name"]]
    lo, hi = genes["gene_start"].to_numpy() - 5_000, genes["gene_end"].to_numpy() + 5_000
    assert ((links["end"].to_numpy() <= lo) | (links["start"].to_numpy() >= hi)
            | (links["tss_distance"].to_numpy() * np.where(genes["strand"] == "+", 1, -1) < 0)).all()


def test_linked_genes_take_half_their_expression_from_enhancers():
    from epx import demo

    rng = np.random.default_rng([0, 0])
    genes = demo._make_genes(rng, PAIRS_GENES)
    links = demo._link_enhancers(np.random.default_rng([0, 2]), genes, len(CELL_LINES))
    bio = demo._biology(rng, genes, int(1.5 * PAIRS_GENES), links=links)
    has = np.bincount(links["gene"], minlength=PAIRS_GENES) > 0
    y = np.log1p(bio["gex"][has]).ravel()
    from_enhancers = np.corrcoef(y, bio["link_drive"][has].ravel())[0, 1] ** 2  # measured 0.40
    from_promoter = np.corrcoef(y, bio["activity"][has].ravel())[0, 1] ** 2  # measured 0.27
    assert 0.3 < from_enhancers < 0.55 and from_promoter < from_enhancers
    # enhancer activity is independent of the promoter's
    assert abs(np.corrcoef(bio["link_drive"][has].ravel(), bio["activity"][has].ravel())[0, 1]) < 0.1
    # H3K36me3 follows the promoter-driven expression only: the distal part is in no gene-body mark
    assert (bio["body_gex"][~has] == bio["gex"][~has]).all()


def test_pairs_file_is_bedpe_with_scored_links(linked):
    from epx.io.pairs import read_pairs

    study, ds = linked
    pairs = pd.read_csv(study / "pairs.bedpe", sep="\t", header=None, dtype={0: str, 3: str})
    assert pairs.shape[1] == 8 and (pairs[6] == ".").all()
    assert pairs[7].between(5, 30).all()
    width1, width2 = pairs[2] - pairs[1], pairs[5] - pairs[4]
    assert width1.between(2_000, 10_000).all() and (width2 > 0).all() and (width2 <= 10_000).all()
    links = pd.read_csv(study / "links.tsv", sep="\t")
    cis = pairs[0] == pairs[3]
    assert 3 <= (~cis).sum() <= 0.02 * len(pairs)
    # every true link is there, with about as many non-functional contacts, which score lower
    key = pairs[[3, 4, 5]].to_numpy()
    true = np.zeros(len(pairs), dtype=bool)
    for chrom, start, end in links[["chrom", "start", "end"]].itertuples(index=False):
        true |= (key[:, 0] == chrom) & (key[:, 1] <= start) & (key[:, 2] >= end)
    assert true.sum() >= len(links)
    assert 0.8 < (~true).sum() / true.sum() < 1.3
    assert pairs.loc[true, 7].mean() > pairs.loc[~true, 7].mean() + 5
    res = read_pairs(study / "pairs.bedpe", ds.genes, chrom_sizes=CHROM_SIZES)
    assert len(res.warnings) == 1 and "trans contacts skipped" in res.warnings[0]
    assert res.stats["trans_skipped"] == (~cis).sum() and res.stats["no_gene"] >= 3
    assert res.stats["overlaps_tss"] == 0 and res.stats["past_chrom_end"] == 0


def test_featurize_pairs_records_regions_with_signal_at_links(linked):
    study, ds = linked
    true, links = _true_slots(study, ds)
    meta = ds.meta["regions"]
    share = {c: n / PAIRS_GENES for c, n in meta["genes_with_regions"].items()}
    # the linked ~40% plus the genes that only have non-functional contacts (measured 0.80)
    assert set(share) == set(CELL_LINES) and all(0.65 < v < 0.9 for v in share.values()), share
    found = true.any(axis=1).sum(axis=1)  # per gene: slots holding a true enhancer (same in all cells)
    per_gene = links.groupby("g").size()
    assert (found[per_gene.index] >= 0.95 * per_gene.to_numpy()).mean() > 0.95
    # regions_500x80.npy: (cells, region bins, assays), each distinct region's bins back to back
    raw = np.load(ds.path / meta["files"]["500x80"])[..., ds.assays.index("H3K27ac")]
    reg = ds.regions
    distinct = reg.drop_duplicates("region").sort_values("region")
    counts = np.minimum(-(-(distinct["end"] - distinct["start"]).to_numpy() // 500), 80)
    per_region = np.add.reduceat(raw, np.cumsum(counts) - counts, axis=1)  # (cells, distinct regions)
    gi = pd.Index(ds.genes["gene_id"]).get_indexer(reg["gene_id"])
    ci = pd.Index(ds.cell_lines).get_indexer(reg["cell_line"])
    signal = np.zeros(true.shape)  # (genes, cells, regions)
    signal[gi, ci, reg["slot"]] = per_region[ci, reg["region"]]
    present = np.zeros_like(true)
    present[gi, ci, reg["slot"]] = True
    assert (signal[true] > 0).mean() > 0.95  # measured 0.99
    assert signal[true].mean() > 2 * signal[present & ~true].mean()


def _ridge(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alpha: float = 100.0) -> np.ndarray:
    mean, sd = x_train.mean(axis=0), x_train.std(axis=0)
    sd[sd == 0] = 1.0
    a, b = (x_train - mean) / sd, (x_test - mean) / sd
    beta = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y_train - y_train.mean()))
    return b @ beta + y_train.mean()


def test_distal_regions_add_what_the_promoter_lacks(linked):
    """A ridge on the promoter bins (TSS +- 20 kb, as Chromoformer without pairs sees it) against
    the same plus per-gene summaries of the regions, trained on chr3-chrX, tested on chr1-chr2."""
    from epx.metrics import pearson, spearman

    study, ds = linked
    n, cells = len(ds.genes), ds.cell_lines
    gpos, cpos = np.repeat(np.arange(n), len(cells)), np.tile(np.arange(len(cells)), n)
    rows = pd.MultiIndex.from_arrays([ds.genes["gene_id"].to_numpy()[gpos], np.array(cells)[cpos]])
    y = np.log1p(ds.labels.set_index(["gene_id", "cell_line"])["value"].reindex(rows).to_numpy())
    promoter = np.asarray(ds.bin_view(gpos, cpos, geometry="2000x20")[np.arange(len(gpos))]).reshape(len(gpos), -1)
    view = ds.region_view(gpos, cpos, assays=["H3K27ac", "H3K4me1", "DNase"], geometries=["500x80"])
    r = view[np.arange(len(gpos))]
    z, mask, present = r["500x80"], r["500x80.mask"], r["present"]
    mean_z = (z * mask[:, :, None, :]).sum(-1) / np.maximum(mask.sum(-1), 1)[:, :, None]  # (rows, slots, 3)
    score = (r["score"] / 30.0)[:, :, None]
    regions = np.c_[(mean_z * present[:, :, None]).reshape(len(gpos), -1),  # each slot, weighted by presence
                    (mean_z * present[:, :, None]).sum(1), (mean_z * score).sum(1), (mean_z * score**2).sum(1),
                    present.sum(1), r["score"].sum(1)]
    test = np.isin(ds.genes["chrom"].to_numpy()[gpos], ["chr1", "chr2"])
    without = _ridge(promoter[~test], y[~test], promoter[test])
    both = np.c_[promoter, regions]
    with_regions = _ridge(both[~test], y[~test], both[test])
    p0, p1 = pearson(y[test], without), pearson(y[test], with_regions)
    s0, s1 = spearman(y[test], without), spearman(y[test], with_regions)
    assert p1 > p0 + PEARSON_GAIN and s1 > s0 + SPEARMAN_GAIN, (p0, p1, s0, s1)
    linked_genes = ds.genes["gene_name"].isin(pd.read_csv(study / "links.tsv", sep="\t")["gene_name"]).to_numpy()
    on = linked_genes[gpos][test]
    q0, q1 = pearson(y[test][on], without[on]), pearson(y[test][on], with_regions[on])
    assert q1 > q0 + LINKED_PEARSON_GAIN, (q0, q1)
