"""Personal haplotype windows against ``bcftools consensus -H 1/-H 2``, byte for byte.

The oracle is the Debian bcftools the project's set-up installs; the TSS is carried into the
consensus sequence through bcftools' own chain file (``-c``). Inputs: random VCFs with every kind
of record over random references, hand-made VCFs over the real hg38 window, and the real
1000 Genomes VCF with a reference built to agree with its REF alleles.
"""

from __future__ import annotations

import gzip
import os
import random
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bcftools_oracle import (
    consensus,
    have_bcftools,
    map_position,
    random_genotype,
    random_records,
    random_reference,
    window,
    write_fasta,
    write_vcf,
)
from typer.testing import CliRunner

from epx.cli import app
from epx.io.fasta import Reference
from epx.io.genotypes import VcfGenotypes
from epx.sequence.haplotypes import HaplotypeBuilder, apply_alleles

pytestmark = pytest.mark.skipif(not have_bcftools(), reason="needs bcftools, bgzip and tabix (scripts/install.sh)")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HG38 = SHARED / "hg38_chr22_window" / "hg38_chr22_32000000_32300000.fa"
KG = SHARED / "vcf_1000g_chr1" / "example.vcf.gz"
runner = CliRunner()


def _read_fasta(path: Path) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    name = None
    for line in Path(path).read_text().splitlines():
        if line.startswith(">"):
            name = line[1:]
            out[name] = []
        else:
            out[name].append(line)
    return {k: "".join(v) for k, v in out.items()}


def _check_against_bcftools(fasta: Path, vcf: Path, samples: list[str], tsses: list[tuple[str, int]],
                            length: int, workdir: Path, builder: HaplotypeBuilder) -> int:
    """Every (sample, haplotype, TSS) window of ``builder`` equals bcftools' consensus window."""
    checked = 0
    genes = {(c, t): builder.gene(f"g{c}_{t}", c, t) for c, t in tsses}
    for si, sample in enumerate(samples):
        for h in (1, 2):
            seqs, chains = consensus(fasta, vcf, sample, h, workdir)
            for (c, t), gh in genes.items():
                name = next(n for n in seqs if n.removeprefix("chr") == c.removeprefix("chr"))
                mapped = map_position(chains, name, t)
                if mapped is None:  # the TSS itself was replaced: no chain position to compare at
                    continue
                ours = gh.windows[gh.index[si, h - 1]].decode()
                assert ours == window(seqs[name], mapped, length), f"{sample} -H {h} at {c}:{t}"
                checked += 1
    return checked


@pytest.mark.parametrize("seed", range(6))
def test_random_vcfs_match_bcftools(tmp_path, seed):
    """SNPs, MNPs, insertions, deletions, complex and multi-allelic records, overlapping ones,
    duplicate positions, missing alleles and soft-masked reference, on two chromosomes."""
    rng = random.Random(seed)
    chroms = {"chr1": random_reference(rng, 4000), "chr2": random_reference(rng, 1800)}
    write_fasta(tmp_path / "ref.fa", chroms)
    samples = ["S1", "S2", "S3"]
    records = []
    for c, seq in chroms.items():
        for pos, ref, alts in random_records(rng, seq, 140 if c == "chr1" else 60):
            records.append((c, pos, ref, alts, [random_genotype(rng, len(alts)) for _ in samples]))
    vcf = write_vcf(tmp_path / "v.vcf.gz", {c: len(s) for c, s in chroms.items()}, records, samples)
    tsses = [("chr1", rng.randrange(4000)) for _ in range(10)] + [("chr2", rng.randrange(1800)) for _ in range(5)]
    tsses += [("chr1", 3), ("chr2", 1799)]  # windows padded with N at both chromosome ends
    builder = HaplotypeBuilder(Reference(tmp_path / "ref.fa"), VcfGenotypes(vcf), 701)
    assert _check_against_bcftools(tmp_path / "ref.fa", vcf, samples, tsses, 701, tmp_path, builder) > 60
    assert builder.stats.skipped_overlap > 0 and builder.stats.missing_calls > 0


def test_indels_keep_window_length_and_tss(tmp_path):
    ref = "ACGTACGTAC" * 10
    write_fasta(tmp_path / "ref.fa", {"chr1": ref})
    records = [("chr1", 35, "A", ["ATTTTT"], ["1|0"]), ("chr1", 45, "ACGT", ["A"], ["1|0"])]
    vcf = write_vcf(tmp_path / "v.vcf.gz", {"chr1": 100}, records, ["S"])
    builder = HaplotypeBuilder(Reference(tmp_path / "ref.fa"), VcfGenotypes(vcf), 21)
    gh = builder.gene("g", "chr1", 40)
    hap1, hap2 = (gh.windows[i].decode() for i in gh.index[0])
    assert hap2 == ref[30:51]  # haplotype 2 carries nothing: the reference window
    # haplotype 1: 5 bases inserted upstream, 3 deleted downstream; the TSS base stays at index 10
    assert hap1 == "TTTTT" + ref[35:45] + ref[48:54]
    assert len(hap1) == 21 and hap1[10] == ref[40]


def test_apply_alleles_tss_inside_a_deletion_maps_to_the_anchor():
    from epx.io.genotypes import VariantBlock

    block = VariantBlock("chr1", np.array([4]), ["ACGT"], [["A"]], ["d"], np.ones((1, 1, 2), np.int16),
                         np.ones((1, 1), bool))
    done = apply_alleles(b"TTTTACGTGGGG", 0, 6, block, np.array([1]))
    assert bytes(done.seq) == b"TTTTAGGGG" and done.tss == 4


@pytest.fixture(scope="module")
def hg38_cohort(tmp_path_factory):
    """A hand-made VCF over the real hg38 window: indels at and around the TSSs, multi-allelic
    sites, missing calls, soft-masked bases."""
    if not HG38.exists():
        pytest.skip("../shared/data is missing")
    d = tmp_path_factory.mktemp("hg38")
    seq = Reference(HG38).fetch("chr22", 0, 300_000).decode()
    rng = random.Random(7)
    genes = {"SLC5A1": (43_031, "+"), "C22orf42": (159_321, "-"), "RFPL2": (203_476, "-"), "SLC5A4": (255_340, "-")}
    records = []
    for _name, (tss, _strand) in genes.items():
        for pos, ref, alts in random_records(rng, seq, 120, start=tss - 30_000, end=tss + 30_000):
            records.append(("chr22", pos, ref, alts, [random_genotype(rng, len(alts), missing=0.08) for _ in range(4)]))
        # one insertion and one deletion just upstream of the TSS, one SNP on it
        records += [("chr22", tss - 5, seq[tss - 6].upper(), [seq[tss - 6].upper() + "GATTACA"], ["1|0", "0|1", "1|1", ".|1"]),
                    ("chr22", tss - 40, seq[tss - 41: tss - 29].upper(), [seq[tss - 41].upper()], ["0|1", "1|0", "0|0", "1|1"]),
                    ("chr22", tss + 1, seq[tss].upper(), [random.Random(tss).choice([b for b in "ACGT" if b != seq[tss].upper()])],
                     ["1|1", "0|1", "1|0", "0|0"])]
    records.sort(key=lambda r: r[1])
    fasta = write_fasta(d / "ref.fa", {"chr22": seq})
    vcf = write_vcf(d / "cohort.vcf.gz", {"chr22": 300_000}, records, ["A1", "A2", "A3", "A4"])
    table = d / "genes.tsv"
    table.write_text("gene_id\tgene_name\tchrom\tstart\tend\tstrand\ttss\n" + "".join(  # 1-based, as BioMart
        f"{n}\t{n}\tchr22\t{t - 99 if s == '-' else t + 1}\t{t + 1 if s == '-' else t + 101}\t{s}\t{t + 1}\n"
        for n, (t, s) in genes.items()))
    return d, fasta, vcf, table, genes


def test_cli_write_sequences_equals_bcftools_on_hg38(hg38_cohort, tmp_path):
    d, fasta, vcf, table, genes = hg38_cohort
    out = tmp_path / "windows.fa"
    length = 131_072  # SLC5A1's window starts before the file's first base: N-padded
    result = runner.invoke(app, ["personalize", "--genes", str(table), "--fasta", str(fasta), "--vcf", str(vcf),
                                 "--sequences-only", "--write-sequences", str(out), "--window", str(length)])
    assert result.exit_code == 0, result.output
    records = _read_fasta(out)
    assert len(records) == 4 * (1 + 2 * 4)
    assert list(records)[0] == "REF|SLC5A1|0"
    checked = 0
    for sample in ["A1", "A2", "A3", "A4"]:
        for h in (1, 2):
            seqs, chains = consensus(fasta, vcf, sample, h, tmp_path)
            for name, (tss, _strand) in genes.items():
                mapped = map_position(chains, "chr22", tss)
                assert mapped is not None
                assert records[f"{sample}|{name}|{h}"] == window(seqs["chr22"], mapped, length), (sample, h, name)
                checked += 1
    ref = Reference(fasta)
    for name, (tss, _strand) in genes.items():
        assert records[f"REF|{name}|0"] == ref.fetch("chr22", tss - length // 2, tss - length // 2 + length).decode()
    assert records["REF|SLC5A1|0"].startswith("N" * (length // 2 - 43_031))
    assert checked == 32


@pytest.mark.shared_data
def test_1000_genomes_windows_equal_bcftools(tmp_path):
    """The real 1000 Genomes VCF (2,504 phased samples, 'chr'-less names) over a reference built
    to agree with its REF alleles; full 196,608 bp Enformer windows; the FASTA says 'chr1'."""
    if not KG.exists():
        pytest.skip("../shared/data is missing")
    rng = random.Random(1)
    sites = {}
    with gzip.open(KG, "rt") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            chrom, pos, _id, ref, *_ = line.split("\t", 5)
            sites[int(pos)] = ref
    length_chrom = max(sites) + 200_000
    seq = bytearray(rng.choice(b"ACGT") for _ in range(length_chrom))
    for pos, ref in sites.items():
        seq[pos - 1: pos - 1 + len(ref)] = ref.encode()
    text = seq.decode()
    fasta_1 = write_fasta(tmp_path / "ref1.fa", {"1": text})
    fasta_chr = write_fasta(tmp_path / "refchr.fa", {"chr1": text})
    samples = ["HG00096", "NA12878", "HG03006"]
    tsses = [11_700_000, 11_760_000, 11_836_000]
    table = tmp_path / "genes.tsv"
    table.write_text("gene_id\tgene_name\tchrom\tstart\tend\tstrand\ttss\n" + "".join(
        f"G{i}\tG{i}\tchr1\t{t + 1}\t{t + 1000}\t+\t{t + 1}\n" for i, t in enumerate(tsses)))
    out = tmp_path / "w.fa"
    result = runner.invoke(app, ["personalize", "--genes", str(table), "--fasta", str(fasta_chr), "--vcf", str(KG),
                                 "--samples", ",".join(samples), "--sequences-only", "--write-sequences", str(out)])
    assert result.exit_code == 0, result.output
    records = _read_fasta(out)
    for sample in samples:
        for h in (1, 2):
            # bcftools refuses the file's symbolic <INS:ME:...> alleles; epx leaves them as reference
            seqs, chains = consensus(fasta_1, KG, sample, h, tmp_path, exclude='ALT~"<.*>"')
            for i, t in enumerate(tsses):
                mine = records[f"{sample}|G{i}|{h}"]
                assert len(mine) == 196_608
                assert mine == window(seqs["1"], map_position(chains, "1", t), 196_608), (sample, h, t)
    assert records["HG00096|G0|1"] != records["REF|G0|0"]  # the haplotypes do carry variants
    assert "symbolic" in result.output


def _cli(*args: str):
    return runner.invoke(app, ["personalize", *args])


def test_bad_inputs_are_one_line(hg38_cohort, tmp_path):
    d, fasta, vcf, table, _genes = hg38_cohort
    base = ["--genes", str(table), "--fasta", str(fasta), "--sequences-only", "--write-sequences"]
    out = tmp_path / "o.fa"

    def fails(*extra: str, text: str, vcf_path: Path = vcf) -> None:
        r = _cli(*base, str(out), "--vcf", str(vcf_path), *extra)
        assert r.exit_code == 2, r.output
        assert text in r.output, r.output
        assert not out.exists()

    fails("--samples", "A1,NOPE", text="NOPE")
    # an unindexed VCF
    plain = tmp_path / "unindexed.vcf.gz"
    plain.write_bytes(vcf.read_bytes())
    fails(text="tabix -f -p vcf", vcf_path=plain)
    # an index older than the file
    stale = tmp_path / "stale.vcf.gz"
    stale.write_bytes(vcf.read_bytes())
    Path(str(stale) + ".tbi").write_bytes(Path(str(vcf) + ".tbi").read_bytes())
    os.utime(str(stale) + ".tbi", (1_000_000_000, 1_000_000_000))
    fails(text="older than the file", vcf_path=stale)
    # a sample named twice in the header
    twice = tmp_path / "twice.vcf"
    lines = gzip.decompress(vcf.read_bytes()).decode().splitlines(keepends=True)
    lines = [ln.replace("\tA2\t", "\tA1\t") if ln.startswith("#CHROM") else ln for ln in lines]
    twice.write_text("".join(lines))
    subprocess.run(["bgzip", "-f", str(twice)], check=True)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(twice) + ".gz"], check=True)
    fails(text="appears twice", vcf_path=Path(str(twice) + ".gz"))
    # an uncompressed VCF
    text_vcf = tmp_path / "plain.vcf"
    text_vcf.write_bytes(gzip.decompress(vcf.read_bytes()))
    fails(text="bgzip", vcf_path=text_vcf)
    # unphased calls
    unphased = write_vcf(tmp_path / "unphased.vcf.gz", {"chr22": 300_000},
                         [("chr22", 43_000, "A", ["G"], ["0/1"])], ["U"])
    Reference(fasta).fetch("chr22", 42_999, 43_000)
    ref_base = Reference(fasta).fetch("chr22", 42_999, 43_000).decode().upper()
    unphased = write_vcf(tmp_path / "unphased.vcf.gz", {"chr22": 300_000},
                         [("chr22", 43_000, ref_base, ["G" if ref_base != "G" else "A"], ["0/1"])], ["U"])
    fails(text="--unphased as-listed", vcf_path=unphased)
    r = _cli(*base, str(out), "--vcf", str(unphased), "--unphased", "as-listed")
    assert r.exit_code == 0, r.output
    out.unlink()
    # one REF mismatch: named, or skipped and counted
    wrong = "C" if ref_base != "C" else "G"
    mismatch = write_vcf(tmp_path / "mismatch.vcf.gz", {"chr22": 300_000},
                         [("chr22", 43_000, wrong, ["T" if wrong != "T" else "A"], ["0|1"])], ["M"])
    fails(text="chr22:43000", vcf_path=mismatch)
    r = _cli(*base, str(out), "--vcf", str(mismatch), "--ref-mismatch", "skip")
    assert r.exit_code == 0 and "REF disagrees" in r.output, r.output
    out.unlink()


def test_another_build_is_named(hg38_cohort, tmp_path):
    d, fasta, _vcf, table, _genes = hg38_cohort
    rng = random.Random(3)
    seq = Reference(fasta).fetch("chr22", 0, 300_000).decode().upper()
    records = []
    for p in sorted(rng.sample(range(40_000, 46_000), 40)):
        wrong = rng.choice([b for b in "ACGT" if b != seq[p - 1]])
        records.append(("chr22", p, wrong, [seq[p - 1]], ["0|1"]))
    vcf = write_vcf(tmp_path / "b37.vcf.gz", {"chr22": 300_000}, records, ["B"])
    r = _cli("--genes", str(table), "--fasta", str(fasta), "--vcf", str(vcf), "--sequences-only",
             "--write-sequences", str(tmp_path / "o.fa"), "--ref-mismatch", "skip")
    assert r.exit_code == 2 and "genome build" in r.output, r.output
    assert not (tmp_path / "o.fa").exists()


def test_chromosome_names(hg38_cohort, tmp_path):
    d, fasta, vcf, table, _genes = hg38_cohort
    # 'chr22' in the FASTA and '22' in the VCF are one chromosome
    renamed = tmp_path / "renamed.vcf.gz"
    import subprocess

    (tmp_path / "map.txt").write_text("chr22 22\n")
    subprocess.run(["bcftools", "annotate", "--rename-chrs", str(tmp_path / "map.txt"), "-Oz", "-o", str(renamed),
                    str(vcf)], check=True)
    subprocess.run(["tabix", "-p", "vcf", str(renamed)], check=True)
    a, b = tmp_path / "a.fa", tmp_path / "b.fa"
    common = ["--genes", str(table), "--fasta", str(fasta), "--sequences-only", "--window", "2001"]
    assert _cli(*common, "--vcf", str(vcf), "--write-sequences", str(a)).exit_code == 0
    assert _cli(*common, "--vcf", str(renamed), "--write-sequences", str(b)).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    # names that truly differ are an error
    (tmp_path / "map2.txt").write_text("chr22 NC_000022.11\n")
    other = tmp_path / "other.vcf.gz"
    subprocess.run(["bcftools", "annotate", "--rename-chrs", str(tmp_path / "map2.txt"), "-Oz", "-o", str(other),
                    str(vcf)], check=True)
    subprocess.run(["tabix", "-p", "vcf", str(other)], check=True)
    r = _cli(*common, "--vcf", str(other), "--write-sequences", str(tmp_path / "c.fa"))
    assert r.exit_code == 2 and "NC_000022.11" in r.output, r.output


def test_genes_outside_the_fasta(hg38_cohort, tmp_path):
    d, fasta, vcf, table, _genes = hg38_cohort
    genes = tmp_path / "genes.tsv"
    genes.write_text(table.read_text() + "X1\tX1\tchr5\t100\t200\t+\t100\n")
    r = _cli("--genes", str(genes), "--fasta", str(fasta), "--vcf", str(vcf), "--sequences-only",
             "--write-sequences", str(tmp_path / "o.fa"))
    assert r.exit_code == 2 and "X1" in r.output and "--chroms" in r.output, r.output
    r = _cli("--genes", str(genes), "--fasta", str(fasta), "--vcf", str(vcf), "--sequences-only", "--chroms", "chr22",
             "--window", "1001", "--write-sequences", str(tmp_path / "o.fa"))
    assert r.exit_code == 0, r.output


def test_fasta_in_a_read_only_directory_is_indexed_elsewhere(hg38_cohort, tmp_path, monkeypatch):
    d, fasta, vcf, table, _genes = hg38_cohort
    ro = tmp_path / "ro"
    ro.mkdir()
    copy = ro / "ref.fa"
    copy.write_bytes(fasta.read_bytes())
    os.chmod(ro, stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        r = _cli("--genes", str(table), "--fasta", str(copy), "--vcf", str(vcf), "--sequences-only", "--window", "501",
                 "--write-sequences", str(tmp_path / "o.fa"))
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in ro.iterdir()) == ["ref.fa"]
        assert list((tmp_path / "cache" / "epx" / "fai").glob("ref.fa.*.fai"))
    finally:
        os.chmod(ro, stat.S_IRWXU)


def test_force_replaces_only_epx_sequences(hg38_cohort, tmp_path):
    d, fasta, vcf, table, _genes = hg38_cohort
    mine = tmp_path / "notes.fa"
    mine.write_text(">my_sequence\nACGT\n")
    args = ["--genes", str(table), "--fasta", str(fasta), "--vcf", str(vcf), "--sequences-only", "--window", "101"]
    r = _cli(*args, "--write-sequences", str(mine), "--force")
    assert r.exit_code == 2 and mine.read_text() == ">my_sequence\nACGT\n"
    ours = tmp_path / "w.fa"
    assert _cli(*args, "--write-sequences", str(ours)).exit_code == 0
    assert _cli(*args, "--write-sequences", str(ours)).exit_code == 2
    assert _cli(*args, "--write-sequences", str(ours), "--force").exit_code == 0


# -- real-world VCF quirks (review of epx personalize) ----------------------------------------------


@pytest.fixture
def small_ref(tmp_path):
    rng = random.Random(11)
    chroms = {"chr1": random_reference(rng, 4000), "chrX": random_reference(rng, 3000)}
    fasta = write_fasta(tmp_path / "ref.fa", chroms)
    genes = tmp_path / "genes.tsv"
    genes.write_text("gene_id\tgene_name\tchrom\tstart\tend\tstrand\ttss\n"
                     "G1\tA\tchr1\t1000\t1500\t+\t1000\nGX\tX\tchrX\t1500\t1800\t+\t1500\n")
    return tmp_path, chroms, fasta, genes


def _raw_vcf(path: Path, body: str, samples: list[str], fmt: str = "GT") -> Path:
    import subprocess

    plain = path.with_suffix("")
    plain.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=4000>\n##contig=<ID=chrX,length=3000>\n"
                     '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                     '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">\n'
                     "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n" + body)
    subprocess.run(["bgzip", "-f", str(plain)], check=True)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(path)], check=True)
    return path


def _snp(chroms: dict[str, str], chrom: str, pos: int) -> tuple[str, str]:
    ref = chroms[chrom][pos - 1].upper()
    return ref, "A" if ref != "A" else "C"


def test_haploid_and_diploid_records_in_one_window(small_ref):
    """chrX: a record where every selected sample is haploid beside a diploid one (PAR, or females
    and males) used to crash stacking the genotype arrays (ValueError, exit 3)."""
    d, chroms, fasta, genes = small_ref
    r1, a1 = _snp(chroms, "chrX", 1501)
    r2, a2 = _snp(chroms, "chrX", 1511)
    vcf = _raw_vcf(d / "x.vcf.gz", f"chrX\t1501\t.\t{r1}\t{a1}\t.\tPASS\t.\tGT\t1\t0\n"
                                    f"chrX\t1511\t.\t{r2}\t{a2}\t.\tPASS\t.\tGT\t0|1\t1|1\n", ["M", "F"])
    builder = HaplotypeBuilder(Reference(fasta), VcfGenotypes(vcf), 101)
    gh = builder.gene("GX", "chrX", 1499)
    # TSS 1499 (0-based) at index 50: chrX:1501 is index 51, chrX:1511 index 61
    m1, m2 = (gh.windows[gh.index[0, h]].decode().upper() for h in (0, 1))
    assert m1[51] == m2[51] == a1  # haploid: the allele on both haplotypes
    assert (m1[61], m2[61]) == (r2, a2)
    f1, f2 = (gh.windows[gh.index[1, h]].decode().upper() for h in (0, 1))
    assert (f1[51], f2[51], f1[61], f2[61]) == (r1, r1, a2, a2)


def test_vcf_records_epx_cannot_use_are_one_line(small_ref, tmp_path, recwarn):
    d, chroms, fasta, genes = small_ref
    ref, alt = _snp(chroms, "chr1", 1001)
    base = ["--genes", str(genes), "--fasta", str(fasta), "--sequences-only", "--window", "101",
            "--write-sequences"]
    out = tmp_path / "o.fa"
    # a record without GT (FORMAT DP only): was an internal error (exit 3)
    no_gt = _raw_vcf(d / "nogt.vcf.gz", f"chr1\t1001\t.\t{ref}\t{alt}\t.\tPASS\t.\tDP\t10\t12\n", ["S1", "S2"])
    r = _cli(*base, str(out), "--vcf", str(no_gt))
    assert r.exit_code == 2 and "no GT" in r.output and "chr1:1001" in r.output, r.output
    assert not out.exists()
    # a triploid call: was silently cut to its first two alleles
    tri = _raw_vcf(d / "tri.vcf.gz", f"chr1\t1001\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t0|0\t0|1|1\n", ["S1", "S2"])
    r = _cli(*base, str(out), "--vcf", str(tri))
    assert r.exit_code == 2 and "S2" in r.output and "3 alleles" in r.output, r.output
    assert not out.exists()
    # chrX has a ##contig line but no record: cyvcf2's "no intervals found" warning stays inside
    ok = _raw_vcf(d / "ok.vcf.gz", f"chr1\t1001\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t0|1\t1|1\n", ["S1", "S2"])
    block = VcfGenotypes(ok).query("chrX", 0, 3000)
    assert len(block) == 0
    assert not [w for w in recwarn if "no intervals" in str(w.message)]


def test_compressed_fasta_is_one_line(small_ref, tmp_path):
    """A gzip FASTA must be bgzip (one line, not pyfaidx's error as an internal error); a bgzip one
    reads as the plain file does."""
    import subprocess

    d, chroms, fasta, genes = small_ref
    ref, alt = _snp(chroms, "chr1", 1001)
    vcf = _raw_vcf(d / "ok.vcf.gz", f"chr1\t1001\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t0|1\t1|1\n", ["S1", "S2"])
    plain_gz = tmp_path / "plain.fa.gz"
    plain_gz.write_bytes(gzip.compress(fasta.read_bytes()))
    bgz = tmp_path / "b.fa"
    bgz.write_bytes(fasta.read_bytes())
    subprocess.run(["bgzip", "-f", str(bgz)], check=True)
    out = tmp_path / "o.fa"
    r = _cli("--genes", str(genes), "--fasta", str(plain_gz), "--vcf", str(vcf), "--sequences-only",
             "--window", "101", "--write-sequences", str(out))
    assert r.exit_code == 2 and "must be bgzip" in r.output and "internal error" not in r.output, r.output
    assert not out.exists()
    # a bgzipped FASTA (Biopython, an epx dependency, lets pyfaidx read it) gives the plain one's windows
    plain_out = tmp_path / "plain.fa"
    for path, target in ((tmp_path / "b.fa.gz", out), (fasta, plain_out)):
        r = _cli("--genes", str(genes), "--fasta", str(path), "--vcf", str(vcf), "--sequences-only",
                 "--window", "101", "--write-sequences", str(target))
        assert r.exit_code == 0, r.output
    assert out.read_bytes() == plain_out.read_bytes()


def test_tss_past_the_chromosome_end_and_no_variants(small_ref, tmp_path):
    d, chroms, fasta, genes = small_ref
    vcf = _raw_vcf(d / "empty.vcf.gz", "", ["S1", "S2"])
    out = tmp_path / "o.fa"
    base = ["--fasta", str(fasta), "--vcf", str(vcf), "--sequences-only", "--window", "101", "--write-sequences",
            str(out)]
    # a header-only VCF: every haplotype is the reference, and the run says so
    r = _cli("--genes", str(genes), *base)
    assert r.exit_code == 0 and "no variant of" in r.output, r.output
    out.unlink()
    # a TSS past the end of its chromosome (4,000 bp) is another build, not a window of N
    past = tmp_path / "past.tsv"
    past.write_text(genes.read_text() + "GP\tP\tchr1\t4100\t4200\t+\t4100\n")
    r = _cli("--genes", str(past), *base)
    assert r.exit_code == 2 and "GP at chr1:4,100" in r.output and "4,000 bp" in r.output, r.output
    assert not out.exists()


def test_a_stale_fai_is_rebuilt_not_read(small_ref, tmp_path, monkeypatch):
    """A FASTA rewritten after `samtools faidx` (another line width): its old .fai points at the
    wrong bytes. It was read anyway (rebuild=False): wrong windows, blamed on the genome build."""
    d, chroms, fasta, _genes = small_ref
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for sub, read_only in (("rw", False), ("ro", True)):
        where = tmp_path / sub
        where.mkdir()
        path = write_fasta(where / "ref.fa", chroms, width=60)
        Reference(path).close()  # writes ref.fa.fai
        write_fasta(path, chroms, width=70)
        os.utime(Path(str(path) + ".fai"), (1, 1))  # older than the FASTA
        if read_only:
            where.chmod(0o555)
        try:
            with Reference(path) as ref:
                assert ref.fetch("chr1", 990, 1010).decode() == chroms["chr1"][990:1010]
                assert ref.fetch("chrX", 2500, 2600).decode() == chroms["chrX"][2500:2600]
        finally:
            where.chmod(0o755)


def test_chroms_naming_a_chromosome_the_fasta_lacks(small_ref, tmp_path):
    d, chroms, fasta, genes = small_ref
    vcf = _raw_vcf(d / "empty.vcf.gz", "", ["S1"])
    more = tmp_path / "more.tsv"
    more.write_text(genes.read_text() + "G3\tC\tchr3\t1000\t1500\t+\t1000\n")
    out = tmp_path / "o.fa"
    r = _cli("--genes", str(more), "--fasta", str(fasta), "--vcf", str(vcf), "--chroms", "chr1,chr3",
             "--sequences-only", "--window", "101", "--write-sequences", str(out))
    assert r.exit_code == 2 and "--chroms asks for chr3" in r.output and "restrict them" not in r.output, r.output
    assert not out.exists()
