#!/usr/bin/env python
"""Benchmark the peak memory of ``epx featurize`` against the number of tracks, and its speed-up
with two workers.

Study: ``epx demo --n-genes SCALE`` (3 cell lines x 7 assays, each a bigWig and a narrowPeak
file), generated once into --cache. Runs, each a fresh process (``epx featurize`` via the CLI):

  tracks=6, 18, 42   --assays with 1, 3 and all 7 assays (2 tracks per cell line and assay),
                     --workers 1: peak RSS (the process's own VmHWM, read from /proc/PID/status
                     just before it exits, and /usr/bin/time's maximum RSS when available) and
                     seconds
  workers=2          all 42 tracks with --workers 2: seconds (and the parent's peak RSS; each
                     worker's own peak is bounded by the tracks it runs)

  cells=3, 9, 18     all 7 assays, the study's 3 cell lines repeated under new names (the same
                     files; 42, 126 and 252 tracks), --workers 1: peak RSS. This is the axis a
                     Roadmap-sized study grows along (56+ epigenomes x 5-12 marks); the assay
                     sweep above grows one cell line's block, which the derived cross-mark
                     features need whole.

Reported: MB per extra track (least-squares slope of peak RSS over the three track counts) for
each sweep and the speed-up of 2 workers over 1. The baseline is the in-memory assembly this replaced, measured
on the same study at 20,000 genes: 453 / 908 / 1,860 MB for 6 / 18 / 42 tracks, ~34 MB per
track (it is no longer in the code, so it is quoted, not rerun; --baseline-ref REF runs it from a
git ref in a temporary worktree instead). Exit 1 if the slope is >= --max-mb-per-track (8 MB by
default) or the 2-worker run is slower than the 1-worker run on a machine with >= 2 cores.

    python benchmarks/bench_featurize_memory.py                  # 20,000 genes (~5 min; --no-cells ~2 min)
    python benchmarks/bench_featurize_memory.py --scale 2000     # quick
    python benchmarks/bench_featurize_memory.py --baseline-ref 5dd9341   # rerun the old code too
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSAYS = ("H3K27ac", "H3K4me3", "H3K27me3", "H3K36me3", "H3K4me1", "H3K9me3", "DNase")
QUOTED_BASELINE = {6: 453.0, 18: 908.0, 42: 1860.0}  # MB at 20,000 genes, one worker, before this change

# Runs epx's CLI in this process and prints its own VmHWM at exit: exec resets the high-water
# mark, so the figure is this run's, not the benchmark's.
RUNNER = r"""
import atexit, sys
def _hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write(f"\nVMHWM_KB {line.split()[1]}\n")
atexit.register(_hwm)
from epx.cli import main
sys.argv = ["epx", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    if exc.code not in (0, None):
        raise
"""


def _env(root: Path) -> dict[str, str]:
    paths = [root, *sorted((root / "plugins").glob("*/src"))]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_featurize(root: Path, study: Path, out: Path, assays: tuple[str, ...], workers: int) -> dict[str, float]:
    args = ["featurize", "--genes", str(study / "genes.tsv"), "--manifest", str(study / "manifest.tsv"),
            "-o", str(out), "--workers", str(workers), "--force"]
    if len(assays) < len(ASSAYS):
        args += ["--assays", ",".join(assays)]
    timer = ["/usr/bin/time", "-f", "TIME_MAXRSS_KB %M"] if Path("/usr/bin/time").exists() else []
    t0 = time.perf_counter()
    proc = subprocess.run([*timer, sys.executable, "-c", RUNNER, *args], env=_env(root), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"featurize failed ({root}):\n{proc.stderr[-3000:]}")
    found = {line.split()[0]: float(line.split()[1]) for line in proc.stderr.splitlines()
             if line.startswith(("VMHWM_KB", "TIME_MAXRSS_KB"))}
    return {"seconds": seconds, "vmhwm_mb": found.get("VMHWM_KB", np.nan) / 1024,
            "maxrss_mb": found.get("TIME_MAXRSS_KB", np.nan) / 1024}


def make_study(cache: Path, scale: int) -> Path:
    study = cache / f"demo_{scale}"
    if not (study / "manifest.tsv").is_file():
        tmp = cache / f"demo_{scale}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-c", "from epx.cli import main; import sys; sys.argv=['epx', *sys.argv[1:]]; main()",
                        "demo", str(tmp), "--n-genes", str(scale)], env=_env(ROOT), check=True, capture_output=True)
        tmp.rename(study)
    return study


def sweep(root: Path, study: Path, work: Path, label: str) -> dict[int, dict[str, float]]:
    out = {}
    for n_assays in (1, 3, 7):
        assays = ASSAYS[:n_assays]
        r = run_featurize(root, study, work / f"{label}_{n_assays}", assays, workers=1)
        tracks = 6 * n_assays
        out[tracks] = r
        print(f"  {label:9s} tracks={tracks:3d}  workers=1  {r['seconds']:7.1f} s  peak RSS {r['vmhwm_mb']:7.0f} MB "
              f"(VmHWM), {r['maxrss_mb']:7.0f} MB (/usr/bin/time)", flush=True)
    return out


def widen(study: Path, copies: int) -> Path:
    """The study with its cell lines repeated ``copies`` times under new names (X1, X1_2, ...),
    reading the same track files; genes and manifest only, so nothing large is copied."""
    wide = study.parent / f"{study.name}_x{copies}"
    wide.mkdir(exist_ok=True)
    rows = (study / "manifest.tsv").read_text().splitlines()
    out = [rows[0]]
    for k in range(1, copies + 1):
        for row in rows[1:]:
            cell, rest = row.split("\t", 1)
            cell = cell if k == 1 else f"{cell}_{k}"
            out.append("\t".join([cell, *rest.split("\t")[:-1], str(study / rest.split("\t")[-1])]))
    (wide / "manifest.tsv").write_text("\n".join(out) + "\n")
    shutil.copyfile(study / "genes.tsv", wide / "genes.tsv")
    return wide


def sweep_cells(root: Path, study: Path, work: Path) -> dict[int, dict[str, float]]:
    out = {}
    for copies in (1, 3, 6):
        r = run_featurize(root, widen(study, copies), work / f"cells_{copies}", ASSAYS, workers=1)
        shutil.rmtree(work / f"cells_{copies}", ignore_errors=True)  # bins.npy grows with the cell lines
        tracks = 42 * copies
        out[tracks] = r
        print(f"  {'cells':9s} tracks={tracks:3d}  workers=1  {r['seconds']:7.1f} s  peak RSS {r['vmhwm_mb']:7.0f} MB "
              f"(VmHWM), {r['maxrss_mb']:7.0f} MB (/usr/bin/time)  [{3 * copies} cell lines x 7 assays]", flush=True)
    return out


def slope(points: dict[int, float]) -> float:
    x = np.array(sorted(points), dtype=float)
    y = np.array([points[int(k)] for k in x])
    return float(np.polyfit(x, y, 1)[0])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=20_000, help="genes in the demo study (default 20,000)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "epx-bench-featurize-memory")
    ap.add_argument("--max-mb-per-track", type=float, default=8.0)
    ap.add_argument("--baseline-ref", help="also run the featurize of this git ref (a temporary worktree)")
    ap.add_argument("--no-cells", dest="cells", action="store_false", help="skip the cell-line sweep (3 runs, ~4 min)")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    study = make_study(args.cache, args.scale)
    print(f"study: {study} ({args.scale:,} genes, 3 cell lines x 7 assays x bigWig + narrowPeak); "
          f"{os.cpu_count()} cores", flush=True)
    work = Path(tempfile.mkdtemp(prefix="run_", dir=args.cache))
    try:
        ours = sweep(ROOT, study, work, "ours")
        baseline = None
        if args.baseline_ref:
            tree = work / "baseline_tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.baseline_ref],
                           check=True, capture_output=True)
            try:
                baseline = {k: v["vmhwm_mb"] for k, v in sweep(tree, study, work, "baseline").items()}
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
        two = run_featurize(ROOT, study, work / "ours_w2", ASSAYS, workers=2)
        print(f"  {'ours':9s} tracks= 42  workers=2  {two['seconds']:7.1f} s  peak RSS {two['vmhwm_mb']:7.0f} MB "
              f"(parent VmHWM), {two['maxrss_mb']:7.0f} MB (/usr/bin/time: largest process)", flush=True)
        cells = sweep_cells(ROOT, study, work) if args.cells else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    per_track = slope({k: v["vmhwm_mb"] for k, v in ours.items()})
    print(f"\npeak RSS per extra track: {per_track:.1f} MB (target < {args.max_mb_per_track:g} MB); "
          f"6 -> 42 tracks: {ours[6]['vmhwm_mb']:.0f} -> {ours[42]['vmhwm_mb']:.0f} MB")
    if cells is not None:
        per_cell_track = slope({k: v["vmhwm_mb"] for k, v in cells.items()})
        print(f"peak RSS per extra track, adding cell lines: {per_cell_track:.2f} MB; "
              f"42 -> 252 tracks: {cells[42]['vmhwm_mb']:.0f} -> {cells[252]['vmhwm_mb']:.0f} MB")
    if baseline is not None:
        print(f"baseline ({args.baseline_ref}): {slope(baseline):.1f} MB per track; "
              f"{baseline[6]:.0f} -> {baseline[42]:.0f} MB")
    elif args.scale == 20_000:
        print(f"baseline (quoted, before this change): {slope(QUOTED_BASELINE):.1f} MB per track; "
              f"{QUOTED_BASELINE[6]:.0f} -> {QUOTED_BASELINE[42]:.0f} MB")
    speedup = ours[42]["seconds"] / two["seconds"]
    print(f"42 tracks: workers=1 {ours[42]['seconds']:.1f} s, workers=2 {two['seconds']:.1f} s: speed-up {speedup:.2f}x "
          f"({os.cpu_count()} cores)")
    failed = []
    if not per_track < args.max_mb_per_track:
        failed.append(f"{per_track:.1f} MB per track >= {args.max_mb_per_track:g}")
    if cells is not None and not per_cell_track < args.max_mb_per_track:
        failed.append(f"{per_cell_track:.1f} MB per track over cell lines >= {args.max_mb_per_track:g}")
    if (os.cpu_count() or 1) >= 2 and speedup < 1.0:
        failed.append(f"2 workers slower than 1 ({speedup:.2f}x)")
    for f in failed:
        print(f"FAIL: {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
