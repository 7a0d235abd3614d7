"""``epx ablate DATASET --model NAME``: which mark predicts best.

Trains one model on subsets of the dataset's assays, every subset on the same split, and ranks
them with ``epx report``'s leaderboard (bootstrap intervals over genes, paired differences):

* ``each``: every assay alone (variant ``only-H3K4me3``);
* ``leave-one-out``: all assays but one (``without-H3K4me3``);
* ``all``: every assay (``all``, the reference of the differences).

The split is resolved once, before any training, and written to ``split.tsv``; every variant trains
on that file, so all of them score the same genes in the same folds. Every variant, ``all``
included, trains on the assays it names explicitly: tabular models see each assay's own features
and the gene's, never the features computed across marks (they would let a left-out mark back in),
so the variants differ only in their marks. The output directory::

    DIR/
      ablation.json     model, resolved parameters, target, split, variants and their assays
      split.tsv         the split every variant trained on
      runs/VARIANT/     each variant's run (an epx train run: epx report, predict and stack take it)
      leaderboard.tsv   per row set (test, oof) and cell line: variant, assays, metric, value, 95% CI,
                        difference against ``all`` with its paired 95% CI
      leaderboard.png   the primary metric per variant with its interval, one panel per cell line

The runs inside are the ablation's own: its marker lists their files, so ``--force`` replaces the
whole directory (and refuses it when a file epx did not write is anywhere inside).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from epx import console
from epx._version import __version__
from epx.choices import ABLATION_MODES
from epx.dataset import load_dataset
from epx.errors import EpxError
from epx.outputs import atomic_dir, check_output, refuse_overlap
from epx.report import PRIMARY, leaderboard, load_entries
from epx.split import validate_split, write_split
from epx.train import SplitOptions, TrainOptions, resolve_split
from epx.train import train as run_train

DEFAULT_MODES = ("each", "all")
REFERENCE = "all"
COLUMNS = ["part", "cell_line", "variant", "assays", "n", "metric", "value", "ci_low", "ci_high", "reference",
           "diff", "diff_low", "diff_high"]


@dataclass(frozen=True)
class Variant:
    name: str
    assays: tuple[str, ...]
    mode: str


def parse_modes(values: Sequence[str]) -> list[str]:
    """``--assays each,all`` or repeated ``--assays each --assays all``, in the canonical order."""
    given = [p.strip() for v in values for p in v.split(",") if p.strip()]
    for mode in given:
        if mode not in ABLATION_MODES:
            raise EpxError(f"unknown --assays mode {mode!r}; use {', '.join(ABLATION_MODES)} "
                           "(a comma list or repeated, e.g. --assays each,all)")
    return [m for m in ABLATION_MODES if m in given] if given else list(DEFAULT_MODES)


def _dir_name(assay: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", assay)


def plan_variants(assays: Sequence[str], modes: Sequence[str], dataset: str | Path = "") -> list[Variant]:
    """The variants of the modes, in the modes' order: only-A..., without-A..., all."""
    if "leave-one-out" in modes and len(assays) < 2:
        raise EpxError(f"--assays leave-one-out needs two or more assays; the dataset has only {', '.join(assays)} "
                       "(use --assays each,all)", path=dataset or None)
    out: list[Variant] = []
    for mode in modes:
        if mode == "each":
            out += [Variant(f"only-{_dir_name(a)}", (a,), mode) for a in assays]
        elif mode == "leave-one-out":
            out += [Variant(f"without-{_dir_name(a)}", tuple(b for b in assays if b != a), mode) for a in assays]
        else:
            out.append(Variant(REFERENCE, tuple(assays), mode))
    names = [v.name for v in out]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash is not None:
        raise EpxError(f"two assays make the same variant name {clash!r}; rename one of them in the manifest",
                       path=dataset or None)
    return out


def ablate(
    dataset: str | Path,
    output: str | Path,
    options: TrainOptions,
    split_options: SplitOptions,
    *,
    modes: Sequence[str] = DEFAULT_MODES,
    force: bool = False,
    n_boot: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every variant on one split and write the ablation directory; returns its summary
    (``variants``, ``split``, the report ``board`` and the ablation ``table``)."""
    refuse_overlap(output, [dataset, *([split_options.file] if split_options.file else [])])
    output = check_output(output, force, "ablation")
    ds = load_dataset(dataset)
    from epx.models.plugins import get_spec

    if get_spec(options.model).input_kind == "sequence":
        raise EpxError(f"model {options.model!r} reads reference sequence, not tracks: there are no assays to ablate; "
                       "compare it with the track models with epx report")
    _refuse_multi_process(options)
    variants = plan_variants(ds.assays, modes, ds.path)
    split, described = resolve_split(ds, split_options, options.train_cells, options.predict_cells)
    validate_split(split)
    final_split = output.resolve() / "split.tsv"
    started = time.perf_counter()
    with atomic_dir(output, "ablation", force=force) as tmp:
        split_path = tmp.resolve() / "split.tsv"
        write_split(split, split_path)
        # Every variant reads this file: the same genes, cell lines, folds and roles.
        shared = SplitOptions(file=split_path, allow_subset=True)
        configs: dict[str, dict[str, Any]] = {}
        for i, v in enumerate(variants, 1):
            t0 = time.perf_counter()
            run_dir = tmp / "runs" / v.name
            with console.stderr().status(f"[{i}/{len(variants)}] training {v.name}") if progress else nullcontext():
                summary = run_train(dataset, run_dir, replace(options, assays=list(v.assays)), shared, progress=False)
            configs[v.name] = _point_at(run_dir, split_path, final_split)
            _say(f"[{i}/{len(variants)}] {v.name}: {len(v.assays)} assay{'s' * (len(v.assays) != 1)}, "
                 f"{_headline(summary)} ({time.perf_counter() - t0:.1f}s)")
        entries = load_entries([tmp / "runs" / v.name for v in variants])
        for entry, v in zip(entries, variants, strict=True):
            entry.name = v.name
        reference = REFERENCE if any(v.name == REFERENCE for v in variants) else None
        board = leaderboard(entries, reference=reference, n_boot=n_boot, seed=0, baselines=False)
        table = ablation_table(board, variants)
        table.to_csv(tmp / "leaderboard.tsv", sep="\t", index=False, na_rep="NA")
        first = configs[variants[0].name]
        plot_ablation(table, variants, tmp / "leaderboard.png", f"{first['model']} on {Path(dataset).name}: "
                      f"{PRIMARY} by the assays trained on")
        record = {
            "kind": "ablation", "epx_version": __version__, "model": first["model"], "plugin": first.get("plugin"),
            "params": first["params"], "target": first["target"], "task": first["task"], "seed": options.seed,
            "seeds": getattr(options, "seeds", 1), "dataset": str(Path(dataset).resolve()),
            "dataset_assays": ds.assays, "split": described, "split_file": "split.tsv",
            "train_cells": list(options.train_cells), "predict_cells": list(options.predict_cells),
            "modes": list(modes), "reference": reference, "bootstrap": n_boot,
            "variants": [{"name": v.name, "mode": v.mode, "assays": list(v.assays), "run": f"runs/{v.name}"}
                         for v in variants],
            "seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / "ablation.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return {"variants": variants, "split": described, "board": board, "table": table, "reference": reference}


def _refuse_multi_process(options: TrainOptions) -> None:
    """An ablation trains its variants into its own temporary directory, which only this process
    can see: a model trained across processes (devices or num_nodes above 1) runs one variant at a
    time with epx train instead."""
    from epx.models.contract import training_processes
    from epx.models.plugins import get_spec

    spec = get_spec(options.model)
    _, size = training_processes(spec.load_class()(spec.resolve_params(options.params), spec.tasks[0], options.seed))
    if size > 1:
        raise EpxError(f"model {options.model!r} would train across {size} processes; epx ablate trains in one: "
                       "drop --param devices/num_nodes, or train each assay set with epx train --assays")


def _point_at(run_dir: Path, tmp_split: Path, final_split: Path) -> dict[str, Any]:
    """A variant's config and log name the split file where it will be, not the temporary one."""
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    config["split"] = str(config["split"]).replace(str(tmp_split), str(final_split))
    path.write_text(json.dumps(config, indent=2, default=str) + "\n")
    log = run_dir / "log.txt"
    log.write_text(log.read_text().replace(str(tmp_split), str(final_split)))
    return config


def _say(line: str) -> None:
    """One progress line on stderr, never wrapped."""
    from rich.markup import escape

    console.stderr().print(escape(line), soft_wrap=True)


def _headline(summary: dict[str, Any]) -> str:
    """The run's pooled primary metric on its held-out rows: test rows where there are, else oof."""
    overall = summary.get("overall", {})
    part = "test" if "test" in overall else "oof"
    value = overall.get(part, {}).get("all", {}).get(PRIMARY)
    return f"{part} {PRIMARY} {value:.3f}" if isinstance(value, float) else f"no labelled {part} rows"


def ablation_table(board: pd.DataFrame, variants: Sequence[Variant]) -> pd.DataFrame:
    """``epx report``'s long leaderboard with the variant's name and assays."""
    assays = {v.name: ",".join(v.assays) for v in variants}
    table = board.rename(columns={"entry": "variant"})
    table.insert(table.columns.get_loc("variant") + 1, "assays", table["variant"].map(assays))
    return table[COLUMNS]


def plot_ablation(table: pd.DataFrame, variants: Sequence[Variant], path: Path, title: str) -> None:
    """Bars of the primary metric with 95% CI whiskers: a column of panels per cell line, a row
    per row set (test, oof); the variants in the same order in every panel, ``all`` dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from epx.outputs import save_figure

    data = table[table["metric"] == PRIMARY]
    parts = list(dict.fromkeys(data["part"]))
    cells = list(dict.fromkeys(data["cell_line"]))
    order = [v.name for v in variants]
    colours = {"each": "#3b7dd8", "leave-one-out": "#e08a2e", "all": "#444444"}
    colour = [colours[v.mode] for v in variants]
    height = 0.32 * len(order) + 1.4
    fig, axes = plt.subplots(len(parts), len(cells), figsize=(3.6 * len(cells) + 1.6, height * len(parts)),
                             squeeze=False, sharey=True)
    y = np.arange(len(order))[::-1]
    for r, part in enumerate(parts):
        for c, cell in enumerate(cells):
            ax = axes[r, c]
            g = data[(data["part"] == part) & (data["cell_line"] == cell)].set_index("variant").reindex(order)
            value = g["value"].astype(float).to_numpy()
            lo = np.clip(value - g["ci_low"].astype(float).to_numpy(), 0, None)
            hi = np.clip(g["ci_high"].astype(float).to_numpy() - value, 0, None)
            ax.barh(y, np.nan_to_num(value), color=colour, xerr=[np.nan_to_num(lo), np.nan_to_num(hi)],
                    error_kw={"ecolor": "black", "capsize": 2, "elinewidth": 1})
            if REFERENCE in g.index and np.isfinite(g.loc[REFERENCE, "value"]):
                ax.axvline(float(g.loc[REFERENCE, "value"]), color=colours["all"], linestyle="--", linewidth=1)
            n = g["n"].dropna()
            ax.set_title(f"{cell}, {part} rows" + (f" (n={int(n.iloc[0]):,})" if len(n) else ""), fontsize=10)
            ax.set_yticks(y, order)
            ax.axvline(0, color="black", linewidth=0.6)
            if r == len(parts) - 1:
                ax.set_xlabel(f"{PRIMARY} (95% bootstrap CI)")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
