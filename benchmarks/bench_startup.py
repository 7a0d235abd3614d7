"""Start-up cost: `epx --help` and one TAB of shell completion, against `python -c "import typer"`
(the floor for a Typer CLI), measured in the same run.

    python benchmarks/bench_startup.py [--runs 21] [--max-ratio 1.5]

Every case runs in a fresh process; prints min and median wall time and the median's ratio to
`import typer`. Shell completion re-runs `epx` on every TAB, so both must stay close to bare typer.
The TAB cases run the console script, as the shell does (its light path answers without building
the command tree); "via Typer" runs the same line through Typer's own completion, for comparison.
Exits 1 if `epx --help` or a TAB (console script) exceeds --max-ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - t0


def _env(pycache: Path) -> dict[str, str]:
    """Bytecode as an installed epx has it: compiled once (warm-up), under a private cache prefix."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(pycache)}


def _tab_env(env: dict[str, str], line: str) -> dict[str, str]:
    words = line.split(" ")
    return {**env, "_EPX_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}


def _dataset(root: Path) -> Path:
    """A dataset directory as completion reads it: dataset.json naming its cell lines and gene table."""
    genes = root / "genes.tsv"
    rows = [f"G{i}\tchr{1 + i % 22}\t{1000 * i}\t{1000 * i + 500}\t{1000 * i}\t{1000 * i + 50}\t+" for i in range(20_000)]
    genes.write_text("gene_name\tchr\tgene_start\tgene_end\tTSS_start\tTSS_end\tstrand\n" + "\n".join(rows) + "\n")
    ds = root / "dataset"
    ds.mkdir()
    (ds / "dataset.json").write_text(json.dumps({
        "cell_lines": ["X1", "X2", "X3"], "assays": ["H3K4me3", "H3K27ac"],
        "fingerprint": {"genes": [{"path": str(genes)}]},
    }))
    return ds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--max-ratio", type=float, default=1.5)
    args = parser.parse_args()
    # The console script next to this interpreter (not a pyenv shim, which adds its own start-up).
    epx = str(Path(sys.executable).with_name("epx"))
    if not Path(epx).exists():
        epx = shutil.which("epx") or sys.exit("epx is not installed")
    via_typer = [sys.executable, "-c", "from epx.cli import app; app(prog_name='epx')"]
    with tempfile.TemporaryDirectory() as tmp:
        ds = _dataset(Path(tmp))
        env = _env(Path(tmp) / "pycache")

        def _tab(line: str) -> dict[str, str]:
            return _tab_env(env, line)

        cases: list[tuple[str, list[str], dict[str, str]]] = [
            ("python -c 'import typer'", [sys.executable, "-c", "import typer"], env),
            ("python -c 'import epx.cli'", [sys.executable, "-c", "import epx.cli"], env),
            ("epx --help", [epx, "--help"], env),
            ("epx train --help", [epx, "train", "--help"], env),
            ("TAB epx models r", [epx], _tab("epx models r")),
            ("TAB epx train DS --tr", [epx], _tab(f"epx train {ds} --tr")),
            ("TAB epx train DS --train-cells X", [epx], _tab(f"epx train {ds} --train-cells X")),
            ("TAB epx train DS --model lgbm -p n", [epx], _tab(f"epx train {ds} --model lgbm -p n")),
            ("TAB epx split DS --test chr1", [epx], _tab(f"epx split {ds} --test chr1")),
            ("TAB epx train DS --target r", [epx], _tab(f"epx train {ds} --target r")),
            ("TAB via Typer: epx train DS --train-cells X", via_typer, _tab(f"epx train {ds} --train-cells X")),
        ]
        for _, cmd, case_env in cases:  # warm-up: compiles bytecode, fills the OS cache
            _run(cmd, case_env)
        times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _ in range(args.runs):  # round-robin, so that load from other processes hits every case alike
            for name, cmd, case_env in cases:
                times[name].append(_run(cmd, case_env))
        results = {name: (min(t), statistics.median(t)) for name, t in times.items()}
    base = results["python -c 'import typer'"][1]
    print(f"{args.runs} rounds, every case once per round in a fresh process")
    print(f"{'command':46s} {'min s':>7s} {'median s':>9s} {'x typer':>8s}")
    for name, (low, med) in results.items():
        print(f"{name:46s} {low:7.3f} {med:9.3f} {med / base:8.2f}")
    checked = [n for n in results if n == "epx --help" or (n.startswith("TAB epx"))]
    over = [n for n in checked if results[n][1] / base > args.max_ratio]
    if over:
        print(f"FAIL: over {args.max_ratio}x import typer (median): {', '.join(over)}")
        return 1
    print(f"OK: epx --help and every TAB within {args.max_ratio}x import typer (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
