"""epx-torch: framework overhead, throughput per model, and peak memory of `epx train`.

    python benchmarks/bench_torch.py [--genes 10000] [--overhead-genes 2000] [--epochs 5] [--repeat 1]
                                     [--parts overhead,throughput,memory] [--quick]

Every training is an `epx train` (or plain-torch) subprocess on a synthetic epx dataset written
with numpy (float32 bins.npy, 7 assays x 100 bins, a `binary` label per row, a holdout split by
chromosome: 90% of genes train, 5% valid, 5% test), one at a time, one torch thread (the default):

- overhead: `epx train --model bilstm-attn --target binary --param patience=0 --param max_epochs=E`
  against the same `nn.Module` (epx_torch.nets.attentive.BiLSTMAttentionTrunk under
  epx_torch.trainer.Network) trained by a minimal plain-torch loop in its own process
  (``--plain-worker``): same rows (train / valid / test), epochs, batch size, Adam, learning rate,
  gradient clipping, LR plateau schedule, one torch thread, deterministic algorithms, per-batch
  reads and log1p z-scoring from the memory-mapped bins, best-validation weights kept, test rows
  predicted and the weights saved. The plain loop imports the trunk's module with
  pytorch_lightning stubbed out (the module imports epx_torch.trainer, which imports Lightning
  at its top), so it pays what a plain-torch script pays: python, numpy and torch.
  Per-epoch time, the same way for both sides: the parent timestamps each per-epoch line as it
  arrives on the child's stderr (Lightning's line is written at the end of the training epoch,
  after the validation pass and the checkpoint; the plain loop prints at the same point) and
  takes the median of the intervals between consecutive lines. Epoch 1 is left out (its start
  is not observable and it carries one-off warm-up), and so are start-up, data loading, the
  final prediction and the writing of outputs, which the whole-command time includes.
  Fails (exit 1) if epx's per-epoch time exceeds --max-epoch-ratio (1.2) x the plain loop's;
  the whole-command ratio (subprocess wall time, imports and data loading included) is
  printed, with the imports of torch and pytorch_lightning timed separately (fresh
  interpreters, the minimum of 3).
- throughput: genes per second of one training epoch (the median epoch interval as above, so it
  includes the epoch's validation pass over 5% of the genes) for cnn, bilstm-attn,
  bilstm-transformer, hybrid and transformer with their default parameters (batch sizes
  included) on --genes genes x 1 cell line x 7 assays x 100 bins, --throughput-epochs epochs.
- memory: `epx train --model cnn` for --memory-epochs epoch(s) on 2 x --genes genes x 11 cell
  lines x 7 assays x 100 bins (616 MB of bins at the default 10,000); peak RSS of the epx
  process from /usr/bin/time (%M; the child's own high-water mark: getrusage(RUSAGE_CHILDREN)
  of a spawned child can carry its parent's), printed against the size of bins.npy. epx reads
  the bins with pread (epx.dataset.BinRowReader), so RSS is torch plus batches plus the row
  tables (834 MB measured; 1,441 MB when the bins were read through a memory map, whose touched
  pages count in RSS); any copy of the bins would show. Fails above --max-rss-gb (1.5 GB, decimal).

--quick shrinks everything (1,000 overhead genes, 3 epochs, 2,000 throughput genes and 4,000 x 11
memory genes) to check the script in about a minute; the limits stay as they are (at the quick
size the memory bound is trivially met). --repeat N runs the two overhead variants N times,
interleaved, and reports the minimum (on a shared machine, the least disturbed run). With
--keep DIR the datasets and runs are written there and kept (default: a temporary directory,
removed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODELS = ("cnn", "bilstm-attn", "bilstm-transformer", "hybrid", "transformer")
N_ASSAYS, N_BINS = 7, 100
EPOCH_LINE = re.compile(r"\bepoch (\d+)/(\d+)\b")
TIME = "/usr/bin/time"


# -- the synthetic dataset ---------------------------------------------------------------------------


def make_dataset(path: Path, n_genes: int, n_cells: int, seed: int = 0, chunk: int = 1000) -> Path:
    """An epx dataset of raw count-like bins written chunk by chunk into bins.npy (never the whole
    array in memory), a ``binary`` label (value above the cell line's median) and holdout.tsv:
    chr1 (5% of genes) is test, chr2 (5%) valid, chr3..chr20 train."""
    import pandas as pd

    from epx.dataset import write_dataset
    from epx.split import SPLIT_COLUMNS, write_split

    rng = np.random.default_rng(seed)
    step = max(1, n_genes // 20)  # chr1 and chr2 take 5% of the genes each
    chrom = np.array([f"chr{min(i // step, 19) + 1}" for i in range(n_genes)])
    start = rng.integers(1_000_000, 100_000_000, size=n_genes)
    ids = np.array([f"G{i:06d}" for i in range(n_genes)])
    genes = pd.DataFrame({"gene_id": ids, "gene_name": ids, "chrom": chrom, "start": start, "end": start + 20_000,
                          "strand": "+", "tss": start})
    cells = [f"C{c:02d}" for c in range(n_cells)]
    latent = rng.normal(size=(n_genes, n_cells)).astype(np.float32)
    value = np.exp(2 + latent + rng.normal(scale=0.7, size=latent.shape))
    binary = (value > np.median(value, axis=0)).astype(np.float64)
    labels = pd.DataFrame({"gene_id": np.repeat(ids, n_cells), "cell_line": np.tile(cells, n_genes),
                           "value": value.ravel(), "binary": binary.ravel()})
    path.mkdir(parents=True, exist_ok=True)
    bins = np.lib.format.open_memmap(path / "bins.npy", mode="w+", dtype=np.float32,
                                     shape=(n_genes, n_cells, N_ASSAYS, N_BINS))
    profile = np.exp(-0.5 * ((np.arange(N_BINS) - N_BINS / 2) / (N_BINS / 10)) ** 2).astype(np.float32)
    weight = np.array([1.5, 1.0, -0.8, 0.6, 0.0, 0.3, -0.4], dtype=np.float32)[:N_ASSAYS]
    sums = np.zeros((n_cells, N_ASSAYS, 2), np.float64)
    for lo in range(0, n_genes, chunk):
        hi = min(lo + chunk, n_genes)
        noise = rng.standard_exponential(size=(hi - lo, n_cells, N_ASSAYS, N_BINS), dtype=np.float32)
        lift = np.exp(weight[None, None, :, None] * latent[lo:hi, :, None, None] * profile)
        block = 3 * noise * lift
        bins[lo:hi] = block
        logged = np.log1p(block, dtype=np.float64)
        sums[..., 0] += logged.sum(axis=(0, 3))
        sums[..., 1] += (logged ** 2).sum(axis=(0, 3))
    bins.flush()
    del bins
    count = n_genes * N_BINS
    mean = sums[..., 0] / count
    sd = np.sqrt(np.maximum(sums[..., 1] / count - mean ** 2, 0))
    sd = np.where(sd > 0, sd, 1.0)
    meta = {
        "importer": "bench_torch", "cell_lines": cells, "assays": [f"A{a}" for a in range(N_ASSAYS)],
        "bin_size": 100, "n_bins": N_BINS, "features": [],
        "bins_normalisation": {"method": "log1p, then z-score per (cell line, assay) over all genes and bins",
                               "mean": mean.tolist(), "sd": sd.tolist()},
        "inputs": {"tabular": False, "binned": True},
    }
    write_dataset(path, genes=genes, labels=labels, meta=meta)
    role = np.where(chrom == "chr1", "test", np.where(chrom == "chr2", "valid", "train"))
    split = pd.DataFrame({"gene_id": ids, "cell_line": "*", "chrom": chrom, "fold": "holdout", "role": role})
    write_split(split[SPLIT_COLUMNS], path / "holdout.tsv")
    return path


def plain_rows(dataset: Path, out: Path) -> dict[str, int]:
    """(gene, cell line) positions and labels of the holdout split's train / valid / test rows,
    for the plain loop (the rows epx train builds from holdout.tsv, in the same order)."""
    from epx.dataset import load_dataset
    from epx.split import expand_cells

    ds = load_dataset(dataset)
    split = expand_cells(ds.holdout_split(), ds.cell_lines)
    gene = ds.gene_index(split["gene_id"])
    cell = np.array([ds.cell_lines.index(c) for c in split["cell_line"]])
    y = split[["gene_id", "cell_line"]].merge(ds.labels, on=["gene_id", "cell_line"], how="left")["binary"].to_numpy()
    arrays, counts = {}, {}
    for role in ("train", "valid", "test"):
        m = (split["role"] == role).to_numpy()
        arrays.update({f"{role}_gene": gene[m], f"{role}_cell": cell[m], f"{role}_y": y[m].astype(np.float32)})
        counts[role] = int(m.sum())
    np.savez(out, **arrays)
    return counts


# -- running and timing a child process -------------------------------------------------------------


@dataclass
class Run:
    wall: float
    rc: int
    epoch_times: list[float] = field(default_factory=list)  # arrival time of each epoch line
    max_rss: int | None = None  # bytes
    tail: list[str] = field(default_factory=list)

    @property
    def per_epoch(self) -> float:
        """Median interval between consecutive epoch lines (epoch 1 left out)."""
        gaps = np.diff(self.epoch_times)
        return float(np.median(gaps)) if len(gaps) else float("nan")


def run(cmd: list[str], env: dict[str, str]) -> Run:
    """Run ``cmd`` under /usr/bin/time (when present), timestamping each epoch line of its stderr."""
    wrapped = [TIME, "-f", "EPXBENCH_MAXRSS_KB=%M", *cmd] if Path(TIME).is_file() else cmd
    t0 = time.perf_counter()
    proc = subprocess.Popen(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    result = Run(wall=0.0, rc=0)
    assert proc.stderr is not None
    for line in proc.stderr:
        now = time.perf_counter()
        if EPOCH_LINE.search(line):
            result.epoch_times.append(now - t0)
        elif line.startswith("EPXBENCH_MAXRSS_KB="):
            result.max_rss = int(line.split("=", 1)[1]) * 1024
            continue
        result.tail = [*result.tail[-30:], line.rstrip()]
    result.rc = proc.wait()
    result.wall = time.perf_counter() - t0
    return result


def check(result: Run, what: str) -> Run:
    if result.rc != 0:
        sys.stderr.write("\n".join(result.tail) + "\n")
        raise SystemExit(f"{what} failed (exit {result.rc})")
    return result


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def epx_train(dataset: Path, out: Path, model: str, epochs: int, extra: list[str] = ()) -> list[str]:
    """`epx train` on the dataset's holdout split, a fixed number of epochs (no early stopping)."""
    return [sys.executable, "-m", "epx.cli", "train", str(dataset), "--model", model, "--target", "binary",
            "--seed", "0", "--param", "patience=0",
            "--param", f"max_epochs={epochs}", *extra, "-o", str(out), "--force"]


def import_times(env: dict[str, str], runs: int = 3) -> dict[str, float]:
    """Wall time of fresh interpreters importing nothing, torch, and torch + pytorch_lightning."""
    cases = {"python": "pass", "torch": "import torch", "lightning": "import torch, pytorch_lightning"}
    best = {}
    for name, code in cases.items():
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    return best


# -- the plain-torch loop (run as its own process) ---------------------------------------------------


def _stub_lightning() -> None:
    """Let epx_torch.trainer (where Network lives) import without loading pytorch_lightning."""
    import types

    import torch

    if "pytorch_lightning" in sys.modules:
        return
    stub = types.ModuleType("pytorch_lightning")
    stub.LightningModule = torch.nn.Module
    stub.Callback = object

    def placeholder(name: str) -> type:  # anything else the module names at import time
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})

    stub.__getattr__ = placeholder
    sys.modules["pytorch_lightning"] = stub


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="mergesort")] = np.arange(1, len(score) + 1)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)) if n_pos and n_neg else float("nan")


def plain_worker(dataset: Path, rows_file: Path, out: Path, epochs: int, seed: int) -> int:
    """A minimal plain-torch training of epx's bilstm-attn module with its default parameters."""
    import copy

    import torch

    _stub_lightning()
    from epx_torch import bilstm_attn
    from epx_torch.nets.attentive import BiLSTMAttentionTrunk
    from epx_torch.spec import TRAINER_PARAMS
    from epx_torch.trainer import Network

    params = bilstm_attn.params
    torch.set_num_threads(int(params["threads"]))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    meta = json.loads((dataset / "dataset.json").read_text())
    mean = np.asarray(meta["bins_normalisation"]["mean"], np.float32)
    sd = np.asarray(meta["bins_normalisation"]["sd"], np.float32)
    bins = np.load(dataset / "bins.npy", mmap_mode="r")
    rows = dict(np.load(rows_file))

    def read(genes: np.ndarray, cells: np.ndarray) -> torch.Tensor:
        order = np.lexsort((cells, genes))
        raw = np.empty((len(genes), *bins.shape[2:]), np.float32)
        raw[order] = bins[genes[order], cells[order]]
        x = (np.log1p(np.clip(raw, 0, None)) - mean[cells][..., None]) / sd[cells][..., None]
        return torch.from_numpy(x.astype(np.float32, copy=False))

    def predict(role: str, chunk: int) -> np.ndarray:
        net.eval()
        genes, cells = rows[f"{role}_gene"], rows[f"{role}_cell"]
        with torch.no_grad():
            return torch.cat([net(read(genes[i:i + chunk], cells[i:i + chunk])) for i in range(0, len(genes), chunk)]).numpy()

    arch = {k: v for k, v in params.items() if k not in TRAINER_PARAMS}
    net = Network(BiLSTMAttentionTrunk(N_ASSAYS, N_BINS, **arch))
    optimizer = torch.optim.Adam(net.parameters(), lr=float(params["lr"]), weight_decay=float(params["weight_decay"]))
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=float(params["lr_factor"]),
                                                         patience=int(params["lr_patience"]))
    batch, clip = int(params["batch_size"]), float(params["grad_clip"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    generator = torch.Generator().manual_seed(seed)
    n = len(rows["train_gene"])
    y_valid = torch.from_numpy(rows["valid_y"])
    best, best_state = float("inf"), None
    for epoch in range(epochs):
        net.train()
        total = 0.0
        order = torch.randperm(n, generator=generator).numpy()
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            x, y = read(rows["train_gene"][idx], rows["train_cell"][idx]), torch.from_numpy(rows["train_y"][idx])
            optimizer.zero_grad()
            loss = bce(net(x), y)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
            total += float(loss) * len(idx)
        scores = torch.from_numpy(predict("valid", max(batch, 256)))
        valid_loss = float(bce(scores, y_valid))
        plateau.step(valid_loss)
        if valid_loss < best:
            best, best_state = valid_loss, copy.deepcopy(net.state_dict())
        print(f"plain seed {seed} epoch {epoch + 1}/{epochs}  train loss {total / n:.4f}  valid loss {valid_loss:.4f}  "
              f"valid auroc {_auroc(rows['valid_y'], scores.numpy()):.4f}", file=sys.stderr, flush=True)
    net.load_state_dict(best_state)
    test = predict("test", 1024)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "network.pt")
    (out / "metrics.json").write_text(json.dumps({"test_auroc": _auroc(rows["test_y"], test)}) + "\n")
    return 0


# -- the three parts -----------------------------------------------------------------------------------


def part_overhead(root: Path, args: argparse.Namespace, env: dict[str, str]) -> bool:
    dataset = make_dataset(root / "overhead", args.overhead_genes, 1)
    counts = plain_rows(dataset, root / "overhead_rows.npz")
    here = Path(__file__).resolve()
    variants = {
        "epx train": epx_train(dataset, root / "run-overhead", "bilstm-attn", args.epochs),
        "plain torch": [sys.executable, str(here), "--plain-worker", str(dataset), str(root / "overhead_rows.npz"),
                        str(root / "plain-overhead"), "--epochs", str(args.epochs)],
    }
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, cmd in variants.items():
            runs[name].append(check(run(cmd, env), name))
    imports = import_times(env)
    epoch = {name: min(r.per_epoch for r in rs) for name, rs in runs.items()}
    wall = {name: min(r.wall for r in rs) for name, rs in runs.items()}
    plain_auroc = json.loads((root / "plain-overhead" / "metrics.json").read_text())["test_auroc"]
    epx_metrics = json.loads((root / "run-overhead" / "metrics.json").read_text())
    epx_auroc = epx_metrics["overall"]["test"]["all"]["auroc"]
    epoch_ratio, wall_ratio = epoch["epx train"] / epoch["plain torch"], wall["epx train"] / wall["plain torch"]
    print(f"\n## overhead: bilstm-attn (defaults, batch 16), {args.overhead_genes:,} genes x 1 cell line x {N_ASSAYS} x {N_BINS}: "
          f"{counts['train']:,} train / {counts['valid']:,} valid / {counts['test']:,} test rows, {args.epochs} epochs, "
          f"1 thread" + (f", min of {args.repeat} interleaved runs" if args.repeat > 1 else ""))
    print(f"{'':14s} {'per epoch':>10s} {'whole command':>14s} {'test AUROC':>11s}")
    for name in variants:
        auroc = epx_auroc if name == "epx train" else plain_auroc
        spread = f"  epochs [{', '.join(f'{x:.2f}' for x in np.diff(runs[name][0].epoch_times))}] s"
        print(f"{name:14s} {epoch[name]:9.2f}s {wall[name]:13.1f}s {auroc:11.3f}{spread}")
    print(f"ratio epx/plain: per epoch {epoch_ratio:.2f}x (limit {args.max_epoch_ratio}x), whole command {wall_ratio:.2f}x "
          f"(+{wall['epx train'] - wall['plain torch']:.1f} s)")
    print(f"imports (fresh interpreter, min of 3): python {imports['python']:.2f} s, torch +{imports['torch'] - imports['python']:.2f} s, "
          f"pytorch_lightning +{imports['lightning'] - imports['torch']:.2f} s over torch")
    ok = epoch_ratio <= args.max_epoch_ratio
    print(("OK" if ok else "FAIL") + f": per-epoch overhead {epoch_ratio:.2f}x {'<=' if ok else '>'} {args.max_epoch_ratio}x")
    return ok


def part_throughput(root: Path, args: argparse.Namespace, env: dict[str, str]) -> bool:
    from epx.models.plugins import get_spec

    dataset = make_dataset(root / "throughput", args.genes, 1, seed=1)
    n_train = int(args.genes - 2 * max(1, args.genes // 20))
    print(f"\n## throughput: {args.genes:,} genes x 1 cell line x {N_ASSAYS} assays x {N_BINS} bins ({n_train:,} train rows), "
          f"default parameters, {args.throughput_epochs} epochs, 1 thread")
    print(f"{'model':20s} {'batch':>5s} {'epoch':>8s} {'genes/s':>8s} {'command':>8s}")
    for model in args.models:
        result = check(run(epx_train(dataset, root / f"run-{model}", model, args.throughput_epochs), env), model)
        batch = get_spec(model).params["batch_size"]
        print(f"{model:20s} {batch:5d} {result.per_epoch:7.2f}s {n_train / result.per_epoch:8,.0f} {result.wall:7.1f}s")
    return True


def part_memory(root: Path, args: argparse.Namespace, env: dict[str, str]) -> bool:
    n_genes = 2 * args.genes
    dataset = make_dataset(root / "memory", n_genes, 11, seed=2)
    size = (dataset / "bins.npy").stat().st_size
    result = check(run(epx_train(dataset, root / "run-memory", "cnn", args.memory_epochs), env), "epx train (memory)")
    limit = args.max_rss_gb * 1e9
    print(f"\n## memory: cnn, {n_genes:,} genes x 11 cell lines x {N_ASSAYS} assays x {N_BINS} bins, "
          f"{args.memory_epochs} epoch(s), {result.wall:.1f} s")
    if result.max_rss is None:
        print(f"peak RSS not measured ({TIME} is missing)")
        return True
    ok = result.max_rss <= limit
    print(f"bins.npy {size / 1e6:,.0f} MB; peak RSS of epx train {result.max_rss / 1e6:,.0f} MB "
          f"({result.max_rss / size:.2f}x the bins file, {(result.max_rss - size) / 1e6:+,.0f} MB beyond it)")
    print(("OK" if ok else "FAIL") + f": peak RSS {result.max_rss / 1e9:.2f} GB {'<=' if ok else '>'} {args.max_rss_gb} GB")
    return ok


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--plain-worker":
        worker = argparse.ArgumentParser()
        worker.add_argument("dataset", type=Path)
        worker.add_argument("rows", type=Path)
        worker.add_argument("out", type=Path)
        worker.add_argument("--epochs", type=int, required=True)
        worker.add_argument("--seed", type=int, default=0)
        a = worker.parse_args(sys.argv[2:])
        return plain_worker(a.dataset, a.rows, a.out, a.epochs, a.seed)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=10_000, help="throughput genes; the memory dataset has twice as many x 11 cell lines")
    parser.add_argument("--overhead-genes", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=5, help="overhead epochs (>= 2)")
    parser.add_argument("--throughput-epochs", type=int, default=2, help="epochs per model (>= 2)")
    parser.add_argument("--memory-epochs", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS), help="throughput models (comma-separated)")
    parser.add_argument("--parts", default="overhead,throughput,memory")
    parser.add_argument("--repeat", type=int, default=1, help="overhead runs of each variant, interleaved; the minimum is reported")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script (about a minute)")
    parser.add_argument("--max-epoch-ratio", type=float, default=1.2)
    parser.add_argument("--max-rss-gb", type=float, default=1.5)
    parser.add_argument("--keep", type=Path, help="write datasets and runs here and keep them")
    args = parser.parse_args()
    if args.quick:
        args.genes, args.overhead_genes, args.epochs, args.throughput_epochs = 2_000, 1_000, 3, 2
    args.models = [m for m in args.models.split(",") if m]
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - {"overhead", "throughput", "memory"}
    if unknown or min(args.epochs, args.throughput_epochs) < 2:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}" if unknown else "epochs must be >= 2 (epoch 1 is not timed)")
    root = args.keep or Path(tempfile.mkdtemp(prefix="epx-bench-torch-"))
    root.mkdir(parents=True, exist_ok=True)
    env = child_env()
    ok = True
    t0 = time.perf_counter()
    try:
        for name, part in (("overhead", part_overhead), ("throughput", part_throughput), ("memory", part_memory)):
            if name in parts:
                ok = part(root, args, env) and ok
                sys.stdout.flush()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'OK' if ok else 'FAIL'} ({time.perf_counter() - t0:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
