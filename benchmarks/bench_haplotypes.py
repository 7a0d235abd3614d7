#!/usr/bin/env python
"""Benchmark the personal-sequence pipeline without the network: genotypes + FASTA to one-hot
haplotype windows of 196,608 bp, against a loop over ``bcftools consensus``.

Data: the real 1000 Genomes VCF in ../shared/data/vcf_1000g_chr1 (2,504 phased samples, 4,296
sites in 140 kb of chr1; symbolic alleles are left out by both sides) over a reference built to
agree with its REF alleles (12 Mb, written once to --workdir).

  ours        epx.sequence.haplotypes.HaplotypeBuilder for --genes TSSs spread over the VCF's
              region x --samples samples x 2 haplotypes, then one-hot encoding of every
              requested window (epx.sequence.onehot.one_hot_batch), as epx personalize does
              before the model (distinct windows are encoded once; the count of requested
              windows is what a user asks for)
  bcftools    per sample and haplotype: ``bcftools consensus -s S -H h`` of the chromosome
              (the way the peers do it; one run gives every gene of that haplotype), then the
              windows cut at the TSS mapped through its chain file and one-hot encoded

Reported: windows per second (requested windows / seconds) for both, the dedup ratio (distinct
windows / requested, per gene and over all genes), and a check that both give identical windows
for every (sample, haplotype, gene). Exit 1 if the windows differ or ours is under 200 windows/s.

Tiny-model inference (--tiny): the epx-enformer plugin's tiny random Enformer on CPU, sequences
per second at its window, when the plugin is installed.

    python benchmarks/bench_haplotypes.py                  # 512 samples x 4 genes
    python benchmarks/bench_haplotypes.py --samples 2504   # the whole cohort (dedup ratio)
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
KG = ROOT.parent / "shared" / "data" / "vcf_1000g_chr1" / "example.vcf.gz"
WINDOW = 196_608


def build_reference(workdir: Path) -> Path:
    from bcftools_oracle import write_fasta

    fasta = workdir / "kg_ref.fa"
    if fasta.exists():
        return fasta
    sites = {}
    with gzip.open(KG, "rt") as fh:
        for line in fh:
            if not line.startswith("#"):
                _c, pos, _i, ref, _ = line.split("\t", 4)
                sites[int(pos)] = ref
    rng = random.Random(1)
    seq = bytearray(rng.choice(b"ACGT") for _ in range(max(sites) + 200_000))
    for pos, ref in sites.items():
        seq[pos - 1: pos - 1 + len(ref)] = ref.encode()
    return write_fasta(fasta, {"1": seq.decode()})


def run_ours(fasta: Path, samples: list[str], tsses: list[int]) -> tuple[float, dict, dict]:
    from epx.io.fasta import Reference
    from epx.io.genotypes import VcfGenotypes
    from epx.sequence.haplotypes import HaplotypeBuilder
    from epx.sequence.onehot import OneHotBuffer

    encode = OneHotBuffer()
    started = time.perf_counter()
    builder = HaplotypeBuilder(Reference(fasta), VcfGenotypes(KG, samples), WINDOW)
    windows: dict = {}
    ratios = {}
    for t in tsses:
        gh = builder.gene(f"G{t}", "chr1", t)
        for b in range(0, len(gh.windows), 16):
            encode(gh.windows[b: b + 16])
        ratios[t] = len(gh.windows) / (2 * len(samples) + 1)
        for s, sample in enumerate(samples):
            for h in (0, 1):
                windows[(sample, h + 1, t)] = gh.windows[gh.index[s, h]]
    return time.perf_counter() - started, windows, ratios


def run_bcftools(fasta: Path, samples: list[str], tsses: list[int], workdir: Path) -> tuple[float, dict]:
    from bcftools_oracle import consensus, map_position, window

    from epx.sequence.onehot import one_hot

    started = time.perf_counter()
    windows = {}
    for sample in samples:
        for h in (1, 2):
            seqs, chains = consensus(fasta, KG, sample, h, workdir, exclude='ALT~"<.*>"')
            for t in tsses:
                w = window(seqs["1"], map_position(chains, "1", t), WINDOW).encode()
                one_hot(w)
                windows[(sample, h, t)] = w
    return time.perf_counter() - started, windows


def run_tiny(n: int) -> None:
    try:
        from epx_enformer.tiny import write_tiny_enformer

        from epx.models.plugins import load_predictor
    except ImportError:
        print("tiny model: the epx-enformer plugin is not installed; skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_tiny_enformer(Path(tmp) / "tiny")
        predictor = load_predictor("enformer", {"weights": str(Path(tmp) / "tiny"), "device": "cpu", "batch_size": 8})
        rng = np.random.default_rng(0)
        x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, predictor.window))]
        predictor.predict(x[:2])
        started = time.perf_counter()
        predictor.predict(x)
        seconds = time.perf_counter() - started
        print(f"tiny Enformer on CPU: {n} windows of {predictor.window:,} bp in {seconds:.2f} s = "
              f"{n / seconds:.1f} windows/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--bcftools-samples", type=int, default=8, help="samples for the bcftools loop (scaled)")
    parser.add_argument("--genes", type=int, default=4)
    parser.add_argument("--tiny", type=int, default=64, help="windows for the tiny-model timing (0: skip)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "epx-bench-haplotypes")
    args = parser.parse_args()
    if not KG.exists():
        print(f"{KG} is missing", file=sys.stderr)
        return 2
    import cyvcf2

    args.workdir.mkdir(parents=True, exist_ok=True)
    fasta = build_reference(args.workdir)
    all_samples = list(cyvcf2.VCF(str(KG)).samples)
    samples = all_samples[: args.samples]
    tsses = list(np.linspace(11_700_000, 11_834_000, args.genes).astype(int))
    ours_s, ours, ratios = run_ours(fasta, samples, tsses)
    n_ours = 2 * len(samples) * len(tsses)
    few = samples[: args.bcftools_samples]
    bcf_s, theirs = run_bcftools(fasta, few, tsses, args.workdir)
    n_bcf = 2 * len(few) * len(tsses)
    same = all(ours[k] == theirs[k] for k in theirs)
    ours_rate, bcf_rate = n_ours / ours_s, n_bcf / bcf_s
    print(f"windows of {WINDOW:,} bp, {len(tsses)} genes, 1000 Genomes chr1 sample")
    print(f"  ours      {n_ours:6d} windows ({len(samples)} samples) in {ours_s:7.2f} s = {ours_rate:8.1f} windows/s")
    print(f"  bcftools  {n_bcf:6d} windows ({len(few)} samples) in {bcf_s:7.2f} s = {bcf_rate:8.1f} windows/s "
          f"(ours {ours_rate / bcf_rate:.1f}x)")
    print(f"  identical windows: {same} ({len(theirs)} compared)")
    print("  dedup ratio (distinct / requested windows) per gene: "
          + ", ".join(f"{t:,}: {r:.3f}" for t, r in ratios.items())
          + f"; overall {np.mean(list(ratios.values())):.3f}")
    if args.tiny:
        run_tiny(args.tiny)
    ok = same and ours_rate >= 200
    if not ok:
        print("FAIL: windows differ from bcftools" if not same else "FAIL: under 200 windows/s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
