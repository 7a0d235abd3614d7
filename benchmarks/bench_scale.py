#!/usr/bin/env python
"""Scale simulation: what a cluster needs for Roadmap-scale featurizing and a 500-individual
Enformer cohort, extrapolated from shards measured here.

Featurize. A shard is one cell line (7 assays, bigWig + narrowPeak, 20,000 genes of the demo), the
unit `epx workflow` runs as one job (`featurize: {shard_by: cells}`). Measured: seconds and peak
RSS of one shard (fresh process each), and of one process over all 3 demo cell lines, which checks
the extrapolation (3 shards' time vs the whole, in the same run: exit 1 when they differ by more
than 50%). Extrapolated: 100 cell lines = 100 independent jobs of that size, their CPU-hours, and
the wall time on C cores; `epx merge` of the parts is I/O (one pass over the parts' files).

Enformer cohort. Measured here: the haplotype-window rate (genotypes + FASTA to one-hot 196,608 bp
windows, 1000 Genomes sample, benchmarks/bench_haplotypes.py's engine), the distinct/requested
window ratio for those windows, and one forward pass of the full-size Enformer architecture
(random weights, the official sizes) on this CPU. The GPU rate is an assumption, printed as such
(--gpu-windows-per-second, default 4 windows/s for a 40 GB A100 in fp32, batch 2); replace it with
your own measurement. Requested windows: 500 individuals x 2 haplotypes x genes (+ one reference
per gene); predicted: requested x the distinct ratio.

    python benchmarks/bench_scale.py                 # all of it (~3 min)
    python benchmarks/bench_scale.py --no-enformer   # skip the full-size forward pass (~1.5 GB RAM)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def epx(*args: str) -> list[str]:
    return [sys.executable, "-c", "from epx.cli import main; main()", *args]


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a fresh process."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024


def featurize_part(work: Path, genes: int) -> dict[str, float]:
    study = work / f"study{genes}"
    if not study.exists():
        subprocess.run(epx("demo", str(study), "--n-genes", str(genes)), check=True, capture_output=True)
    common = ["featurize", "--genes", str(study / "genes.tsv"), "--manifest", str(study / "manifest.tsv"),
              "--workers", "1", "--force"]
    shard_s, shard_mb = timed(epx(*common, "--cells", "X1", "-o", str(work / "shard")))
    whole_s, whole_mb = timed(epx(*common, "-o", str(work / "whole")))
    return {"shard_s": shard_s, "shard_mb": shard_mb, "whole_s": whole_s, "whole_mb": whole_mb}


def haplotype_rate() -> tuple[float, float]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_haplotypes as bh
    import cyvcf2
    import numpy as np

    work = Path(tempfile.gettempdir()) / "epx-bench-haplotypes"
    work.mkdir(exist_ok=True)
    fasta = bh.build_reference(work)
    samples = list(cyvcf2.VCF(str(bh.KG)).samples)[:500]
    tsses = list(np.linspace(11_700_000, 11_834_000, 4).astype(int))
    seconds, _windows, ratios = bh.run_ours(fasta, samples, tsses)
    return 2 * len(samples) * len(tsses) / seconds, float(np.mean(list(ratios.values())))


def enformer_cpu_seconds() -> float | None:
    try:
        import torch
        from enformer_pytorch import Enformer
    except ImportError:
        return None
    torch.set_num_threads(2)
    model = Enformer.from_hparams(dim=1536, depth=11, heads=8, output_heads={"human": 5313}, target_length=896).eval()
    x = torch.zeros(1, 196_608, 4)
    x[0, torch.arange(196_608), torch.randint(0, 4, (196_608,))] = 1
    with torch.inference_mode():
        started = time.perf_counter()
        model(x)
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--cell-lines", type=int, default=100)
    parser.add_argument("--cores", type=int, default=64, help="cluster cores for the wall-time estimate")
    parser.add_argument("--individuals", type=int, default=500)
    parser.add_argument("--cohort-genes", type=int, default=20_000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--gpu-windows-per-second", type=float, default=4.0,
                        help="assumed full-size Enformer rate on one GPU (not measured here)")
    parser.add_argument("--no-enformer", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="epx-bench-scale-") as tmp:
        f = featurize_part(Path(tmp), args.genes)
    shards_s = 3 * f["shard_s"]
    print(f"featurize, {args.genes:,} genes x 7 assays (bigWig + narrowPeak), one worker:")
    print(f"  one shard (1 cell line): {f['shard_s']:.1f} s, peak {f['shard_mb']:.0f} MB")
    print(f"  one process, 3 cell lines: {f['whole_s']:.1f} s, peak {f['whole_mb']:.0f} MB "
          f"(3 shards: {shards_s:.1f} s, ratio {shards_s / f['whole_s']:.2f})")
    cpu_h = args.cell_lines * f["shard_s"] / 3600
    waves = -(-args.cell_lines // args.cores)
    print(f"  {args.cell_lines} cell lines (Roadmap scale x ~2): {args.cell_lines} jobs, {cpu_h:.2f} CPU-hours, "
          f"{f['shard_mb']:.0f} MB each; on {args.cores} cores {waves} wave(s) = {waves * f['shard_s'] / 60:.1f} min "
          "wall, plus epx merge (one pass over the parts)")

    rate, ratio = haplotype_rate()
    requested = args.individuals * 2 * args.cohort_genes + args.cohort_genes
    predicted = requested * ratio
    print(f"Enformer cohort, {args.individuals} individuals x {args.cohort_genes:,} genes:")
    print(f"  haplotype windows built here: {rate:.0f} windows/s per core; distinct/requested on 1000 Genomes "
          f"(196,608 bp): {ratio:.3f}")
    print(f"  windows requested {requested:,}, predicted ~{predicted:,.0f} (the rest from dedup and the cache); "
          f"building them: {requested / rate / 3600:.1f} core-hours")
    cpu = None if args.no_enformer else enformer_cpu_seconds()
    if cpu is not None:
        print(f"  full-size Enformer forward on this CPU (2 threads): {cpu:.1f} s per window -> "
              f"{predicted * cpu / 3600 / 24 / 365:.1f} CPU-years: a GPU job")
    gpu_h = predicted / args.gpu_windows_per_second / 3600
    print(f"  at an assumed {args.gpu_windows_per_second:g} windows/s per GPU: {gpu_h:,.0f} GPU-hours; on {args.gpus} "
          f"GPUs {gpu_h / args.gpus / 24:.1f} days (epx personalize --shard i/{args.gpus}, one cache)")
    ok = 0.5 <= shards_s / f["whole_s"] <= 1.5
    if not ok:
        print("FAIL: 3 shards' time is not within 50% of one process over the same cell lines")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
