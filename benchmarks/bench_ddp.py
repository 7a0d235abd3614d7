"""One model across processes (Lightning DDP): epoch time with devices=1 against devices=2.

    python benchmarks/bench_ddp.py [--genes 20000] [--epochs 4] [--models cnn,bilstm-attn]
                                   [--min-speedup 1.3] [--quick]

On a synthetic dataset (benchmarks/bench_torch.py's: --genes genes x 1 cell line x 7 assays x 100
bins, a holdout split, 90% of the genes train), each model trains for --epochs epochs with
``--param device=cpu`` and one torch thread per process, first in one process, then with
``--param devices=2`` (Lightning re-runs the command for the second process; the batch size is per
process, so the two processes take twice the rows per optimiser step). Per-epoch time is the median
interval between epoch lines (epoch 1 left out), the same clock as bench_torch.py. Printed: per-epoch
time, speed-up, whole-command time and the test AUROC of each, so the cost of the larger effective
batch is visible too. On a GPU node, pass ``--device cuda --devices N`` to time N GPUs.

Exit 1 when 2 processes do not reach --min-speedup x the one-process epoch rate (the baseline is
measured in the same run). On this 2-core machine the ceiling is 2x.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_torch import check, child_env, epx_train, make_dataset, run  # noqa: E402


def _auroc(run_dir: Path) -> float:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return float(metrics["overall"]["test"]["all"]["auroc"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--genes", type=int, default=20_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--models", default="cnn,bilstm-attn")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--min-speedup", type=float, default=1.3)
    ap.add_argument("--quick", action="store_true", help="4,000 genes, 3 epochs, cnn only")
    args = ap.parse_args()
    if args.quick:
        args.genes, args.epochs, args.models = 4_000, 3, "cnn"
    env = child_env()
    ok = True
    with tempfile.TemporaryDirectory(prefix="epx-bench-ddp-") as tmp:
        root = Path(tmp)
        dataset = make_dataset(root / "dataset", args.genes, 1, seed=1)
        n_train = int(args.genes - 2 * max(1, args.genes // 20))
        print(f"# {args.genes:,} genes ({n_train:,} train rows) x 7 assays x 100 bins, {args.epochs} epochs, "
              f"device={args.device}, 1 thread per process")
        print(f"{'model':14s} {'processes':>9s} {'epoch':>8s} {'genes/s':>8s} {'speed-up':>8s} {'command':>8s} {'auroc':>6s}")
        for model in args.models.split(","):
            base = None
            for devices in (1, args.devices):
                out = root / f"run-{model}-{devices}"
                extra = ["--split", str(dataset / "holdout.tsv"), "--param", f"device={args.device}",
                         "--param", f"devices={devices}"]
                result = check(run(epx_train(dataset, out, model, args.epochs, extra), env), f"{model} devices={devices}")
                base = base or result.per_epoch
                speedup = base / result.per_epoch
                print(f"{model:14s} {devices:9d} {result.per_epoch:7.2f}s {n_train / result.per_epoch:8,.0f} "
                      f"{speedup:7.2f}x {result.wall:7.1f}s {_auroc(out):6.3f}")
                if devices > 1 and speedup < args.min_speedup:
                    print(f"FAIL: {model} with {devices} processes is {speedup:.2f}x, below --min-speedup {args.min_speedup}")
                    ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
