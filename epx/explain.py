"""``epx explain``: what a run relied on.

Tabular runs: the features, from the run's importance and SHAP files (:func:`top_features`).

Binned runs (:func:`explain_binned`): the run's fold models are loaded and asked, for a seeded
sample of the rows they predicted (``test.parquet``, or ``oof.parquet`` when the run has no test
rows), through the optional model hooks:

* ``attention(data) -> {name: array}``: the model's attention weights per row (``bin``: over each
  mark's bins, rows x assays x bins; ``mark``: over the marks, rows x assays; ``position``: over
  the bins, all marks together, rows x bins);
* ``saliency(data) -> (rows, assays, bins)``: input x gradient per mark and bin (epx-torch computes
  it with Captum), asked when the model has no attention or no mark-level attention.

A test row's weights are the mean over every fold model (as its prediction in ``test.parquet``
is), an out-of-fold row's the mean over the models of the fold that predicted it. Rows are
grouped by the run's ``y_true``: ``expressed``/``silent`` for 0/1 targets, above / at or below the
cell line's median otherwise (``unlabelled`` without one). The explanation directory::

    OUT/
      attention.parquet   long: gene_id, cell_line, group, kind, assay, bin, bp, weight
      bins.png            mean bin attention (or mean |saliency|) per mark, expressed | silent
      marks.png           mark-level weights (or mean |saliency| per mark), expressed vs silent
      summary.tsv         the marks ranked, with where around the TSS each weighs most
      config.json         the run, the dataset, the rows and models explained
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx.dataset import read_parquet_file
from epx.errors import DatasetError, EpxError, InputFileError, PluginError
from epx.models.contract import FoldData

DEFAULT_ROWS = 500
GROUPS = ("expressed", "silent")
ATTENTION, SALIENCY = "attention", "saliency"  # the optional hooks this module calls
REGION = "region"  # attention over a gene's distal regions (rows x regions), e.g. chromoformer's


def top_features(run_dir: str | Path, top: int = 20) -> pd.DataFrame:
    """Mean gain across folds and mean |SHAP| on test rows, sorted by |SHAP| (or gain)."""
    run = Path(run_dir)
    imp_path, shap_path = run / "importance.tsv", run / "shap.parquet"
    if not imp_path.is_file() and not shap_path.is_file():
        what = "a run" if (run / "models").is_dir() else "a run directory with fold models (a stack or predictions has none)"
        raise InputFileError(f"no importance.tsv or shap.parquet: explain needs {what} whose model reports feature "
                             "importance (lgbm does; ridge does not)", path=run)
    table = pd.DataFrame()
    if imp_path.is_file():
        try:
            imp = pd.read_csv(imp_path, sep="\t")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputFileError(f"damaged importance.tsv ({exc}); re-run epx train", path=imp_path) from None
        if not {"feature", "gain"} <= set(imp.columns):
            raise InputFileError("damaged importance.tsv: no feature and gain columns; re-run epx train", path=imp_path)
        table = imp.groupby("feature")["gain"].mean().rename("mean_gain").to_frame()
        table["gain_share"] = table["mean_gain"] / table["mean_gain"].sum()
    if shap_path.is_file():
        shap = read_parquet_file(shap_path, "SHAP values")
        cols = [c for c in shap.columns if c not in ("gene_id", "cell_line", "fold", "bias")]
        mean_abs = shap[cols].abs().mean().rename("mean_abs_shap")
        table = mean_abs.to_frame() if table.empty else table.join(mean_abs, how="outer")
    key = "mean_abs_shap" if "mean_abs_shap" in table.columns else "mean_gain"
    return table.sort_values(key, ascending=False).head(top).reset_index(names="feature")


def plot_top_features(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Write the bar chart atomically; an existing plot is replaced only if epx wrote it."""
    plt = _pyplot()
    key = "mean_abs_shap" if "mean_abs_shap" in table.columns else "mean_gain"
    data = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(data) + 1.2))
    ax.barh(data["feature"], data[key], color="#3b7dd8")
    ax.set_xlabel("mean |SHAP| on test rows" if key == "mean_abs_shap" else "mean gain importance")
    ax.set_title(title)
    fig.tight_layout()
    _save(fig, path)


# -- which explanation -------------------------------------------------------------------------


def run_input_kind(run_dir: str | Path) -> str:
    """``binned`` for a run (config.json and models/) of a binned-input model, else ``tabular``
    (what a stack, predictions or an older run get: their importance and SHAP files, if any)."""
    run = Path(run_dir)
    config_path = run / "config.json"
    if not (config_path.is_file() and (run / "models").is_dir()):
        return "tabular"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return "tabular"
    if isinstance(config, dict):
        from epx.predict import refuse_partial

        refuse_partial(run, config)
    return "binned" if isinstance(config, dict) and config.get("input_kind") == "binned" else "tabular"


def check_options(kind: str, *, output: Path | None, plot: Path | None, rows: int | None,
                  dataset: Path | None, force: bool) -> None:
    """Refuse, in one line, options that do not apply to this run's kind of explanation."""
    if kind == "binned":
        if plot is not None:
            raise EpxError("--plot is for tabular runs: a binned run's plots are written into the explanation "
                           "directory (-o DIR)")
        if output is None:
            raise EpxError("a binned run is explained into a directory (attention.parquet, bins.png, marks.png, "
                           "summary.tsv): give -o DIR")
        return
    given = [name for name, value in (("-o", output), ("--rows", rows), ("--dataset", dataset), ("--force", force or None))
             if value is not None]
    if given:
        raise EpxError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to runs of binned models (attention and saliency); this run's "
                       "explanation is its importance and SHAP files (--top, --plot)")


# -- binned runs -------------------------------------------------------------------------------


def explain_binned(run_dir: str | Path, output: str | Path, *, rows: int = DEFAULT_ROWS,
                   dataset: str | Path | None = None, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Attention (or saliency) of a binned run's fold models on its predicted rows; writes OUT."""
    from epx import console
    from epx._version import __version__
    from epx.dataset import dataset_geometry, load_dataset
    from epx.outputs import atomic_dir, check_output, refuse_overlap
    from epx.predict import (
        _fold_members,
        _load_model,
        _normalisation_basis,
        _RowInputs,
        check_compatible,
        read_run_config,
        run_spec,
    )

    run_dir, output = Path(run_dir), Path(output)
    config = read_run_config(run_dir)
    ds_path = _dataset_path(run_dir, config, dataset)
    refuse_overlap(output, [run_dir, ds_path])
    check_output(output, force, "explanation")
    folds: dict[str, list[Path]] = {}
    for key, dirs in _fold_members(run_dir).items():
        folds.setdefault(outer_fold(key), []).extend(dirs)
    members = [m for dirs in folds.values() for m in dirs]
    spec = run_spec(run_dir, config)
    ds = load_dataset(ds_path)
    check_compatible(run_dir, config, ds)
    recorded = config.get("dataset_fingerprint")
    if dataset is not None and recorded and recorded != (ds.meta.get("fingerprint") or ds.meta.get("source")):
        console.warn(f"{ds.path} was not made from the inputs run {run_dir} was trained on (another fingerprint); "
                     "explaining the run on it anyway")
    table = explained_rows(run_dir, config, rows)
    missing = sorted(set(table["cell_line"]) - set(ds.cell_lines))
    if missing:
        raise DatasetError(f"has no cell line {missing[0]!r}, which run {run_dir} predicted: give the run's own "
                           "dataset (--dataset DIR)", path=ds.path)
    inputs = _RowInputs(ds, table, config, _normalisation_basis(run_dir, ds))
    shape = Shape(len(table), list(inputs.names), int(inputs.view.shape[2]))
    model_cls = spec.load_class()
    # out-of-fold rows are explained by the models of the fold that predicted them; test rows
    # (and rows of a fold without models) by every fold model, as test.parquet averages them
    row_fold = table["fold"].to_numpy()
    by_all = ~np.isin(row_fold, list(folds))
    sums: dict[str, np.ndarray] = {}
    counts = np.zeros(shape.n)
    with console.progress(progress) as bar:
        task = bar.add_task(f"explain with {len(members)} fold model(s)", total=len(members))
        for fold, dirs in folds.items():
            idx = np.flatnonzero((row_fold == fold) | by_all)
            chunks = _chunks(inputs, table, idx, shape.assays)
            for member in dirs:
                got = model_weights(_load_model(model_cls, member), chunks, shape, spec.name) if len(idx) else {}
                if sums and got and set(got) != set(sums):
                    raise PluginError(f"this fold model reports {', '.join(sorted(got))}, another one "
                                      f"{', '.join(sorted(sums))}; all fold models of a run must report the same",
                                      path=member)
                for name, arr in got.items():
                    sums.setdefault(name, np.zeros((shape.n, *arr.shape[1:])))[idx] += arr
                counts[idx] += 1
                bar.advance(task)
    means = {name: (total / counts.reshape(-1, *[1] * (total.ndim - 1))).astype(np.float32)
             for name, total in sums.items()}
    region_weights = means.pop(REGION, None)
    views = Views.of(means, shape, spec.name) if means or region_weights is None else None
    geometry = config.get("geometry") or dataset_geometry(ds.meta)
    if config.get("geometries"):  # the model's first geometry is what X holds
        first = ds.geometry(config["geometries"][0])
        geometry = {**geometry, "bin_size": first["bin_size"], "n_bins": first["n_bins"]}
    bp = _bin_bp(geometry, shape.n_bins)
    groups = table["group"].to_numpy()
    summary = rank_marks(groups, views, shape.assays, bp) if views is not None else pd.DataFrame()
    regions = region_table(table, region_weights, inputs.regions, ds) if region_weights is not None else None
    title = f"{config.get('model', '?')} run {run_dir.name}"
    with atomic_dir(output, "explanation", force=force) as tmp:
        if views is not None:
            long_table(table, means, shape, bp).to_parquet(tmp / "attention.parquet", index=False)
            summary.to_csv(tmp / "summary.tsv", sep="\t", index=False, float_format="%.6g")
            plot_bins(groups, views, bp, tmp / "bins.png", title)
            plot_marks(summary, views.marks_what, tmp / "marks.png", title)
        if regions is not None:
            regions.to_csv(tmp / "regions.tsv", sep="\t", index=False, float_format="%.6g")
            plot_regions(regions, tmp / "regions.png", title)
        (tmp / "config.json").write_text(json.dumps({
            "kind": "explanation", "epx_version": __version__, "run": str(run_dir.resolve()),
            "dataset": str(ds_path.resolve()), "model": config.get("model"), "target": config.get("target"),
            "rows": shape.n, "rows_from": table.attrs["source"], "groups": table.attrs["groups"],
            "group_counts": {str(g): int(c) for g, c in table["group"].value_counts().items()},
            "models": {fold: [m.name for m in dirs] for fold, dirs in folds.items()}, "kinds": sorted(means),
            "bins_png": views.bins_what if views else None, "marks_png": views.marks_what if views else None,
            "regions_tsv": "attention of each gene's promoter on each distal region (slot 0 = the strongest contact)"
            if regions is not None else None, "geometry": geometry,
        }, indent=2) + "\n")
    kinds = sorted([*means, *([REGION] if regions is not None else [])])
    return {"rows": shape.n, "models": len(members), "kinds": kinds, "summary": summary,
            "rows_from": table.attrs["source"], "marks_what": views.marks_what if views else None,
            "regions": regions}


def region_table(rows: pd.DataFrame, weights: np.ndarray, view: Any, ds: Any) -> pd.DataFrame:
    """One row per (explained gene, present distal region): where the region is, its contact score
    and the mean attention the model gave it."""
    if view is None:
        raise PluginError("the model reports attention over distal regions, but the run used none")
    present = np.zeros(weights.shape, bool)
    for start in range(0, len(rows), 4096):
        present[start:start + 4096] = view[np.arange(start, min(start + 4096, len(rows)))]["present"]
    r, slot = np.nonzero(present)
    table = ds.regions
    out = pd.DataFrame({"gene_id": rows["gene_id"].to_numpy()[r], "cell_line": rows["cell_line"].to_numpy()[r],
                        "group": rows["group"].to_numpy()[r], "slot": slot, "weight": weights[r, slot]})
    out = out.merge(table[["gene_id", "cell_line", "slot", "chrom", "start", "end", "score"]],
                    on=["gene_id", "cell_line", "slot"], how="left")
    return out[["gene_id", "cell_line", "group", "slot", "chrom", "start", "end", "score", "weight"]]


def plot_regions(regions: pd.DataFrame, path: Path, title: str) -> None:
    """Mean attention per region slot (slot 0 = the strongest contact), expressed next to silent."""
    plt = _pyplot()
    slots = np.sort(regions["slot"].unique())
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(slots) + 2), 3.6))
    groups = [g for g in GROUPS if (regions["group"] == g).any()] or [None]
    width = 0.8 / len(groups)
    for k, (group, color) in enumerate(zip(groups, ("#d8563b", "#3b7dd8"), strict=False)):
        part = regions if group is None else regions[regions["group"] == group]
        means = part.groupby("slot")["weight"].mean().reindex(slots)
        ax.bar(slots + (k - (len(groups) - 1) / 2) * width, means.to_numpy(), width, label=group or "all rows", color=color)
    ax.set_xlabel("distal region (slot 0 = strongest contact)")
    ax.set_ylabel("mean attention from the promoter")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def _dataset_path(run_dir: Path, config: dict[str, Any], dataset: str | Path | None) -> Path:
    if dataset is not None:
        return Path(dataset)
    recorded = config.get("dataset")
    if not recorded:
        raise DatasetError(f"run {run_dir} does not record its dataset; point at it with --dataset DIR")
    if not Path(recorded).is_dir():
        raise DatasetError(f"run {run_dir} was trained on this dataset, which is not there any more: point at where "
                           "it is now with --dataset DIR, or re-run epx train", path=recorded)
    return Path(recorded)


def explained_rows(run_dir: Path, config: dict[str, Any], limit: int) -> pd.DataFrame:
    """The rows the run predicted (test, else out-of-fold), each with its expression group; a
    seeded sample of ``limit`` of them. ``attrs``: where they came from and how groups were made."""
    from epx.train import _shap_sample

    table, source = pd.DataFrame(), ""
    for name in ("test.parquet", "oof.parquet"):
        if (run_dir / name).is_file():
            table, source = read_parquet_file(run_dir / name, "run predictions"), name
            if len(table):
                break
    if table.empty:
        raise InputFileError("no predicted rows to explain (test.parquet and oof.parquet are missing or empty); "
                             "re-run epx train", path=run_dir)
    binary = config.get("task") == "binary"
    y = table["y_true"].to_numpy(np.float64) if "y_true" in table.columns else np.full(len(table), np.nan)
    group = np.full(len(table), "unlabelled", dtype=object)
    if binary:
        group[y == 1], group[y == 0] = "expressed", "silent"
    else:
        cells = table["cell_line"].to_numpy()
        for cell in pd.unique(cells):
            m = (cells == cell) & np.isfinite(y)
            if m.any():
                median = np.median(y[m])
                group[m & (y > median)], group[m & (y <= median)] = "expressed", "silent"
    rows = table[["gene_id", "cell_line"]].copy()
    rows["group"] = group
    rows["fold"] = table["fold"].astype(str) if "fold" in table.columns else "test"
    rows = rows.iloc[_shap_sample(len(rows), limit, int(config.get("seed") or 0))].reset_index(drop=True)
    rows.attrs["source"] = source
    rows.attrs["groups"] = ("y_true 1 = expressed, 0 = silent" if binary else
                            f"y_true ({config.get('target', '?')}) above the cell line's median = expressed, "
                            "at or below it = silent")
    return rows


@dataclass
class Shape:
    """The rows explained and the model's input axes."""

    n: int
    assays: list[str]
    n_bins: int

    def axes(self, name: str, shape: tuple[int, ...]) -> tuple[str, ...] | None:
        """What the non-row axes of a hook's array are: (assay, bin), (assay,), (bin,) or (region,)."""
        n_assays = len(self.assays)
        if name == REGION:
            return ("region",) if len(shape) == 2 else None
        if shape[1:] == (n_assays, self.n_bins):
            return ("assay", "bin")
        if len(shape) == 2 and shape[1] == n_assays and (name == "mark" or shape[1] != self.n_bins):
            return ("assay",)
        if len(shape) == 2 and shape[1] == self.n_bins:
            return ("bin",)
        return None


def outer_fold(model_dir: str) -> str:
    """The outer fold of a model directory: ``fold_NAME[_seedS][_innerJ]`` -> ``NAME``."""
    return re.sub(r"(_(inner|seed)\d+)+$", "", model_dir).removeprefix("fold_")


def _chunks(inputs: Any, table: pd.DataFrame, idx: np.ndarray, assays: list[str]) -> list[FoldData]:
    """Rows ``idx`` as model inputs (every geometry, and distal regions where the run used them),
    in chunks; each chunk's bins are read when a hook asks."""
    from epx.predict import CHUNK_ROWS

    out = []
    for part in np.split(idx, range(CHUNK_ROWS, len(idx), CHUNK_ROWS)):
        bins = {name: view.take(part) for name, view in inputs.bins.items()}
        regions = None if inputs.regions is None else inputs.regions.take(part)
        out.append(FoldData(X=next(iter(bins.values())), y=None, bins=bins, regions=regions,
                            rows=table.iloc[part][["gene_id", "cell_line"]].reset_index(drop=True),
                            feature_names=list(assays)))
    return out


def model_weights(model: Any, chunks: list[FoldData], shape: Shape, model_name: str) -> dict[str, np.ndarray]:
    """One fold model's attention arrays (``attention(data)``), and its saliency
    (``saliency(data)``) when it has no attention or none over the marks, for the chunks' rows."""
    hooks = [h for h in (ATTENTION, SALIENCY) if hasattr(model, h)]
    if not hooks:
        raise PluginError(f"model {model_name!r} has neither attention(data) nor saliency(data): epx explain has "
                          "nothing to ask it (see docs/plugins.md, optional hooks)")
    out: dict[str, np.ndarray] = {}
    if ATTENTION in hooks:
        parts: dict[str, list[np.ndarray]] = {}
        for data in chunks:
            for name, value in dict(getattr(model, ATTENTION)(data)).items():
                parts.setdefault(str(name), []).append(_checked(f"attention {name!r}", value, len(data), shape, str(name)))
        out = {name: np.concatenate(p) for name, p in parts.items()}
    if SALIENCY in hooks and "mark" not in out and REGION not in out:
        out[SALIENCY] = np.concatenate([_checked(SALIENCY, getattr(model, SALIENCY)(data), len(data), shape, SALIENCY)
                                        for data in chunks])
    return out


def _checked(what: str, value: Any, n: int, shape: Shape, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim < 2 or arr.shape[0] != n or shape.axes(name, arr.shape) is None:
        a, b = len(shape.assays), shape.n_bins
        raise PluginError(f"the model's {what} has shape {arr.shape}; expected ({n}, {a}, {b}), ({n}, {a}) or "
                          f"({n}, {b}) for {n} rows, {a} assays and {b} bins")
    if not np.isfinite(arr).all():
        raise PluginError(f"the model's {what} holds NaN or inf")
    return arr


@dataclass
class Views:
    """What the plots and the ranking show: per (row, assay, bin) weights (bin attention, else
    |saliency|, else per-bin attention for all marks) and per (row, assay) weights (mark
    attention, else |saliency| summed over bins)."""

    bins: np.ndarray
    bins_what: str
    bin_labels: list[str]
    marks: np.ndarray
    marks_what: str

    @classmethod
    def of(cls, means: dict[str, np.ndarray], shape: Shape, model_name: str) -> Views:
        layout = {name: shape.axes(name, arr.shape) for name, arr in means.items()}
        saliency = np.abs(means[SALIENCY]) if SALIENCY in means else None
        per_bin = [n for n, axes in layout.items() if axes == ("bin",) and n != SALIENCY]
        if layout.get("bin") == ("assay", "bin"):
            bins, bins_what, labels = means["bin"], "mean bin attention", shape.assays
        elif saliency is not None:
            bins, bins_what, labels = saliency, "mean |input x gradient|", shape.assays
        elif per_bin:
            bins, bins_what, labels = means[per_bin[0]][:, None, :], f"mean {per_bin[0]} attention", ["all marks"]
        else:
            raise PluginError(f"model {model_name!r} reports no attention over bins and has no saliency(data): "
                              "nothing to show per bin")
        if layout.get("mark") == ("assay",):
            marks, marks_what = means["mark"], "mean mark attention"
        elif saliency is not None:
            marks, marks_what = saliency.sum(axis=2), "mean |input x gradient|, summed over bins"
        else:
            raise PluginError(f"model {model_name!r} reports no attention over marks and has no saliency(data): "
                              "nothing to rank the marks by")
        return cls(bins, bins_what, list(labels), marks, marks_what)


def _bin_bp(geometry: dict[str, Any], n_bins: int) -> np.ndarray | None:
    """Start of each bin in bp from the TSS (downstream positive), when the geometry is known:
    featurize and import centre ``n_bins`` bins of ``bin_size`` bp on the TSS."""
    size = geometry.get("bin_size")
    if not size or int(geometry.get("n_bins") or n_bins) != n_bins:
        return None
    return (np.arange(n_bins) - n_bins // 2) * int(size)


def long_table(rows: pd.DataFrame, means: dict[str, np.ndarray], shape: Shape, bp: np.ndarray | None) -> pd.DataFrame:
    """One row per (gene, cell line, kind, assay, bin) weight; assay or bin is missing where the
    kind has no such axis (``mark`` has no bin, ``position`` no assay)."""
    genes, cells = pd.Categorical(rows["gene_id"]), pd.Categorical(rows["cell_line"])
    groups = pd.Categorical(rows["group"], categories=[*GROUPS, "unlabelled"])
    kinds = list(means)
    parts = []
    for kind, arr in means.items():
        axes = shape.axes(kind, arr.shape)
        per_row = int(np.prod(arr.shape[1:]))
        row = np.repeat(np.arange(shape.n), per_row)
        assay = np.full(len(row), -1)
        bins = np.full(len(row), -1)
        if axes == ("assay", "bin"):
            assay = np.tile(np.repeat(np.arange(len(shape.assays)), shape.n_bins), shape.n)
            bins = np.tile(np.arange(shape.n_bins), shape.n * len(shape.assays))
        elif axes == ("assay",):
            assay = np.tile(np.arange(len(shape.assays)), shape.n)
        else:
            bins = np.tile(np.arange(shape.n_bins), shape.n)
        no_bin = bins < 0
        positions = np.zeros(len(row), np.int32) if bp is None else bp[np.maximum(bins, 0)].astype(np.int32)
        parts.append(pd.DataFrame({
            "gene_id": pd.Categorical.from_codes(genes.codes[row], genes.categories),
            "cell_line": pd.Categorical.from_codes(cells.codes[row], cells.categories),
            "group": pd.Categorical.from_codes(groups.codes[row], groups.categories),
            "kind": pd.Categorical.from_codes(np.full(len(row), kinds.index(kind)), kinds),
            "assay": pd.Categorical.from_codes(assay, shape.assays),
            "bin": pd.arrays.IntegerArray(np.maximum(bins, 0).astype(np.int16), no_bin),
            "bp": pd.arrays.IntegerArray(positions, no_bin | (bp is None)),
            "weight": arr.reshape(-1),
        }))
    return pd.concat(parts, ignore_index=True)


def _group_means(groups: np.ndarray, arr: np.ndarray) -> dict[str, np.ndarray]:
    """Mean over the rows of each group, and over all rows (``all``)."""
    out = {"all": arr.mean(axis=0)}
    for g in GROUPS:
        m = groups == g
        out[g] = arr[m].mean(axis=0) if m.any() else np.full(arr.shape[1:], np.nan)
    return out


def rank_marks(groups: np.ndarray, views: Views, assays: list[str], bp: np.ndarray | None) -> pd.DataFrame:
    """The marks ranked by their weight over all rows, with the bin (and its start in bp from the
    TSS) where each mark's mean bin weight peaks."""
    by = _group_means(groups, views.marks)
    table = pd.DataFrame({"assay": assays, "weight": by["all"], "weight_expressed": by["expressed"],
                          "weight_silent": by["silent"]})
    table["difference"] = table["weight_expressed"] - table["weight_silent"]
    peak = views.bins.mean(axis=0).argmax(axis=1)
    peak = np.broadcast_to(peak, len(assays))  # one peak for all marks (position attention)
    table["peak_bin"] = peak
    table["peak_bp"] = pd.arrays.IntegerArray(np.zeros(len(assays), np.int32) if bp is None else bp[peak].astype(np.int32),
                                              np.full(len(assays), bp is None))
    table["measure"] = views.marks_what
    table = table.sort_values("weight", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


MARK_COLUMNS = ["rank", "mark", "weight", "expressed", "silent", "peak (bp from TSS)"]


def mark_rows(summary: pd.DataFrame, top: int) -> list[list[str]]:
    """The first ``top`` marks of :func:`rank_marks` as printable cells (:data:`MARK_COLUMNS`)."""
    def num(v: float) -> str:
        return "-" if v != v else f"{v:.3g}"

    return [[str(r.rank), str(r.assay), num(r.weight), num(r.weight_expressed), num(r.weight_silent),
             "-" if pd.isna(r.peak_bp) else ("TSS" if r.peak_bp == 0 else f"{int(r.peak_bp):+,}")]
            for r in summary.head(top).itertuples(index=False)]


# -- plots -------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    from epx.outputs import save_figure

    save_figure(fig, path)


def _panels(groups: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(title, row mask) per plotted group: expressed and silent, or all rows when unlabelled."""
    panels = [(g, groups == g) for g in GROUPS if (groups == g).any()]
    return panels or [("all rows", np.ones(len(groups), dtype=bool))]


def plot_bins(groups: np.ndarray, views: Views, bp: np.ndarray | None, path: Path, title: str) -> None:
    """Heat maps (assays x bins) of the mean bin weights, one panel per group, one colour scale."""
    plt = _pyplot()
    panels = _panels(groups)
    maps = [views.bins[m].mean(axis=0) for _, m in panels]
    low, high = min(float(np.min(x)) for x in maps), max(float(np.max(x)) for x in maps)
    n_bins = views.bins.shape[2]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1.5, 0.4 * len(views.bin_labels) + 2.4),
                             squeeze=False, sharey=True, layout="constrained")
    for ax, (name, mask), image in zip(axes[0], panels, maps, strict=True):
        shown = ax.imshow(image, aspect="auto", cmap="viridis", vmin=low, vmax=high if high > low else low + 1e-9,
                          interpolation="nearest")
        ax.set_title(f"{name} (n={int(mask.sum())})")
        ax.set_yticks(range(len(views.bin_labels)), views.bin_labels)
        if bp is not None:  # ticks on bin edges, labelled with the bin's start
            ticks = _edge_ticks(n_bins, int(bp[1] - bp[0]) if n_bins > 1 else 1)
            ax.set_xticks(ticks - 0.5, ["TSS" if bp[t] == 0 else f"{int(bp[t]):+,}" for t in ticks])
            ax.axvline(n_bins // 2 - 0.5, color="white", lw=0.8, ls="--")
            ax.set_xlabel("bp from the TSS (downstream right)")
        else:
            ax.set_xlabel("bin")
    fig.colorbar(shown, ax=axes[0].tolist(), shrink=0.9, label=views.bins_what)
    fig.suptitle(title)
    _save(fig, path)


def _edge_ticks(n_bins: int, bin_size: int) -> np.ndarray:
    """Bins whose left edge gets a tick: the TSS bin and every k-th bin from it, k bins making a
    round number of bp, at most about 9 ticks."""
    steps = [m * 10**e for e in range(7) for m in (1, 2, 5)]
    step = next((s for s in steps if s % bin_size == 0 and n_bins * bin_size / s <= 8), n_bins * bin_size) // bin_size
    tss = n_bins // 2
    return np.arange(tss % max(step, 1), n_bins, max(step, 1))


def plot_marks(summary: pd.DataFrame, what: str, path: Path, title: str) -> None:
    """Bars of each mark's weight, expressed next to silent (all rows when unlabelled)."""
    plt = _pyplot()
    series = [(g, summary[f"weight_{g}"].to_numpy()) for g in GROUPS if np.isfinite(summary[f"weight_{g}"]).any()]
    series = series or [("all rows", summary["weight"].to_numpy())]
    x = np.arange(len(summary))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(summary) + 2), 3.8))
    for k, ((name, values), color) in enumerate(zip(series, ("#d8563b", "#3b7dd8"), strict=False)):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=name, color=color)
    ax.set_xticks(x, summary["assay"], rotation=30, ha="right")
    ax.set_ylabel(what)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
