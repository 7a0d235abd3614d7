"""``epx predict``: apply a trained run to data it never saw (a new cell line, a study featurized later).

The run's fold models are averaged as ``test.parquet`` averages them (a fold's seed and inner
models first, then folds). Inputs are matched by name (features for tabular models, assays for
binned ones) and must come from the same featurize geometry; the first difference is refused in
one line. New data is normalised as the training data was: features and bins are log1p +
z-scored per cell line at featurize time, so a cell line's inputs never depend on which cell
lines were trained on.

    OUT/
      predictions.parquet   gene_id, gene_name, cell_line, chrom, y_pred[, proba, y_score][, y_true],
                            trained_on, gene_trained_on
      metrics.json          per cell line, when the dataset has labels, over held-out genes
      config.json           the run, the dataset, the models averaged

``trained_on`` marks rows the run was trained on (the same gene in the same cell line, by name):
their predictions are in-sample, and ``epx submit`` refuses them. ``gene_trained_on`` marks genes
the run trained on in any cell line: metrics (here and in ``epx report``) leave them out. Inputs
are normalised over the genes the run's own inputs were (``dataset_genes.txt``), so a dataset with
more genes gets the same numbers; one lacking some of them is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx import console
from epx._version import __version__
from epx.dataset import Dataset, dataset_geometry, load_dataset, read_json_file
from epx.errors import DatasetError, EpxError, InputFileError, PluginError
from epx.metrics import evaluate
from epx.models.contract import FoldData
from epx.models.plugins import ModelSpec, get_spec
from epx.outputs import atomic_dir, check_output, refuse_overlap

CHUNK_ROWS = 4096  # rows per model call: binned inputs are normalised per chunk, never all at once


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise InputFileError("run directory not found", path=run_dir)
    if not path.is_file() or not (run_dir / "models").is_dir():
        raise InputFileError("not an epx run (no config.json and models/); make one with epx train", path=run_dir)
    config = read_json_file(path, "config.json")
    refuse_partial(run_dir, config)
    return config


def refuse_partial(run_dir: Path, config: dict[str, Any]) -> None:
    """A partial run (epx train --fold/--only-seed) is not a run until epx collect assembles it."""
    partial = config.get("partial")
    if isinstance(partial, dict):
        raise InputFileError(f"a partial run (folds {', '.join(map(str, partial.get('folds', [])))}); assemble the "
                             "parts with epx collect PART... -o RUN first", path=run_dir)


def run_spec(run_dir: Path, config: dict[str, Any]) -> ModelSpec:
    """The run's model spec, or one line saying which plugin to install."""
    name = config.get("model", "?")
    try:
        return get_spec(name)
    except PluginError as exc:
        raise PluginError(f"{run_dir}: trained with model {name!r} ({config.get('plugin') or 'unknown plugin'}), "
                          f"which cannot be used here: {exc}") from None


def training_inputs(config: dict[str, Any]) -> dict[str, Any]:
    """What the run's inputs were: assays and featurize geometry (older runs: from their dataset)."""
    if "assays" in config and "geometry" in config:
        return {"assays": config["assays"], "geometry": config["geometry"]}
    meta_path = Path(config.get("dataset", "")) / "dataset.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return {"assays": meta.get("assays", []), "geometry": dataset_geometry(meta)}
    return {"assays": None, "geometry": {}}


def check_compatible(run_dir: Path, config: dict[str, Any], ds: Dataset) -> None:
    """Refuse, naming the first difference, a dataset the run's models cannot read."""
    kind = config.get("input_kind", "tabular")
    if kind == "sequence":
        _check_sequence(run_dir, config, ds)
        return
    if kind not in ("tabular", "binned"):
        raise PluginError(f"run {run_dir} reads {kind} inputs, which a dataset directory does not provide yet")
    if kind not in ds.input_kinds:
        raise DatasetError(f"run {run_dir} needs {kind} inputs; this dataset has {', '.join(ds.input_kinds) or 'none'} "
                           f"(re-run epx featurize{' without --no-bins' if kind == 'binned' else ''})", path=ds.path)
    trained = training_inputs(config)
    if trained["assays"] is not None:
        missing = [a for a in trained["assays"] if a not in ds.assays]
        if missing:
            raise DatasetError(f"lacks assay {missing[0]!r} that run {run_dir} was trained on "
                               f"(run: {', '.join(trained['assays'])}; dataset: {', '.join(ds.assays)})", path=ds.path)
        # cross-mark features were computed over the training dataset's assays (a run trained on
        # a subset of them, --assays, uses none)
        extra = [a for a in ds.assays if a not in config.get("dataset_assays", trained["assays"])]
        if extra and kind == "tabular":  # cross-mark features (entropy across marks, ...) would change meaning
            raise DatasetError(f"has assay {extra[0]!r} that run {run_dir} was not trained with; features computed "
                               f"across marks depend on the assay set: featurize with --assays {','.join(trained['assays'])}",
                               path=ds.path)
    mine = dataset_geometry(ds.meta)
    geometries = list(config.get("geometries") or [])
    if kind == "binned" and geometries:
        missing = [g for g in geometries if g not in ds.geometry_names]
        if missing:
            raise DatasetError(f"lacks bin geometry {missing[0]} that run {run_dir} was trained on (run: "
                               f"{', '.join(geometries)}; dataset: {', '.join(ds.geometry_names) or 'none'}); featurize "
                               f"the new data with --bins {','.join(geometries)}", path=ds.path)
        if config.get("regions"):
            _check_regions(run_dir, config, ds)
    for key, value in trained["geometry"].items():
        if kind == "tabular" and key in ("n_bins", "bin_size"):
            continue  # tabular features do not depend on the bins
        if geometries and key in ("n_bins", "bin_size"):
            continue  # checked by name above: the run's geometries need not be the dataset's default
        if key in mine and mine[key] != value:
            option = "--" + key.replace("_", "-").replace("n-bins", "bins")
            raise DatasetError(f"was featurized with {option} {mine[key]}, run {run_dir} with {value}; "
                               f"featurize the new data with {option} {value}", path=ds.path)
    if kind == "tabular":
        have = set(ds.feature_names)
        missing = [f for f in config.get("features", []) if f not in have]
        if missing:
            raise DatasetError(f"lacks feature {missing[0]!r} that run {run_dir} was trained on "
                               f"({len(missing)} of {len(config['features'])} missing)", path=ds.path)


def _check_sequence(run_dir: Path, config: dict[str, Any], ds: Dataset) -> None:
    """A sequence run needs a dataset with a reference of the window it was trained on."""
    window = (config.get("sequence") or {}).get("window")
    if not ds.has_sequence:
        raise DatasetError(f"has no reference sequence, and run {run_dir} reads DNA; featurize the new data with "
                           f"--fasta REF --sequence-window {window or 'L'}", path=ds.path)
    if window is not None and int(window) != ds.sequence_window:
        raise DatasetError(f"was featurized with --sequence-window {ds.sequence_window}, run {run_dir} with {window}; "
                           f"featurize the new data with --sequence-window {window}", path=ds.path)


def _check_regions(run_dir: Path, config: dict[str, Any], ds: Dataset) -> None:
    """A run trained with distal regions needs them, framed the same way, in the new dataset."""
    if not ds.has_regions:
        raise DatasetError(f"has no distal regions, and run {run_dir} was trained with them; featurize the new data "
                           "with --pairs FILE", path=ds.path)
    trained = config.get("region_params") or {}
    mine = ds.meta["regions"]
    for key in ("max_regions", "max_region_width"):
        if key in trained and int(mine[key]) != int(trained[key]):
            option = "--" + key.replace("_", "-")
            raise DatasetError(f"was featurized with {option} {mine[key]}, run {run_dir} with {trained[key]}; "
                               f"featurize the new data with {option} {trained[key]}", path=ds.path)


def reference_genes(run_dir: Path) -> list[str]:
    """The genes the run's inputs were normalised over (its dataset's; older runs: its split's)."""
    listed = run_dir / "dataset_genes.txt"
    if listed.is_file():
        return [g for g in listed.read_text().split("\n") if g]
    split = pd.read_csv(run_dir / "split.tsv", sep="\t", dtype=str, keep_default_na=False, usecols=["gene_id"])
    return list(dict.fromkeys(split["gene_id"]))


def _normalisation_basis(run_dir: Path, ds: Dataset) -> np.ndarray | None:
    """Row positions (in ``ds.genes``) to compute normalisation statistics over, or None when the
    dataset's own statistics already are the run's (same genes)."""
    ref = reference_genes(run_dir)
    have = pd.Index(ds.genes["gene_id"])
    pos = have.get_indexer(pd.Index(ref))
    if (pos < 0).any():
        missing = [g for g, i in zip(ref, pos, strict=True) if i < 0]
        raise DatasetError(f"lacks {len(missing):,} of the {len(ref):,} genes run {run_dir} was normalised over "
                           f"(e.g. {missing[0]}); inputs are z-scored per cell line over all genes, so featurize "
                           "the new data with the run's gene table", path=ds.path)
    return None if len(ref) == len(have) else np.sort(pos)


def _load_model(model_cls: type, directory: Path) -> Any:
    try:
        return model_cls.load(directory)
    except EpxError:
        raise  # the plugin's own one-line reason (another model's checkpoint, another version)
    except Exception as exc:  # noqa: BLE001 - any failure of the plugin's loader names the directory
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise PluginError(f"cannot load this fold model ({type(exc).__name__}: {reason[:120]}); the run is damaged "
                          "or was written by another version of the plugin: re-run epx train", path=directory) from None


MEMBER_SUFFIX = re.compile(r"(?:_seed-?\d+)?(?:_inner\d+)?$")  # a seed's, an inner fold's model of a fold


def _fold_members(run_dir: Path) -> dict[str, list[Path]]:
    """Model directories grouped by outer fold: ``fold_NAME[_seedS][_innerJ]`` (the fold name may
    itself contain underscores). A fold's members are its seeds' and inner folds' models."""
    groups: dict[str, list[Path]] = {}
    for d in sorted(p for p in (run_dir / "models").iterdir() if p.is_dir()):
        fold = MEMBER_SUFFIX.sub("", d.name, count=1)
        groups.setdefault(fold, []).append(d)
    if not groups:
        raise InputFileError("models/ holds no fold models", path=run_dir)
    return groups


class _RowInputs:
    """A dataset's model inputs for chosen (gene, cell line) rows, served in chunks."""

    def __init__(self, ds: Dataset, rows: pd.DataFrame, config: dict[str, Any], basis: np.ndarray | None):
        self.ds, self.rows = ds, rows
        self.kind = config.get("input_kind", "tabular")
        self.gene_pos = ds.gene_index(rows["gene_id"])
        if self.kind == "sequence":  # windows built from the FASTA per chunk; nothing to normalise
            self.names = ["A", "C", "G", "T"]
            self.X = ds.sequence_rows(self.gene_pos)
        elif self.kind == "tabular":
            self.names = list(config["features"])
            cells = sorted(set(rows["cell_line"]))
            if basis is None:
                table = ds.features(cell_lines=cells)
            else:
                from epx.features.derived import normalise_features

                raw = ds.features(raw=True, cell_lines=cells)
                table = normalise_features(raw, reference=raw["gene_id"].isin(ds.genes["gene_id"].to_numpy()[basis]).to_numpy())
            index = pd.MultiIndex.from_frame(table[["gene_id", "cell_line"]])
            pos = index.get_indexer(pd.MultiIndex.from_frame(rows[["gene_id", "cell_line"]]))
            if (pos < 0).any():
                bad = rows[pos < 0].iloc[0]
                raise DatasetError(f"no features for gene {bad.gene_id!r} in cell line {bad.cell_line!r}", path=ds.path)
            self.X = table[self.names].to_numpy(np.float32)[pos]
        else:
            assays = training_inputs(config)["assays"] or ds.assays
            self.names = list(assays)
            cell_pos = np.array([ds.cell_lines.index(c) for c in rows["cell_line"]])
            self.bins = {}
            for name in config.get("geometries") or [None]:
                stats = None if basis is None else ds.bin_stats(basis, name)
                view = ds.bin_view(self.gene_pos, cell_pos, self.names, stats=stats, geometry=name)
                view.require_finite(rows, self.names)
                self.bins[name or ds.geometry_names[0]] = view
            self.view = next(iter(self.bins.values()))
            self.regions = None
            if config.get("regions"):
                stats_by = None if basis is None else {n: ds.bin_stats(basis, n) for n in self.bins}
                self.regions = ds.region_view(self.gene_pos, cell_pos, self.names, list(self.bins), stats_by)

    def chunk(self, start: int, stop: int) -> FoldData:
        rows = self.rows.iloc[start:stop].reset_index(drop=True)
        if self.kind == "sequence":
            return FoldData(X=self.X.take(slice(start, stop)), y=None, rows=rows, feature_names=list(self.names))
        if self.kind == "tabular":
            return FoldData(X=self.X[start:stop], y=None, rows=rows, feature_names=list(self.names))
        part = slice(start, stop)
        bins = {name: view.take(part) for name, view in self.bins.items()}
        return FoldData(X=next(iter(bins.values())), y=None, rows=rows, feature_names=list(self.names), bins=bins,
                        regions=None if self.regions is None else self.regions.take(part))


def _trained_rows(run_dir: Path, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row: was this (gene, cell line) a training row of the run, and was this gene a training
    row in any cell line. Matched by name, whatever dataset the rows come from: a re-featurized
    copy of a training cell line is still in-sample, and a gene the models learnt in other cell
    lines is not held out either (expression is shared across cell lines)."""
    from epx.stack import training_rows

    trained = training_rows(run_dir)
    any_gene = set(trained.loc[trained["gene_id"] != "*", "gene_id"])
    whole_cells = set(trained.loc[trained["gene_id"] == "*", "cell_line"])
    pairs = set(zip(trained["gene_id"], trained["cell_line"], strict=True))
    genes, cells = rows["gene_id"].to_numpy(), rows["cell_line"].to_numpy()
    row = np.array([(g, c) in pairs or c in whole_cells for g, c in zip(genes, cells, strict=True)], dtype=bool)
    gene = np.array([g in any_gene for g in genes], dtype=bool) | row
    return row, gene


def predict(run_dir: str | Path, dataset: str | Path, output: str | Path, *, cells: Sequence[str] = (),
            force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Predict every (gene, cell line) of ``dataset`` with ``run_dir``'s models; write OUT."""
    run_dir, output = Path(run_dir), Path(output)
    config = read_run_config(run_dir)
    refuse_overlap(output, [run_dir, dataset])
    check_output(output, force, "prediction")
    spec = run_spec(run_dir, config)
    ds = load_dataset(dataset)
    check_compatible(run_dir, config, ds)
    unknown = [c for c in cells if c not in ds.cell_lines]
    if unknown:
        raise EpxError(f"cell line {unknown[0]!r} is not in the dataset (it has {', '.join(ds.cell_lines)})", path=ds.path)
    chosen = list(cells) or ds.cell_lines
    genes = ds.genes
    rows = pd.DataFrame({
        "gene_id": np.tile(genes["gene_id"].to_numpy(), len(chosen)),
        "gene_name": np.tile(genes["gene_name"].to_numpy(), len(chosen)),
        "cell_line": np.repeat(chosen, len(genes)),
        "chrom": np.tile(genes["chrom"].to_numpy(), len(chosen)),
    })
    basis = None if config.get("input_kind") == "sequence" else _normalisation_basis(run_dir, ds)
    inputs = _RowInputs(ds, rows, config, basis)
    model_cls = spec.load_class()
    groups = _fold_members(run_dir)
    # every fold model is loaded (and so checked) before anything is written or shown
    loaded = [[_load_model(model_cls, m) for m in members] for members in groups.values()]
    n = len(rows)
    sums = {"y_pred": np.zeros(n), "proba": np.zeros(n), "y_score": np.zeros(n)}
    seen: set[str] = set()
    with atomic_dir(output, "prediction", force=force) as tmp, console.progress(progress) as bar:
        task = bar.add_task(f"predict with {len(groups)} fold model(s)", total=len(groups))
        for models in loaded:
            fold_sum = {k: np.zeros(n) for k in sums}
            for start in range(0, n, CHUNK_ROWS):
                data = inputs.chunk(start, min(start + CHUNK_ROWS, n))
                for model in models:
                    fold_sum["y_pred"][start:start + len(data)] += np.asarray(model.predict(data), np.float64)
                    for key, method in (("proba", "predict_proba"), ("y_score", "predict_score")):
                        if hasattr(model, method):
                            seen.add(key)
                            fold_sum[key][start:start + len(data)] += np.asarray(getattr(model, method)(data), np.float64)
            for k in sums:
                sums[k] += fold_sum[k] / len(models)
            bar.advance(task)
        table = rows.copy()
        table["y_pred"] = sums["y_pred"] / len(groups)
        for key in ("y_score", "proba"):
            if key in seen:
                table[key] = sums[key] / len(groups)
        table["trained_on"], table["gene_trained_on"] = _trained_rows(run_dir, rows)
        metrics = _score(table, ds, config)
        table.to_parquet(tmp / "predictions.parquet", index=False)
        if metrics:
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=lambda _: None) + "\n")
        (tmp / "config.json").write_text(json.dumps({
            "kind": "prediction", "epx_version": __version__, "run": str(run_dir.resolve()),
            "dataset": str(Path(dataset).resolve()), "model": config.get("model"), "target": config.get("target"),
            "task": config.get("task"), "input_kind": config.get("input_kind"), "cell_lines": chosen,
            "models": {fold: [m.name for m in members] for fold, members in groups.items()},
        }, indent=2) + "\n")
    return {"rows": n, "cell_lines": chosen, "trained_on": int(table["trained_on"].sum()),
            "gene_trained_on": int(table["gene_trained_on"].sum()), "metrics": metrics,
            "folds": len(groups)}


def _score(table: pd.DataFrame, ds: Dataset, config: dict[str, Any]) -> dict[str, Any]:
    """y_true (the run's target derived per cell line over the dataset's labels) and metrics."""
    from epx.io.labels import derive_target

    labels = ds.labels
    if labels.empty:
        return {}
    merged = table[["gene_id", "cell_line"]].merge(labels[["gene_id", "cell_line", "value"]], on=["gene_id", "cell_line"], how="left")
    values = merged["value"].to_numpy(np.float64)
    target = config.get("target", "raw")
    truth = np.full(len(values), np.nan)
    cells = table["cell_line"].to_numpy()
    for cell in pd.unique(cells):
        m = (cells == cell) & np.isfinite(values)
        if m.any():
            truth[m] = derive_target(values[m], target)
    if target == "binary" and "binary" in labels.columns:  # labels shipped with the data, as epx train uses them
        shipped = table[["gene_id", "cell_line"]].merge(labels[["gene_id", "cell_line", "binary"]],
                                                         on=["gene_id", "cell_line"], how="left")["binary"].to_numpy(np.float64)
        truth = np.where(np.isfinite(shipped), shipped, truth)
    if not np.isfinite(truth).any():
        return {}
    table["y_true"] = truth
    binary = config.get("task") == "binary"
    held_out = table[~table["gene_trained_on"].to_numpy()]  # genes the models learnt would flatter the run
    by_cell = {c: evaluate(t["y_true"].to_numpy(), t["y_pred"].to_numpy(), binary)
               for c, t in held_out.groupby("cell_line", sort=False) if np.isfinite(t["y_true"]).any()}
    return {"task": config.get("task"), "target": target, "scored": "genes the run never trained on, in any cell line",
            "by_cell_line": by_cell, "all": evaluate(held_out["y_true"].to_numpy(), held_out["y_pred"].to_numpy(), binary)}
