"""A seeded synthetic personal-genomics cohort, in the file formats real cohorts come in.

``epx demo --personal DIR`` writes, in a few seconds:

* ``reference.fa`` (+ ``.fai``): two chromosomes with a human-like composition (GC ~40%, CpG
  depleted by deamination, GC-rich CpG islands at most promoters), soft-masked (lower-case)
  interspersed repeats (mutated copies of a few consensus elements) and microsatellites, and
  short ``N`` runs at the chromosome ends (telomere gaps);
* ``genes.tsv``: genes with a TSS at least 10 kb from either end, both strands, in the TSS-column
  format :func:`epx.io.genes.read_genes` reads (1-based ``start`` and ``tss``, like BioMart);
* ``genotypes.vcf.gz`` (+ ``.tbi``): phased genotypes of ``IND001``... at SNPs, insertions and
  deletions of 1-20 bp (VCF style, with the anchor base), a few multi-allelic sites and a few
  missing calls (``.|.``); ALT allele frequencies 0.05-0.5; linkage disequilibrium from a latent
  Gaussian process along each haplotype (correlation ``exp(-distance / 15 kb)``); every REF
  matches the FASTA;
* ``genotypes.bed/.bim/.fam``: the same genotypes as PLINK 1 (biallelic sites only; A1 = ALT,
  A2 = REF; chromosome codes ``1``, ``2``; unphased by nature);
* ``expression.bed``: GTEx-style expression (``#chr start end gene_id IND001 ...``, one row per
  gene at its TSS), standardised per gene (mean 0, SD 1), with cis-eQTLs of known size: about 60%
  of genes have 1-3 causal biallelic variants within 25 kb of the TSS explaining 15-60% of the
  variance; the rest is noise;
* ``eqtls.tsv``: the truth, one row per causal variant, its effect per ALT allele in the units of
  ``expression.bed``;
* ``enformer-tiny/``: tiny random Enformer weights when the ``enformer`` predictor plugin is
  installed (skipped with a message otherwise);
* ``README.md`` describing every file.

The ``.tbi`` is built in-process with the htslib that cyvcf2 bundles (``bcf_index_build3``), or
else with the ``tabix`` program. Everything comes from ``numpy.random.default_rng`` seeded by
``seed``: the same seed writes identical files.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from epx.errors import EpxError
from epx.outputs import atomic_dir

CHROMS: dict[str, int] = {"chr1": 240_000, "chr2": 180_000}
GENES_PER_CHROM: dict[str, int] = {"chr1": 18, "chr2": 14}
N_INDIVIDUALS = 80
TELOMERE_N = 2_000  # N run at each chromosome end
TSS_MARGIN = 10_000  # TSS at least this far from either end
VARIANT_SPACING = 450  # mean bp between variants
LD_SCALE = 15_000  # bp: latent correlation exp(-d / LD_SCALE) between neighbouring variants
EGENE_FRACTION = 0.6
CIS_WINDOW = 25_000  # causal variants within this of the TSS
MISSING_RATE = 0.002  # of calls at the sites that have missing calls
FASTA_WIDTH = 60
VCF_REFERENCE = "reference.fa"


# --------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


def _random_bases(rng: np.random.Generator, n: int, gc: float) -> np.ndarray:
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    return _BASES[rng.choice(4, size=n, p=p)]


def _deplete_cpg(rng: np.random.Generator, seq: np.ndarray, keep: float) -> None:
    """Most CpGs decay to CpA/TpG (methylated-cytosine deamination), as in the human genome."""
    cg = np.flatnonzero((seq[:-1] == ord("C")) & (seq[1:] == ord("G")))
    decay = cg[rng.random(len(cg)) > keep]
    on_top = rng.random(len(decay)) < 0.5
    seq[decay[on_top]] = ord("T")  # CG -> TG
    seq[decay[~on_top] + 1] = ord("A")  # CG -> CA


def _mutate(rng: np.random.Generator, element: np.ndarray, divergence: float) -> np.ndarray:
    out = element.copy()
    hit = rng.random(len(out)) < divergence
    out[hit] = _BASES[rng.integers(0, 4, hit.sum())]
    return out


def _make_chrom(rng: np.random.Generator, length: int, islands: list[int], repeats: list[np.ndarray]) -> bytes:
    seq = _random_bases(rng, length, gc=0.41)
    masked = np.zeros(length, dtype=bool)
    # interspersed repeats: mutated copies of a few consensus elements, either strand, soft-masked
    n_rep = length // 450
    for _ in range(n_rep):
        element = repeats[int(rng.integers(0, len(repeats)))]
        copy = _mutate(rng, element, float(rng.uniform(0.05, 0.2)))
        if rng.random() < 0.5:
            copy = np.frombuffer(bytes(copy[::-1]).translate(bytes.maketrans(b"ACGT", b"TGCA")), dtype=np.uint8)
        at = int(rng.integers(0, length - len(copy)))
        seq[at: at + len(copy)] = copy
        masked[at: at + len(copy)] = True
    # microsatellites: (CA)n, (A)n, (GGAA)n ...
    for _ in range(length // 8_000):
        unit = np.frombuffer([b"CA", b"A", b"T", b"GGAA", b"AT", b"TTTA"][int(rng.integers(0, 6))], dtype=np.uint8)
        reps = int(rng.integers(8, 30))
        motif = np.tile(unit, reps)
        at = int(rng.integers(0, length - len(motif)))
        seq[at: at + len(motif)] = motif
        masked[at: at + len(motif)] = True
    _deplete_cpg(rng, seq, keep=0.22)
    for centre in islands:  # CpG islands at promoters: ~1 kb, GC ~0.65, CpG kept, not masked
        width = int(rng.integers(600, 1_600))
        lo = max(centre - width // 2, 0)
        seq[lo: lo + width] = _random_bases(rng, len(seq[lo: lo + width]), gc=0.65)
        masked[lo: lo + width] = False
    seq[masked] += 32  # lower case
    seq[:TELOMERE_N] = ord("N")
    seq[-TELOMERE_N:] = ord("N")
    return seq.tobytes()


def _write_fasta(path: Path, chroms: dict[str, bytes]) -> None:
    """FASTA with 60-column lines and its samtools-style ``.fai``."""
    fai = []
    offset = 0
    with open(path, "wb") as fh:
        for name, seq in chroms.items():
            header = f">{name}\n".encode()
            fh.write(header)
            offset += len(header)
            fai.append(f"{name}\t{len(seq)}\t{offset}\t{FASTA_WIDTH}\t{FASTA_WIDTH + 1}\n")
            body = b"\n".join(seq[i: i + FASTA_WIDTH] for i in range(0, len(seq), FASTA_WIDTH)) + b"\n"
            fh.write(body)
            offset += len(body)
    Path(f"{path}.fai").write_text("".join(fai))


# --------------------------------------------------------------------------------------------
# Genes
# --------------------------------------------------------------------------------------------


def _place_genes(rng: np.random.Generator) -> pd.DataFrame:
    """Genes spread along each chromosome: TSSs at least 6 kb apart and TSS_MARGIN from the ends."""
    from epx.demo import _gene_names

    rows = []
    for chrom, length in CHROMS.items():
        n = GENES_PER_CHROM[chrom]
        slots = np.linspace(TSS_MARGIN, length - TSS_MARGIN, n + 1)
        for i in range(n):
            tss = int(rng.integers(int(slots[i]) + 3_000, int(slots[i + 1]) - 3_000))
            plus = bool(rng.random() < 0.5)
            size = int(np.clip(rng.lognormal(np.log(8_000), 0.7), 800, 40_000))
            start, end = (tss, min(tss + size, length - TELOMERE_N)) if plus else (max(tss + 1 - size, TELOMERE_N), tss + 1)
            rows.append((chrom, start, end, "+" if plus else "-", tss))
    genes = pd.DataFrame(rows, columns=["chrom", "start0", "end", "strand", "tss0"])
    genes.insert(0, "gene_id", [f"DEMOG{i + 1:05d}" for i in range(len(genes))])
    genes.insert(1, "gene_name", _gene_names(rng, len(genes)))
    return genes


def _genes_table(genes: pd.DataFrame) -> pd.DataFrame:
    """The TSS-column gene table: 1-based start and tss, end inclusive (BioMart style)."""
    return pd.DataFrame({
        "gene_id": genes["gene_id"], "gene_name": genes["gene_name"], "chrom": genes["chrom"],
        "start": genes["start0"] + 1, "end": genes["end"], "strand": genes["strand"], "tss": genes["tss0"] + 1,
    })


# --------------------------------------------------------------------------------------------
# Variants and genotypes
# --------------------------------------------------------------------------------------------


def _indel_length(rng: np.random.Generator) -> int:
    """1-20 bp, mostly short (geometric-like, as real indel spectra)."""
    return min(20, int(rng.geometric(0.35)) + (int(rng.integers(0, 12)) if rng.random() < 0.15 else 0))


def _make_sites(rng: np.random.Generator, chrom: str, seq: bytes) -> list[dict]:
    """Non-overlapping sites at ~VARIANT_SPACING, away from N runs; REF from the FASTA (upper case)."""
    upper = seq.upper()
    sites: list[dict] = []
    pos = TELOMERE_N + int(rng.integers(50, 500))
    end = len(seq) - TELOMERE_N - 40
    while pos < end:
        kind = rng.choice(["snp", "ins", "del", "multi"], p=[0.86, 0.05, 0.06, 0.03])
        base = chr(upper[pos])
        if kind == "snp" or kind == "multi":
            others = [b for b in "ACGT" if b != base]
            picks = rng.permutation(others)
            ref, alts = base, [str(picks[0])] if kind == "snp" else [str(picks[0]), str(picks[1])]
        elif kind == "ins":
            ins = [str(b) for b in rng.choice(list("ACGT"), _indel_length(rng))]
            # left-aligned (last inserted base != anchor), and ALT must not also match the FASTA
            # (first inserted base != the next reference base), so PLINK's alleles orient unambiguously
            nxt = chr(upper[pos + 1])
            if ins[-1] == base or (len(ins) == 1 and ins[0] == nxt):
                ins[-1] = str(rng.choice([b for b in "ACGT" if b not in (base, nxt)]))
            if ins[0] == nxt:
                ins[0] = str(rng.choice([b for b in "ACGT" if b != nxt]))
            ref, alts = base, [base + "".join(ins)]
        else:
            k = _indel_length(rng)
            ref, alts = upper[pos: pos + 1 + k].decode(), [base]
            if ref[-1] == base:  # would shift left: make it a SNP instead
                ref, alts, kind = base, [str(rng.choice([b for b in "ACGT" if b != base]))], "snp"
        if "N" not in ref:
            sites.append({"chrom": chrom, "pos0": pos, "ref": ref, "alts": alts, "kind": str(kind)})
        pos += len(ref) + 1 + int(rng.exponential(VARIANT_SPACING))
    return sites


def _haplotypes(rng: np.random.Generator, sites: list[dict], n_hap: int) -> np.ndarray:
    """Allele index per (site, haplotype): the haplotypes ranked by an AR(1) latent Gaussian along
    the chromosome, the lowest carrying the ALT alleles, so neighbouring sites are in LD while each
    site has exactly its drawn allele frequencies (0.05-0.5) in the sample."""
    out = np.zeros((len(sites), n_hap), dtype=np.int16)
    z = rng.standard_normal(n_hap)
    prev = None
    for i, site in enumerate(sites):
        if prev is not None and prev["chrom"] == site["chrom"]:
            rho = np.exp(-(site["pos0"] - prev["pos0"]) / LD_SCALE)
            z = rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(n_hap)
        else:
            z = rng.standard_normal(n_hap)
        prev = site
        sign = 1.0 if rng.random() < 0.5 else -1.0  # ALT on either side of the latent
        if len(site["alts"]) == 1:
            freqs = [float(rng.uniform(0.05, 0.5))]
        else:
            total = float(rng.uniform(0.15, 0.5))
            share = float(rng.uniform(0.35, 0.65))
            freqs = [total * share, total * (1 - share)]
        site["freq"] = freqs
        # exact frequencies in the sample: the lowest-ranked haplotypes of the latent carry the ALTs
        order = np.argsort(sign * z, kind="stable")
        counts = np.maximum(1, np.round(np.array(freqs) * n_hap)).astype(int)
        allele = np.zeros(n_hap, dtype=np.int16)
        lo = 0
        for a, c in enumerate(counts, start=1):
            allele[order[lo: lo + c]] = a
            lo += c
        out[i] = allele
    return out


def _missing(rng: np.random.Generator, n_sites: int, n_ind: int) -> np.ndarray:
    """(sites, individuals) True where the call is missing: a few sites with a few missing calls."""
    miss = np.zeros((n_sites, n_ind), dtype=bool)
    some = rng.choice(n_sites, size=max(3, n_sites // 40), replace=False)
    for s in some:
        k = int(rng.integers(1, 4))
        miss[s, rng.choice(n_ind, size=k, replace=False)] = True
    return miss


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------

_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def write_bgzf(path: Path, data: bytes, level: int = 6) -> None:
    """BGZF (blocked gzip, what ``bgzip`` writes): gzip members of at most 64 KiB input, each
    with its compressed size in a ``BC`` extra field, then the empty EOF block."""
    with open(path, "wb") as fh:
        for i in range(0, len(data), 0xFF00):
            chunk = data[i: i + 0xFF00]
            comp = zlib.compressobj(level, zlib.DEFLATED, -15)
            body = comp.compress(chunk) + comp.flush()
            header = struct.pack("<4BI2BH2BHH", 0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, ord("B"), ord("C"), 2,
                                 len(body) + 25)
            fh.write(header + body + struct.pack("<II", zlib.crc32(chunk) & 0xFFFFFFFF, len(chunk)))
        fh.write(_BGZF_EOF)


def tabix_index(path: Path) -> Path:
    """Write ``path.tbi`` for a bgzipped VCF: with the htslib inside cyvcf2 when it exports
    ``bcf_index_build3``, else with the ``tabix`` program."""
    tbi = Path(f"{path}.tbi")
    if _tabix_in_process(path, tbi):
        return tbi
    exe = shutil.which("tabix")
    if exe is None:
        raise EpxError("cannot index the demo VCF: cyvcf2's htslib is not usable here and the `tabix` program "
                       "is missing; install it (apt-get install tabix)")
    done = subprocess.run([exe, "-f", "-p", "vcf", str(path)], capture_output=True, text=True)
    if done.returncode != 0 or not tbi.exists():
        first = (done.stderr.strip().splitlines() or ["no index written"])[0]
        raise EpxError(f"tabix could not index {path}: {first}")
    return tbi


def _tabix_in_process(path: Path, tbi: Path) -> bool:
    import ctypes

    try:
        import cyvcf2.cyvcf2 as ext

        lib = ctypes.CDLL(ext.__file__)
        build = lib.bcf_index_build3
    except (ImportError, OSError, AttributeError):
        return False
    build.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    build.restype = ctypes.c_int
    # min_shift 0: a .tbi (tabix) index, not CSI
    return build(str(path).encode(), str(tbi).encode(), 0, 0) == 0 and tbi.exists()


def _vcf_text(sites: list[dict], gt: np.ndarray, miss: np.ndarray, samples: list[str]) -> str:
    """gt: (sites, individuals, 2) allele indices, phased."""
    lines = [
        "##fileformat=VCFv4.2",
        "##FILTER=<ID=PASS,Description=\"All filters passed\">",
        f"##reference=file:{VCF_REFERENCE}",
        *(f"##contig=<ID={c},length={n}>" for c, n in CHROMS.items()),
        "##INFO=<ID=AF,Number=A,Type=Float,Description=\"ALT allele frequency among the called haplotypes\">",
        "##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype (phased)\">",
        "##source=epx demo --personal (synthetic)",
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples]),
    ]
    for i, site in enumerate(sites):
        called = gt[i][~miss[i]]
        af = ",".join(f"{np.mean(called == a):.4g}" for a in range(1, len(site["alts"]) + 1))
        calls = [".|." if m else f"{a}|{b}" for (a, b), m in zip(gt[i].tolist(), miss[i].tolist(), strict=True)]
        lines.append("\t".join([site["chrom"], str(site["pos0"] + 1), site["id"], site["ref"], ",".join(site["alts"]),
                                ".", "PASS", f"AF={af}", "GT", *calls]))
    return "\n".join(lines) + "\n"


def _write_plink(prefix: Path, sites: list[dict], gt: np.ndarray, miss: np.ndarray, samples: list[str]) -> int:
    """Biallelic sites as PLINK 1 (A1 = ALT counted, A2 = REF, NaN for missing); returns how many."""
    from bed_reader import to_bed

    keep = [i for i, s in enumerate(sites) if len(s["alts"]) == 1]
    dosage = gt[keep].sum(axis=2).astype(np.float32)  # (sites, individuals): ALT count
    dosage[miss[keep]] = np.nan
    to_bed(f"{prefix}.bed", dosage.T, count_A1=True, properties={
        "fid": samples,
        "iid": samples,
        "sid": [sites[i]["id"] for i in keep],
        "chromosome": [sites[i]["chrom"].removeprefix("chr") for i in keep],
        "bp_position": [sites[i]["pos0"] + 1 for i in keep],
        "cm_position": [0.0] * len(keep),
        "allele_1": [sites[i]["alts"][0] for i in keep],
        "allele_2": [sites[i]["ref"] for i in keep],
    })
    return len(keep)


# --------------------------------------------------------------------------------------------
# Expression
# --------------------------------------------------------------------------------------------


def _expression(rng: np.random.Generator, genes: pd.DataFrame, sites: list[dict], gt: np.ndarray,
                miss: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """Standardised expression (genes, individuals) and the causal variants with their effects
    per ALT allele in standardised units."""
    n_ind = gt.shape[1]
    dosage = gt.sum(axis=2).astype(float)
    chrom = np.array([s["chrom"] for s in sites])
    pos = np.array([s["pos0"] for s in sites])
    eligible = np.array([len(s["alts"]) == 1 for s in sites]) & ~miss.any(axis=1)
    expr = np.zeros((len(genes), n_ind))
    truth = []
    for g, gene in enumerate(genes.itertuples()):
        y = rng.standard_normal(n_ind)
        if rng.random() < EGENE_FRACTION:
            near = np.flatnonzero(eligible & (chrom == gene.chrom) & (np.abs(pos - gene.tss0) <= CIS_WINDOW))
            near = near[dosage[near].std(axis=1) > 0]
            k = min(int(rng.integers(1, 4)), len(near))
            if k:
                causal = np.sort(rng.choice(near, size=k, replace=False))
                beta = rng.uniform(0.5, 1.5, k) * rng.choice([-1.0, 1.0], k)
                genetic = dosage[causal].T @ beta
                h2 = float(rng.uniform(0.15, 0.6))
                scale = np.sqrt(h2) / genetic.std()
                y = scale * genetic + np.sqrt(1 - h2) * y
                sd = y.std()
                for v, b in zip(causal, beta, strict=True):
                    s = sites[v]
                    truth.append((gene.gene_id, s["id"], s["chrom"], s["pos0"] + 1, s["ref"], s["alts"][0],
                                  round(float(scale * b / sd), 6), round(h2, 4)))
        expr[g] = (y - y.mean()) / y.std()
    table = pd.DataFrame(truth, columns=["gene_id", "variant_id", "chrom", "pos", "ref", "alt", "effect", "h2"])
    return expr, table


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _enformer_writer() -> tuple[Callable[[Path], object] | None, str]:
    """``epx_enformer.tiny.write_tiny_enformer`` when the ``enformer`` predictor plugin is
    installed, else None and why."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="epx.predictors") if ep.name == "enformer"]
    if not found:
        return None, "the enformer predictor plugin (epx-enformer) is not installed"
    try:
        from epx_enformer.tiny import write_tiny_enformer
    except ImportError as err:
        return None, f"the enformer plugin has no tiny-weights writer ({err})"
    return write_tiny_enformer, ""


def write_personal_demo(
    directory: Path,
    *,
    seed: int = 0,
    n_individuals: int = N_INDIVIDUALS,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write the synthetic cohort into ``directory`` (atomically, like :func:`epx.demo.write_demo`)
    and return its main paths: ``reference``, ``genes``, ``vcf``, ``plink`` (the prefix),
    ``expression``, ``eqtls``, ``readme`` and, when the enformer plugin wrote them, ``enformer``.
    ``notice`` hears what was left out (the tiny Enformer weights without the plugin)."""
    if not 10 <= n_individuals <= 9_999:
        raise EpxError(f"the personal demo needs 10-9999 individuals (got {n_individuals})")
    directory = Path(directory)
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    samples = [f"IND{i + 1:03d}" for i in range(n_individuals)]
    with atomic_dir(directory, "demo", force=force) as tmp:
        rng = np.random.default_rng([seed, 11])
        say("writing reference.fa")
        genes = _place_genes(rng)
        repeats = [_random_bases(rng, int(rng.integers(150, 320)), gc=0.42) for _ in range(4)]
        seqs = {c: _make_chrom(rng, n, [int(t) for t in genes.loc[genes["chrom"] == c, "tss0"]
                                         if rng.random() < 0.7], repeats)
                for c, n in CHROMS.items()}
        _write_fasta(tmp / "reference.fa", seqs)
        _genes_table(genes).to_csv(tmp / "genes.tsv", sep="\t", index=False)

        say(f"simulating genotypes of {n_individuals} individuals")
        grng = np.random.default_rng([seed, 12])
        sites = [s for c in CHROMS for s in _make_sites(grng, c, seqs[c])]
        for i, s in enumerate(sites):
            s["id"] = f"rsdemo{i + 1}"
        haps = _haplotypes(grng, sites, 2 * n_individuals)
        gt = np.stack([haps[:, 0::2], haps[:, 1::2]], axis=2)  # (sites, individuals, 2)
        miss = _missing(grng, len(sites), n_individuals)
        gt_written = np.where(miss[:, :, None], -1, gt)
        say("writing genotypes.vcf.gz and its .tbi index")
        write_bgzf(tmp / "genotypes.vcf.gz", _vcf_text(sites, gt_written, miss, samples).encode())
        tabix_index(tmp / "genotypes.vcf.gz")
        say("writing genotypes.bed/.bim/.fam (PLINK 1)")
        n_plink = _write_plink(tmp / "genotypes", sites, gt, miss, samples)

        say("simulating expression with cis-eQTLs")
        expr, truth = _expression(np.random.default_rng([seed, 13]), genes, sites, gt, miss)
        table = pd.DataFrame({"#chr": genes["chrom"], "start": genes["tss0"], "end": genes["tss0"] + 1,
                              "gene_id": genes["gene_id"]})
        values = pd.DataFrame(np.round(expr, 6), columns=samples)
        pd.concat([table, values], axis=1).sort_values(["#chr", "start"], kind="stable").to_csv(
            tmp / "expression.bed", sep="\t", index=False, float_format="%.6f")
        truth.to_csv(tmp / "eqtls.tsv", sep="\t", index=False)

        writer, why_not = _enformer_writer()
        if writer is not None:
            say("writing tiny Enformer weights (enformer-tiny/)")
            writer(tmp / "enformer-tiny")
        else:
            (notice or say)(f"skipped enformer-tiny/ (tiny Enformer weights): {why_not}")
        (tmp / "README.md").write_text(_readme(seed, n_individuals, genes, sites, n_plink, truth, seqs,
                                               writer is not None, why_not))
    say(f"done in {time.perf_counter() - t0:.1f} s")
    paths = {
        "reference": directory / "reference.fa",
        "genes": directory / "genes.tsv",
        "vcf": directory / "genotypes.vcf.gz",
        "plink": directory / "genotypes",
        "expression": directory / "expression.bed",
        "eqtls": directory / "eqtls.tsv",
        "readme": directory / "README.md",
    }
    if writer is not None:
        paths["enformer"] = directory / "enformer-tiny"
    return paths


def _readme(seed: int, n_ind: int, genes: pd.DataFrame, sites: list[dict], n_plink: int, truth: pd.DataFrame,
            seqs: dict[str, bytes], tiny: bool, why_not: str) -> str:
    kinds = pd.Series([s["kind"] for s in sites]).value_counts()
    masked = sum(sum(1 for b in s if 97 <= b <= 122) for s in seqs.values()) / sum(len(s) for s in seqs.values())
    n_egenes = truth["gene_id"].nunique()
    chroms = ", ".join(f"{c} ({n / 1000:.0f} kb)" for c, n in CHROMS.items())
    enformer = ("- `enformer-tiny/`: tiny random Enformer weights written by the enformer plugin "
                "(`epx_enformer.tiny.write_tiny_enformer`), to run `epx personalize` end to end in seconds; "
                "their predictions mean nothing." if tiny else
                f"- (`enformer-tiny/` was not written: {why_not}.)")
    return f"""# epx personal-genomics demo cohort (synthetic)

Generated by `epx demo --personal` (`epx.demo_personal.write_personal_demo(seed={seed},
n_individuals={n_ind})`). Nothing here is real biology or a real person; the files are in the
formats real cohorts use, and the eQTLs behind the expression are known (`eqtls.tsv`).

- `reference.fa`, `reference.fa.fai`: {chroms}; GC ~40% with CpG depletion, CpG islands at most
  promoters, {masked:.0%} soft-masked (lower case: interspersed repeats and microsatellites), and
  {TELOMERE_N // 1000} kb of `N` at each chromosome end.
- `genes.tsv`: {len(genes)} genes on both strands (TSS-column format, `epx --genes` reads it:
  `start` and `tss` 1-based, `end` inclusive); every TSS at least {TSS_MARGIN // 1000} kb from a
  chromosome end.
- `genotypes.vcf.gz`, `genotypes.vcf.gz.tbi`: bgzip-compressed, tabix-indexed VCF 4.2 with phased
  genotypes (`0|1`) of {n_ind} individuals (`IND001`...) at {len(sites)} sites:
  {kinds.get("snp", 0)} SNPs, {kinds.get("ins", 0)} insertions and {kinds.get("del", 0)} deletions
  of 1-20 bp (with the anchor base, as VCF writes them), {kinds.get("multi", 0)} multi-allelic SNPs;
  a few missing calls (`.|.`). ALT frequencies 0.05-0.5 (`INFO/AF` is the observed one); nearby
  sites are in linkage disequilibrium. Every REF matches `reference.fa` (`bcftools norm
  --check-ref e -f reference.fa genotypes.vcf.gz`).
- `genotypes.bed`, `genotypes.bim`, `genotypes.fam`: the same genotypes as a PLINK 1 fileset,
  **biallelic sites only** ({n_plink} of {len(sites)}; PLINK 1 cannot hold multi-allelic sites) and
  unphased (PLINK 1 stores allele counts). A1 = ALT (the counted allele), A2 = REF; chromosome
  codes `1`, `2`; FID = IID.
- `expression.bed`: GTEx-style expression, header `#chr start end gene_id IND001 ...`, one row
  per gene at its TSS (0-based `start`), standardised per gene (mean 0, SD 1 across the
  individuals; GTEx applies a rank-based inverse-normal transform instead, which this file's
  values are close to but not equal to).
- `eqtls.tsv`: the truth: {len(truth)} causal variants of {n_egenes} genes
  ({n_egenes / len(genes):.0%}), each a biallelic site without missing calls within
  {CIS_WINDOW // 1000} kb of its gene's TSS. `effect` is the change in the gene's
  `expression.bed` value per ALT allele; `h2` is the share of the gene's variance the causal
  variants explain (before standardisation the noise is Gaussian). The other genes are noise only.
{enformer}

A regression of a gene's expression on the dosages (ALT counts) of its causal variants recovers
`effect` up to sampling error (the variants of one gene may be in LD, so fit them jointly).
"""
