"""The model contract every backend implements: what a plugin receives and must provide.

The core owns CV loops, normalisation, targets, metrics and files; a plugin only turns a
:class:`FoldData` into a fitted model and predictions. This module stays import-light (no numpy
at import time) so plugin specs can import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

INPUT_KINDS = {
    "tabular": "a feature matrix X of shape (rows, features)",
    "binned": "binned tracks X of shape (rows, assays, bins), strand-oriented around the TSS",
    "sequence": "one-hot DNA X of shape (rows, length, 4) centred on the TSS",
}
TASKS = {
    "regression": "predict a continuous target (raw, log1p)",
    "binary": "predict P(y = 1) for a 0/1 target (nonzero, binary)",
    "rank": "predict a normalised rank in [0, 1]",
}


@dataclass
class FoldData:
    """The rows of one fold side (train, valid or test) in the model's input kind.

    ``rows`` has one row per example with at least ``gene_id`` and ``cell_line``; ``y`` is None
    when predicting. ``feature_names`` names the columns (tabular) or assays (binned).
    ``targets`` holds every derived target of the rows (``raw``, ``log1p``, ``rank``,
    ``nonzero``, ``binary``) for multi-stage models, such as a nonzero classifier followed by a
    rank regressor; it is empty when predicting.

    Binned models also get ``bins``: every bin geometry the model asked for (its spec's
    ``geometries``, or ``epx train --bins``), name (``"2000x20"``) -> lazy (rows, assays, bins)
    view, in that order; ``X`` is the first. A spec with ``regions=True`` gets ``regions``: the
    distal regions (pCREs) of each row from ``epx featurize --pairs``, a lazy view whose
    ``view[idx]`` is a dict of arrays (see :class:`epx.dataset.RegionRows`), or None when the
    dataset has none.
    """

    X: np.ndarray
    y: np.ndarray | None
    rows: pd.DataFrame
    feature_names: list[str] = field(default_factory=list)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    bins: dict[str, Any] = field(default_factory=dict)
    regions: Any = None

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def subset(self, idx: Any) -> FoldData:
        """The rows ``idx`` of every input (X, bins, regions, y, targets, rows); nothing is read."""

        def take(obj: Any) -> Any:
            if obj is None:
                return None
            if hasattr(obj, "take") and type(obj).__module__ != "numpy":
                return obj.take(idx)
            return obj[idx]

        return FoldData(X=take(self.X), y=None if self.y is None else self.y[idx],
                        rows=self.rows.iloc[idx].reset_index(drop=True), feature_names=list(self.feature_names),
                        targets={k: v[idx] for k, v in self.targets.items()},
                        bins={k: take(v) for k, v in self.bins.items()}, regions=take(self.regions))


# Optional model methods the core uses when present (documented in docs/plugins.md; a meta-test
# checks that each is documented and exercised).
OPTIONAL_HOOKS = {
    "predict_proba": "class probability per row (P(expressed) of a two-stage model); written as `proba`",
    "predict_score": "prediction before any mask or threshold; written as `y_score`, used by `epx stack --rule seed`",
    "importance": "{feature: gain} per fold; written to importance.tsv",
    "contributions": "(rows, features + 1) SHAP-like contributions, last column the bias; written to shap.parquet",
    "attention": "{name: array} attention weights per row (bin: rows x assays x bins, mark: rows x assays, "
                 "position: rows x bins); written by `epx explain` to attention.parquet and heat maps",
    "saliency": "(rows, assays, bins) input x gradient attribution; used by `epx explain` for a model without "
                "attention, or without mark-level attention",
}


@runtime_checkable
class Model(Protocol):
    """What a backend's model class implements.

    ``__init__(params, task, seed)`` receives the resolved hyper-parameters (defaults merged with
    ``--param`` and config overrides), the task and a seed. ``fit`` trains on one fold, with an
    optional validation side for early stopping. ``predict`` returns one float per row
    (for ``binary`` the probability of class 1). ``save``/``load`` round-trip to a directory the
    core owns.

    Optional: ``predict_proba(data)`` returns a class probability per row (for instance
    P(expressed) of a two-stage model); the core writes it next to the predictions.
    Optional: ``predict_score(data)`` returns the prediction before any thresholding or masking
    (a two-stage model's rank), used by ``epx stack --rule seed``.
    Optional: ``importance() -> {feature: gain}`` and ``contributions(data)`` (rows, features + 1;
    SHAP-like, the last column the bias) are written to the run directory for ``epx explain``.
    Optional (binned models): ``attention(data) -> {name: array}`` (``bin``: rows x assays x bins,
    ``mark``: rows x assays, ``position``: rows x bins) and ``saliency(data)`` (rows x assays x
    bins, input x gradient), which ``epx explain`` asks the saved fold models for.
    Optional: ``training_processes() -> (rank, size)`` when one model trains across several
    processes (data-parallel on several GPUs or nodes); see :func:`training_processes`.
    """

    def __init__(self, params: dict[str, Any], task: str, seed: int = 0) -> None: ...

    def fit(self, train: FoldData, valid: FoldData | None = None) -> None: ...

    def predict(self, data: FoldData) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Model: ...


def training_processes(model: Any) -> tuple[int, int]:
    """``(rank, size)`` of this process among those that train one model together: ``(0, 1)``
    for a model without the ``training_processes`` hook, the usual case.

    Why the core asks: a data-parallel trainer (Lightning DDP) runs the same ``epx train`` in every
    process (it re-runs the command line once per device, or srun starts one per task). Every
    process must call ``fit`` for the same folds and seeds in the same order, but only rank 0 may
    lock, check and write the output; the others train and exit quietly."""
    hook = getattr(model, "training_processes", None)
    if hook is None:
        return 0, 1
    rank, size = hook()
    return int(rank), int(size)
