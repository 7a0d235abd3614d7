"""``epx explain``: the features a run relied on, from its importance and SHAP files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from epx.dataset import read_parquet_file
from epx.errors import InputFileError


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
    import matplotlib

    from epx.outputs import save_figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "mean_abs_shap" if "mean_abs_shap" in table.columns else "mean_gain"
    data = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(data) + 1.2))
    ax.barh(data["feature"], data[key], color="#3b7dd8")
    ax.set_xlabel("mean |SHAP| on test rows" if key == "mean_abs_shap" else "mean gain importance")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
