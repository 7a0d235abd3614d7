"""A seeded generator of a realistic synthetic study, written in the real file formats.

``epx demo`` needs a dataset that exercises every reader (ML4G gene tables and labels, a track
manifest, bigWig and narrowPeak tracks, chromosome aliasing) without shipping gigabytes of real
data, and one where the answer is known: expression is driven by a latent per-gene promoter
activity that the marks reflect, so a working model must reach a clearly positive Spearman, and
for some genes by distal enhancers that only promoter-contact pairs link to them.

The generative model, per gene ``g`` and cell line ``c``:

* a latent activity ``a[g, c]`` shared across cell lines (correlation ~0.8) with cell-specific
  differences;
* repression: Polycomb (H3K27me3) domains over genes with low activity, and heterochromatin
  (H3K9me3) over a few more genes plus large intergenic domains;
* activation marks at the promoter (H3K4me3, H3K27ac, DNase, flanking H3K4me1) whose strength is
  a noisy sigmoid of the activity, and H3K36me3 over the bodies of expressed genes, rising
  towards the 3' end;
* distal enhancers linked by contacts: about 40% of genes get 1-3 enhancers 30-150 kb from the
  TSS (upstream, or downstream past the gene's end and 5 kb flank; never within TSS +- 20 kb, the
  widest promoter window epx bins, nor within 2 kb of any TSS), 1-4 kb wide, each with its own
  latent activity per cell line (correlation ~0.8 across cell lines), independent of the gene's
  promoter activity. Their H3K27ac, H3K4me1 and DNase are log-linear in that activity. Each adds
  ``weight * (activity + 1.5)`` to its gene; for a linked gene the sum, standardised, makes half
  of the expression drive (``LINK_SHARE``) and the promoter-driven part the other half;
* CAGE-like expression: about half exactly zero, the rest log-normal (heavy tail, max in the
  thousands), from activity minus repression (plus, for linked genes, enhancers) plus noise;
  H3K36me3 follows the promoter-driven expression only, so a linked gene's distal part shows in
  no mark near the gene (a simplification: real gene-body marks would partly reveal it);
* batch effects: a per-cell scale on expression and a per-(cell, assay) scale on the tracks.

``pairs.bedpe`` holds promoter-capture-Hi-C-like contacts, shared by the cell lines: promoter
fragment (2-10 kb holding the TSS) to region fragment (2-6 kb, trimmed to hold no TSS), name ``.``,
a CHiCAGO-like score 5-30; every true link (mean score ~20), about as many non-functional cis
contacts 20-300 kb away (mean ~7.5), a few trans contacts and a few touching no gene. ``links.tsv``
lists the true links. The linked enhancers, their marks and the pairs draw from their own random
streams, so the genes and every other signal are drawn as before.

Enhancers (H3K4me1, H3K27ac, DNase) and CTCF-like sites (DNase) add peaks away from genes. The
bigWigs carry data only where there is signal or sparse background, leaving large gaps (telomeres,
centromeres, gene deserts) without data, as real tracks do.

To exercise chromosome-name aliasing, X3's narrowPeak files use Ensembl-style names (``1``,
``X``) while every bigWig and gene table uses UCSC names (``chr1``).

Everything comes from ``numpy.random.default_rng`` seeded by ``seed``, so the same seed gives
byte-identical files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig

from epx.errors import EpxError
from epx.outputs import atomic_dir

CELL_LINES: tuple[str, ...] = ("X1", "X2", "X3")
ASSAYS: tuple[str, ...] = ("H3K27ac", "H3K4me3", "H3K27me3", "H3K36me3", "H3K4me1", "H3K9me3", "DNase")
ENSEMBL_NAMED_PEAKS = "X3"  # its narrowPeak files say "1", "X" instead of "chr1", "chrX"

# Chromosome sizes (bp): ~62 Mb in total, big enough for realistic gaps, small enough to be fast.
CHROM_SIZES: dict[str, int] = {
    "chr1": 12_000_000,
    "chr2": 10_000_000,
    "chr3": 9_000_000,
    "chr4": 7_500_000,
    "chr5": 6_500_000,
    "chr6": 6_000_000,
    "chr7": 5_000_000,
    "chrX": 5_500_000,
}
MIN_GENES_PER_CHROM = 100  # so leave-one-chromosome-out folds are meaningful
MIN_GENES = 2 * len(CHROM_SIZES)

ML4G_HEADER = ["gene_name", "chr", "gene_start", "gene_end", "TSS_start", "TSS_end", "strand"]

# bigWig resolution per assay: sharp marks at 25 bp, broad ones coarser (as real fold-change tracks).
_BIN = {"H3K27ac": 50, "H3K4me3": 25, "DNase": 25, "H3K4me1": 50, "H3K36me3": 100, "H3K27me3": 100, "H3K9me3": 200}
# Base peak-calling threshold (signal units, before the batch scale) and background mean.
_PEAK_THRESHOLD = {"H3K27ac": 2.0, "H3K4me3": 2.0, "DNase": 2.0, "H3K4me1": 1.5, "H3K36me3": 1.2, "H3K27me3": 1.2, "H3K9me3": 1.2}
_BACKGROUND = 0.25  # mean of the sparse background
_FLOOR = 0.6  # clean signal below this is not written (only background there)
_BLOCK = 250_000  # gene-density blocks
_TELOMERE = 60_000
_CENTROMERE = 600_000
_CONTEXT = 25_000  # genes keep this far from telomeres and centromeres
# Distal enhancers linked to genes by contacts (pcHi-C-like pairs.bedpe): beyond every promoter
# window epx uses (Chromoformer's 2000x20 = TSS +- 20 kb, ML4G's 5 kb flanks).
LINKED_FRACTION = 0.4  # of genes with 1-3 linked enhancers
LINK_DISTANCE = (30_000, 150_000)  # bp from the TSS (log-uniform)
LINK_WIDTH = (1_000, 4_000)  # bp
LINK_SHARE = 0.5  # of a linked gene's expression drive that comes from its enhancers
REGION_FRAGMENT = 6_000  # region fragments of the contacts are 2-6 kb (promoter fragments 2-10 kb)
LINK_BASE = 1.5  # an enhancer adds weight * (activity + LINK_BASE) to its gene's drive


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------------------------
# Genome, genes and names
# --------------------------------------------------------------------------------------------

_FAMILIES = [
    "ZNF", "SLC", "KRT", "OR", "TMEM", "CCDC", "FAM", "RBM", "KLHL", "ANKRD", "LRRC", "PCDH",
    "CDH", "COL", "MYO", "KIF", "ATP", "RPL", "RPS", "HOX", "SOX", "FOX", "WDR", "ZBTB", "TRIM",
    "USP", "NUP", "PPP", "MAP", "DNAJ", "ADAM", "CYP", "GPR", "IL", "TNF", "SEMA", "PRR", "SPATA",
]
_ONSETS = ["B", "C", "D", "F", "G", "H", "K", "L", "M", "N", "P", "R", "S", "T", "V", "W", "Z",
           "BR", "CL", "DR", "GR", "KL", "PR", "SP", "ST", "TR", "CH", "SH"]
_VOWELS = ["A", "E", "I", "O", "U", "Y"]
_CODAS = ["", "", "B", "C", "D", "F", "G", "K", "L", "M", "N", "P", "R", "S", "T", "X", "Z",
          "RK", "ND", "NK", "ST", "LC"]


def _gene_names(rng: np.random.Generator, n: int) -> list[str]:
    """Unique, symbol-like names: family members (``ZNF214``, ``SLC25A4``) and invented roots
    (``DMX1``, ``TRAKL``), so tables look like real annotations and no two genes collide."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        m = 2 * (n - len(names)) + 16
        family = rng.random(m) < 0.3
        fam = rng.integers(0, len(_FAMILIES), m)
        num = rng.integers(1, 400, m)
        sub = rng.random(m) < 0.3
        sub_letter = rng.integers(0, 6, m)
        sub_num = rng.integers(1, 12, m)
        onset = rng.integers(0, len(_ONSETS), m)
        vowel = rng.integers(0, len(_VOWELS), m)
        coda = rng.integers(0, len(_CODAS), m)
        two_syll = rng.random(m) < 0.25
        onset2 = rng.integers(0, len(_ONSETS), m)
        vowel2 = rng.integers(0, len(_VOWELS), m)
        has_digit = rng.random(m) < 0.6
        digit = rng.integers(1, 20, m)
        suffix = rng.random(m) < 0.1
        suffix_letter = rng.integers(0, 4, m)
        for i in range(m):
            if family[i]:
                name = f"{_FAMILIES[fam[i]]}{num[i]}"
                if sub[i]:
                    name += f"{'ABCDEF'[sub_letter[i]]}{sub_num[i]}"
            else:
                name = _ONSETS[onset[i]] + _VOWELS[vowel[i]]
                if two_syll[i]:
                    name += _ONSETS[onset2[i]] + _VOWELS[vowel2[i]]
                name += _CODAS[coda[i]]
                if len(name) < 3:
                    name += "X"
                if has_digit[i]:
                    name += str(digit[i])
                    if suffix[i]:
                        name += "ABCD"[suffix_letter[i]]
            if name not in seen:
                seen.add(name)
                names.append(name)
                if len(names) == n:
                    break
    return names


def _centromere(size: int) -> tuple[int, int]:
    start = int(size * 0.42) // _BLOCK * _BLOCK
    return start, start + _CENTROMERE


def _allocate(rng: np.random.Generator, n_genes: int) -> np.ndarray:
    """Genes per chromosome: proportional to size times a random gene density, with a floor."""
    sizes = np.array(list(CHROM_SIZES.values()), dtype=float)
    weights = sizes * rng.lognormal(0.0, 0.4, len(sizes))
    floor = min(MIN_GENES_PER_CHROM, n_genes // (2 * len(sizes)))
    extra = rng.multinomial(n_genes - floor * len(sizes), weights / weights.sum())
    return floor + extra


def _make_genes(rng: np.random.Generator, n_genes: int) -> pd.DataFrame:
    """Place genes in variable-density blocks (gene-rich regions and deserts), avoiding telomeres
    and centromeres; log-normal lengths (median 20 kb); both strands; TSS usually at the 5' end."""
    counts = _allocate(rng, n_genes)
    frames = []
    for (chrom, size), n in zip(CHROM_SIZES.items(), counts, strict=True):
        cen_start, cen_end = _centromere(size)
        n_blocks = size // _BLOCK
        block_start = np.arange(n_blocks) * _BLOCK
        density = rng.gamma(0.8, 1.0, n_blocks)
        density[(block_start >= cen_start - _BLOCK) & (block_start < cen_end + _BLOCK)] = 0.0
        density[[0, -1]] = 0.0
        block = rng.choice(n_blocks, size=n, p=density / density.sum())
        length = np.clip(np.round(rng.lognormal(np.log(20_000), 0.9, n)), 500, 300_000).astype(np.int64)
        start = block_start[block] + rng.integers(0, _BLOCK, n)
        # keep each gene (plus context) on its chromosome arm
        on_p = start < cen_start
        arm_lo = np.where(on_p, _TELOMERE + _CONTEXT, cen_end + _CONTEXT)
        arm_hi = np.where(on_p, cen_start - _CONTEXT, size - _TELOMERE - _CONTEXT)
        start = np.clip(start, arm_lo, arm_hi - length)
        frames.append(pd.DataFrame({"chr": chrom, "gene_start": start, "gene_end": start + length}))
    genes = pd.concat(frames, ignore_index=True)
    n = len(genes)
    plus = rng.random(n) < 0.5
    length = (genes["gene_end"] - genes["gene_start"]).to_numpy()
    # a quarter of genes use an alternative (CAGE-supported) TSS inside the gene
    shift = np.where(rng.random(n) < 0.25, rng.integers(0, 5_000, n), 0)
    shift = np.minimum(shift, length - 50)
    tss_start = np.where(plus, genes["gene_start"] + shift, genes["gene_end"] - shift - 50)
    genes["TSS_start"] = tss_start
    genes["TSS_end"] = tss_start + 50
    genes["strand"] = np.where(plus, "+", "-")
    genes = genes.sort_values(["chr", "gene_start", "gene_end"], kind="stable", key=_chrom_key)
    genes.insert(0, "gene_name", _gene_names(rng, n))
    return genes.reset_index(drop=True)[ML4G_HEADER]


def _chrom_key(col: pd.Series) -> pd.Series:
    if col.name == "chr":
        order = {c: i for i, c in enumerate(CHROM_SIZES)}
        return col.map(order)
    return col


def _tss(genes: pd.DataFrame) -> np.ndarray:
    """0-based TSS: TSS_start on +, TSS_end - 1 on - (the ML4G convention epx reads)."""
    plus = (genes["strand"] == "+").to_numpy()
    return np.where(plus, genes["TSS_start"].to_numpy(), genes["TSS_end"].to_numpy() - 1)


# --------------------------------------------------------------------------------------------
# Latent biology
# --------------------------------------------------------------------------------------------


def _biology(rng: np.random.Generator, genes: pd.DataFrame, n_enh: int, links: dict | None = None) -> dict:
    """Per-gene and per-enhancer latent states for every cell line, plus the expression labels.

    ``links`` (from :func:`_link_enhancers`): for each gene with linked distal enhancers, the
    promoter-driven part of the drive is scaled by ``sqrt(1 - LINK_SHARE)`` and the enhancers'
    weighted activity (scaled to the same spread) by ``sqrt(LINK_SHARE)``, so about half of its
    drive comes from enhancers its promoter marks know nothing about."""
    n = len(genes)
    n_cells = len(CELL_LINES)
    shared = rng.standard_normal(n)
    activity = np.sqrt(0.8) * shared[:, None] + np.sqrt(0.2) * rng.standard_normal((n, n_cells))
    # repression: Polycomb over low-activity genes, heterochromatin over a few
    pc_shared = rng.standard_normal(n)
    polycomb = _sigmoid(-2.2 * activity - 1.6 + 0.8 * pc_shared[:, None]) > rng.random((n, n_cells))
    k9_prone = rng.random(n) < 0.06
    k9 = k9_prone[:, None] & (activity < rng.normal(-0.3, 0.3, (n, n_cells)))
    # gene-intrinsic effects (CAGE efficiency, RNA stability) are shared by all cell lines
    intrinsic = rng.standard_normal((n, 2))
    drive = (activity - 0.8 * polycomb - 1.2 * k9 + 0.35 * intrinsic[:, :1]
             + rng.normal(0.0, 0.25, (n, n_cells)))
    promoter_drive = drive
    enh_drive = np.zeros((n, n_cells))
    linked = np.zeros(n, dtype=bool)
    if links is not None and len(links["gene"]):
        enh_drive = _link_drive(links, n, n_cells) * drive.std(axis=0)
        linked = np.bincount(links["gene"], minlength=n) > 0
        drive = np.where(linked[:, None], np.sqrt(1.0 - LINK_SHARE) * drive + np.sqrt(LINK_SHARE) * enh_drive, drive)
    gex = np.zeros((n, n_cells))
    body_gex = np.zeros((n, n_cells))  # what H3K36me3 follows: the promoter-driven expression
    for c in range(n_cells):
        zero_fraction = rng.uniform(0.45, 0.58)
        cut = np.quantile(drive[:, c], zero_fraction)
        on = drive[:, c] > cut
        log_mu = np.log(10.0) + rng.normal(0.0, 0.3)  # batch effect on expression scale
        noise = 0.9 * intrinsic[on, 1] + rng.normal(0.0, 0.6, on.sum())
        gex[on, c] = np.exp(log_mu + 1.3 * (drive[on, c] - cut) + noise)
        body_gex[:, c] = gex[:, c]
        if linked.any():
            body_on = linked & (promoter_drive[:, c] > cut)
            body_gex[linked, c] = 0.0
            body_gex[body_on, c] = np.exp(log_mu + 1.3 * (promoter_drive[body_on, c] - cut)
                                          + 0.9 * intrinsic[body_on, 1] + links["body_noise"][body_on, c])
    expressed = gex > 0
    # enhancers: positions shared by all cells; activity partly follows a nearby gene
    near = rng.random(n_enh) < 0.6
    host = rng.integers(0, n, n_enh)
    enh_shared = np.where(near, 0.6 * shared[host], 0.0) + rng.standard_normal(n_enh) * np.where(near, 0.8, 1.0)
    enh_activity = 0.85 * enh_shared[:, None] + 0.55 * rng.standard_normal((n_enh, n_cells))
    return {
        "activity": activity,
        "polycomb": polycomb,
        "k9": k9,
        "gex": gex,
        "body_gex": body_gex,
        "expressed": expressed,
        "enh_near": near,
        "enh_host": host,
        "enh_activity": enh_activity,
        "link_drive": enh_drive,
    }


def _link_drive(links: dict, n: int, n_cells: int) -> np.ndarray:
    """Per gene and cell line, what its linked enhancers add: each enhancer ``w * (activity +
    LINK_BASE)`` (an enhancer of average activity adds, an inactive one little, so genes with more
    and stronger enhancers are higher), summed and standardised over the linked genes (0 for the
    others)."""
    gene = links["gene"]
    total = np.zeros((n, n_cells))
    np.add.at(total, gene, links["weight"][:, None] * (links["activity"] + LINK_BASE))
    linked = np.bincount(gene, minlength=n) > 0
    if not linked.any():
        return total
    mean, sd = total[linked].mean(axis=0), total[linked].std(axis=0)
    return np.where(linked[:, None], (total - mean) / np.where(sd > 0, sd, 1.0), 0.0)


def _link_enhancers(rng: np.random.Generator, genes: pd.DataFrame, n_cells: int) -> dict:
    """Distal enhancers linked to a gene by contacts: ``LINKED_FRACTION`` of genes get 1-3, each
    30-150 kb from the TSS (upstream, or downstream beyond the gene's end and its 5 kb flank, so no
    promoter, body or flank window of its own gene sees it), on the gene's chromosome arm.

    Each has a width (1-4 kb), a weight in the gene's expression and its own latent activity per
    cell line (correlation ~0.8 across cell lines), independent of the gene's promoter activity."""
    n = len(genes)
    tss = _tss(genes)
    plus = (genes["strand"] == "+").to_numpy()
    chrom_of = genes["chr"].to_numpy()
    linked = rng.random(n) < LINKED_FRACTION
    count = rng.integers(1, 4, n)
    gene = np.repeat(np.flatnonzero(linked), count[linked])
    m = len(gene)
    lo_d, hi_d = LINK_DISTANCE
    dist = np.exp(rng.uniform(np.log(lo_d), np.log(hi_d), m)).astype(np.int64)
    width = rng.integers(LINK_WIDTH[0], LINK_WIDTH[1] + 1, m)
    weight = rng.lognormal(0.0, 0.2, m)
    shared = rng.standard_normal(m)
    activity = np.sqrt(0.8) * shared[:, None] + np.sqrt(0.2) * rng.standard_normal((m, n_cells))
    downstream = rng.random(m) < 0.5
    # bp from the TSS to the end of the gene's ML4G downstream flank (TES + 5 kb)
    tes_reach = np.where(plus, genes["gene_end"].to_numpy() - tss, tss - genes["gene_start"].to_numpy()) + 5_000
    size = np.array([CHROM_SIZES[c] for c in chrom_of[gene]])
    cen = np.array([_centromere(CHROM_SIZES[c]) for c in chrom_of[gene]])
    t = tss[gene]
    arm_lo = np.where(t < cen[:, 0], _TELOMERE, cen[:, 1]) + 5_000
    arm_hi = np.where(t < cen[:, 0], cen[:, 0], size - _TELOMERE) - 5_000
    # enhancers keep 2 kb away from every TSS, so their contact fragments need hold none
    sorted_tss = {c: np.sort(tss[chrom_of == c]) for c in CHROM_SIZES}
    pos = np.zeros(m, dtype=np.int64)
    ok = np.zeros(m, dtype=bool)
    for flip in (False, True):  # the drawn side, else the other one
        down = downstream ^ flip
        sign = np.where(plus[gene] == down, 1, -1)
        p = t + sign * dist
        fits = (p - width // 2 >= arm_lo) & (p + width // 2 < arm_hi) & (~down | (dist - width // 2 > tes_reach[gene]))
        fits &= ~_holds_tss(chrom_of[gene], p - width // 2 - 2_000, p + width // 2 + 2_000, sorted_tss)
        take = fits & ~ok
        pos[take] = p[take]
        ok |= take
    return {
        "gene": gene[ok], "chrom": chrom_of[gene][ok], "pos": pos[ok], "width": width[ok],
        "weight": weight[ok], "activity": activity[ok],
        "body_noise": rng.normal(0.0, 0.6, (n, n_cells)),  # of the linked genes' H3K36me3
    }


def _place_enhancers(rng: np.random.Generator, genes: pd.DataFrame, bio: dict) -> pd.DataFrame:
    """Enhancers near their host gene (5-60 kb away, either side) or anywhere on an arm."""
    n_enh = len(bio["enh_host"])
    host = bio["enh_host"]
    tss = _tss(genes)
    chrom = genes["chr"].to_numpy()[host].copy()
    pos = tss[host] + rng.choice([-1, 1], n_enh) * rng.integers(5_000, 60_000, n_enh)
    far = ~bio["enh_near"]
    names = list(CHROM_SIZES)
    sizes = np.array(list(CHROM_SIZES.values()))
    far_chrom = rng.choice(len(names), n_enh, p=sizes / sizes.sum())
    far_pos = (rng.random(n_enh) * sizes[far_chrom]).astype(np.int64)
    chrom[far] = np.array(names)[far_chrom][far]
    pos = np.where(far, far_pos, pos)
    size_of = np.array([CHROM_SIZES[c] for c in chrom])
    cen = np.array([_centromere(CHROM_SIZES[c]) for c in chrom])
    ok = (pos > _TELOMERE + 5_000) & (pos < size_of - _TELOMERE - 5_000) & ((pos < cen[:, 0]) | (pos >= cen[:, 1]))
    return pd.DataFrame({"chrom": chrom, "pos": pos, "idx": np.arange(n_enh)})[ok]


def _domains(rng: np.random.Generator, n: int, lo: int, hi: int) -> pd.DataFrame:
    """Random broad intergenic domains (cell-shared positions) on chromosome arms."""
    names = list(CHROM_SIZES)
    sizes = np.array(list(CHROM_SIZES.values()))
    which = rng.choice(len(names), n, p=sizes / sizes.sum())
    length = np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(np.int64)
    start = (rng.random(n) * (sizes[which] - 2 * _TELOMERE - length)).astype(np.int64) + _TELOMERE
    chrom = np.array(names)[which]
    cen = np.array([_centromere(CHROM_SIZES[c]) for c in chrom])
    ok = (start + length <= cen[:, 0]) | (start >= cen[:, 1])
    return pd.DataFrame({"chrom": chrom, "start": start, "end": start + length, "idx": np.arange(n)})[ok]


def _place_sites(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Cell-invariant CTCF-like DNase sites anywhere on the chromosome arms."""
    dom = _domains(rng, n, 1, 2)
    return pd.DataFrame({"chrom": dom["chrom"], "pos": dom["start"]})


# --------------------------------------------------------------------------------------------
# Signal shapes
# --------------------------------------------------------------------------------------------


def _tss_profile(assay: str, d: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Promoter shape at signed distance ``d`` (bp, positive = downstream) for per-gene ``width``:
    histone peaks skewed downstream over the +1..+3 nucleosomes with a nucleosome-free dip at the
    TSS; DNase a narrow peak just upstream; H3K4me1 flanking the promoter on both sides."""
    w = width[:, None]
    if assay == "H3K4me3":
        sigma = np.where(d >= 0, 800.0, 400.0) * w
        core = np.exp(-0.5 * ((d - 350.0) / sigma) ** 2)
        return core * (1.0 - 0.65 * np.exp(-0.5 * (d / 120.0) ** 2))
    if assay == "H3K27ac":
        sigma = np.where(d >= 0, 1200.0, 700.0) * w
        core = np.exp(-0.5 * ((d - 300.0) / sigma) ** 2)
        return core * (1.0 - 0.55 * np.exp(-0.5 * (d / 150.0) ** 2))
    if assay == "DNase":
        sigma = np.where(d >= 0, 110.0, 170.0) * w
        return np.exp(-0.5 * ((d + 60.0) / sigma) ** 2)
    if assay == "H3K4me1":
        up = np.exp(-0.5 * ((d + 1600.0) / (550.0 * w)) ** 2)
        down = 1.3 * np.exp(-0.5 * ((d - 2000.0) / (750.0 * w)) ** 2)
        return up + down
    raise ValueError(assay)


_TSS_EXTENT = {"H3K4me3": (-3_000, 6_000), "H3K27ac": (-5_000, 8_000), "DNase": (-1_000, 800), "H3K4me1": (-5_000, 7_000)}


def _enhancer_profile(assay: str, d: np.ndarray, width: np.ndarray) -> np.ndarray:
    w = width[:, None]
    if assay == "H3K27ac":
        return np.exp(-0.5 * (d / (600.0 * w)) ** 2) * (1.0 - 0.5 * np.exp(-0.5 * (d / 150.0) ** 2))
    if assay == "H3K4me1":
        return np.exp(-0.5 * ((np.abs(d) - 600.0) / (500.0 * w)) ** 2)
    if assay == "DNase":
        return np.exp(-0.5 * (d / (140.0 * w)) ** 2)
    raise ValueError(assay)


def _linked_profile(assay: str, d: np.ndarray, width: np.ndarray) -> np.ndarray:
    """A linked distal enhancer ``width`` bp wide (1-4 kb): acetylation over the whole element
    with a nucleosome-free dip at its centre, H3K4me1 flanking it, DNase over its central part."""
    half = width[:, None] / 2.0
    a = np.abs(d)
    if assay == "H3K27ac":
        body = np.exp(-0.5 * (np.maximum(a - (half - 300.0), 0.0) / 300.0) ** 2)
        return body * (1.0 - 0.45 * np.exp(-0.5 * (d / 200.0) ** 2))
    if assay == "H3K4me1":
        return np.exp(-0.5 * (np.maximum(a - (half - 200.0), 0.0) / 400.0) ** 2) * (0.5 + 0.5 * np.minimum(a / half, 1.0))
    if assay == "DNase":
        return np.exp(-0.5 * (d / (half / 2.5)) ** 2)
    raise ValueError(assay)


_LINKED_EXTENT = (-(LINK_WIDTH[1] // 2 + 1_200), LINK_WIDTH[1] // 2 + 1_200)  # every profile is ~0 beyond


def _stamp_linked(dense: np.ndarray, rng: np.random.Generator, assay: str, chrom: str, ctx: dict, cell: int) -> None:
    """Add the marks of the contact-linked distal enhancers on ``chrom``: a noisy sigmoid of each
    enhancer's own activity in this cell line."""
    links = ctx["links"]
    on = links["chrom"] == chrom
    act = links["activity"][on, cell]
    s = act + rng.normal(0.0, 0.15, len(act))
    if assay == "H3K27ac":
        amp = 4.0 * np.exp(1.2 * s)
    elif assay == "DNase":
        amp = 3.5 * np.exp(1.2 * s)
    else:  # H3K4me1 marks primed enhancers too
        amp = 3.0 * np.exp(0.7 * s)
    amp = np.minimum(amp * rng.lognormal(0.0, 0.1, len(act)), 80.0)
    pos = links["pos"][on]
    _stamp(dense, pos, np.ones(len(pos), dtype=np.int64), amp, links["width"][on].astype(np.float64),
           _LINKED_EXTENT, _BIN[assay], lambda d, w: _linked_profile(assay, d, w))


def _stamp(dense: np.ndarray, centre: np.ndarray, sign: np.ndarray, amp: np.ndarray, width: np.ndarray,
           extent: tuple[int, int], bin_size: int, shape: Callable) -> None:
    """Add ``amp * shape(d)`` around each centre (oriented by ``sign``) into ``dense`` at once."""
    if len(centre) == 0:
        return
    lo, hi = extent
    offs = np.arange(lo // bin_size, hi // bin_size + 1)
    cbin = centre // bin_size
    pos = cbin[:, None] + offs[None, :]
    # signed distance from the bin centre to the feature, in transcription direction
    d = ((pos * bin_size + bin_size // 2) - centre[:, None]) * sign[:, None]
    vals = shape(d.astype(np.float64), width) * amp[:, None]
    ok = (pos >= 0) & (pos < len(dense))
    dense += np.bincount(pos[ok], weights=vals[ok], minlength=len(dense))


def _add_intervals(dense: np.ndarray, start: np.ndarray, end: np.ndarray, amp: np.ndarray, bin_size: int) -> None:
    """Add flat plateaus ``amp`` over ``[start, end)`` with a difference array."""
    if len(start) == 0:
        return
    n = len(dense)
    sb = np.clip(start // bin_size, 0, n)
    eb = np.clip((end + bin_size - 1) // bin_size, 0, n)
    diff = np.bincount(sb, weights=amp, minlength=n + 1) - np.bincount(eb, weights=amp, minlength=n + 1)
    dense += np.cumsum(diff)[:n]


def _add_gene_bodies(dense: np.ndarray, start: np.ndarray, end: np.ndarray, plus: np.ndarray,
                     amp: np.ndarray, bin_size: int) -> None:
    """H3K36me3: low just after the TSS, rising towards the 3' end of the gene."""
    if len(start) == 0:
        return
    sb = start // bin_size
    eb = np.maximum((end - 1) // bin_size + 1, sb + 1)
    lengths = eb - sb
    gene = np.repeat(np.arange(len(sb)), lengths)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    k = np.arange(len(gene)) - first
    frac = (k + 0.5) / lengths[gene]
    frac = np.where(plus[gene], frac, 1.0 - frac)
    dist_bp = frac * (end - start)[gene]
    vals = amp[gene] * (0.25 + 0.75 * frac) * (1.0 - np.exp(-dist_bp / 3_000.0))
    pos = sb[gene] + k
    ok = pos < len(dense)
    dense += np.bincount(pos[ok], weights=vals[ok], minlength=len(dense))


# --------------------------------------------------------------------------------------------
# Tracks
# --------------------------------------------------------------------------------------------


def _track_chrom(rng: np.random.Generator, assay: str, chrom: str, ctx: dict, cell: int) -> np.ndarray:
    """The noiseless signal of one assay in one cell on one chromosome, at the assay's bin size."""
    size = CHROM_SIZES[chrom]
    bin_size = _BIN[assay]
    dense = np.zeros(-(-size // bin_size))
    genes = ctx["genes"]
    bio = ctx["bio"]
    on = ctx["gene_chrom"] == chrom
    tss = ctx["tss"][on]
    plus = ctx["plus"][on]
    sign = np.where(plus, 1, -1)
    act = bio["activity"][on, cell]
    n = int(on.sum())
    if assay in _TSS_EXTENT:
        # activation marks: noisy sigmoid of activity; H3K4me1 also marks poised promoters
        s = act + rng.normal(0.0, 0.55, n)
        if assay == "H3K4me3":
            amp = 30.0 * _sigmoid(2.5 * (s + 0.1))
        elif assay == "H3K27ac":
            amp = 18.0 * _sigmoid(2.5 * (s - 0.1))
        elif assay == "DNase":
            amp = 25.0 * _sigmoid(2.5 * (s + 0.2))
        else:
            amp = 6.0 * _sigmoid(1.5 * (s + 1.0))
        amp = amp * np.where(bio["polycomb"][on, cell] | bio["k9"][on, cell], 0.35, 1.0)
        amp = amp * rng.lognormal(0.0, 0.3, n)
        width = rng.lognormal(0.0, 0.2, n)
        _stamp(dense, tss, sign, amp, width, _TSS_EXTENT[assay], bin_size, lambda d, w: _tss_profile(assay, d, w))
        if assay != "H3K4me3":
            enh = ctx["enhancers"]
            enh = enh[enh["chrom"].to_numpy() == chrom]
            ea = bio["enh_activity"][enh["idx"].to_numpy(), cell]
            if assay == "H3K27ac":
                e_amp = 10.0 * _sigmoid(2.5 * (ea - 0.4))
            elif assay == "DNase":
                e_amp = 12.0 * _sigmoid(2.5 * (ea - 0.2))
            else:
                e_amp = 8.0 * _sigmoid(2.0 * (ea + 0.8))
            e_amp = e_amp * rng.lognormal(0.0, 0.35, len(ea))
            ones = np.ones(len(ea), dtype=np.int64)
            _stamp(dense, enh["pos"].to_numpy(), ones, e_amp, rng.lognormal(0.0, 0.25, len(ea)),
                   (-3_000, 3_000), bin_size, lambda d, w: _enhancer_profile(assay, d, w))
            # contact-linked distal enhancers, from their own stream so the rest is unchanged
            link_rng = np.random.default_rng([ctx["seed"], 4, cell, ASSAYS.index(assay), list(CHROM_SIZES).index(chrom)])
            _stamp_linked(dense, link_rng, assay, chrom, ctx, cell)
        if assay == "DNase":
            ctcf = ctx["ctcf"]
            ctcf = ctcf[ctcf["chrom"].to_numpy() == chrom]
            c_amp = rng.lognormal(np.log(6.0), 0.5, len(ctcf))
            ones = np.ones(len(ctcf), dtype=np.int64)
            _stamp(dense, ctcf["pos"].to_numpy(), ones, c_amp, np.ones(len(ctcf)), (-600, 600), bin_size,
                   lambda d, w: _enhancer_profile("DNase", d, w))
    elif assay == "H3K36me3":
        gex = bio["body_gex"][on, cell]
        expressed = gex > 0
        amp = 1.0 + 1.1 * np.log1p(gex[expressed]) ** 0.8 * rng.lognormal(0.0, 0.3, int(expressed.sum()))
        g = genes[on][expressed]
        _add_gene_bodies(dense, g["gene_start"].to_numpy(), g["gene_end"].to_numpy(), plus[expressed], amp, bin_size)
    elif assay == "H3K27me3":
        pc = bio["polycomb"][on, cell]
        g = genes[on][pc]
        up = rng.integers(3_000, 25_000, int(pc.sum()))
        down = np.minimum(rng.integers(5_000, 40_000, int(pc.sum())), g["gene_end"].to_numpy() - g["gene_start"].to_numpy() + 10_000)
        t = tss[pc]
        s = np.where(plus[pc], t - up, t - down)
        e = np.where(plus[pc], t + down, t + up)
        amp = rng.lognormal(np.log(3.5), 0.4, len(t))
        _add_intervals(dense, np.maximum(s, 0), e, amp, bin_size)
        # peak the Polycomb signal over the (CpG-island) promoter
        _stamp(dense, t, sign[pc], 1.5 * amp, np.ones(len(t)), (-4_000, 4_000), bin_size,
               lambda d, w: np.exp(-0.5 * (d / (1_500.0 * w[:, None])) ** 2))
        dom = ctx["pc_domains"]
        dom = dom[dom["chrom"].to_numpy() == chrom]
        present = rng.random(len(dom)) < 0.75
        _add_intervals(dense, dom["start"].to_numpy()[present], dom["end"].to_numpy()[present],
                       rng.lognormal(np.log(2.5), 0.4, int(present.sum())), bin_size)
    elif assay == "H3K9me3":
        k9 = bio["k9"][on, cell]
        g = genes[on][k9]
        amp = rng.lognormal(np.log(3.0), 0.4, int(k9.sum()))
        _add_intervals(dense, g["gene_start"].to_numpy() - 5_000, g["gene_end"].to_numpy() + 5_000, amp, bin_size)
        dom = ctx["k9_domains"]
        dom = dom[dom["chrom"].to_numpy() == chrom]
        present = rng.random(len(dom)) < 0.85
        _add_intervals(dense, dom["start"].to_numpy()[present], dom["end"].to_numpy()[present],
                       rng.lognormal(np.log(2.5), 0.4, int(present.sum())), bin_size)
    else:  # pragma: no cover - guarded by ASSAYS
        raise ValueError(assay)
    return dense


def _noisy(rng: np.random.Generator, dense: np.ndarray, chrom: str, bin_size: int, scale: float) -> np.ndarray:
    """Multiplicative noise on the signal (tails below a floor are dropped, as in thresholded
    coverage tracks), sparse low background elsewhere, and no data in the telomeres and centromere;
    scaled by the (cell, assay) batch factor and rounded to 0.01."""
    n = len(dense)
    noisy = np.zeros(n)
    sig = np.flatnonzero(dense > _FLOOR)
    noisy[sig] = dense[sig] * rng.lognormal(0.0, 0.3, len(sig))
    n_bg = rng.binomial(n, min(0.5, 0.015 * bin_size / 25))
    bg = rng.integers(0, n, n_bg)
    noisy[bg] += rng.exponential(_BACKGROUND, n_bg)
    size = CHROM_SIZES[chrom]
    cen_start, cen_end = _centromere(size)
    noisy[: _TELOMERE // bin_size] = 0.0
    noisy[(size - _TELOMERE) // bin_size:] = 0.0
    noisy[cen_start // bin_size: cen_end // bin_size] = 0.0
    noisy = np.round(noisy * scale, 2)
    noisy[noisy < 0.05] = 0.0
    return noisy


def _call_peaks(signal: np.ndarray, bin_size: int, threshold: float, min_bins: int) -> tuple[np.ndarray, ...]:
    """Runs of the (lightly smoothed) signal above ``threshold`` -> start, end, summit, max, mean."""
    smooth = np.convolve(signal, np.ones(3) / 3.0, mode="same")
    above = np.concatenate([[False], smooth >= threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    keep = (ends - starts) >= min_bins
    starts, ends = starts[keep], ends[keep]
    if len(starts) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0), np.zeros(0)
    lengths = ends - starts
    run = np.repeat(np.arange(len(starts)), lengths)
    idx = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    vals = smooth[idx]
    order = np.lexsort((-vals, run))
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    summit = idx[order[first]]
    peak_max = smooth[summit]
    peak_mean = np.add.reduceat(vals, first) / lengths
    return starts * bin_size, ends * bin_size, (summit - starts) * bin_size + bin_size // 2, peak_max, peak_mean


def _write_track(path_bw: Path, path_peaks: Path, rng: np.random.Generator, cell_i: int, assay: str,
                 ctx: dict, scale: float) -> int:
    """Write one bigWig and its narrowPeak; return the number of peaks."""
    cell = CELL_LINES[cell_i]
    bin_size = _BIN[assay]
    threshold = _PEAK_THRESHOLD[assay] * scale
    peak_rows = []
    bw = pyBigWig.open(str(path_bw), "w")
    try:
        bw.addHeader(list(CHROM_SIZES.items()), maxZooms=6)
        for chrom in CHROM_SIZES:
            clean = _track_chrom(rng, assay, chrom, ctx, cell_i)
            signal = _noisy(rng, clean, chrom, bin_size, scale)
            nz = np.flatnonzero(signal)
            if len(nz):
                bw.addEntries(chrom, (nz * bin_size).astype(np.int64), values=signal[nz].astype(np.float64), span=bin_size)
            start, end, summit, pmax, pmean = _call_peaks(signal, bin_size, threshold, 2 if bin_size <= 50 else 1)
            end = np.minimum(end, CHROM_SIZES[chrom])
            peak_rows.append((chrom, start, end, summit, pmax, pmean))
    finally:
        bw.close()
    chrom_label = (lambda c: c[3:]) if cell == ENSEMBL_NAMED_PEAKS else (lambda c: c)
    lines = []
    k = 0
    for chrom, start, end, summit, pmax, pmean in peak_rows:
        fold = pmax / (_BACKGROUND * scale * 2.0)
        pval = 2.0 + 4.0 * np.log2(1.0 + fold) * np.sqrt(np.minimum((end - start) / 200.0, 25.0)) * (pmean / pmax) ** 0.5
        qval = np.maximum(pval - 1.5, 0.0)
        score = np.minimum(1000, np.round(pval * 20)).astype(int)
        label = chrom_label(chrom)
        for i in range(len(start)):
            k += 1
            lines.append(
                f"{label}\t{start[i]}\t{end[i]}\t{cell}_{assay}_peak_{k}\t{score[i]}\t.\t"
                f"{fold[i]:.5f}\t{pval[i]:.5f}\t{qval[i]:.5f}\t{summit[i]}\n"
            )
    path_peaks.write_text("".join(lines))
    return k


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


BYTES_PER_GENE = 60_000  # measured: about 48 kB of bigWig, BED and tables per gene, plus a margin


def _check_free_space(directory: Path, n_genes: int) -> None:
    """pyBigWig's writer aborts the process (malloc errors, segfaults) when the disk fills, so a
    demo that cannot fit is refused before it starts."""
    import shutil

    from epx.outputs import OutputEnvironmentError

    where = Path(directory).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    need = BYTES_PER_GENE * n_genes
    if free < need:
        raise OutputEnvironmentError(f"needs about {need / 1e6:.0f} MB for {n_genes:,} genes and {where} has "
                                     f"{free / 1e6:.0f} MB free; free some space or use --n-genes", path=directory)


def write_demo(
    directory: Path,
    *,
    n_genes: int = 2000,
    seed: int = 0,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write a synthetic three-cell-line study into ``directory`` and return its main paths.

    The directory is built next to its destination and renamed into place, so an interrupted run
    leaves nothing half-written; an existing directory is only replaced with ``force`` (otherwise
    :class:`~epx.errors.OutputExistsError`). The same ``seed`` and ``n_genes`` give byte-identical
    files. Returned keys: ``genes``, ``chrom_sizes``, ``manifest``, ``labels_X1``, ``labels_X2``,
    ``labels_X3``, ``test_genes``, ``pairs`` (promoter contacts, BEDPE, for ``epx featurize
    --pairs``) and ``links`` (the true enhancer-gene links behind them).
    """
    if n_genes < MIN_GENES:
        raise EpxError(f"--n-genes must be at least {MIN_GENES} (got {n_genes})")
    directory = Path(directory)
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    _check_free_space(directory, n_genes)
    with atomic_dir(directory, "demo", force=force) as tmp:
        rng = np.random.default_rng([seed, 0])
        say(f"placing {n_genes} genes on {len(CHROM_SIZES)} chromosomes")
        genes = _make_genes(rng, n_genes)
        # the contact-linked enhancers and the pairs file draw from their own streams
        links = _link_enhancers(np.random.default_rng([seed, 2]), genes, len(CELL_LINES))
        bio = _biology(rng, genes, n_enh=int(1.5 * n_genes), links=links)
        ctx = {
            "seed": seed,
            "links": links,
            "genes": genes,
            "bio": bio,
            "gene_chrom": genes["chr"].to_numpy(),
            "tss": _tss(genes),
            "plus": (genes["strand"] == "+").to_numpy(),
            "enhancers": _place_enhancers(rng, genes, bio),
            "ctcf": _place_sites(rng, n_genes // 2),
            "pc_domains": _domains(rng, max(4, n_genes // 20), 5_000, 60_000),
            "k9_domains": _domains(rng, max(4, n_genes // 25), 30_000, 400_000),
        }
        cell_scale = rng.lognormal(0.0, 0.25, len(CELL_LINES))
        assay_scale = rng.lognormal(0.0, 0.15, (len(CELL_LINES), len(ASSAYS)))

        (tmp / "chrom.sizes").write_text("".join(f"{c}\t{s}\n" for c, s in CHROM_SIZES.items()))
        genes.to_csv(tmp / "genes.tsv", sep="\t", index=False)
        genes[genes["chr"] == "chr1"].to_csv(tmp / "test_genes.tsv", sep="\t", index=False)
        (tmp / "labels").mkdir()
        for c, cell in enumerate(CELL_LINES):
            labels = pd.DataFrame({"gene_name": genes["gene_name"], "gex": np.round(bio["gex"][:, c], 6)})
            labels.to_csv(tmp / "labels" / f"{cell}.tsv", sep="\t", index=False)

        rows = []
        for c, cell in enumerate(CELL_LINES):
            (tmp / "tracks" / cell).mkdir(parents=True)
            for a, assay in enumerate(ASSAYS):
                say(f"writing tracks/{cell}/{assay}.bw and .narrowPeak")
                bw_rel = f"tracks/{cell}/{assay}.bw"
                bed_rel = f"tracks/{cell}/{assay}.narrowPeak"
                _write_track(tmp / bw_rel, tmp / bed_rel, np.random.default_rng([seed, 1, c, a]), c, assay,
                             ctx, float(cell_scale[c] * assay_scale[c, a]))
                rows.append((cell, assay, "bigwig", bw_rel))
                rows.append((cell, assay, "bed", bed_rel))
        pd.DataFrame(rows, columns=["cell_line", "assay", "kind", "path"]).to_csv(
            tmp / "manifest.tsv", sep="\t", index=False
        )
        say("writing pairs.bedpe (promoter contacts) and links.tsv")
        n_pairs = _write_pairs(tmp / "pairs.bedpe", np.random.default_rng([seed, 3]), genes, links)
        _links_table(genes, links).to_csv(tmp / "links.tsv", sep="\t", index=False)
        (tmp / "README.md").write_text(_readme(seed, n_genes, genes, bio, links, n_pairs, directory))
    say(f"done in {time.perf_counter() - t0:.1f} s")
    return {
        "genes": directory / "genes.tsv",
        "chrom_sizes": directory / "chrom.sizes",
        "manifest": directory / "manifest.tsv",
        "labels_X1": directory / "labels" / "X1.tsv",
        "labels_X2": directory / "labels" / "X2.tsv",
        "labels_X3": directory / "labels" / "X3.tsv",
        "test_genes": directory / "test_genes.tsv",
        "pairs": directory / "pairs.bedpe",
        "links": directory / "links.tsv",
    }


def _fragment(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, size: np.ndarray,
              longest: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Restriction-fragment-like intervals of 2 kb to ``longest`` (at least ``hi - lo`` + 200 bp)
    holding ``[lo, hi)`` at a random offset, on the chromosome."""
    length = np.maximum(rng.integers(2_000, longest + 1, len(lo)), hi - lo + 200)
    start = lo - (rng.random(len(lo)) * (length - (hi - lo))).astype(np.int64)
    start = np.clip(start, 0, size - length)
    return start, start + length


def _holds_tss(chrom: np.ndarray, lo: np.ndarray, hi: np.ndarray, sorted_tss: dict[str, np.ndarray]) -> np.ndarray:
    """Whether ``[lo, hi)`` holds a TSS, per interval (``sorted_tss``: the TSSs of each chromosome)."""
    out = np.zeros(len(lo), dtype=bool)
    for c, t in sorted_tss.items():
        on = chrom == c
        out[on] = np.searchsorted(t, hi[on], side="left") > np.searchsorted(t, lo[on], side="left")
    return out


def _between_tss(chrom: np.ndarray, start: np.ndarray, end: np.ndarray, mid: np.ndarray,
                 sorted_tss: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Trim fragments to the TSS-free stretch around ``mid`` (the contacted element), so a region
    fragment never holds a gene's TSS (which would make it that gene's promoter, and the pair
    count both ways)."""
    start, end = start.copy(), end.copy()
    for c, t in sorted_tss.items():
        on = np.flatnonzero(chrom == c)
        if not len(t) or not len(on):
            continue
        i = np.searchsorted(t, mid[on], side="right")
        prev = np.where(i > 0, t[np.maximum(i - 1, 0)] + 1, 0)
        nxt = np.where(i < len(t), t[np.minimum(i, len(t) - 1)], np.iinfo(np.int64).max)
        start[on] = np.maximum(start[on], prev)
        end[on] = np.minimum(end[on], nxt)
    return start, end


def _contact_scores(rng: np.random.Generator, n: int, functional: bool) -> np.ndarray:
    """CHiCAGO-like scores (5 is the usual calling threshold, capped at 30): true links score
    higher on average than the non-functional contacts."""
    extra = rng.gamma(3.0, 5.0, n) if functional else rng.gamma(1.0, 2.5, n)
    return np.minimum(5.0 + extra, 30.0)


def _write_pairs(path: Path, rng: np.random.Generator, genes: pd.DataFrame, links: dict) -> int:
    """Promoter-capture-Hi-C-like contacts in BEDPE (promoter fragment, region fragment, ``.``,
    score): every true link; about as many non-functional cis contacts (a random gene's promoter to
    a random fragment 20-300 kb away, scoring lower on average); a few trans contacts; a few
    contacts touching no gene's TSS. Returns the number of lines."""
    n = len(genes)
    tss = _tss(genes)
    chrom_of = genes["chr"].to_numpy()
    chrom_size = np.array([CHROM_SIZES[c] for c in chrom_of])
    names = list(CHROM_SIZES)
    sorted_tss = {c: np.sort(tss[chrom_of == c]) for c in names}
    parts = []

    def promoter(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _fragment(rng, tss[g], tss[g] + 1, chrom_size[g])

    # true links: the promoter's fragment to the enhancer's
    g = links["gene"]
    p1, p2 = promoter(g)
    half = links["width"] // 2
    r1, r2 = _fragment(rng, links["pos"] - half, links["pos"] + half, chrom_size[g], longest=REGION_FRAGMENT)
    r1, r2 = _between_tss(chrom_of[g], r1, r2, links["pos"], sorted_tss)
    parts.append((chrom_of[g], p1, p2, chrom_of[g], r1, r2, _contact_scores(rng, len(g), True)))
    # non-functional cis contacts, about as many
    m = len(g)
    g = rng.integers(0, n, m)
    p1, p2 = promoter(g)
    centre = tss[g] + rng.choice([-1, 1], m) * np.exp(rng.uniform(np.log(20_000), np.log(300_000), m)).astype(np.int64)
    centre = np.clip(centre, 0, chrom_size[g] - 1)
    r1, r2 = _fragment(rng, centre, centre + 1, chrom_size[g], longest=REGION_FRAGMENT)
    r1, r2 = _between_tss(chrom_of[g], r1, r2, centre, sorted_tss)
    parts.append((chrom_of[g], p1, p2, chrom_of[g], r1, r2, _contact_scores(rng, m, False)))
    # a few trans contacts
    k = max(3, n // 200)
    g = rng.integers(0, n, k)
    p1, p2 = promoter(g)
    other = np.array([rng.choice([c for c in names if c != chrom_of[i]]) for i in g])
    other_size = np.array([CHROM_SIZES[c] for c in other])
    centre = (rng.random(k) * other_size).astype(np.int64)
    r1, r2 = _fragment(rng, centre, centre + 1, other_size)
    parts.append((chrom_of[g], p1, p2, other, r1, r2, _contact_scores(rng, k, False)))
    # a few contacts between two fragments holding no TSS
    rows = []
    while len(rows) < k:
        c = names[int(rng.integers(0, len(names)))]
        a = int(rng.integers(0, CHROM_SIZES[c] - 320_000))
        b = a + int(rng.integers(20_000, 300_000))
        (a1,), (a2,) = _fragment(rng, np.array([a]), np.array([a + 1]), np.array([CHROM_SIZES[c]]))
        (b1,), (b2,) = _fragment(rng, np.array([b]), np.array([b + 1]), np.array([CHROM_SIZES[c]]))
        t = sorted_tss[c]
        if np.searchsorted(t, a2) == np.searchsorted(t, a1) and np.searchsorted(t, b2) == np.searchsorted(t, b1):
            rows.append((c, a1, a2, c, b1, b2))
    cols = list(zip(*rows, strict=True))
    parts.append((np.array(cols[0]), np.array(cols[1]), np.array(cols[2]), np.array(cols[3]), np.array(cols[4]),
                  np.array(cols[5]), _contact_scores(rng, k, False)))

    table = pd.DataFrame({key: np.concatenate([part[i] for part in parts]) for i, key in
                          enumerate(["chrom1", "start1", "end1", "chrom2", "start2", "end2", "score"])})
    table["name"] = "."
    order = {c: i for i, c in enumerate(names)}
    table = table.assign(_c=table["chrom1"].map(order)).sort_values(["_c", "start1", "end1", "start2"], kind="stable")
    table["score"] = table["score"].map(lambda v: f"{v:.2f}")
    table[["chrom1", "start1", "end1", "chrom2", "start2", "end2", "name", "score"]].to_csv(
        path, sep="\t", header=False, index=False)
    return len(table)


def _links_table(genes: pd.DataFrame, links: dict) -> pd.DataFrame:
    """The true enhancer-gene links (the answer behind pairs.bedpe), with each enhancer's extent,
    distance to the TSS and weight in the gene's expression."""
    half = links["width"] // 2
    tss = _tss(genes)[links["gene"]]
    table = pd.DataFrame({
        "gene_name": genes["gene_name"].to_numpy()[links["gene"]],
        "chrom": links["chrom"],
        "start": links["pos"] - half,
        "end": links["pos"] - half + links["width"],
        "tss_distance": links["pos"] - tss,
        "weight": np.round(links["weight"], 4),
    })
    order = np.lexsort((table["start"].to_numpy(), links["gene"]))
    return table.iloc[order].reset_index(drop=True)


def _readme(seed: int, n_genes: int, genes: pd.DataFrame, bio: dict, links: dict, n_pairs: int,
            directory: Path) -> str:
    import shlex

    zero = ", ".join(f"{cell} {np.mean(bio['gex'][:, c] == 0):.0%}" for c, cell in enumerate(CELL_LINES))
    n_test = int((genes["chr"] == "chr1").sum())
    n_linked = len(np.unique(links["gene"]))
    d = "$DIR"
    labels = " ".join(f"--labels {c}={d}/labels/{c}.tsv" for c in CELL_LINES)
    return f"""# epx demo study (synthetic)

Generated by `epx.demo.write_demo(seed={seed}, n_genes={n_genes})`: a seeded, synthetic study in
real file formats. Nothing here is real biology; expression is driven by a latent per-gene promoter
activity that the tracks reflect, so models should reach a clearly positive Spearman. For
{n_linked} genes ({n_linked / len(genes):.0%}) about half of it comes instead from 1-3 distal
enhancers {LINK_DISTANCE[0] // 1000}-{LINK_DISTANCE[1] // 1000} kb from the TSS, outside every
promoter window (TSS +- 20 kb), that only the contacts in `pairs.bedpe` link to their gene.

- `chrom.sizes`: {len(CHROM_SIZES)} chromosomes ({", ".join(CHROM_SIZES)}), {sum(CHROM_SIZES.values()) / 1e6:.0f} Mb in total.
- `genes.tsv`: {len(genes)} genes, ML4G format (0-based half-open; TSS_start..TSS_end is a 50 bp
  window starting at the TSS and running downstream).
- `test_genes.tsv`: the {n_test} chr1 genes (like ML4G's `X3_test_info.tsv`).
- `labels/X1.tsv`, `labels/X2.tsv`, `labels/X3.tsv`: CAGE-like `gex` per gene (zeros: {zero}).
- `tracks/<cell>/<assay>.bw` and `.narrowPeak` for cell lines {", ".join(CELL_LINES)} and assays
  {", ".join(ASSAYS)}. X3's narrowPeak files use Ensembl chromosome names (`1`, `X`); its
  bigWigs use `chr1`.
- `manifest.tsv`: `cell_line, assay, kind, path` with paths relative to this directory.
- `pairs.bedpe`: {n_pairs} promoter-capture-Hi-C-like contacts shared by the cell lines (BEDPE:
  promoter fragment, region fragment, name `.`, CHiCAGO-like score 5-30): the
  {len(links["gene"])} true enhancer links, about as many non-functional contacts 20-300 kb away
  (lower scores on average), a few trans contacts and a few touching no gene.
- `links.tsv`: the true links behind `pairs.bedpe` (gene, enhancer extent, distance to the TSS,
  weight in the gene's expression), to check what a model attends to.

Cell lines share most of the gene program (latent activity correlation ~0.8) and differ by
cell-specific changes and batch-like scale shifts of expression and tracks.

Featurize with the contacts (each gene's top regions binned beside its promoter, at
Chromoformer's three bin geometries):

```sh
DIR={shlex.quote(str(directory))}
epx featurize --genes {d}/genes.tsv --manifest {d}/manifest.tsv \\
  {labels} \\
  --pairs {d}/pairs.bedpe --bins 2000x20,500x80,100x400 -o {d}-dataset
```
"""
