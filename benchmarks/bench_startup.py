"""Start-up cost: `epx --help` against `python -c "import typer"` (the floor for a Typer CLI).

    python benchmarks/bench_startup.py [--runs 15]

Prints the median wall time of each and their ratio; exits 1 if the ratio exceeds 2.0
(shell completion re-runs epx on every TAB, so this must stay close to bare typer).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--max-ratio", type=float, default=2.0)
    args = parser.parse_args()
    # The console script next to this interpreter (not a pyenv shim, which adds its own start-up).
    epx = str(Path(sys.executable).with_name("epx"))
    if not Path(epx).exists():
        epx = shutil.which("epx") or sys.exit("epx is not installed")
    cases = {
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "epx --help": [epx, "--help"],
        "epx models (lists plugin specs)": [epx, "models"],
        "TAB completion of --model": [sys.executable, "-c", "from epx.cli import app; app(prog_name='epx')"],
    }
    env_complete = {"_EPX_COMPLETE": "complete_bash", "_TYPER_COMPLETE_ARGS": "epx models r",
                    "COMP_WORDS": "epx models r", "COMP_CWORD": "2"}
    results = {}
    for name, cmd in cases.items():
        if name.startswith("TAB"):
            import os

            old = dict(os.environ)
            os.environ.update(env_complete)
            try:
                results[name] = _median_seconds(cmd, args.runs)
            finally:
                os.environ.clear()
                os.environ.update(old)
        else:
            results[name] = _median_seconds(cmd, args.runs)
    base = results["python -c 'import typer'"]
    print(f"{'command':40s} {'median s':>9s} {'x typer':>8s}")
    for name, t in results.items():
        print(f"{name:40s} {t:9.3f} {t / base:8.2f}")
    ratio = results["epx --help"] / base
    if ratio > args.max_ratio:
        print(f"FAIL: epx --help costs {ratio:.2f}x import typer (limit {args.max_ratio})")
        return 1
    print(f"OK: epx --help costs {ratio:.2f}x import typer (limit {args.max_ratio})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
