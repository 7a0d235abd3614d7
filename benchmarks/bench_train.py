"""Training overhead: `epx train --model lgbm --loco` against calling LightGBM directly.

    python benchmarks/bench_train.py [--genes 16000] [--features 300] [--rounds 100] [--repeat 3]

Builds an ML4G-sized synthetic dataset (16,000 genes x 300 features x 2 cell lines, ~55% zero
expression, genes on chr2..chr22 minus chr14/chr19 like the ML4G training tables), then times, in
one run and on the same LOCO folds and parameters:

- direct: numpy arrays -> lightgbm.train for the stage-1 classifier and the stage-2 rank
  regressor, predict the held-out chromosome: the plain LightGBM script, one lgb.Dataset per
  stage, so the features are binned twice per fold (as epx's lgbm plugin did before it shared
  the binning);
- direct, shared binning: the same with one constructed lgb.Dataset per fold whose label each
  stage sets (what the lgbm plugin does now): the floor;
- epx: the full `epx train` path (dataset loading, split, targets, plugin, predictions, metrics,
  models saved), with SHAP off (``--shap-rows 0``; the default 500 rows is reported separately
  unless --no-shap).

With --repeat N every variant runs N times, interleaved, and the minimum is reported: on a
shared machine the minimum is the run least disturbed by other work (two LightGBM threads on two
busy cores can be 10x slower; --threads 1 is steadier). Prints seconds and the ratios; exits 1 if epx/direct exceeds
--max-ratio (1.0).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_dataset(root: Path, n_genes: int, n_features: int, seed: int = 0) -> Path:
    from epx.dataset import write_dataset

    rng = np.random.default_rng(seed)
    chroms = [f"chr{i}" for i in range(2, 23) if i not in (14, 19)]
    chrom = rng.choice(chroms, size=n_genes)
    start = rng.integers(1_000_000, 100_000_000, size=n_genes)
    genes = pd.DataFrame({"gene_id": [f"G{i:05d}" for i in range(n_genes)], "gene_name": [f"G{i:05d}" for i in range(n_genes)],
                          "chrom": chrom, "start": start, "end": start + 20_000, "strand": rng.choice(["+", "-"], size=n_genes),
                          "tss": start})
    names = [f"f{i:03d}" for i in range(n_features)]
    frames, labels = [], []
    latent = rng.normal(size=n_genes)
    for cell in ("X1", "X2"):
        X = rng.normal(size=(n_genes, n_features)).astype(np.float32)
        X[:, :10] += latent[:, None] * rng.uniform(0.3, 1.0, size=10)
        value = np.where(latent + rng.normal(scale=0.6, size=n_genes) > 0.15, np.exp(rng.normal(2, 1.5, size=n_genes)), 0.0)
        frame = pd.DataFrame(X, columns=names)
        frame.insert(0, "cell_line", cell)
        frame.insert(0, "gene_id", genes["gene_id"].to_numpy())
        frames.append(frame)
        labels.append(pd.DataFrame({"gene_id": genes["gene_id"], "cell_line": cell, "value": value}))
    features = pd.concat(frames, ignore_index=True)
    out = root / "dataset"
    write_dataset(out, genes=genes, labels=pd.concat(labels, ignore_index=True), features=features, features_raw=features,
                  meta={"cell_lines": ["X1", "X2"], "assays": [], "features": names})
    return out


def direct(dataset: Path, params: dict, share_binning: bool = False) -> float:
    """The same folds, targets and two LightGBM stages, no epx in between; with share_binning the
    stages train on one constructed Dataset (binned once), else on one Dataset each."""
    import lightgbm as lgb

    from epx.dataset import load_dataset
    from epx.io.labels import derive_target
    from epx.split import iter_folds, make_split

    t0 = time.perf_counter()
    ds = load_dataset(dataset)
    feats = ds.features()
    X = feats.drop(columns=["gene_id", "cell_line"]).to_numpy(np.float32)
    lab = feats[["gene_id", "cell_line"]].merge(ds.labels, on=["gene_id", "cell_line"], how="left")
    split = make_split(ds.genes, "loco", cells=ds.cell_lines)
    key = pd.MultiIndex.from_frame(split[["gene_id", "cell_line"]])
    pos = pd.MultiIndex.from_frame(feats[["gene_id", "cell_line"]]).get_indexer(key)
    X, value, cells = X[pos], lab["value"].to_numpy()[pos], split["cell_line"].to_numpy()
    base = {"learning_rate": params["learning_rate"], "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 0.8,
            "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "max_bin": params["max_bin"], "seed": 0,
            "deterministic": True, "force_row_wise": True, "verbosity": -1, "num_threads": params["n_jobs"]}
    for fold in iter_folds(split):
        tr = fold.train
        rank = np.empty(len(tr))
        for c in np.unique(cells[tr]):
            m = cells[tr] == c
            rank[m] = derive_target(value[tr][m], "rank")
        nonzero = (value[tr] > 0).astype(float)
        binned = lgb.Dataset(X[tr], params=base).construct() if share_binning else None
        clf = lgb.train({**base, "objective": "binary"},
                        binned.set_label(nonzero) if binned is not None else lgb.Dataset(X[tr], label=nonzero),
                        num_boost_round=params["rounds_without_valid"])
        reg = lgb.train({**base, "objective": "regression"},
                        binned.set_label(rank) if binned is not None else lgb.Dataset(X[tr], label=rank),
                        num_boost_round=params["rounds_without_valid"])
        p = clf.predict(X[fold.test])
        _ = np.clip(reg.predict(X[fold.test]), 0, 1) * (p >= 0.4)
    return time.perf_counter() - t0


def via_epx(dataset: Path, out: Path, params: dict, shap_rows: int) -> float:
    from epx.train import SplitOptions, TrainOptions, train

    t0 = time.perf_counter()
    train(dataset, out, TrainOptions(model="lgbm", params=params, shap_rows=shap_rows), SplitOptions(scheme="loco"),
          force=True, progress=False)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=16_000)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds per stage")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant, interleaved; the minimum is reported")
    parser.add_argument("--no-shap", action="store_true", help="skip the epx run with SHAP on 500 rows")
    parser.add_argument("--threads", type=int, default=0,
                        help="LightGBM threads for every variant (0 = all cores); 1 is far less disturbed by other work")
    parser.add_argument("--max-ratio", type=float, default=1.0)
    args = parser.parse_args()
    params = {"rounds_without_valid": args.rounds, "n_estimators": args.rounds, "learning_rate": 0.05, "max_bin": 63,
              "n_jobs": args.threads}
    root = Path(tempfile.mkdtemp(prefix="epx-bench-train-"))
    runs: dict[str, list[float]] = {}
    try:
        dataset = make_dataset(root, args.genes, args.features)
        variants = {
            "direct lightgbm": lambda: direct(dataset, params),
            "direct, shared binning": lambda: direct(dataset, params, share_binning=True),
            "epx train (no SHAP)": lambda: via_epx(dataset, root / "run", params, shap_rows=0),
        }
        if not args.no_shap:
            variants["epx train (SHAP on 500 rows)"] = lambda: via_epx(dataset, root / "run_shap", params, shap_rows=500)
        for _ in range(args.repeat):
            for name, run in variants.items():
                runs.setdefault(name, []).append(run())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    best = {name: min(times) for name, times in runs.items()}
    t_direct, t_shared, t_epx = best["direct lightgbm"], best["direct, shared binning"], best["epx train (no SHAP)"]
    ratio = t_epx / t_direct
    print(f"{args.genes} genes x {args.features} features x 2 cell lines, LOCO (19 folds), 2 stages x {args.rounds} rounds"
          + f", {args.threads or 'all'} thread(s)" + (f", min of {args.repeat} interleaved runs" if args.repeat > 1 else ""))
    for name, t in best.items():
        note = "" if name.startswith("direct") else f"   ratio {t / t_direct:.2f} (to shared binning {t / t_shared:.2f})"
        spread = f"  [{', '.join(f'{x:.1f}' for x in runs[name])}]" if args.repeat > 1 else ""
        print(f"{name:32s} {t:8.1f} s{note}{spread}")
    if ratio > args.max_ratio:
        print(f"FAIL: overhead {ratio:.2f}x > {args.max_ratio}x")
        return 1
    print(f"OK: overhead {ratio:.2f}x <= {args.max_ratio}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
