"""Feature names, derived feature families and normalisation for tabular features.

Base features come from the engines as ``{assay}.bw.{window}.{stat}`` (bigWig, signal-centric)
and ``{assay}.bed.{window}.{stat}`` / ``{assay}.bed.tss.distance`` (BED, peak-centric). Derived
families are computed here from the raw base features, per row, so a missing assay only makes
the features that need it NaN.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

BW_STAT_HELP = {
    "mean": "mean signal over covered bases (NaN without data)",
    "mean0": "mean signal with bases without data counted as 0",
    "std": "sample standard deviation of the signal over covered bases",
    "min": "minimum signal over covered bases",
    "max": "maximum signal over covered bases",
    "sum": "summed signal over covered bases",
    "coverage": "fraction of bases with data",
    "slope": "least-squares slope of signal vs position, positive = rising along transcription",
}
BED_STAT_HELP = {
    "n_peaks": "number of peaks overlapping",
    "coverage": "fraction of bases covered by peaks",
    "density": "peaks per kb",
    "entropy": "Shannon entropy (bits) of peak midpoints over 10 sub-bins",
    "max_signal": "largest signal value of the overlapping peaks (narrowPeak, broadPeak, gappedPeak, bedGraph only)",
}
WINDOW_HELP = {
    "tss": "TSS window",
    "promoter": "promoter (TSS +- promoter)",
    "body": "gene body",
    "upstream": "upstream flank (before the promoter)",
    "downstream": "downstream flank (after the gene's 3' end)",
}
ACTIVATING = {"H3K27AC", "H3K4ME3", "H3K4ME1", "H3K4ME2", "H3K9AC", "DNASE", "ATAC", "H2AZ"}
REPRESSIVE = {"H3K27ME3", "H3K9ME3"}
PSEUDO = 1.0  # pseudo-count for ratios


def assay_key(name: str) -> str:
    """Normalise assay spellings: ``H3K27Ac``, ``h3k27ac`` -> ``H3K27AC``; ``DNase-seq`` -> ``DNASE``."""
    key = re.sub(r"[^A-Za-z0-9]", "", name).upper()
    return re.sub(r"(SEQ)$", "", key) if key.startswith(("DNASE", "ATAC")) else key


def profile_entropy(bins: np.ndarray) -> np.ndarray:
    """Normalised Shannon entropy in [0, 1] of each row's non-negative profile (NaN if all 0)."""
    x = np.clip(np.asarray(bins, dtype=np.float64), 0, None)
    total = x.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / total
        h = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
    out = h / np.log2(max(x.shape[1], 2))
    return np.where(total[:, 0] > 0, out, np.nan)


def _col(raw: pd.DataFrame, name: str) -> np.ndarray:
    return raw[name].to_numpy(dtype=np.float64) if name in raw.columns else np.full(len(raw), np.nan)


# The base features (after the assay) the derived families read; every other column passes through.
DERIVED_INPUTS = ("bw.tss.mean0", "bw.body.mean0", "bw.promoter.mean0", "bw.bins.entropy",
                  "bed.promoter.density", "bed.promoter.entropy")


def derive_features(raw: pd.DataFrame, genes: pd.DataFrame, assays: list[str]) -> pd.DataFrame:
    """Add the derived families to a per-(gene, cell line) table of raw base features."""
    return pd.concat([raw.reset_index(drop=True), pd.DataFrame(derived_columns(raw, genes, assays))], axis=1)


def derived_columns(raw: pd.DataFrame, genes: pd.DataFrame, assays: list[str],
                    n_rows: int | None = None) -> dict[str, np.ndarray]:
    """The derived families of a table of raw base features, in dataset order. Every value is
    computed within its row; ``raw`` needs only the :data:`DERIVED_INPUTS` columns the full table
    has (a column's presence decides which families exist). ``n_rows``: rows when ``raw`` has no
    columns (one cell line's genes)."""
    new: dict[str, np.ndarray] = {}
    n_rows = len(raw) if n_rows is None else n_rows
    if len(raw.columns) == 0:
        raw = pd.DataFrame(index=range(n_rows))
    # Derived families use mean0 (no data = no signal), so sparse tracks do not turn them NaN.
    bw_assays = [a for a in assays if f"{a}.bw.tss.mean0" in raw.columns]
    keys = {assay_key(a): a for a in bw_assays}
    tss = {a: _col(raw, f"{a}.bw.tss.mean0") for a in bw_assays}
    body = {a: _col(raw, f"{a}.bw.body.mean0") for a in bw_assays}
    prom = {a: _col(raw, f"{a}.bw.promoter.mean0") for a in bw_assays}
    for a in bw_assays:
        new[f"{a}.tss_minus_body"] = tss[a] - body[a]
        new[f"{a}.tss_plus_body"] = tss[a] + body[a]
        new[f"{a}.tss_body_ratio"] = (tss[a] + PSEUDO) / (body[a] + PSEUDO)
        with np.errstate(invalid="ignore", divide="ignore"):  # signed tracks: NaN, not a warning
            new[f"{a}.tss_body_log_ratio"] = np.log2((tss[a] + PSEUDO) / (body[a] + PSEUDO))
    for act, rep in (("H3K27AC", "H3K27ME3"), ("H3K4ME3", "H3K9ME3")):
        if act in keys and rep in keys:
            new[f"balance.{keys[act]}_minus_{keys[rep]}"] = tss[keys[act]] - tss[keys[rep]]
    act = [tss[a] for k, a in keys.items() if k in ACTIVATING]
    rep = [tss[a] for k, a in keys.items() if k in REPRESSIVE]
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        if act:
            new["index.activation"] = np.nanmean(np.vstack(act), axis=0)
        if rep:
            new["index.repression"] = np.nanmean(np.vstack(rep), axis=0)
        if act and rep:
            new["index.activation_minus_repression"] = new["index.activation"] - new["index.repression"]
        if len(bw_assays) >= 2:
            pm = np.log1p(np.clip(np.vstack([prom[a] for a in bw_assays]).T, 0, None))
            bm = np.log1p(np.clip(np.vstack([body[a] for a in bw_assays]).T, 0, None))
            new["promoter.std_across_marks"] = np.nanstd(pm, axis=1)
            new["promoter.entropy_across_marks"] = profile_entropy(np.nan_to_num(np.expm1(pm)))
            new["promoter.coherence_with_body"] = _rowwise_pearson(pm, bm)
        if "H3K4ME3" in keys and "H3K27ME3" in keys:
            new["bivalency.H3K4me3_x_H3K27me3"] = prom[keys["H3K4ME3"]] * prom[keys["H3K27ME3"]]
        for a in assays:
            if f"{a}.bw.promoter.mean0" in raw.columns and f"{a}.bed.promoter.density" in raw.columns:
                sig = _col(raw, f"{a}.bw.promoter.mean0")
                dens = _col(raw, f"{a}.bed.promoter.density")
                new[f"{a}.x.signal_per_peak_density"] = sig / (dens + PSEUDO)
                new[f"{a}.x.signal_x_peak_density"] = sig * dens
                if f"{a}.bw.bins.entropy" in raw.columns:
                    bed_entropy = _col(raw, f"{a}.bed.promoter.entropy") / np.log2(10)
                    new[f"{a}.x.entropy_diff"] = _col(raw, f"{a}.bw.bins.entropy") - bed_entropy

    geo = _geometry(genes)
    reps = n_rows // len(genes)
    for name, values in geo.items():
        new[name] = np.tile(values, reps)
    return new


class _quiet:
    """Silence numpy's all-NaN slice warnings (missing assays are expected)."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    am = a - np.nanmean(a, axis=1, keepdims=True)
    bm = b - np.nanmean(b, axis=1, keepdims=True)
    num = np.nansum(am * bm, axis=1)
    den = np.sqrt(np.nansum(am * am, axis=1) * np.nansum(bm * bm, axis=1))
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _geometry(genes: pd.DataFrame) -> dict[str, np.ndarray]:
    """TSS position relative to the gene, strand-aware (5' = start on +, end on -)."""
    start = genes["start"].to_numpy(np.float64)
    end = genes["end"].to_numpy(np.float64)
    tss = genes["tss"].to_numpy(np.float64)
    plus = (genes["strand"] == "+").to_numpy()
    length = np.maximum(end - start, 1.0)
    to5 = np.where(plus, tss - start, (end - 1) - tss)
    to3 = np.where(plus, (end - 1) - tss, tss - start)
    return {
        "gene.length": length,
        "gene.log10_length": np.log10(length),
        "tss.to_5prime": to5,
        "tss.to_3prime": to3,
        "tss.to_5prime_rel": to5 / length,
        "tss.to_3prime_rel": to3 / length,
        "strand.plus": plus.astype(np.float64),
        "strand.minus": (~plus).astype(np.float64),
    }


UNSCALED = ("strand.plus", "strand.minus")


def _is_signed(name: str) -> bool:
    return (
        name.endswith((".slope", ".distance", "_minus_body", "coherence_with_body", "log_ratio", "entropy_diff",
                       "to_5prime", "to_3prime", "to_5prime_rel", "to_3prime_rel"))
        or name.startswith(("balance.", "index.activation_minus"))
    )


def normalise_features(raw: pd.DataFrame, reference: np.ndarray | None = None) -> pd.DataFrame:
    """log1p (sign-preserving for signed features), then z-score per cell line and feature.

    Per-cell-line z-scores remove the scale shifts between cell lines (batch effects) that the seed
    project found; statistics use all genes of a cell line, never labels. ``reference`` (a row
    mask) computes the statistics over those rows only: ``epx predict`` uses the genes a run's
    training data was normalised over, so a dataset with other genes is scaled the same way.
    """
    out = raw.copy()
    names = [c for c in raw.columns if c not in ("gene_id", "cell_line") and c not in UNSCALED]
    logged = log_features(raw[names].to_numpy(dtype=np.float64), names)
    cells = raw["cell_line"].to_numpy()
    for cell in pd.unique(cells):
        rows = cells == cell
        block = logged[rows]
        mean, sd = zscore_stats(block if reference is None else logged[rows & reference])
        logged[rows] = (block - mean) / sd
    out[names] = logged.astype(np.float32)
    return out


def log_features(values: np.ndarray, names: list[str]) -> np.ndarray:
    """log1p of a (rows, features) array, sign-preserving for signed features."""
    signed = np.array([_is_signed(n) for n in names])
    return np.where(signed, np.sign(values) * np.log1p(np.abs(values)), np.log1p(np.clip(values, 0, None)))


def zscore_stats(logged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and sd (1 where 0 or undefined) of a (rows, features) array, NaN ignored."""
    with _quiet():
        mean = np.nanmean(logged, axis=0)
        sd = np.nanstd(logged, axis=0)
    return mean, np.where((sd > 0) & np.isfinite(sd), sd, 1.0)


def feature_catalogue(bw_assays: list[str], bed_assays: list[str], params) -> list[tuple[str, str]]:
    """Every base and derived feature name with a one-line description, in dataset order."""
    out: list[tuple[str, str]] = []
    windows = ("tss", "promoter", "body", "upstream", "downstream")
    tss_desc = (f"one-sided {params.tss_window} bp downstream of the TSS" if params.tss_mode == "one-sided"
                else f"{params.tss_window} bp centred on the TSS")
    wdesc = {**WINDOW_HELP, "tss": f"TSS window ({tss_desc})", "promoter": f"promoter (TSS +- {params.promoter} bp)",
             "upstream": f"{params.flank} bp upstream of the promoter", "downstream": f"{params.flank} bp past the gene's 3' end"}
    for a in dict.fromkeys([*bw_assays, *bed_assays]):
        if a in bw_assays:
            for w in windows:
                for st, help_ in BW_STAT_HELP.items():
                    if st == "slope" and w not in ("tss", "body"):
                        continue
                    out.append((f"{a}.bw.{w}.{st}", f"{a} bigWig, {wdesc[w]}: {help_}"))
            if params.bins:
                out.append((f"{a}.bw.bins.entropy", f"{a} bigWig: normalised entropy of the {params.n_bins} x {params.bin_size} bp TSS profile"))
        if a in bed_assays:
            for w in windows:
                for st, help_ in BED_STAT_HELP.items():
                    out.append((f"{a}.bed.{w}.{st}", f"{a} peaks, {wdesc[w]}: {help_}"))
            out.append((f"{a}.bed.tss.distance", f"{a} peaks: signed distance TSS -> nearest peak (negative upstream, 0 inside)"))
    for a in bw_assays:
        out += [
            (f"{a}.tss_minus_body", f"{a}: TSS mean - gene-body mean"),
            (f"{a}.tss_plus_body", f"{a}: TSS mean + gene-body mean"),
            (f"{a}.tss_body_ratio", f"{a}: (TSS mean + 1) / (body mean + 1)"),
            (f"{a}.tss_body_log_ratio", f"{a}: log2 of the TSS/body ratio"),
        ]
    keys = {assay_key(a): a for a in bw_assays}
    for act, rep in (("H3K27AC", "H3K27ME3"), ("H3K4ME3", "H3K9ME3")):
        if act in keys and rep in keys:
            out.append((f"balance.{keys[act]}_minus_{keys[rep]}", f"activation - repression at the TSS: {keys[act]} - {keys[rep]}"))
    if any(k in ACTIVATING for k in keys):
        out.append(("index.activation", "mean TSS signal of the activating marks (H3K27ac, H3K4me1/2/3, H3K9ac, DNase, ATAC)"))
    if any(k in REPRESSIVE for k in keys):
        out.append(("index.repression", "mean TSS signal of the repressive marks (H3K27me3, H3K9me3)"))
    if any(k in ACTIVATING for k in keys) and any(k in REPRESSIVE for k in keys):
        out.append(("index.activation_minus_repression", "activation index - repression index"))
    if len(bw_assays) >= 2:
        out += [
            ("promoter.std_across_marks", "std of log1p promoter means across marks"),
            ("promoter.entropy_across_marks", "normalised entropy of promoter means across marks"),
            ("promoter.coherence_with_body", "Pearson correlation of promoter and body profiles across marks"),
        ]
    if "H3K4ME3" in keys and "H3K27ME3" in keys:
        out.append(("bivalency.H3K4me3_x_H3K27me3", "bivalency: promoter H3K4me3 x promoter H3K27me3"))
    for a in bw_assays:
        if a in bed_assays:
            out += [
                (f"{a}.x.signal_per_peak_density", f"{a}: promoter bigWig mean / (promoter peak density + 1)"),
                (f"{a}.x.signal_x_peak_density", f"{a}: promoter bigWig mean x promoter peak density"),
            ]
            if params.bins:
                out.append((f"{a}.x.entropy_diff", f"{a}: bigWig profile entropy - promoter peak entropy (both normalised)"))
    out += [
        ("gene.length", "gene length (bp)"),
        ("gene.log10_length", "log10 gene length"),
        ("tss.to_5prime", "distance from the TSS to the gene's 5' end (strand-aware)"),
        ("tss.to_3prime", "distance from the TSS to the gene's 3' end (strand-aware)"),
        ("tss.to_5prime_rel", "TSS to 5' end relative to gene length"),
        ("tss.to_3prime_rel", "TSS to 3' end relative to gene length"),
        ("strand.plus", "1 if the gene is on the + strand"),
        ("strand.minus", "1 if the gene is on the - strand"),
    ]
    return out
