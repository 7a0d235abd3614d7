"""``epx report RUN_OR_STACK...``: one leaderboard over runs, stacks and predictions.

For every row set (held-out ``test`` rows and out-of-fold ``oof`` rows) and cell line, each entry
is scored on the same genes, with a 95% bootstrap confidence interval over genes and a *paired*
bootstrap difference against a reference (the best entry, or ``--baseline``): the same resampled
genes score every entry, so the interval of a difference is much narrower than the two intervals
suggest. Built-in baselines come from the dataset without training: each assay's signal in the
TSS window used as a score ("H3K4me3 at the TSS"), the reference every paper should report.

A run trained with ``--seeds K`` is scored by its seed ensemble; its seed spread is each seed's
metric on the same genes, ``mean +- sd (K seeds)`` (``seed_mean``, ``seed_sd``, ``n_seeds``).

Bootstrap resamples are drawn as multinomial gene weights; ranks of a resample are computed from
the weights (ties averaged, exactly as ``scipy.stats.rankdata`` would rank the resampled values),
so Spearman and AUROC need one sort per entry rather than one per resample.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx.dataset import read_parquet_file
from epx.errors import EpxError, InputFileError
from epx.metrics import mean_sd
from epx.stack import KEYS, read_run

PRIMARY = "spearman"  # comparable across targets: invariant to the monotone transforms between them
BASELINE_PREFIX = "tss:"  # "tss:H3K4me3": the assay's TSS-window signal as a score, no training


@dataclass
class Entry:
    """One run, stack or prediction directory (or a built-in baseline) and its scored rows."""

    name: str
    path: Path | None
    config: dict[str, Any]
    parts: dict[str, pd.DataFrame] = field(default_factory=dict)
    seeds: pd.DataFrame | None = None  # a seeded run's seed_predictions.parquet
    cohort: bool = False  # an epx personalize directory: methods scored across individuals

    @property
    def is_baseline(self) -> bool:
        return self.path is None


def load_entries(paths: Sequence[str | Path]) -> list[Entry]:
    if not paths:
        raise EpxError("give at least one run, stack or prediction directory")
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) < len(resolved):
        dup = next(p for p in paths if resolved.count(Path(p).resolve()) > 1)
        raise EpxError(f"{dup} is listed twice")
    names = _short_names([Path(p) for p in paths])
    cohort = _cohort_entries(paths, names)
    if cohort:
        return cohort
    entries = []
    for name, p in zip(names, paths, strict=True):
        run = read_run(p)
        parts = {}
        for part in ("test", "oof"):
            table = run[part]
            if not table.empty and "y_true" in table.columns:
                table = table[np.isfinite(table["y_true"].to_numpy(np.float64))]
                if "gene_trained_on" in table.columns:  # epx predict: score held-out genes only
                    table = table[~table["gene_trained_on"].to_numpy(bool)]
                if len(table):
                    parts[part] = table.reset_index(drop=True)
        entries.append(Entry(name=name, path=Path(p), config=run["config"], parts=parts, seeds=_seed_predictions(Path(p))))
    if not any(e.parts for e in entries):
        raise EpxError("nothing to score: none of these has labelled out-of-fold or test rows "
                       "(featurize the cell lines with --labels to score them)")
    return entries


def _cohort_entries(paths: Sequence[str | Path], names: list[str]) -> list[Entry]:
    """epx personalize directories (marker kind ``personalize``): their cohort evaluations, scored
    per gene across held-out individuals, are shown on their own (not beside runs)."""
    from epx.outputs import epx_kind

    kinds = [epx_kind(Path(p)) if Path(p).is_dir() else None for p in paths]
    if "personalize" not in kinds:
        return []
    other = next((p for p, k in zip(paths, kinds, strict=True) if k != "personalize"), None)
    if other is not None:
        raise EpxError(f"{other} is not an epx personalize directory: a cohort evaluation (scored across "
                       "individuals) is reported on its own, or beside other personalize directories")
    from epx.cohort import find_summary

    for p in paths:
        find_summary(p)
    return [Entry(name=name, path=Path(p), config={"kind": "personalize"}, cohort=True)
            for name, p in zip(names, paths, strict=True)]


def _seed_predictions(run: Path) -> pd.DataFrame | None:
    """A run's per-seed predictions (``epx train --seeds K``), or None."""
    path = run / "seed_predictions.parquet"
    if not path.is_file():
        return None
    table = read_parquet_file(path, "seed predictions")
    missing = [c for c in ("gene_id", "cell_line", "part", "seed", "y_pred") if c not in table.columns]
    if missing:
        raise InputFileError(f"damaged seed predictions: no {missing[0]} column; re-run epx train", path=path)
    return table


def _short_names(paths: list[Path]) -> list[str]:
    """The shortest trailing path parts that tell the entries apart."""
    for depth in range(1, 6):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def dataset_of(entry: Entry) -> Path | None:
    """The dataset an entry was trained on or predicted (a stack: its first run's)."""
    cfg = entry.config
    if cfg.get("dataset"):
        return Path(cfg["dataset"])
    for run in cfg.get("run_dirs") or cfg.get("runs", []):  # run_dirs: absolute, wherever report runs
        try:
            sub = json.loads((Path(run) / "config.json").read_text())
        except (OSError, ValueError):
            continue
        return Path(sub["dataset"]) if sub.get("dataset") else None
    return None


def baseline_scores(dataset: Path) -> dict[str, pd.DataFrame]:
    """Per assay, the TSS-window signal as a score: gene_id, cell_line, score."""
    from epx.dataset import load_dataset

    ds = load_dataset(dataset)
    out: dict[str, pd.DataFrame] = {}
    if ds.has_tabular:
        raw = ds.features(raw=True)
        for assay in ds.assays:
            for col in (f"{assay}.bw.tss.mean0", f"{assay}.bed.tss.coverage"):  # signal, else peak coverage
                if col in raw.columns:
                    out[assay] = raw[["gene_id", "cell_line"]].assign(score=raw[col].to_numpy(np.float64))
                    break
    elif ds.has_binned:
        bins = ds.bins()
        centre = bins.shape[3] // 2
        genes = ds.genes["gene_id"].to_numpy()
        for a, assay in enumerate(ds.assays):
            frames = [pd.DataFrame({"gene_id": genes, "cell_line": cell, "score": np.asarray(bins[:, c, a, centre], np.float64)})
                      for c, cell in enumerate(ds.cell_lines)]
            out[assay] = pd.concat(frames, ignore_index=True)
    return out


# -- bootstrap machinery ----------------------------------------------------------------------------


def weighted_ranks(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Average-tie ranks of ``x`` within each weighted resample (rows of ``W``: copies per element)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    group_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(xs)]))
    S = np.add.reduceat(W[:, order].astype(np.float64), starts, axis=1)
    rank_of_group = np.cumsum(S, axis=1) - S + (S + 1) / 2
    R = np.empty(W.shape, dtype=np.float64)
    R[:, order] = rank_of_group[:, group_of]
    return R


def weighted_pearson(a: np.ndarray, b: np.ndarray, W: np.ndarray) -> np.ndarray:
    tot = W.sum(axis=1, keepdims=True)
    da = a - (W * a).sum(axis=1, keepdims=True) / tot
    db = b - (W * b).sum(axis=1, keepdims=True) / tot
    va, vb = (W * da * da).sum(axis=1), (W * db * db).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((va > 0) & (vb > 0), (W * da * db).sum(axis=1) / np.sqrt(va * vb), np.nan)


def weighted_auroc(y: np.ndarray, score: np.ndarray, W: np.ndarray) -> np.ndarray:
    pos = (y > 0.5).astype(np.float64)
    R = weighted_ranks(score, W)
    n_pos = (W * pos).sum(axis=1)
    n_neg = W.sum(axis=1) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), ((W * R * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg), np.nan)


METRIC_FNS = {
    "spearman": lambda y, p, W: weighted_pearson(weighted_ranks(y, W), weighted_ranks(p, W), W),
    "pearson": lambda y, p, W: weighted_pearson(np.broadcast_to(y, W.shape), np.broadcast_to(p, W.shape), W),
    "auroc": weighted_auroc,
}


def _metric_names(entries: list[Entry]) -> list[str]:
    tasks = {e.config.get("task") for e in entries if not e.is_baseline}
    targets = {e.config.get("target") for e in entries if not e.is_baseline}
    if tasks == {"binary"}:
        return ["spearman", "auroc"]
    if len(targets) == 1 and "binary" not in tasks:
        return ["spearman", "pearson"]
    return ["spearman"]  # mixed targets: only rank correlation compares them


# -- the leaderboard --------------------------------------------------------------------------------


def leaderboard(entries: list[Entry], *, reference: str | None = None, intersect: bool = False,
                n_boot: int = 1000, seed: int = 0, baselines: bool = True) -> pd.DataFrame:
    """Long table: one row per (part, cell line, entry, metric) with value, CI and paired difference."""
    if n_boot < 100:
        raise EpxError(f"--bootstrap must be at least 100 resamples for a 95% interval (got {n_boot})")
    if entries and all(e.cohort for e in entries):
        from epx.cohort import cohort_board

        return cohort_board([(e.name, e.path) for e in entries if e.path is not None], reference=reference,
                            n_boot=n_boot, seed=seed)
    names = [e.name for e in entries]
    by_path = {str(e.path.resolve()): e.name for e in entries if e.path is not None}
    if reference is not None and str(Path(reference).resolve()) in by_path:
        reference = by_path[str(Path(reference).resolve())]  # given as a path, not the displayed name
    if reference is not None and reference not in names and not reference.startswith(BASELINE_PREFIX):
        raise EpxError(f"--baseline {reference!r} is not one of the reported entries ({', '.join(names)}, "
                       f"or {BASELINE_PREFIX}ASSAY)")
    metrics = _metric_names(entries)
    extra = _baselines(entries) if baselines else {}
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    for part in ("test", "oof"):
        having = [e for e in entries if part in e.parts]
        if not having:
            continue
        cells = list(dict.fromkeys(c for e in having for c in e.parts[part]["cell_line"]))
        for cell in cells:
            group = [e for e in having if (e.parts[part]["cell_line"] == cell).any()]
            tables = _aligned(group, part, cell, intersect)
            y_true = tables[0]["y_true"].to_numpy(np.float64)
            preds = {e.name: (t["y_true"].to_numpy(np.float64), t["y_pred"].to_numpy(np.float64)) for e, t in zip(group, tables, strict=True)}
            for label, scores in extra.items():
                s = tables[0][KEYS].merge(scores, on=KEYS, how="left")["score"].to_numpy(np.float64)
                if np.isfinite(s).all():
                    preds[BASELINE_PREFIX + label] = (y_true, s)
            spread = {e.name: _seed_spread(e, part, cell, t, metrics) for e, t in zip(group, tables, strict=True)}
            for row in _score_group(part, cell, preds, metrics, reference, n_boot, rng):
                row["seed_mean"], row["seed_sd"], row["n_seeds"] = spread.get(row["entry"], {}).get(row["metric"], (None,) * 3)
                rows.append(row)
    board = pd.DataFrame(rows)
    board["n_seeds"] = board["n_seeds"].astype("Int64")
    return board


def _seed_spread(entry: Entry, part: str, cell: str, table: pd.DataFrame,
                 metrics: list[str]) -> dict[str, tuple[float, float | None, int]]:
    """Per metric, (mean, sd, K) of the entry's seeds' metrics on the rows of ``table`` (the genes
    the leaderboard scores); empty for an entry without per-seed predictions of these rows."""
    if entry.seeds is None:
        return {}
    mine = entry.seeds[(entry.seeds["part"] == part) & (entry.seeds["cell_line"] == cell)]
    by_seed = mine.drop_duplicates(["gene_id", "seed"]).pivot(index="gene_id", columns="seed", values="y_pred")
    by_seed = by_seed.reindex(table["gene_id"].to_numpy())
    if by_seed.shape[1] < 2 or by_seed.isna().to_numpy().any():
        return {}
    y = table["y_true"].to_numpy(np.float64)
    ones = np.ones((1, len(y)))
    out = {}
    for m in metrics:
        values = [METRIC_FNS[m](y, by_seed[s].to_numpy(np.float64), ones)[0] for s in by_seed.columns]
        stats = mean_sd(values)
        out[m] = (stats["mean"], stats["sd"], len(values))
    return out


def _baselines(entries: list[Entry]) -> dict[str, pd.DataFrame]:
    """TSS-signal scores from every dataset the entries name (a prediction's dataset may be another)."""
    datasets = dict.fromkeys(d for e in entries if (d := dataset_of(e)) is not None and (d / "dataset.json").is_file())
    merged: dict[str, list[pd.DataFrame]] = {}
    for dataset in datasets:
        for assay, scores in baseline_scores(dataset).items():
            merged.setdefault(assay, []).append(scores)
    return {a: pd.concat(parts, ignore_index=True).drop_duplicates(KEYS) for a, parts in merged.items()}


def _aligned(group: list[Entry], part: str, cell: str, intersect: bool) -> list[pd.DataFrame]:
    tables = [e.parts[part][e.parts[part]["cell_line"] == cell].drop_duplicates(KEYS) for e in group]
    keys = [set(t["gene_id"]) for t in tables]
    common = set.intersection(*keys)
    for e, k in zip(group, keys, strict=True):
        if k != common and not intersect:
            other = next(g for g, kk in zip(group, keys, strict=True) if kk != k)
            only = sorted(k - common) or sorted(set.union(*keys) - k)
            raise EpxError(f"{e.name} and {other.name} score different genes in {part} {cell} "
                           f"({len(k):,} vs {len(keys[group.index(other)]):,}; e.g. {only[0]}); "
                           f"pass --intersect to compare on the {len(common):,} genes they share")
    if not common:
        raise EpxError(f"the entries share no {part} gene in {cell}")
    order = sorted(common)
    return [t.set_index("gene_id").loc[order].reset_index() for t in tables]


def _score_group(part: str, cell: str, preds: dict[str, tuple[np.ndarray, np.ndarray]], metrics: list[str],
                 reference: str | None, n_boot: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    n = len(next(iter(preds.values()))[0])
    boots: dict[str, dict[str, np.ndarray]] = {name: {m: np.empty(n_boot) for m in metrics} for name in preds}
    points = {name: {m: float(METRIC_FNS[m](y, p, np.ones((1, n)))[0]) for m in metrics} for name, (y, p) in preds.items()}
    chunk = max(1, min(n_boot, 20_000_000 // max(n, 1)))
    for start in range(0, n_boot, chunk):
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - start)).astype(np.float64)
        for name, (y, p) in preds.items():
            for m in metrics:
                boots[name][m][start:start + len(W)] = METRIC_FNS[m](y, p, W)
    models = [name for name in preds if not name.startswith(BASELINE_PREFIX)]
    ref = reference if reference in preds else max(models or list(preds), key=lambda k: _nan_low(points[k][PRIMARY]))
    rows = []
    for name in sorted(preds, key=lambda k: -_nan_low(points[k][PRIMARY])):  # a leaderboard: best first
        for m in metrics:
            lo, hi = _interval(boots[name][m])
            row = {"part": part, "cell_line": cell, "entry": name, "n": n, "metric": m, "value": points[name][m],
                   "ci_low": lo, "ci_high": hi, "reference": ref,
                   "diff": points[name][m] - points[ref][m], "diff_low": None, "diff_high": None}
            if name != ref:
                row["diff_low"], row["diff_high"] = _interval(boots[name][m] - boots[ref][m])
            rows.append(row)
    return rows


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if values.size < 10:
        return None, None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _nan_low(v: float) -> float:
    return -np.inf if v != v else v


# -- rendering -----------------------------------------------------------------------------------


def best_baseline_only(board: pd.DataFrame) -> pd.DataFrame:
    """Per (rows, cell line), keep the strongest TSS baseline: the one a model has to beat."""
    base = board["entry"].str.startswith(BASELINE_PREFIX)
    primary = board[base & (board["metric"] == PRIMARY)]
    if primary.empty:
        return board
    best = primary.loc[primary.groupby(["part", "cell_line"], sort=False)["value"].idxmax()]
    chosen = set(zip(best["part"], best["cell_line"], best["entry"], strict=True))
    keys = zip(board["part"], board["cell_line"], board["entry"], strict=True)
    return board[~base.to_numpy() | [k in chosen for k in keys]]


def wide(board: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Human layout: one row per (part, cell line, entry); 'value [lo, hi]' and 'diff [lo, hi]'."""
    metrics = list(dict.fromkeys(board["metric"]))
    header = ["rows", "cell line", "entry", "n"]
    for m in metrics:
        header += [f"{m} [95% CI]", "vs ref [95% CI]"]
    seeded = "seed_mean" in board.columns and board["seed_mean"].notna().any()
    if seeded:  # the spread of the primary metric across a seeded run's seeds
        header.append(f"{PRIMARY} across seeds")
    out = []
    for (part, cell, entry), g in board.groupby(["part", "cell_line", "entry"], sort=False):
        g = g.set_index("metric")
        ref = g["reference"].iloc[0]
        row = [part, cell, entry + (" (ref)" if entry == ref else ""), f"{int(g['n'].iloc[0]):,}"]
        for m in metrics:
            r = g.loc[m]
            row.append(_fmt_ci(r["value"], r["ci_low"], r["ci_high"]))
            row.append("-" if entry == ref else _fmt_ci(r["diff"], r["diff_low"], r["diff_high"], signed=True))
        if seeded:
            r = g.loc[PRIMARY]
            row.append("" if pd.isna(r["seed_mean"]) else
                       f"{r['seed_mean']:.3f} +- {r['seed_sd']:.3f} ({int(r['n_seeds'])} seeds)")
        out.append(row)
    return header, out


def _fmt_ci(v: Any, lo: Any, hi: Any, signed: bool = False) -> str:
    if v is None or v != v:
        return "nan"
    f = "{:+.3f}" if signed else "{:.3f}"
    text = f.format(v)
    if lo is not None and hi is not None and lo == lo and hi == hi:
        text += f" [{f.format(lo)}, {f.format(hi)}]"
    return text


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plot(board: pd.DataFrame, path: Path, title: str) -> None:
    """Intervals per entry of the primary metric, one panel per (rows, cell line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from epx.outputs import save_figure

    metric = PRIMARY if (board["metric"] == PRIMARY).any() else board["metric"].iloc[0]  # cohort boards
    data = board[board["metric"] == metric]
    groups = list(data.groupby(["part", "cell_line"], sort=False))
    n_entries = data["entry"].nunique()
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 0.35 * n_entries * len(groups) + 1.2 * len(groups)), squeeze=False)
    for ax, ((part, cell), g) in zip(axes[:, 0], groups, strict=True):
        g = g.iloc[::-1]
        y = np.arange(len(g))
        lo = (g["value"] - g["ci_low"].astype(float)).clip(lower=0).fillna(0)
        hi = (g["ci_high"].astype(float) - g["value"]).clip(lower=0).fillna(0)
        base = g["entry"].str.startswith(BASELINE_PREFIX).to_numpy()
        for mask, color in ((base, "#999999"), (~base, "#3b7dd8")):
            if mask.any():
                ax.errorbar(g["value"][mask], y[mask], xerr=[lo[mask], hi[mask]], fmt="o", color=color, capsize=3)
        ax.set_yticks(y, g["entry"])
        ax.set_title(f"{part} rows, {cell}", fontsize=10)
        ax.set_xlabel(f"{metric} (95% bootstrap CI over genes)")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
