"""``epx train``: the cross-validation loop every backend shares.

The core resolves the split (the same folds for every model), derives targets from training rows
only, builds each fold's :class:`~epx.contract.FoldData` in the model's input kind, calls the
plugin once per fold (or once per inner fold with ``inner_k``, averaging the inner models), and
writes a run directory:

    RUN_DIR/
      config.json       model, plugin version, resolved parameters, target, split, seed, dataset
      split.tsv         the split used
      oof.parquet       out-of-fold predictions: gene_id, gene_name, cell_line, fold, y_true, y_pred[, proba]
      test.parquet      predictions for held-out test chromosomes / prediction cell lines (fold mean)
      seed_predictions.parquet  with --seeds K > 1: each seed's y_pred (gene_id, cell_line, fold, part, seed)
      metrics.json      per fold, per cell line and overall metrics (with seeds: each metric's spread)
      importance.tsv    gain importance per fold (when the model provides it)
      shap.parquet      per-row feature contributions on test rows (when the model provides them)
      models/FOLD/      each fold's fitted model(s): fold_NAME[_seedS][_innerJ]
      log.txt

A partial run (``--fold NAMES`` / ``--only-seed S``: some outer folds, some seed values) has
config.json (with ``partial``: its folds and seeds, the run's, and an identity), split.tsv,
dataset_genes.txt, log.txt, those folds' models/ and parts/fold_NAME_seedS.{parquet,json,shap.npy}
(predictions before the seed and fold means, importance and SHAP per model); ``epx collect``
assembles the parts with the same code into the run above.

With ``seeds`` K > 1, every fold trains each of its models with seeds ``seed, seed+1, ...``;
the predictions (and metrics) are the seed-averaged ensemble's, and each seed's are kept to
report the spread across seeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx import console
from epx._version import __version__
from epx.dataset import BinnedRows, Dataset, dataset_geometry, load_dataset, refuse_part
from epx.errors import DatasetError, EpxError, LabelError, PluginError, SplitError
from epx.io.labels import TARGETS, derive_target
from epx.metrics import evaluate, mean_sd
from epx.models.contract import FoldData, training_processes
from epx.models.plugins import ModelSpec, get_spec
from epx.outputs import atomic_dir, check_output, refuse_overlap
from epx.sequence.windows import SequenceRows
from epx.split import ALL_CELLS, Fold, expand_cells, iter_folds, make_split, validate_split

TASK_OF_TARGET = {"raw": "regression", "log1p": "regression", "rank": "rank", "nonzero": "binary", "binary": "binary"}
# Targets that assume raw expression (>= 0): log1p of a negative value is undefined, and negative
# values mean the labels are already transformed (log or centred), so a rank of them is not
# the rank of expression the default pipeline means.
NON_NEGATIVE_TARGETS = ("log1p", "rank")


@dataclass
class SplitOptions:
    """How to obtain the split: a file, a scheme, or the dataset's own holdout split."""

    file: Path | None = None
    scheme: str | None = None
    k: int | None = None
    valid_chroms: Sequence[str] = ()
    test_chroms: Sequence[str] = ()
    seed: int = 0
    # A split file covering only some of the dataset's genes is refused (it was usually made for
    # another gene table) unless training on that subset is intended.
    allow_subset: bool = False


@dataclass
class TrainOptions:
    model: str
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    train_cells: Sequence[str] = ()
    predict_cells: Sequence[str] = ()
    inner_k: int | None = None
    seed: int = 0
    seeds: int = 1  # train each fold with seeds seed, seed+1, ..., seed+seeds-1 and average them
    shap_rows: int = 500  # SHAP on a seeded sample of each fold's test rows: pred_contrib is costly
    assays: Sequence[str] = ()  # train on these assays only (binned: their tracks; tabular: their features)
    bins: Sequence[str] = ()  # binned models: the dataset's bin geometries to read (default: the spec's, or the first)
    # a partial run (epx collect assembles the parts): these outer folds / these seed values only
    folds: Sequence[str] = ()
    only_seeds: Sequence[int] = ()


def seed_values(options: TrainOptions) -> list[int]:
    """The model seeds each fold trains with: ``seed, seed+1, ...`` (``seeds`` of them)."""
    return [options.seed + s for s in range(options.seeds)]


def default_target(spec: ModelSpec) -> str:
    """``rank`` where supported (aligns with Spearman, robust to heavy tails), else log1p/binary."""
    if "rank" in spec.tasks:
        return "rank"
    return "log1p" if "regression" in spec.tasks else "binary"


def resolve_split(ds: Dataset, opts: SplitOptions, train_cells: Sequence[str], predict_cells: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """The split table for this run (checked against the dataset) and a description of it."""
    if opts.file is not None or opts.scheme is None:
        if opts.test_chroms or opts.valid_chroms:
            raise SplitError("--test/--holdout chromosomes come with a scheme (--loco, --chr-kfold, --holdout); "
                             "a split file or the dataset's own split already fixes them")
        if opts.file is not None:
            from epx.split import read_split

            split, described = read_split(opts.file), f"file {opts.file}"
            covered = _check_split_matches(split, ds, opts.file, opts.allow_subset)
            if covered < len(ds.genes):
                described += f" (subset: {covered} of {len(ds.genes)} genes)"
        else:
            if opts.allow_subset:
                raise SplitError("--split-subset applies to a split file (--split FILE)")
            split, described = ds.holdout_split(), "the dataset's holdout split"
            if split is None:
                raise SplitError("choose a split: --split FILE, --loco, --chr-kfold K or --holdout VAL_CHROMS")
        labelled = set(ds.labels["cell_line"]) if not ds.labels.empty else set()
        if not train_cells:  # unlabelled cell lines of a generic ("*") split can only be tested
            train_cells = [c for c in ds.cell_lines if c in labelled and c not in predict_cells]
        return _restrict_cells(expand_cells(split, ds.cell_lines), train_cells, predict_cells), described
    if opts.allow_subset:
        raise SplitError("--split-subset applies to a split file (--split FILE)")
    labelled = set(ds.labels["cell_line"]) if not ds.labels.empty else set()
    train = list(train_cells) or [c for c in ds.cell_lines if c in labelled and c not in predict_cells]
    if not train:
        raise LabelError(f"no labelled cell line to train on (labelled: {', '.join(sorted(labelled)) or 'none'}); "
                         "featurize with --labels CELL=FILE or choose --train-cells")
    split = make_split(ds.genes, opts.scheme, k=opts.k, valid_chroms=opts.valid_chroms, test_chroms=opts.test_chroms,
                       cells=ds.cell_lines, train_cells=train, test_cells=list(predict_cells), seed=opts.seed)
    split = split[split["cell_line"].isin([*train, *predict_cells])].reset_index(drop=True)
    return split, opts.scheme


def _restrict_cells(split: pd.DataFrame, train_cells: Sequence[str], predict_cells: Sequence[str]) -> pd.DataFrame:
    """Apply --train-cells / --test-cells to a given split: other cells' rows are only tested."""
    if not train_cells and not predict_cells:
        return split
    keep = list(train_cells) + list(predict_cells) if train_cells else None
    if keep is not None:
        split = split[split["cell_line"].isin(keep)].reset_index(drop=True)
    testing_only = (~split["cell_line"].isin(train_cells) if train_cells else split["cell_line"].isin(predict_cells)).to_numpy()
    # An unseen cell line is tested on held-out genes only, as make_split does: CV rows are
    # tested in their fold; in a holdout split its test chromosomes, or without any, its
    # validation chromosomes.
    role = split["role"].to_numpy().copy()
    has_fixed_test = (role == "test").any()
    role[testing_only & (role == "cv")] = "test"
    role[testing_only & (role == "train")] = "none"
    role[testing_only & (role == "valid")] = "none" if has_fixed_test else "test"
    split = split.assign(role=role)
    return split


def _check_split_matches(split: pd.DataFrame, ds: Dataset, path: Path, allow_subset: bool = False) -> int:
    """Refuse a split file naming genes or cell lines the dataset lacks, or (unless
    ``allow_subset``) leaving some of the dataset's genes out; returns how many genes it covers."""
    known = set(ds.genes["gene_id"])
    unknown = split.loc[~split["gene_id"].isin(known), "gene_id"]
    if len(unknown):
        raise SplitError(f"{path}: split does not match the dataset: gene {unknown.iloc[0]!r} is not in it "
                         f"({len(unknown)} unknown rows); was the split made for another gene table?")
    cells = set(split["cell_line"]) - set(ds.cell_lines) - {ALL_CELLS}
    if cells:
        raise SplitError(f"{path}: split names cell line(s) {', '.join(sorted(cells))} that the dataset lacks "
                         f"(it has {', '.join(ds.cell_lines)})")
    in_split = ds.genes["gene_id"].isin(set(split["gene_id"])).to_numpy()
    if not allow_subset and not in_split.all():
        first = ds.genes["gene_id"].to_numpy()[~in_split][0]
        raise SplitError(f"{path}: split covers {int(in_split.sum())} of {len(in_split)} genes of the dataset; "
                         f"first missing: {first}; was it made for another gene table? "
                         "(--split-subset trains and predicts on the split's genes only)")
    return int(in_split.sum())


def resolve_geometries(ds: Dataset, spec: ModelSpec, chosen: Sequence[str] = ()) -> list[str]:
    """The bin geometries a binned model reads: ``--bins``, else the spec's, else the dataset's
    default. A geometry the dataset lacks is one line naming the featurize option that adds it."""
    if spec.input_kind != "binned":
        if chosen:
            raise EpxError(f"--bins chooses bin geometries for binned models; {spec.name!r} reads {spec.input_kind} input")
        return []
    if chosen:
        from epx.features.geometry import parse_geometry_names

        names = list(parse_geometry_names(",".join(chosen), "--bins"))
        if len(names) > 1 and not spec.geometries:
            raise EpxError(f"model {spec.name!r} reads one bin geometry; give one with --bins "
                           f"(the dataset has {', '.join(ds.geometry_names)})")
    else:
        names = list(spec.geometries) or ds.geometry_names[:1]
    have = ds.geometry_names
    missing = [n for n in names if n not in have]
    if missing:
        wanted = ",".join(dict.fromkeys([*have, *names]))
        how = "" if chosen else f", or choose the dataset's with epx train --bins {','.join(have)}"
        raise DatasetError(f"model {spec.name!r} needs bin geometry {missing[0]} (width x bins), which the dataset "
                           f"lacks (it has {', '.join(have) or 'none'}); re-run epx featurize with --bins {wanted}{how}",
                           path=ds.path)
    return names


class _Inputs:
    """Model inputs and labels aligned to the rows of a split table."""

    def __init__(self, ds: Dataset, split: pd.DataFrame, input_kind: str, assays: Sequence[str] = (),
                 geometries: Sequence[str] = (), regions: bool = False,
                 stats: Callable[[str], Any] | None = None):
        self.ds = ds
        self.kind = input_kind
        self.bins: dict[str, BinnedRows] = {}
        self.regions = None
        rows = split[["gene_id", "cell_line"]].copy()
        gene_pos = ds.gene_index(rows["gene_id"])
        rows["gene_name"] = ds.genes["gene_name"].to_numpy()[gene_pos]
        labels = ds.labels
        merged = rows.merge(labels[["gene_id", "cell_line", "value"]], on=["gene_id", "cell_line"], how="left")
        self.value = merged["value"].to_numpy(np.float64)
        self.extra_binary = None
        if "binary" in labels.columns:
            self.extra_binary = rows.merge(labels[["gene_id", "cell_line", "binary"]], on=["gene_id", "cell_line"],
                                           how="left")["binary"].to_numpy(np.float64)
        self.rows = rows
        if input_kind == "tabular":
            table = ds.features()
            index = pd.MultiIndex.from_frame(table[["gene_id", "cell_line"]])
            pos = index.get_indexer(pd.MultiIndex.from_frame(rows[["gene_id", "cell_line"]]))
            if (pos < 0).any():
                bad = rows[pos < 0].iloc[0]
                raise DatasetError(f"no features for gene {bad.gene_id!r} in cell line {bad.cell_line!r}", path=ds.path)
            names = [c for c in table.columns if c not in ("gene_id", "cell_line")]
            self.feature_names = ds.features_of_assays(names, assays) if assays else names
            self.X = table[self.feature_names].to_numpy(np.float32)[pos]
        elif input_kind == "binned":
            # a lazy view: each fold side, and each batch a model asks for, is read and normalised
            # from the memory-mapped bins on demand
            cell_pos = np.array([ds.cell_lines.index(c) for c in rows["cell_line"]])
            self.feature_names = list(assays or ds.assays)
            for name in geometries or ds.geometry_names[:1]:
                st = stats(name) if stats is not None else None
                self.bins[name] = ds.bin_view(gene_pos, cell_pos, self.feature_names, stats=st, geometry=name)
                self.bins[name].require_finite(rows, self.feature_names)
            self.X = next(iter(self.bins.values()))
            if regions and ds.has_regions:
                st = {n: stats(n) for n in self.bins} if stats is not None else None
                self.regions = ds.region_view(gene_pos, cell_pos, self.feature_names, list(self.bins), st)
        elif input_kind == "sequence":
            # one-hot reference windows, built from the FASTA per batch (a gene's window is the same
            # in every cell line: the rows tell a model which cell line each one is)
            self.feature_names = ["A", "C", "G", "T"]
            self.X = ds.sequence_rows(gene_pos)
        else:
            raise PluginError(f"input kind {input_kind!r} is not available from a dataset directory yet")

    def targets(self, idx: np.ndarray, kind: str) -> dict[str, np.ndarray]:
        """Every derived target of rows ``idx``, computed per cell line over those rows only."""
        out = {t: np.full(len(idx), np.nan) for t in TARGETS}
        cells = self.rows["cell_line"].to_numpy()[idx]
        values = self.value[idx]
        for cell in pd.unique(cells):
            m = cells == cell
            for t in TARGETS:
                out[t][m] = derive_target(values[m], t)
            if self.extra_binary is not None and not np.isnan(self.extra_binary[idx][m]).all():
                out["binary"][m] = self.extra_binary[idx][m]
        return out

    def fold_data(self, idx: np.ndarray, with_targets: bool, target: str) -> FoldData:
        t = self.targets(idx, target) if with_targets else {}
        X = self.X.take(idx) if isinstance(self.X, (BinnedRows, SequenceRows)) else self.X[idx]
        bins = {name: view.take(idx) for name, view in self.bins.items()}
        if bins:
            X = next(iter(bins.values()))
        return FoldData(X=X, y=t.get(target) if with_targets else None,
                        rows=self.rows.iloc[idx].reset_index(drop=True), feature_names=list(self.feature_names), targets=t,
                        bins=bins, regions=None if self.regions is None else self.regions.take(idx))


def _global_truth(inp: _Inputs, target: str) -> np.ndarray:
    """y_true for evaluation: the target derived per cell line over all labelled rows."""
    idx = np.flatnonzero(np.isfinite(inp.value))
    truth = np.full(len(inp.value), np.nan)
    if len(idx):
        truth[idx] = inp.targets(idx, target)[target]
    return truth


def _inner_folds(split: pd.DataFrame, train_idx: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group the training rows' chromosomes into k inner folds (whole chromosomes, balanced)."""
    from epx.split import _chrom_folds_balanced

    chroms = split["chrom"].to_numpy()[train_idx]
    counts = pd.Series(chroms).value_counts().sort_index()
    if len(counts) < k:
        raise SplitError(f"--inner chr-kfold {k} needs >= {k} training chromosomes per fold, found {len(counts)}")
    assign = _chrom_folds_balanced(counts, k, seed)
    labels = np.array([assign[c] for c in chroms])
    return [(train_idx[labels != j], train_idx[labels == j]) for j in range(k)]


def train(
    dataset: str | Path,
    output: str | Path,
    options: TrainOptions,
    split_options: SplitOptions,
    *,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the CV loop and write RUN_DIR; returns the metrics summary."""
    if options.seeds < 1:
        raise EpxError(f"--seeds must be at least 1 (got {options.seeds})")
    if options.seed < 0:  # numpy and torch seeds are unsigned
        raise EpxError(f"--seed must be >= 0 (got {options.seed})")
    refuse_overlap(output, [dataset, *([split_options.file] if split_options.file else [])])
    output = check_output(output, force, "run")
    ds = load_dataset(dataset)
    refuse_part(ds)
    spec = get_spec(options.model)
    if spec.input_kind not in ds.input_kinds:
        how = {"binned": "re-run epx featurize without --no-bins (or epx import deepchrome) to add binned tracks",
               "tabular": "re-run epx featurize to add tabular features",
               "sequence": "record a reference genome with epx featurize --fasta REF --sequence-window L"
               }.get(spec.input_kind, "")
        raise PluginError(f"model {spec.name!r} needs {spec.input_kind} input, but dataset {ds.path} has only "
                          f"{', '.join(ds.input_kinds) or 'no model inputs'}" + (f"; {how}" if how else ""))
    target = options.target or default_target(spec)
    if target not in TARGETS:
        raise EpxError(f"unknown --target {target!r}; use one of {', '.join(TARGETS)}")
    task = TASK_OF_TARGET[target]
    if task not in spec.tasks:
        raise PluginError(f"model {spec.name!r} does not support {task} targets (--target {target}); it supports {', '.join(spec.tasks)}")
    unknown = [c for c in [*options.train_cells, *options.predict_cells] if c not in ds.cell_lines]
    if unknown:
        raise EpxError(f"cell line(s) {', '.join(unknown)} are not in the dataset (it has {', '.join(ds.cell_lines)})")
    if options.assays and spec.input_kind == "sequence":
        raise EpxError(f"--assays chooses tracks; model {spec.name!r} reads reference sequence, not tracks")
    unknown = [a for a in options.assays if a not in ds.assays]
    if unknown:
        raise EpxError(f"assay {unknown[0]!r} is not in the dataset (it has {', '.join(ds.assays)})", path=ds.path)
    params = spec.resolve_params(options.params)
    model_cls = spec.load_class()
    probe = model_cls(params, task, options.seed)  # a model checks its parameters (device, sizes) before any work starts
    rank, _ = training_processes(probe)
    if rank > 0:  # a secondary rank of a multi-process training: rank 0 reports (its own errors still print)
        console.mute()
    geometries = resolve_geometries(ds, spec, options.bins)
    split, split_desc = resolve_split(ds, split_options, options.train_cells, options.predict_cells)
    validate_split(split)
    inp = _Inputs(ds, split, spec.input_kind, options.assays, geometries, spec.regions)
    if spec.regions and not ds.has_regions:
        console.warn(f"dataset {ds.path} has no distal regions (epx featurize --pairs FILE adds them); "
                     f"{spec.name} runs on the promoter bins alone")
    _check_non_negative(ds, inp, target)
    truth = _global_truth(inp, target)
    folds = list(iter_folds(split))
    _check_training_labels(split, inp, folds)

    seeds = seed_values(options)
    seeded = len(seeds) > 1
    run_folds, only_seeds = _partial_selection(folds, seeds, options)
    if rank > 0:  # the same fits in the same order, and nothing else: no files, no predictions
        for fold in run_folds:
            _run_fold(fold, split, inp, truth, target, task, model_cls, params, options, None, None, only_seeds)
        return {"task": task, "secondary_rank": rank}
    partial = only_seeds is not None
    log: list[str] = [f"epx {__version__} train {spec.name} target={target} task={task} split={split_desc}"
                      + (f" seeds={','.join(map(str, seeds))}" if seeded else "")]
    config = {
        "epx_version": __version__, "model": spec.name, "plugin": _plugin_version(spec.name),
        "params": params, "target": target, "task": task, "seed": options.seed, "seeds": len(seeds),
        "seed_values": seeds, "inner_k": options.inner_k,
        "split": split_desc, "dataset": str(Path(dataset).resolve()),
        "dataset_fingerprint": ds.meta.get("fingerprint") or ds.meta.get("source"),
        "train_cells": list(options.train_cells), "predict_cells": list(options.predict_cells),
        "input_kind": spec.input_kind, "features": inp.feature_names,
        # what epx predict checks: the assays trained on, out of the dataset's
        "assays": list(options.assays) or ds.assays, "dataset_assays": ds.assays,
        "geometry": dataset_geometry(ds.meta),
        # binned models: the geometries read and whether distal regions were (epx predict checks both)
        "geometries": geometries, "regions": inp.regions is not None,
        "region_params": {k: ds.meta["regions"][k] for k in ("max_regions", "max_region_width")}
        if inp.regions is not None else None,
        # sequence models: the reference window they were trained on (epx predict checks it)
        "sequence": {"window": ds.sequence_window, "fasta": ds.meta["sequence"]["fasta"],
                     "sample_blake2b": ds.meta["sequence"].get("sample_blake2b")}
        if spec.input_kind == "sequence" else None,
    }
    split_text = split.to_csv(sep="\t", index=False)
    fold_outputs: list[tuple] = []
    part_metrics: list[dict] = []
    started = time.perf_counter()
    with atomic_dir(output, "run", force=force) as tmp:
        with console.progress(progress) as bar:
            n_seeds = len(only_seeds) if partial else len(seeds)
            units = f"{len(run_folds)} folds x {n_seeds} seeds" if seeded else f"{len(run_folds)} folds"
            task_id = bar.add_task(f"train {spec.name} ({units})", total=len(run_folds) * n_seeds)

            def seed_done(fold: Fold, seed: int, metrics: dict, seconds: float) -> None:
                if seeded:
                    log.append(f"fold {fold.name} seed {seed}: {json.dumps(metrics)} ({seconds:.1f}s)")
                if partial:
                    part_metrics.append({"fold": fold.name, "seed": seed, **metrics})
                bar.advance(task_id)

            for fold in run_folds:
                t0 = time.perf_counter()
                frame, results = _run_fold(fold, split, inp, truth, target, task, model_cls, params, options, tmp,
                                           seed_done, only_seeds)
                counts = f"train={len(fold.train)} valid={len(fold.valid)} test={len(fold.test)}"
                if partial:
                    save_part(tmp, frame, results, counts)
                    continue
                fold_outputs.append((fold.name, combine_fold(frame, results, task, inp.feature_names, seeded)))
                log.append(f"fold {fold.name}: {counts} {json.dumps(fold_outputs[-1][1][4])} "
                           f"({time.perf_counter() - t0:.1f}s)")
        (tmp / "split.tsv").write_text(split_text)
        # the genes the inputs were normalised over (per cell line, at featurize time): epx predict
        # scales another dataset's inputs over the same genes
        (tmp / "dataset_genes.txt").write_text("\n".join(ds.genes["gene_id"]) + "\n")
        if partial:
            identity, fields = run_identity(config, split_text, options.shap_rows)
            config["partial"] = {"folds": [f.name for f in run_folds], "seeds": list(only_seeds),
                                 "all_folds": [f.name for f in folds], "all_seeds": seeds,
                                 "identity": identity, "identity_fields": fields}
            summary: dict[str, Any] = {"task": task, "partial": config["partial"], "folds": part_metrics}
        else:
            summary = write_results(tmp, fold_outputs, task, seeded)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        log.append(f"done in {time.perf_counter() - started:.1f}s")
        (tmp / "log.txt").write_text("\n".join(log) + "\n")
    return summary


def write_results(tmp: Path, fold_outputs: list[tuple], task: str, seeded: bool) -> dict[str, Any]:
    """Write oof.parquet, test.parquet, metrics.json (and seed_predictions.parquet, importance.tsv,
    shap.parquet) from each fold's ``(name, combine_fold output)``, in fold order; returns the metrics."""
    oof_parts, test_parts, imp_parts, shap_parts, fold_metrics = [], [], [], [], []
    seed_parts: dict[int, dict[str, list[pd.DataFrame]]] = {}
    for name, (oof, test, imp, shap, metrics, per_seed) in fold_outputs:
        oof_parts.append(oof)
        test_parts.append(test)
        if imp is not None:
            imp_parts.append(imp)
        if shap is not None:
            shap_parts.append(shap)
        for seed, (seed_oof, seed_test) in per_seed.items():
            seed_parts.setdefault(seed, {"oof": [], "test": []})
            seed_parts[seed]["oof"].append(seed_oof)
            seed_parts[seed]["test"].append(seed_test)
        fold_metrics.append({"fold": name, **metrics})
    oof_table = pd.concat(oof_parts, ignore_index=True) if oof_parts else pd.DataFrame()
    test_table = _average_test(test_parts)
    summary = _summarise(fold_metrics, oof_table, test_table, task)
    oof_table.to_parquet(tmp / "oof.parquet", index=False)
    test_table.to_parquet(tmp / "test.parquet", index=False)
    if seeded:
        seed_table, summary["seeds"] = _seed_results(seed_parts, task)
        seed_table.to_parquet(tmp / "seed_predictions.parquet", index=False)
    (tmp / "metrics.json").write_text(json.dumps(summary, indent=2, default=_nan_to_none) + "\n")
    if imp_parts:
        pd.concat(imp_parts, ignore_index=True).to_csv(tmp / "importance.tsv", sep="\t", index=False)
    if shap_parts:
        pd.concat(shap_parts, ignore_index=True).to_parquet(tmp / "shap.parquet", index=False)
    return summary


def _nan_to_none(obj: Any) -> Any:
    return None


def _plugin_version(name: str) -> str:
    from epx.models.plugins import discover

    for e in discover():
        if e.name == name:
            return f"{e.distribution} {e.version}"
    return "?"


def _check_non_negative(ds: Dataset, inp: _Inputs, target: str) -> None:
    """Refuse negative labels of any cell line in the split for the log1p and rank targets."""
    if target not in NON_NEGATIVE_TARGETS:
        return
    negative = np.flatnonzero(inp.value < 0)  # NaN (unlabelled) compares False
    if not len(negative):
        return
    i = negative[0]
    cells = inp.rows["cell_line"].to_numpy()
    cell, gene = cells[i], inp.rows["gene_id"].iat[i]
    count = int((cells[negative] == cell).sum())
    fingerprint = ds.meta.get("fingerprint")
    files = fingerprint.get("labels") if isinstance(fingerprint, dict) else None
    entry = files.get(cell) if isinstance(files, dict) else None
    source = entry.get("path") if isinstance(entry, dict) else None  # the label file featurize read
    raise LabelError(f"cell line {cell!r} has {count} negative label(s), first gene {gene!r} = {inp.value[i]:g}; "
                     f"the {target} target needs expression >= 0 (are the labels already log-transformed?); "
                     "use --target raw or binary, or give untransformed expression",
                     path=source or ds.path / "labels.parquet")


def _check_training_labels(split: pd.DataFrame, inp: _Inputs, folds: list[Fold]) -> None:
    train_rows = np.unique(np.concatenate([f.train for f in folds])) if folds else np.array([], int)
    cells = split["cell_line"].to_numpy()
    for cell in pd.unique(cells[train_rows]):
        rows = train_rows[cells[train_rows] == cell]
        if not np.isfinite(inp.value[rows]).any():
            raise LabelError(f"no labels for training cell line {cell!r}; featurize with --labels {cell}=FILE "
                             "or train on other cells with --train-cells")


@dataclass
class FoldFrame:
    """One outer fold's predicted rows: the table its predictions extend and the masks over it."""

    name: str
    base: pd.DataFrame  # gene_id, gene_name, cell_line, chrom, fold, y_true
    is_oof: np.ndarray
    is_test: np.ndarray
    scored: np.ndarray
    shap_idx: np.ndarray  # the rows of ``base`` SHAP explains


@dataclass
class SeedResult:
    """One seed's models of one fold: their predictions (the inner models' mean), importance
    dicts and SHAP arrays (one per model, in training order)."""

    seed: int
    preds: dict[str, np.ndarray]
    imps: list[dict] = field(default_factory=list)
    shaps: list[np.ndarray] = field(default_factory=list)


def _run_fold(fold: Fold, split: pd.DataFrame, inp: _Inputs, truth: np.ndarray, target: str, task: str,
              model_cls: type, params: dict, options: TrainOptions, run_dir: Path | None,
              seed_done: Callable[[Fold, int, dict, float], None] | None = None,
              only_seeds: Sequence[int] | None = None) -> tuple[FoldFrame, list[SeedResult]]:
    """Train one outer fold's models (per seed, per inner fold) and predict its held-out rows.

    Returns the fold's rows and each seed's results (``only_seeds``: those seeds only);
    :func:`combine_fold` averages them. Without ``run_dir`` (a secondary rank of a multi-process
    training) the models are fitted and nothing else: no predictions, no files, no results."""
    labelled = np.isfinite(inp.value)
    train_idx = fold.train[labelled[fold.train]]
    valid_idx = fold.valid[labelled[fold.valid]]
    if len(train_idx) == 0:
        raise EpxError(f"fold {fold.name!r}: no labelled training rows")
    y_train = inp.targets(train_idx, target)[target]
    if np.ptp(y_train) == 0:
        raise LabelError(f"fold {fold.name!r}: the {target} target is constant ({y_train[0]:g}) on all "
                         f"{len(train_idx)} training rows; nothing to learn (check the labels or the target)")
    # A holdout split without test rows is scored on its validation rows (which early stopping
    # also sees, so the score is slightly optimistic).
    eval_idx = fold.test if len(fold.test) else fold.valid
    if len(eval_idx) == 0:
        raise SplitError(f"fold {fold.name!r} has nothing to predict: give --test CHROMS or --test-cells")
    test_data = inp.fold_data(eval_idx, with_targets=False, target=target)
    if options.inner_k:
        members = [(tr, va) for tr, va in _inner_folds(split, train_idx, options.inner_k, options.seed)]
    else:
        members = [(train_idx, valid_idx)]
    rows = split.iloc[eval_idx].reset_index(drop=True)
    base = pd.DataFrame({
        "gene_id": rows["gene_id"], "gene_name": test_data.rows["gene_name"], "cell_line": rows["cell_line"],
        "chrom": rows["chrom"], "fold": fold.name, "y_true": truth[eval_idx],
    })
    is_oof, is_test, scored = _fold_parts(rows)
    seeds = seed_values(options)
    shap_idx = _shap_sample(len(test_data), options.shap_rows, options.seed)  # the same rows for every model
    frame = FoldFrame(fold.name, base, is_oof, is_test, scored, shap_idx)
    results: list[SeedResult] = []
    for seed in seeds:
        if only_seeds is not None and seed not in only_seeds:
            continue
        t0 = time.perf_counter()
        outputs: dict[str, list[np.ndarray]] = {"y_pred": [], "y_score": [], "proba": []}
        result = SeedResult(seed, {})
        for j, (tr, va) in enumerate(members):
            model = model_cls(params, task, seed)
            model.fit(inp.fold_data(tr, True, target), inp.fold_data(va, True, target) if len(va) else None)
            if run_dir is None:
                continue
            outputs["y_pred"].append(_finite(np.asarray(model.predict(test_data), dtype=np.float64), options.model, fold, seed))
            if hasattr(model, "predict_score"):
                outputs["y_score"].append(np.asarray(model.predict_score(test_data), dtype=np.float64))
            if hasattr(model, "predict_proba"):
                outputs["proba"].append(np.asarray(model.predict_proba(test_data), dtype=np.float64))
            if hasattr(model, "importance"):
                result.imps.append(model.importance())
            if hasattr(model, "contributions") and options.shap_rows > 0:
                sample = FoldData(X=test_data.X[shap_idx], y=None, rows=test_data.rows.iloc[shap_idx].reset_index(drop=True),
                                  feature_names=test_data.feature_names)
                result.shaps.append(np.asarray(model.contributions(sample), dtype=np.float32))
            model.save(run_dir / "models" / model_dir_name(fold.name, seed if len(seeds) > 1 else None,
                                                           j if len(members) > 1 else None))
        if run_dir is None:
            continue
        result.preds = {k: np.mean(v, axis=0) for k, v in outputs.items() if v}  # the inner models' mean
        results.append(result)
        if seed_done is not None:
            y_pred = result.preds["y_pred"]
            seed_done(fold, seed, evaluate(base["y_true"].to_numpy()[scored], y_pred[scored], binary=task == "binary"),
                      time.perf_counter() - t0)
    return frame, results


def combine_fold(frame: FoldFrame, results: list[SeedResult], task: str, feature_names: Sequence[str], seeded: bool):
    """A fold's seed-averaged oof and test tables, importance, SHAP, metrics and, when ``seeded``,
    each seed's (oof, test) tables, from its seeds' results (in seed order)."""
    base, is_oof, is_test, scored = frame.base, frame.is_oof, frame.is_test, frame.scored
    table = base.assign(**{k: np.mean([r.preds[k] for r in results], axis=0) for k in results[0].preds})  # the seeds' mean
    oof, test = table[is_oof], table[is_test]
    metrics = evaluate(table["y_true"].to_numpy()[scored], table["y_pred"].to_numpy()[scored], binary=task == "binary")
    seed_tables = {}
    if seeded:
        for r in results:
            t = base.assign(y_pred=r.preds["y_pred"])
            seed_tables[r.seed] = (t[is_oof], t[is_test])
    imps = [d for r in results for d in r.imps]
    shaps = [a for r in results for a in r.shaps]
    imp = None
    if imps:
        merged: dict[str, float] = {}
        for d in imps:
            for k, v in d.items():
                merged[k] = merged.get(k, 0.0) + float(v) / len(imps)
        imp = pd.DataFrame({"fold": frame.name, "feature": list(merged), "gain": list(merged.values())})
    shap = None
    if shaps:
        rows = base.iloc[frame.shap_idx].reset_index(drop=True)
        contrib = np.mean(shaps, axis=0)
        names = [*feature_names, "bias"] if contrib.shape[1] == len(feature_names) + 1 else [f"c{i}" for i in range(contrib.shape[1])]
        shap = pd.DataFrame(contrib, columns=names)
        shap.insert(0, "fold", frame.name)
        shap.insert(0, "cell_line", rows["cell_line"].to_numpy())
        shap.insert(0, "gene_id", rows["gene_id"].to_numpy())
    return oof, test, imp, shap, metrics, seed_tables


def model_dir_name(fold: str, seed: int | None, inner: int | None) -> str:
    """``fold_NAME[_seedS][_innerJ]``: the seed part only with several seeds, the inner part only
    with inner folds (``epx predict`` groups directories by outer fold on these suffixes)."""
    return f"fold_{fold}" + (f"_seed{seed}" if seed is not None else "") + (f"_inner{inner}" if inner is not None else "")


def _fold_parts(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks over a fold's predicted rows: out-of-fold rows, test rows, and the rows its metrics score.

    Held-out test rows (fold ``test``, or a holdout's ``test`` role) are test rows; a holdout split
    without them is tested, and scored, on all its predicted (validation) rows."""
    fixed = (rows["fold"] == "test").to_numpy() | ((rows["fold"] == "holdout") & (rows["role"] == "test")).to_numpy()
    holdout = (rows["fold"] == "holdout").to_numpy()
    is_oof = ~fixed & ~holdout
    is_test = np.ones(len(rows), dtype=bool) if holdout.any() and not fixed.any() else fixed
    return is_oof, is_test, is_test if holdout.any() else is_oof


def _finite(pred: np.ndarray, model: str, fold: Fold, seed: int) -> np.ndarray:
    """A fold model's predictions, refused when any is NaN or inf (a diverged fit)."""
    bad = ~np.isfinite(pred)
    if bad.any():
        raise PluginError(f"model {model!r} predicted NaN or inf for {int(bad.sum())} of {len(pred)} rows in fold "
                          f"{fold.name!r} (seed {seed}): the fit diverged; lower the learning rate or check the inputs")
    return pred


def _shap_sample(n: int, k: int, seed: int) -> np.ndarray:
    """A seeded, sorted sample of at most k of n rows (all rows when n <= k)."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _average_test(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Test rows predicted by every fold model: average them (a fold ensemble)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["gene_id", "gene_name", "cell_line", "chrom", "fold", "y_true", "y_pred"])
    allp = pd.concat(parts, ignore_index=True)
    keys = ["gene_id", "gene_name", "cell_line", "chrom"]
    agg = {"y_true": "first", "y_pred": "mean"}
    for optional in ("y_score", "proba"):
        if optional in allp.columns:
            agg[optional] = "mean"
    out = allp.groupby(keys, sort=False, as_index=False).agg(agg)
    out.insert(4, "fold", "test")
    return out


def _overall(oof: pd.DataFrame, test: pd.DataFrame, task: str) -> dict[str, Any]:
    """Metrics of the out-of-fold and test predictions, over all rows and per cell line."""
    binary = task == "binary"
    overall: dict[str, Any] = {}
    for name, table in (("oof", oof), ("test", test)):
        if table.empty or not np.isfinite(table["y_true"].to_numpy(np.float64)).any():
            continue
        per_cell = {c: evaluate(t["y_true"].to_numpy(), t["y_pred"].to_numpy(), binary) for c, t in table.groupby("cell_line", sort=False)}
        overall[name] = {"all": evaluate(table["y_true"].to_numpy(), table["y_pred"].to_numpy(), binary), "by_cell_line": per_cell}
    return overall


def _summarise(fold_metrics: list[dict], oof: pd.DataFrame, test: pd.DataFrame, task: str) -> dict[str, Any]:
    keys = [k for k in (fold_metrics[0] if fold_metrics else {}) if k not in ("fold", "n")]
    stats = {k: mean_sd([m[k] for m in fold_metrics]) for k in keys}
    return {"task": task, "folds": fold_metrics, "fold_mean_sd": stats, "overall": _overall(oof, test, task)}


def _seed_results(parts: dict[int, dict[str, list[pd.DataFrame]]], task: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each seed's predictions as one long table (gene_id, cell_line, fold, part, seed, y_pred; test
    rows averaged over folds per seed) and the spread of each metric across seeds: per part, over
    all rows and per cell line, ``{"mean", "sd", "values"}`` (one value per seed)."""
    frames, overall = [], {}
    for seed, p in parts.items():
        oof = pd.concat(p["oof"], ignore_index=True)
        test = _average_test(p["test"])
        overall[seed] = _overall(oof, test, task)
        for part, table in (("oof", oof), ("test", test)):
            frames.append(pd.DataFrame({"gene_id": table["gene_id"].to_numpy(), "cell_line": table["cell_line"].to_numpy(),
                                        "fold": table["fold"].to_numpy(), "part": part, "seed": seed,
                                        "y_pred": table["y_pred"].to_numpy(np.float64)}))
    seeds = list(parts)

    def spread(get: Callable[[dict], dict[str, float]]) -> dict[str, Any]:
        per_seed = [get(overall[s]) for s in seeds]
        names = [k for k in per_seed[0] if k != "n"]
        return {k: {**mean_sd([m[k] for m in per_seed]), "values": [_finite_or_none(m[k]) for m in per_seed]}
                for k in names}

    block: dict[str, Any] = {"seeds": seeds}
    for part, first in overall[seeds[0]].items():
        block[part] = {"all": spread(lambda o, part=part: o[part]["all"]),
                       "by_cell_line": {cell: spread(lambda o, part=part, cell=cell: o[part]["by_cell_line"][cell])
                                        for cell in first["by_cell_line"]}}
    return pd.concat(frames, ignore_index=True), block


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


# -- partial runs (epx train --fold / --only-seed; epx collect assembles them) -------------------

PARTS_DIR = "parts"  # a partial run's per-(fold, seed) predictions, importance and SHAP, before averaging
IDENTITY_FIELDS = ("epx_version", "model", "plugin", "params", "target", "seed_values", "inner_k", "split",
                   "dataset_fingerprint", "train_cells", "predict_cells", "features", "assays", "geometries",
                   "shap_rows")


def _partial_selection(folds: list[Fold], seeds: list[int], options: TrainOptions) -> tuple[list[Fold], list[int] | None]:
    """The folds and seeds this run trains: all of them, or (``--fold``/``--only-seed``) a partial
    run's, whose seeds are returned (None for a complete run)."""
    if not options.folds and not options.only_seeds:
        return folds, None
    names = [f.name for f in folds]
    unknown = [n for n in options.folds if n not in names]
    if unknown:
        raise SplitError(f"unknown fold {unknown[0]!r}; the split's folds are {', '.join(names)}")
    bad = [s for s in options.only_seeds if s not in seeds]
    if bad:
        raise EpxError(f"--only-seed {bad[0]} is not one of this run's seeds {', '.join(map(str, seeds))} "
                       f"(--seed {options.seed} --seeds {len(seeds)})")
    chosen = set(options.folds) or set(names)
    only = [s for s in seeds if s in set(options.only_seeds)] if options.only_seeds else list(seeds)
    return [f for f in folds if f.name in chosen], only


def _digest(value: Any) -> str:
    import hashlib

    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_identity(config: dict[str, Any], split_text: str, shap_rows: int) -> tuple[str, dict[str, str]]:
    """What makes parts of one run: a digest of each field that changes the predictions (the split
    as written to split.tsv), and one of them all."""
    values = {**config, "split": split_text, "shap_rows": shap_rows}
    fields = {k: _digest(values.get(k)) for k in IDENTITY_FIELDS}
    return _digest(fields), fields


def part_name(fold: str, seed: int) -> str:
    return f"fold_{fold}_seed{seed}"


def save_part(run_dir: Path, frame: FoldFrame, results: list[SeedResult], counts: str) -> None:
    """A partial run's record of each seed of one fold: predictions before the seed mean (with the
    fold's masks), importance and SHAP per model, so epx collect computes exactly what train does."""
    out = run_dir / PARTS_DIR
    out.mkdir(exist_ok=True)
    for r in results:
        stem = out / part_name(frame.name, r.seed)
        table = frame.base.assign(_is_oof=frame.is_oof, _is_test=frame.is_test, _scored=frame.scored,
                                  **{f"_pred_{k}": v for k, v in r.preds.items()})
        table.to_parquet(stem.with_suffix(".parquet"), index=False)
        meta = {"fold": frame.name, "seed": r.seed, "preds": list(r.preds), "counts": counts,
                "shap_idx": frame.shap_idx.tolist(), "shap": bool(r.shaps),
                "importance": [{str(k): float(v) for k, v in d.items()} for d in r.imps]}
        (stem.with_suffix(".json")).write_text(json.dumps(meta) + "\n")
        if r.shaps:
            np.save(stem.with_suffix(".shap.npy"), np.stack(r.shaps))


def load_part(run_dir: Path, fold: str, seed: int) -> tuple[FoldFrame, SeedResult, str]:
    """What :func:`save_part` wrote for one (fold, seed): the fold's rows, the seed's results and
    the fold's row counts."""
    stem = run_dir / PARTS_DIR / part_name(fold, seed)
    meta = json.loads(stem.with_suffix(".json").read_text())
    table = pd.read_parquet(stem.with_suffix(".parquet"))
    base = table[["gene_id", "gene_name", "cell_line", "chrom", "fold", "y_true"]]
    frame = FoldFrame(fold, base, table["_is_oof"].to_numpy(bool), table["_is_test"].to_numpy(bool),
                      table["_scored"].to_numpy(bool), np.asarray(meta["shap_idx"], dtype=np.int64))
    preds = {k: table[f"_pred_{k}"].to_numpy(np.float64) for k in meta["preds"]}
    shaps = list(np.load(stem.with_suffix(".shap.npy"))) if meta["shap"] else []
    return frame, SeedResult(seed, preds, meta["importance"], shaps), meta["counts"]
