"""Contact pairs (pcHi-C BEDPE and Chromoformer metadata) read into per-gene distal regions."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from epx.errors import EpxError, InputFileError
from epx.io.genes import read_genes
from epx.io.pairs import STAT_KEYS, TABLE_COLUMNS, read_pairs

# TSSs: A chr1:1000 (+), B chr1:29999 (-), C chr1:50000 (+), D chr2:1000 (+)
GENE_BED = (
    "chr1\t1000\t5000\tENSG00000000001.5\t0\t+\n"
    "chr1\t20000\t30000\tENSG00000000002\t0\t-\n"
    "chr1\t50000\t60000\tENSG00000000003.1\t0\t+\n"
    "2\t1000\t4000\tENSG00000000004\t0\t+\n"
)
A, B, C, D = "ENSG00000000001.5", "ENSG00000000002", "ENSG00000000003.1", "ENSG00000000004"


@pytest.fixture
def genes(tmp_path):
    path = tmp_path / "genes.bed"
    path.write_text(GENE_BED)
    return read_genes(path)


def write(path, *rows, header: str | None = None):
    lines = ([header] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def regions(pairs, gene_id):
    t = pairs.table[pairs.table["gene_id"] == gene_id]
    return [(c, s, e, sc) for c, s, e, sc in t[["chrom", "start", "end", "score"]].itertuples(index=False)]


def error(exc_info, path, line=None):
    """The message names the file (and line) and fits on one line."""
    text = str(exc_info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:{line}: " if line else f"{path}: "), text
    return text


BASIC = [
    ("chr1", 900, 1100, "chr1", 10000, 12000, ".", 5.0),  # A's promoter on side 1
    ("chr1", 70000, 71000, "chr1", 29000, 30500, ".", 3.0),  # B's promoter on side 2
    ("chr1", 900, 1100, "chr2", 10000, 12000, ".", 9.0),  # trans
    ("chr1", 80000, 81000, "chr1", 90000, 91000, ".", 2.0),  # no TSS on either side
]


def test_bedpe_plain_promoter_either_side(tmp_path, genes):
    pairs = read_pairs(write(tmp_path / "p.bedpe", *BASIC), genes)
    assert list(pairs.table.columns) == TABLE_COLUMNS
    t = pairs.table
    assert pd.api.types.is_string_dtype(t["gene_id"]) and pd.api.types.is_string_dtype(t["chrom"])
    assert t[["slot", "start", "end", "score"]].dtypes.astype(str).tolist() == ["int64"] * 3 + ["float64"]
    assert regions(pairs, A) == [("chr1", 10000, 12000, 5.0)]
    assert regions(pairs, B) == [("chr1", 70000, 71000, 3.0)]
    assert pairs.table["gene_id"].tolist() == [A, B]  # gene-table order
    assert set(pairs.stats) >= set(STAT_KEYS)
    assert pairs.stats["lines"] == 4 and pairs.stats["pairs_used"] == 2
    assert pairs.stats["trans_skipped"] == 1 and pairs.stats["no_gene"] == 1
    assert pairs.stats["genes_with_regions"] == 2 and pairs.stats["regions_kept"] == 2
    assert pairs.warnings == [f"{tmp_path / 'p.bedpe'}: 1 trans contacts skipped (regions on another "
                              "chromosome than their gene)"]


def test_bedpe_gzipped_header_comments_and_track_lines(tmp_path, genes):
    plain = read_pairs(write(tmp_path / "p.bedpe", *BASIC), genes).table
    gz = tmp_path / "p.bedpe.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("# made by a test\ntrack name=loops\nbrowser position chr1:1-100\n")
        fh.write("chrom1\tstart1\tend1\tchrom2\tstart2\tend2\tname\tscore\n")
        fh.writelines("\t".join(map(str, r)) + "\n" for r in BASIC)
    pd.testing.assert_frame_equal(read_pairs(gz, genes).table, plain)
    hidden = tmp_path / "gzipped.txt"  # gzip recognised by content, not suffix
    hidden.write_bytes(gz.read_bytes())
    pd.testing.assert_frame_equal(read_pairs(hidden, genes).table, plain)
    header = write(tmp_path / "h.bedpe", *BASIC, header="chr1\tx1\ty1\tchr2\tx2\ty2\tname\tscore")
    pairs = read_pairs(header, genes)
    pd.testing.assert_frame_equal(pairs.table, plain)
    assert pairs.stats["lines"] == 4


def test_promoter_promoter_contacts_give_both_genes_a_region(tmp_path, genes):
    path = write(tmp_path / "pp.bedpe", ("chr1", 500, 1500, "chr1", 29500, 30500, "x", 4))
    pairs = read_pairs(path, genes)
    assert regions(pairs, A) == [("chr1", 29500, 30500, 4.0)]
    assert regions(pairs, B) == [("chr1", 500, 1500, 4.0)]
    assert pairs.stats["pairs_used"] == 1


def test_ensembl_chromosome_names_mix(tmp_path, genes):
    path = write(tmp_path / "p.bedpe", ("1", 900, 1100, "chr1", 10000, 12000, ".", 1),
                 ("chr2", 900, 1100, "2", 7000, 8000, ".", 2), ("MT", 1, 2, "chrM", 5, 6, ".", 1))
    pairs = read_pairs(path, genes)
    assert regions(pairs, A) == [("chr1", 10000, 12000, 1.0)]
    assert regions(pairs, D) == [("chr1".replace("1", "2"), 7000, 8000, 2.0)]
    assert pairs.stats["trans_skipped"] == 0 and pairs.stats["no_gene"] == 1


def test_name_column_holds_gene_ids_versioned_or_not(tmp_path, genes):
    path = write(
        tmp_path / "named.bedpe",
        ("chr1", 40000, 41000, "chr1", 900, 1100, "ENSG00000000001", 7),  # unversioned; TSS on side 2
        ("chr1", 60000, 61000, "chr1", 45000, 46000, "ENSG00000000003.9", 6),  # other version; no side holds the TSS
        ("chr1", 29000, 30500, "chr1", 70000, 71000, "ENSG00000000002", 1),  # TSS in side 1
        ("chr1", 100, 200, "chr1", 300, 400, "ENSG00000000004", 1),  # D lives on chr2
        ("chr1", 100, 200, "chr1", 300, 400, "ENSG00000099999.1", 1),
        ("chr1", 100, 200, "chr1", 300, 400, "ENSG00000099999.1", 1),
        ("chr1", 100, 200, "chr1", 300, 400, "ENSG00000088888", 1),
    )
    pairs = read_pairs(path, genes)
    assert regions(pairs, A) == [("chr1", 40000, 41000, 7.0)]
    assert regions(pairs, C) == [("chr1", 60000, 61000, 6.0)]  # side 2's midpoint is nearer the TSS
    assert regions(pairs, B) == [("chr1", 70000, 71000, 1.0)]
    assert pairs.stats["unknown_genes"] == 2 and pairs.stats["trans_skipped"] == 1
    assert f"{path}: 2 gene ids not in the gene table skipped (3 lines; first: ENSG00000099999.1 " \
           "at line 5)" in pairs.warnings


def test_no_known_named_gene_is_an_error(tmp_path, genes):
    path = write(tmp_path / "mouse.bedpe", ("chr1", 1, 2, "chr1", 5, 6, ".", 1),
                 ("chr1", 100, 200, "chr1", 300, 400, "ENSMUSG00000051951", 1),
                 ("chr1", 100, 200, "chr1", 300, 400, "ENSMUSG00000025900.3", 1))
    with pytest.raises(InputFileError) as exc:
        read_pairs(path, genes)
    text = error(exc, path, 2)
    assert "none of the 2 genes named in the pairs file are in the gene table" in text
    assert "first: ENSMUSG00000051951" in text


def test_unscored_files_weigh_regions_equally_nearest_first(tmp_path, genes):
    rows = [("chr1", 900, 1100, "chr1", 9000, 9500), ("chr1", 900, 1100, "chr1", 3000, 3500),
            ("chr1", 900, 1100, "chr1", 6000, 6500)]
    for name, extra in (("six.bedpe", ()), ("seven.bedpe", (".",)), ("dots.bedpe", (".", "."))):
        path = write(tmp_path / name, *[r + extra for r in rows])
        pairs = read_pairs(path, genes, max_regions=2)
        assert regions(pairs, A) == [("chr1", 3000, 3500, 1.0), ("chr1", 6000, 6500, 1.0)]
        assert pairs.stats["dropped_over_max"] == 1
        assert [w for w in pairs.warnings if "no scores" in w] == [
            f"{path}: the file has no scores; every region scores 1.0, so each gene keeps the "
            "regions nearest its TSS"]


def test_top_k_by_score_and_slot_order(tmp_path, genes):
    rows = [("chr1", 900, 1100, "chr1", 10000 * k, 10000 * k + 500, ".", s)
            for k, s in ((2, 1.0), (3, 8.0), (4, 3.0), (6, 8.0), (7, 0.5))]
    rows.append(("chr1", 29000, 30500, "chr1", 70000, 71000, ".", 2.0))  # B
    pairs = read_pairs(write(tmp_path / "p.bedpe", *rows), genes, max_regions=3)
    t = pairs.table
    assert t["gene_id"].tolist() == [A, A, A, B]
    assert t["slot"].tolist() == [0, 1, 2, 0]
    # ties on 8.0: nearer the TSS first (30000 before 60000)
    assert t["start"].tolist()[:3] == [30000, 60000, 40000]
    assert t["score"].tolist() == [8.0, 8.0, 3.0, 2.0]
    assert pairs.stats["dropped_over_max"] == 2 and pairs.stats["regions_kept"] == 4


def test_wide_regions_clipped_around_their_centre(tmp_path, genes):
    path = write(tmp_path / "p.bedpe", ("chr1", 900, 1100, "chr1", 100000, 200001, ".", 1),
                 ("chr1", 900, 1100, "chr1", 10000, 11000, ".", 2))
    pairs = read_pairs(path, genes, max_region_width=10000)
    assert regions(pairs, A) == [("chr1", 10000, 11000, 2.0), ("chr1", 145000, 155000, 1.0)]
    assert pairs.stats["clipped"] == 1
    assert f"{path}: 1 regions wider than 10000 bp clipped to 10000 bp around their centre" in pairs.warnings


def test_chrom_sizes_clip_and_drop(tmp_path, genes):
    path = write(tmp_path / "p.bedpe", ("chr1", 900, 1100, "chr1", 99000, 101000, ".", 1),
                 ("chr1", 900, 1100, "chr1", 100000, 100500, ".", 2),
                 ("chr1", 900, 1100, "chr1", 10000, 11000, ".", 3))
    pairs = read_pairs(path, genes, chrom_sizes={"1": 100000})
    assert regions(pairs, A) == [("chr1", 10000, 11000, 3.0), ("chr1", 99000, 100000, 1.0)]
    assert pairs.stats["past_chrom_end"] == 2 and pairs.stats["dropped_past_end"] == 1
    assert f"{path}: 2 regions past their chromosome end clipped to it (1 left empty were dropped)" \
        in pairs.warnings


def test_duplicates_keep_the_best_score_and_own_tss_is_dropped(tmp_path, genes):
    path = write(tmp_path / "p.bedpe",
                 ("chr1", 900, 1100, "chr1", 10000, 11000, ".", 2),
                 ("chr1", 10000, 11000, "chr1", 900, 1100, ".", 5),  # the other orientation
                 ("chr1", 900, 1100, "chr1", 10000, 11000, ".", 1),
                 ("chr1", 900, 1100, "chr1", 500, 1500, ".", 9))  # both sides hold A's TSS
    pairs = read_pairs(path, genes)
    assert regions(pairs, A) == [("chr1", 10000, 11000, 5.0)]
    assert pairs.stats["duplicates"] == 2 and pairs.stats["overlaps_tss"] == 2


def test_long_format_csv_and_tsv(tmp_path, genes):
    header = ["gene_id", "eid", "chrom", "start", "strand", "neighbors", "scores", "label"]
    rows = [
        ["ENSG00000000001", "E003", "chr1", "1000", "+", "chr1:10000-11000;1:20000-21000", "1.5;7", "1"],
        [B, "E003", "chr1", "20000", "-", "", "", "0"],
        [C, "E003", "chr1", "50000", "+", "chr1:70000-71000", "2", "1"],
        ["ENSG00000077777", "E003", "chr3", "1", "+", "chr3:1-5", "1", "0"],
    ]
    csv_path = tmp_path / "meta.csv"
    csv_path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    tsv_path = tmp_path / "meta.tsv"
    tsv_path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    for path in (csv_path, tsv_path):
        pairs = read_pairs(path, genes)
        assert regions(pairs, A) == [("chr1", 20000, 21000, 7.0), ("chr1", 10000, 11000, 1.5)]
        assert regions(pairs, B) == []
        assert regions(pairs, C) == [("chr1", 70000, 71000, 2.0)]
        assert pairs.table["slot"].tolist() == [0, 1, 0]
        assert pairs.stats["lines"] == 4 and pairs.stats["unknown_genes"] == 1
        assert pairs.warnings == [f"{path}: 1 gene ids not in the gene table skipped (1 lines; "
                                  "first: ENSG00000077777 at line 5)"]


def test_long_format_without_scores(tmp_path, genes):
    path = tmp_path / "meta.csv"
    path.write_text("gene_id,neighbors\nENSG00000000002,chr1:60000-61000;chr1:40000-41000\n")
    pairs = read_pairs(path, genes)
    assert regions(pairs, B) == [("chr1", 40000, 41000, 1.0), ("chr1", 60000, 61000, 1.0)]
    assert any("no scores" in w for w in pairs.warnings)


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (("chr1", 900, 800, "chr1", 10000, 11000, ".", 1), "end1 800 is not greater than start1 900"),
        (("chr1", 900, 1100, "chr1", 10000, 10000, ".", 1), "end2 10000 is not greater than start2 10000"),
        (("chr1", -5, 1100, "chr1", 10000, 11000, ".", 1), "negative start1 -5"),
        (("chr1", 900, 1100, "chr1", 10000, 11000, ".", "nan"), "score 'nan' is not a finite number"),
        (("chr1", 900, 1100, "chr1", 10000, 11000, ".", "inf"), "score 'inf' is not a finite number"),
        (("chr1", 900, 1100, "chr1", 10000, 11000, ".", "high"), "score 'high' is not a finite number"),
        (("chr1", 900, 1100, "chr1", 10000, "11000.5", ".", 1), "end2 '11000.5' is not an integer"),
        (("chr1", 900, 1100, "chr1", 10000), "at least 6 tab-separated fields"),
        (("chr1", 900, 1100, "chr1", 10000, 11000), "missing score (8th column)"),
    ],
)
def test_bedpe_line_errors(tmp_path, genes, row, fragment):
    path = write(tmp_path / "bad.bedpe", ("chr1", 900, 1100, "chr1", 3000, 4000, ".", 1), row)
    with pytest.raises(InputFileError) as exc:
        read_pairs(path, genes)
    assert fragment in error(exc, path, 2)


@pytest.mark.parametrize(
    ("cell", "scores", "fragment"),
    [
        ("chr1:10000-11000;chr1:12000-13000", "1", "gene ENSG00000000001.5: 2 neighbors but 1 scores"),
        ("chr2:10000-11000", "1", "gene ENSG00000000001.5 is on chr1 but its neighbor chr2:10000-11000 is on chr2"),
        ("chr1:10000..11000", "1", "cannot read neighbor 'chr1:10000..11000'; expected chr:start-end"),
        ("chr1:11000-10000", "1", "end 10000 is not greater than start 11000"),
        ("chr1:-1-10000", "1", "negative start -1"),
        ("chr1:10000-11000", "NaN", "score 'NaN' is not a finite number"),
    ],
)
def test_long_format_errors(tmp_path, genes, cell, scores, fragment):
    path = tmp_path / "meta.tsv"
    path.write_text(f"gene_id\tneighbors\tscores\n{B}\tchr1:1-2\t1\n{A}\t{cell}\t{scores}\n")
    with pytest.raises(InputFileError) as exc:
        read_pairs(path, genes)
    assert fragment in error(exc, path, 3)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", None, "no pairs: the file is empty or has only comment lines"),
        ("# nothing\ntrack name=x\n", None, "no pairs: the file is empty"),
        ("chrom1\tstart1\tend1\tchrom2\tstart2\tend2\n", None, "no pairs: the file has a header and no rows"),
        ("gene_id,neighbors,scores\n", None, "no pairs: the file has a header and no rows"),
        ("chr1 900 1100 chr1 3000 4000\n", 1, "cannot tell the pairs format: expected tab-separated BEDPE"),
        ("chr1\t80000\t81000\tchr1\t90000\t91000\t.\t1\n", None, "no region was assigned to any gene"),
    ],
)
def test_file_level_errors(tmp_path, genes, text, line, fragment):
    path = tmp_path / "p.txt"
    path.write_text(text)
    with pytest.raises(InputFileError) as exc:
        read_pairs(path, genes)
    assert fragment in error(exc, path, line)


def test_option_errors_name_the_option(tmp_path, genes):
    path = write(tmp_path / "p.bedpe", *BASIC)
    for kwargs, option in (({"max_regions": 0}, "--max-regions"), ({"max_region_width": 0}, "--max-region-width")):
        with pytest.raises(EpxError, match=option):
            read_pairs(path, genes, **kwargs)
    with pytest.raises(InputFileError, match="pairs file not found"):
        read_pairs(tmp_path / "missing.bedpe", genes)


def test_many_lines_against_many_genes(tmp_path):
    """200,000 contacts against 20,000 genes: the TSS lookup is vectorised (a few seconds at most)."""
    rng = np.random.default_rng(0)
    n_genes, n_lines = 20_000, 200_000
    chroms = np.array([f"chr{i}" for i in range(1, 11)])
    g_chrom = chroms[np.arange(n_genes) % 10]
    tss = rng.integers(10_000, 50_000_000, n_genes)
    genes = pd.DataFrame({"gene_id": [f"G{i}" for i in range(n_genes)], "gene_name": [f"N{i}" for i in range(n_genes)],
                          "chrom": g_chrom, "start": tss, "end": tss + 1000, "strand": "+", "tss": tss})
    pick = rng.integers(0, n_genes, n_lines)
    s1 = tss[pick] - rng.integers(1, 5000, n_lines)
    s2 = rng.integers(0, 50_000_000, n_lines)
    table = pd.DataFrame({"c1": g_chrom[pick], "s1": s1, "e1": s1 + 10_000, "c2": g_chrom[pick], "s2": s2,
                          "e2": s2 + rng.integers(1000, 60_000, n_lines), "name": ".",
                          "score": rng.random(n_lines).round(3)})
    path = tmp_path / "big.bedpe"
    table.to_csv(path, sep="\t", header=False, index=False)
    pairs = read_pairs(path, genes)
    assert pairs.stats["lines"] == n_lines
    assert pairs.stats["genes_with_regions"] > 0.99 * n_genes
    counts = pairs.table.groupby("gene_id").size()
    assert counts.max() == 8 and (pairs.table["end"] - pairs.table["start"]).max() <= 40_000


def test_order_follows_a_reordered_subset_gene_table(tmp_path, genes):
    subset = genes.iloc[[1, 0]]  # B before A, index not 0..n-1
    path = write(tmp_path / "p.bedpe", *BASIC)
    pairs = read_pairs(path, subset)
    assert pairs.table["gene_id"].tolist() == [B, A]
    assert regions(pairs, B) == [("chr1", 70000, 71000, 3.0)]


# -- CHiCAGO ibed, WashU longrange ---------------------------------------------------------------

IBED_HEADER = ("bait_chr\tbait_start\tbait_end\tbait_name\totherEnd_chr\totherEnd_start\totherEnd_end\t"
               "otherEnd_name\tN_reads\tscore")


def ibed(path, *rows, header=IBED_HEADER):
    return write(path, *rows, header=header)


@pytest.fixture
def named_genes(genes):
    """The same genes with names: A GAPDH, B NCAPD2, and DUP for both C (chr1) and D (chr2)."""
    return genes.assign(gene_name=["GAPDH", "NCAPD2", "DUP", "DUP"])


def test_ibed_gene_name_baits(tmp_path, named_genes):
    path = ibed(tmp_path / "p.ibed",
                ("chr1", 500, 1500, "GAPDH;NCAPD2", "chr1", 10000, 11000, ".", 10, 5.5),  # both named genes
                ("chr1", 49500, 50500, "dup", "chr1", 70000, 71000, ".", 3, 2.0),  # any case; C is on chr1
                ("chr1", 500, 1500, "gapdh,UNKNOWN1", "chr1", 12000, 13000, ".", 4, 3.0),
                ("chr1", 29000, 30500, "NOTAGENE", "chr1", 80000, 81000, ".", 2, 1.5))  # TSS fallback
    pairs = read_pairs(path, named_genes)
    assert list(pairs.table.columns) == TABLE_COLUMNS
    assert regions(pairs, A) == [("chr1", 10000, 11000, 5.5), ("chr1", 12000, 13000, 3.0)]
    assert regions(pairs, B) == [("chr1", 10000, 11000, 5.5), ("chr1", 80000, 81000, 1.5)]
    assert regions(pairs, C) == [("chr1", 70000, 71000, 2.0)]
    assert regions(pairs, D) == []
    assert pairs.stats["lines"] == 4 and pairs.stats["unknown_genes"] == 2
    assert pairs.stats["trans_skipped"] == 0 and pairs.stats["no_gene"] == 0
    assert pairs.warnings == [f"{path}: 2 bait names not in the gene table ignored (first: UNKNOWN1 at "
                              "line 4); 1 baits with no known name fell back to the genes whose TSS lies "
                              "in them"]


def test_ibed_gene_ids_dot_baits_and_trans(tmp_path, genes):
    path = ibed(tmp_path / "p.ibed",
                ("chr1", 500, 1500, "ENSG00000000001", "chr1", 10000, 11000, ".", 5, 4.0),  # unversioned
                ("chr1", 49000, 51000, "ENSG00000000003.9", "chr1", 60000, 61000, ".", 5, 2.0),
                ("chr1", 29000, 30500, ".", "chr1", 70000, 71000, ".", 5, 1.0),  # TSS fallback: B
                ("chr1", 29000, 30500, "", "chr1", 75000, 76000, ".", 5, 0.5),  # empty name: same
                ("chr1", 80000, 81000, ".", "chr1", 90000, 91000, ".", 1, 1.0),  # no gene
                ("chr1", 500, 1500, "ENSG00000000001", "chr2", 10000, 11000, ".", 5, 9.0),  # trans
                ("chr1", 100, 200, "ENSG00000000004", "chr1", 300, 400, ".", 1, 1.0))  # D is on chr2
    pairs = read_pairs(path, genes)
    assert regions(pairs, A) == [("chr1", 10000, 11000, 4.0)]
    assert regions(pairs, C) == [("chr1", 60000, 61000, 2.0)]
    assert regions(pairs, B) == [("chr1", 70000, 71000, 1.0), ("chr1", 75000, 76000, 0.5)]
    assert pairs.stats["trans_skipped"] == 2 and pairs.stats["no_gene"] == 1
    assert pairs.stats["unknown_genes"] == 0 and pairs.stats["pairs_used"] == 4
    assert pairs.warnings == [f"{path}: 2 trans contacts skipped (regions on another chromosome than "
                              "their gene)"]


def test_ibed_bait_to_bait(tmp_path, genes):
    path = ibed(tmp_path / "p.ibed",
                ("chr1", 500, 1500, A, "chr1", 29500, 30500, B, 8, 6.0),  # both ways
                ("chr1", 500, 1500, A, "chr1", 49500, 50500, ".", 8, 5.0),  # C's TSS, but no bait
                ("chr1", 500, 1500, A, "chr1", 60000, 61000, "lncFOO", 8, 4.0),  # unresolvable bait
                ("chr1", 29500, 30500, B, "chr1", 49600, 50400, "lncBAR", 8, 3.0))  # its TSS: C
    pairs = read_pairs(path, genes)
    assert regions(pairs, A) == [("chr1", 29500, 30500, 6.0), ("chr1", 49500, 50500, 5.0),
                                 ("chr1", 60000, 61000, 4.0)]
    assert regions(pairs, B) == [("chr1", 500, 1500, 6.0), ("chr1", 49600, 50400, 3.0)]
    assert regions(pairs, C) == [("chr1", 29500, 30500, 3.0)]
    assert pairs.stats["unknown_genes"] == 2


def test_ibed_extra_and_reordered_columns_gzipped(tmp_path, genes):
    rows = [("chr1", 500, 1500, A, "chr1", 10000, 11000, ".", 5, 4.0),
            ("chr1", 29000, 30500, ".", "chr1", 70000, 71000, ".", 5, 1.0)]
    plain = read_pairs(ibed(tmp_path / "p.ibed", *rows), genes).table
    names = IBED_HEADER.split("\t")
    order = [9, 0, 1, 2, 3, 8, 4, 5, 6, 7]
    header = "\t".join(["distSign"] + [names[i] for i in order] + ["dist"])
    extra = [("x",) + tuple(r[i] for i in order) + (123,) for r in rows]
    gz = tmp_path / "extra.ibed.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in extra))
    pd.testing.assert_frame_equal(read_pairs(gz, genes).table, plain)


def test_ibed_no_known_bait_name_falls_back_with_a_warning(tmp_path, named_genes):
    path = ibed(tmp_path / "p.ibed", ("chr1", 500, 1500, "Gapdh_mm", "chr1", 10000, 11000, ".", 5, 4.0),
                ("chr1", 29000, 30500, "Ncapd2_mm", "chr1", 70000, 71000, ".", 5, 1.0))
    pairs = read_pairs(path, named_genes)
    assert regions(pairs, A) == [("chr1", 10000, 11000, 4.0)]
    assert regions(pairs, B) == [("chr1", 70000, 71000, 1.0)]
    assert pairs.warnings == [f"{path}: none of the 2 bait names are in the gene table (first: Gapdh_mm at "
                              "line 2; names of another annotation?); every bait falls back to the genes "
                              "whose TSS lies in it"]


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (("chr1", 500, 1500, A, "chr1", "10000.5", 11000, ".", 5, 1), "otherEnd_start '10000.5' is not an integer"),
        (("chr1", "5OO", 1500, A, "chr1", 10000, 11000, ".", 5, 1), "bait_start '5OO' is not an integer"),
        (("chr1", 1500, 500, A, "chr1", 10000, 11000, ".", 5, 1), "bait_end 500 is not greater than bait_start 1500"),
        (("chr1", 500, 1500, A, "chr1", 10000, 11000, ".", 5, "NA"), "score 'NA' is not a finite number"),
        (("chr1", 500, 1500, A, "chr1", 10000, 11000, "."), "an ibed line needs at least 10 tab-separated fields"),
    ],
)
def test_ibed_line_errors(tmp_path, genes, row, fragment):
    path = ibed(tmp_path / "bad.ibed", ("chr1", 500, 1500, A, "chr1", 3000, 4000, ".", 5, 1), row)
    with pytest.raises(InputFileError) as exc:
        read_pairs(path, genes)
    assert fragment in error(exc, path, 3)


def test_ibed_header_without_score_is_an_error(tmp_path, genes):
    header = IBED_HEADER.replace("\tscore", "")
    path = ibed(tmp_path / "p.ibed", ("chr1", 500, 1500, A, "chr1", 10000, 11000, ".", 5), header=header)
    with pytest.raises(InputFileError) as exc:
        read_pairs(path, genes)
    assert "the CHiCAGO ibed header lacks score; expected bait_chr" in error(exc, path, 1)


def test_washu_longrange_reads_as_bedpe(tmp_path, genes):
    plain = read_pairs(write(tmp_path / "p.bedpe", *BASIC), genes)
    rows = [(c1, s1, e1, f"{c2}:{s2}-{e2},{sc}") for c1, s1, e1, c2, s2, e2, _, sc in BASIC]
    rows.append(("chr1", 10000, 12000, "chr1:900-1100,5"))  # the other orientation, as WashU lists them
    path = write(tmp_path / "p.longrange", *rows)
    pairs = read_pairs(path, genes)
    pd.testing.assert_frame_equal(pairs.table, plain.table)
    assert pairs.stats["trans_skipped"] == 1 and pairs.stats["duplicates"] == 1
    legacy = write(tmp_path / "legacy.longrange", *[r + (k, ".") for k, r in enumerate(rows)])  # id, strand
    pd.testing.assert_frame_equal(read_pairs(legacy, genes).table, plain.table)


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (("chr1", 900, 1100, "chr1:10000-12000"), "cannot read the 4th field 'chr1:10000-12000' as chrom2:start2-end2,score"),
        (("chr1", 900, 1100, "chr1:10000.5-12000,1"), "start2 '10000.5' is not an integer"),
        (("chr1", 900, 1100, "chr1:-5-12000,1"), "negative start2 -5"),
        (("chr1", "9x0", 1100, "chr1:10000-12000,1"), "start1 '9x0' is not an integer"),
        (("chr1", 900, 1100, "chr1:10000-12000,inf"), "score 'inf' is not a finite number"),
        (("chr1", 900, 1100), "a WashU longrange line needs 4 tab-separated fields"),
    ],
)
def test_washu_longrange_line_errors(tmp_path, genes, row, fragment):
    path = write(tmp_path / "bad.longrange", ("chr1", 900, 1100, "chr1:3000-4000,1"), row)
    with pytest.raises(InputFileError) as exc:
        read_pairs(path, genes)
    assert fragment in error(exc, path, 2)


def test_bedpe_commented_header(tmp_path, genes):
    plain = read_pairs(write(tmp_path / "p.bedpe", *BASIC), genes).table
    path = write(tmp_path / "h.bedpe", *BASIC, header="#chrom1\tstart1\tend1\tchrom2\tstart2\tend2\tname\tscore")
    pairs = read_pairs(path, genes)
    pd.testing.assert_frame_equal(pairs.table, plain)
    assert pairs.stats["lines"] == 4


def test_many_ibed_lines_against_many_named_genes(tmp_path):
    """100,000 ibed contacts with multi-name baits against 20,000 genes: names resolve per bait."""
    rng = np.random.default_rng(1)
    n_genes, n_lines = 20_000, 100_000
    chroms = np.array([f"chr{i}" for i in range(1, 11)])
    g_chrom = chroms[np.arange(n_genes) % 10]
    tss = rng.integers(10_000, 50_000_000, n_genes)
    genes = pd.DataFrame({"gene_id": [f"G{i}" for i in range(n_genes)], "gene_name": [f"N{i}" for i in range(n_genes)],
                          "chrom": g_chrom, "start": tss, "end": tss + 1000, "strand": "+", "tss": tss})
    pick = rng.integers(0, n_genes - 10, n_lines)
    names = np.char.add(np.char.add("N", pick.astype(str)), np.char.add(";N", (pick + 10).astype(str)))
    s1 = tss[pick] - 2000
    s2 = rng.integers(0, 50_000_000, n_lines)
    table = pd.DataFrame({"bait_chr": g_chrom[pick], "bait_start": s1, "bait_end": s1 + 5000,
                          "bait_name": names, "otherEnd_chr": g_chrom[pick], "otherEnd_start": s2,
                          "otherEnd_end": s2 + 3000, "otherEnd_name": ".", "N_reads": 5,
                          "score": rng.random(n_lines).round(3) + 5})
    path = tmp_path / "big.ibed"
    table.to_csv(path, sep="\t", index=False)
    pairs = read_pairs(path, genes)
    assert pairs.stats["lines"] == n_lines and pairs.stats["unknown_genes"] == 0
    assert pairs.stats["genes_with_regions"] > 0.99 * n_genes
    assert pairs.table.groupby("gene_id").size().max() == 8
