"""PLINK 1 genotypes (epx.io.plink) against the same genotypes written as a VCF and read with cyvcf2."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from bed_reader import to_bed

from epx.demo_personal import tabix_index, write_bgzf
from epx.errors import InputFileError
from epx.io.fasta import Reference
from epx.io.genotypes import VcfGenotypes
from epx.io.plink import PlinkGenotypes, plink_chrom, plink_paths

SAMPLES = [f"S{i}" for i in range(1, 13)]
CHROM_LEN = {"chr1": 6_000, "chrX": 3_000}


def _fasta(tmp: Path, rng: random.Random) -> tuple[Path, dict[str, str]]:
    seqs = {}
    for c, n in CHROM_LEN.items():
        s = [rng.choice("ACGT") for _ in range(n)]
        for j in range(500, 900):  # a soft-masked stretch: REF must match case-insensitively
            s[j] = s[j].lower()
        seqs[c] = "".join(s)
    path = tmp / "ref.fa"
    path.write_text("".join(f">{c}\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n"
                            for c, s in seqs.items()))
    return path, seqs


def _sites(rng: random.Random, seqs: dict[str, str]) -> list[dict]:
    """Biallelic SNPs, insertions and deletions, non-overlapping, REF from the FASTA."""
    sites = []
    for chrom, seq in seqs.items():
        pos = 20
        while pos < len(seq) - 40:
            kind = rng.choice(["snp", "snp", "snp", "ins", "del"])
            base = seq[pos].upper()
            if kind == "snp":
                ref, alt = base, rng.choice([b for b in "ACGT" if b != base])
            elif kind == "ins":
                ins = [rng.choice("ACGT") for _ in range(rng.randint(1, 6))]
                ins[0] = rng.choice([b for b in "ACGT" if b != seq[pos + 1].upper()])  # ALT not in the FASTA
                ref, alt = base, base + "".join(ins)
            else:
                ref, alt = seq[pos:pos + rng.randint(2, 8)].upper(), base
            sites.append({"chrom": chrom, "pos0": pos, "ref": ref, "alt": alt, "id": f"v{len(sites) + 1}"})
            pos += len(ref) + rng.randint(30, 200)
    return sites


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The same genotypes as a VCF (phased) and as PLINK, half the sites with A1/A2 swapped
    (A1 = REF, counted), chrX written as PLINK code 23, a few missing calls."""
    tmp = tmp_path_factory.mktemp("plink")
    rng = random.Random(7)
    fasta, seqs = _fasta(tmp, rng)
    sites = _sites(rng, seqs)
    nrng = np.random.default_rng(7)
    gt = (nrng.random((len(sites), len(SAMPLES), 2)) < nrng.uniform(0.1, 0.5, (len(sites), 1, 1))).astype(int)
    missing = nrng.random((len(sites), len(SAMPLES))) < 0.03
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c},length={n}>" for c, n in CHROM_LEN.items()),
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *SAMPLES])]
    for i, s in enumerate(sites):
        calls = [".|." if missing[i, j] else f"{gt[i, j, 0]}|{gt[i, j, 1]}" for j in range(len(SAMPLES))]
        lines.append("\t".join([s["chrom"], str(s["pos0"] + 1), s["id"], s["ref"], s["alt"], ".", "PASS", ".", "GT",
                                *calls]))
    vcf = tmp / "g.vcf.gz"
    write_bgzf(vcf, ("\n".join(lines) + "\n").encode())
    tabix_index(vcf)
    swapped = np.array([rng.random() < 0.5 for _ in sites])
    alt_count = gt.sum(axis=2).astype(np.float32)
    a1_count = np.where(swapped[:, None], 2 - alt_count, alt_count)
    a1_count[missing] = np.nan
    to_bed(tmp / "g.bed", a1_count.T, count_A1=True, properties={
        "fid": ["F1"] * len(SAMPLES), "iid": SAMPLES,
        "sid": [s["id"] for s in sites],
        "chromosome": ["1" if s["chrom"] == "chr1" else "23" for s in sites],
        "bp_position": [s["pos0"] + 1 for s in sites],
        "allele_1": [s["ref"] if w else s["alt"] for s, w in zip(sites, swapped, strict=True)],
        "allele_2": [s["alt"] if w else s["ref"] for s, w in zip(sites, swapped, strict=True)],
    })
    return {"tmp": tmp, "fasta": fasta, "vcf": vcf, "prefix": tmp / "g", "sites": sites, "swapped": swapped,
            "missing": missing, "gt": gt}


def _dosage(gt: np.ndarray) -> np.ndarray:
    """ALT count per (variant, sample), -1 when missing."""
    return np.where((gt < 0).any(axis=2), -1, gt.sum(axis=2))


@pytest.mark.parametrize("region", [("chr1", 0, 6_000), ("chr1", 1_000, 2_500), ("chrX", 0, 3_000),
                                    ("chr1", 5_990, 6_000)])
def test_plink_matches_vcf(cohort, region):
    with Reference(cohort["fasta"]) as ref:
        plink = PlinkGenotypes(cohort["prefix"], ref)
        vcf = VcfGenotypes(cohort["vcf"])
        a, b = plink.query(*region), vcf.query(*region)
        assert plink.samples == vcf.samples == SAMPLES
        assert a.chrom == b.chrom == region[0]
        assert a.pos.tolist() == b.pos.tolist()
        assert a.ref == b.ref and a.alts == b.alts and a.ids == b.ids
        assert a.gt.dtype == np.int16 and a.gt.shape == b.gt.shape
        np.testing.assert_array_equal(_dosage(a.gt), _dosage(b.gt))
        het = (a.gt[:, :, 0] != a.gt[:, :, 1]) & (a.gt >= 0).all(axis=2)
        np.testing.assert_array_equal(a.phased, ~het)  # PLINK is unphased: het calls are not phased
        assert (a.gt[:, :, 0] <= a.gt[:, :, 1]).all()  # het as (0, 1)
        vcf.close()


def test_swapped_alleles_and_missing_calls_are_oriented_from_the_fasta(cohort):
    sites, swapped, missing = cohort["sites"], cohort["swapped"], cohort["missing"]
    assert swapped.any() and (~swapped).any() and missing.any()
    with Reference(cohort["fasta"]) as ref:
        block = PlinkGenotypes(cohort["prefix"], ref).query("chr1", 0, 6_000)
    chr1 = [i for i, s in enumerate(sites) if s["chrom"] == "chr1"]
    assert block.ref == [sites[i]["ref"] for i in chr1]
    assert block.alts == [[sites[i]["alt"]] for i in chr1]
    np.testing.assert_array_equal((block.gt == -1).all(axis=2), missing[chr1])
    expected = np.where(missing[chr1], -1, cohort["gt"][chr1].sum(axis=2))
    np.testing.assert_array_equal(_dosage(block.gt), expected)


def test_query_returns_variants_overlapping_the_region(cohort):
    dels = [s for s in cohort["sites"] if len(s["ref"]) > 2 and s["chrom"] == "chr1"]
    d = dels[0]
    with Reference(cohort["fasta"]) as ref:
        plink = PlinkGenotypes(cohort["prefix"], ref)
        inside = plink.query("chr1", d["pos0"] + len(d["ref"]) - 1, d["pos0"] + len(d["ref"]))
        after = plink.query("chr1", d["pos0"] + len(d["ref"]), d["pos0"] + len(d["ref"]) + 1)
        assert d["id"] in inside.ids
        assert d["id"] not in after.ids
        assert len(plink.query("chr7", 0, 100)) == 0
        assert len(plink.query("1", 0, 6_000)) == len(plink.query("chr1", 0, 6_000))


def test_sample_selection_keeps_the_requested_order(cohort):
    with Reference(cohort["fasta"]) as ref:
        plink = PlinkGenotypes(cohort["prefix"], ref, samples=["S5", "S1", "F1_S3"])
        vcf = VcfGenotypes(cohort["vcf"], samples=["S5", "S1", "S3"])
        assert plink.samples == ["S5", "S1", "F1_S3"]
        a, b = plink.query("chr1", 0, 6_000), vcf.query("chr1", 0, 6_000)
        np.testing.assert_array_equal(_dosage(a.gt), _dosage(b.gt))
        vcf.close()


def test_non_unique_iids_are_named_fid_iid(tmp_path, cohort):
    prefix = tmp_path / "dup"
    to_bed(f"{prefix}.bed", np.array([[0.0, 1.0], [2.0, np.nan]]), properties={
        "fid": ["A", "B"], "iid": ["x", "x"], "sid": ["s1", "s2"], "chromosome": ["1", "1"],
        "bp_position": [100, 200],
        "allele_1": ["N", "N"], "allele_2": [_base(cohort, 99), _base(cohort, 199)]})
    with Reference(cohort["fasta"]) as ref:
        g = PlinkGenotypes(prefix, ref)
        assert g.samples == ["A_x", "B_x"]
        block = g.query("chr1", 0, 300)
        assert _dosage(block.gt).tolist() == [[0, 2], [1, -1]]
        with pytest.raises(InputFileError, match=r"sample\(s\) x not in the PLINK .fam \(2 samples"):
            PlinkGenotypes(prefix, ref, samples=["x"])


def _base(cohort, pos0: int) -> str:
    with Reference(cohort["fasta"]) as ref:
        return ref.fetch("chr1", pos0, pos0 + 1).decode().upper()


def test_chromosome_codes():
    assert [plink_chrom(c) for c in ["1", "22", "23", "X", "24", "25", "XY", "26", "MT", "chr5", "0"]] == [
        "chr1", "chr22", "chrX", "chrX", "chrY", "chrX", "chrX", "chrM", "chrM", "chr5", None]
    assert plink_paths("a/b.bed") == (Path("a/b.bed"), Path("a/b.bim"), Path("a/b.fam"))


# -- errors: one line, naming the file ---------------------------------------------------------------------


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("suffix", [".bed", ".bim", ".fam"])
def test_missing_file(tmp_path, cohort, suffix):
    for s in (".bed", ".bim", ".fam"):
        if s != suffix:
            (tmp_path / f"g{s}").write_bytes(Path(f"{cohort['prefix']}{s}").read_bytes())
    with Reference(cohort["fasta"]) as ref, pytest.raises(InputFileError) as err:
        PlinkGenotypes(tmp_path / "g", ref)
    assert f"g{suffix}: PLINK {suffix} not found" in _one_line(err)


def test_unknown_sample(cohort):
    with Reference(cohort["fasta"]) as ref, pytest.raises(InputFileError) as err:
        PlinkGenotypes(cohort["prefix"], ref, samples=["S1", "nobody"])
    text = _one_line(err)
    assert "g.fam" in text and "nobody" in text and "12 samples" in text


def test_bad_bim_line(tmp_path, cohort):
    for s in (".bed", ".fam"):
        (tmp_path / f"g{s}").write_bytes(Path(f"{cohort['prefix']}{s}").read_bytes())
    lines = Path(f"{cohort['prefix']}.bim").read_text().splitlines()
    lines[2] = lines[2].replace("\t", " ", 1).rsplit("\t", 1)[0]  # 5 fields
    (tmp_path / "g.bim").write_text("\n".join(lines) + "\n")
    with Reference(cohort["fasta"]) as ref, pytest.raises(InputFileError) as err:
        PlinkGenotypes(tmp_path / "g", ref)
    assert "g.bim:3: has 5 fields, not the 6" in _one_line(err)
    lines = Path(f"{cohort['prefix']}.bim").read_text().splitlines()
    fields = lines[4].split("\t")
    fields[3] = "12x"
    lines[4] = "\t".join(fields)
    (tmp_path / "g.bim").write_text("\n".join(lines) + "\n")
    with Reference(cohort["fasta"]) as ref, pytest.raises(InputFileError, match=r"g\.bim:5: position '12x'"):
        PlinkGenotypes(tmp_path / "g", ref)


def test_alleles_matching_no_reference_base(tmp_path, cohort):
    """Neither .bim allele matches the FASTA: the reader keeps A2 as REF and the haplotype builder
    names the site (or skips it with --ref-mismatch skip), as for a VCF."""
    from epx.sequence.haplotypes import HaplotypeBuilder

    base = _base(cohort, 99)
    wrong = [b for b in "ACGT" if b != base]
    to_bed(tmp_path / "w.bed", np.array([[0.0], [1.0]]), properties={
        "iid": ["a", "b"], "sid": ["rsbad"], "chromosome": ["1"], "bp_position": [100],
        "allele_1": [wrong[0]], "allele_2": [wrong[1]]})
    with Reference(cohort["fasta"]) as ref:
        g = PlinkGenotypes(tmp_path / "w", ref)
        block = g.query("chr1", 0, 1_000)
        assert block.ref == [wrong[1]] and block.alts == [[wrong[0]]]
        with pytest.raises(InputFileError) as err:
            HaplotypeBuilder(ref, g, 101, unphased="as-listed").gene("g", "chr1", 150)
        text = _one_line(err)
        assert "w.bed" in text and "chr1:100 (rsbad)" in text and f"REF {wrong[1]} but the FASTA has {base}" in text
        skipped = HaplotypeBuilder(ref, g, 101, unphased="as-listed", ref_mismatch="skip").gene("g", "chr1", 150)
        assert skipped.skipped_mismatch == 1 and len(skipped.windows) == 1


def test_indel_whose_both_alleles_match_the_fasta_is_a_deletion(tmp_path, cohort):
    """G/GT before a reference GT: either could be REF; the longer one is (see epx.io.plink)."""
    with Reference(cohort["fasta"]) as ref:
        two = ref.fetch("chr1", 99, 101).decode().upper()
        to_bed(tmp_path / "a.bed", np.array([[0.0, 2.0], [1.0, 0.0]]), properties={
            "iid": ["a", "b"], "sid": ["d1", "d2"], "chromosome": ["1", "1"], "bp_position": [100, 100],
            "allele_1": [two[0], two], "allele_2": [two, two[0]]})
        block = PlinkGenotypes(tmp_path / "a", ref).query("chr1", 0, 1_000)
    assert block.ref == [two, two] and block.alts == [[two[0]], [two[0]]]
    # d1 counts A1 = the ALT; d2 counts A1 = the REF
    assert _dosage(block.gt).tolist() == [[0, 1], [0, 2]]
