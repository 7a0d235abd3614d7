"""Test helpers: random VCFs with every kind of record, and ``bcftools consensus`` as the oracle.

Used by tests/test_haplotypes.py and benchmarks/bench_haplotypes.py. Needs the Debian ``bcftools``
and ``tabix`` packages (scripts/install.sh installs them).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

BASES = "ACGT"


def have_bcftools() -> bool:
    return all(shutil.which(tool) for tool in ("bcftools", "bgzip", "tabix"))


def random_reference(rng: random.Random, length: int, soft_mask: bool = True) -> str:
    seq = [rng.choice(BASES) for _ in range(length)]
    if soft_mask:
        for _ in range(max(1, length // 2000)):
            a = rng.randrange(length)
            for j in range(a, min(length, a + rng.randint(20, 400))):
                seq[j] = seq[j].lower()
    return "".join(seq)


def write_fasta(path: Path, records: dict[str, str], width: int = 60) -> Path:
    with open(path, "w") as fh:
        for name, seq in records.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), width):
                fh.write(seq[i:i + width] + "\n")
    return path


def _other(rng: random.Random, base: str) -> str:
    return rng.choice([b for b in BASES if b != base.upper()])


def random_records(rng: random.Random, ref: str, n: int, start: int = 1, end: int | None = None,
                   kinds: tuple[str, ...] = ("snp", "snp", "snp", "mnp", "ins", "del", "complex", "multi"),
                   overlap_rate: float = 0.15) -> list[tuple[int, str, list[str]]]:
    """(1-based POS, REF, [ALT...]) records consistent with ``ref``, sorted, with overlaps."""
    end = end or len(ref) - 30
    out: list[tuple[int, str, list[str]]] = []
    positions = sorted(rng.sample(range(start, end), n))
    for p in positions:
        pos = p
        if out and rng.random() < overlap_rate:  # land inside or on the previous record
            prev_pos, prev_ref, _ = out[-1]
            pos = rng.randint(prev_pos, prev_pos + len(prev_ref) - 1)
        kind = rng.choice(kinds)
        r0 = ref[pos - 1].upper()
        if kind == "snp":
            out.append((pos, r0, [_other(rng, r0)]))
        elif kind == "mnp":
            k = rng.randint(2, 3)
            r = ref[pos - 1: pos - 1 + k].upper()
            out.append((pos, r, ["".join(_other(rng, b) for b in r)]))
        elif kind == "ins":
            out.append((pos, r0, [r0 + "".join(rng.choice(BASES) for _ in range(rng.randint(1, 12)))]))
        elif kind == "del":
            k = rng.randint(1, 15)
            out.append((pos, ref[pos - 1: pos + k].upper(), [r0]))
        elif kind == "complex":
            k = rng.randint(2, 4)
            r = ref[pos - 1: pos - 1 + k].upper()
            out.append((pos, r, [_other(rng, r0) + "".join(rng.choice(BASES) for _ in range(rng.randint(0, 4)))]))
        else:  # multi-allelic: a deletion, an insertion and a substitution of one REF
            r = ref[pos - 1: pos + 2].upper()
            alts = [r[0], r + "".join(rng.choice(BASES) for _ in range(rng.randint(1, 5))), _other(rng, r[0]) + r[1:]]
            rng.shuffle(alts)
            out.append((pos, r, alts))
    out.sort(key=lambda rec: rec[0])  # stable: records at one position stay in the order drawn
    return out


def random_genotype(rng: random.Random, n_alts: int, missing: float = 0.05, unphased: float = 0.0) -> str:
    def allele() -> str:
        if rng.random() < missing:
            return "."
        return str(rng.choice([0, 0] + list(range(1, n_alts + 1))))

    sep = "/" if rng.random() < unphased else "|"
    return f"{allele()}{sep}{allele()}"


def write_vcf(path: Path, chrom_lengths: dict[str, int], records: list[tuple[str, int, str, list[str], list[str]]],
              samples: list[str]) -> Path:
    """Write ``records`` (chrom, POS, REF, ALTs, genotypes) as a bgzipped, tabix-indexed VCF at ``path``."""
    plain = path.with_suffix("")  # x.vcf.gz -> x.vcf
    with open(plain, "w") as fh:
        fh.write("##fileformat=VCFv4.2\n")
        for name, n in chrom_lengths.items():
            fh.write(f"##contig=<ID={name},length={n}>\n")
        fh.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
        fh.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(samples) + "\n")
        for chrom, pos, ref, alts, gts in records:
            fh.write(f"{chrom}\t{pos}\t.\t{ref}\t{','.join(alts)}\t.\tPASS\t.\tGT\t" + "\t".join(gts) + "\n")
    subprocess.run(["bgzip", "-f", str(plain)], check=True)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(path)], check=True)
    return path


def consensus(fasta: Path, vcf: Path, sample: str, haplotype: int, workdir: Path,
              exclude: str | None = None) -> tuple[dict[str, str], list]:
    """bcftools consensus output (record name -> sequence) and its chain blocks per chromosome.
    ``exclude`` is a bcftools filter expression (``-e``)."""
    chain = workdir / f"{sample}.{haplotype}.chain"
    extra = ["-e", exclude] if exclude else []
    out = subprocess.run(["bcftools", "consensus", "-f", str(fasta), "-s", sample, "-H", str(haplotype), *extra,
                          "-c", str(chain), str(vcf)], check=True, capture_output=True, text=True).stdout
    seqs: dict[str, list[str]] = {}
    name = None
    for line in out.splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            seqs[name] = []
        elif name is not None:
            seqs[name].append(line)
    return {k: "".join(v) for k, v in seqs.items()}, _read_chain(chain)


def _read_chain(path: Path) -> dict[str, tuple[int, int, list[tuple[int, int, int]]]]:
    chains: dict[str, tuple[int, int, list[tuple[int, int, int]]]] = {}
    if not path.exists():
        return chains
    current = None
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "chain":
            current = parts[2]
            chains[current] = (int(parts[5]), int(parts[10]), [])
        elif current is not None:
            nums = [int(x) for x in parts] + [0, 0]
            chains[current][2].append((nums[0], nums[1], nums[2]))
    return chains


def map_position(chains: dict, chrom: str, pos: int) -> int | None:
    """A 0-based reference position in the consensus sequence (None when it was deleted or replaced)."""
    if chrom not in chains:
        return pos
    t, q, blocks = chains[chrom]
    if pos < t:
        return pos
    for size, dt, dq in blocks:
        if t <= pos < t + size:
            return q + pos - t
        if pos < t + size + dt:
            return None
        t += size + dt
        q += size + dq
    return None


def window(seq: str, centre: int, length: int) -> str:
    start = centre - length // 2
    body = seq[max(start, 0): start + length]
    return "N" * max(-start, 0) + body + "N" * (length - max(-start, 0) - len(body))
