"""epx-enformer: Enformer (enformer-pytorch) as an epx sequence predictor and a ``train`` backend.

* ``epx.predictors`` entry point ``enformer`` -> :func:`load_predictor` (options ``weights``,
  ``tracks``, ``center_bins``, ``device``, ``batch_size``, ``targets``).
* ``epx.models`` entry point ``enformer`` -> :data:`spec`: a ridge (or MLP) head on the frozen
  Enformer outputs at each gene's TSS, for the ``sequence`` input kind.

This module is what both entry points import, so it imports neither torch nor enformer_pytorch
(``epx models`` and shell completion import every plugin's spec).
"""

from __future__ import annotations

from typing import Any

from epx.models import ModelSpec

spec = ModelSpec(
    name="enformer",
    description="A ridge (or MLP) head on frozen Enformer outputs (CAGE tracks summed over the bins at the TSS).",
    input_kind="sequence",
    tasks=("regression", "binary"),
    model="epx_enformer.model:EnformerHead",
    params={
        "weights": "",
        "targets": "",
        "tracks": "",
        "center_bins": 3,
        "batch_size": 2,
        "device": "auto",
        "head": "ridge",
        "alpha": 1.0,
        "log1p": True,
        "per_cell_line": True,
        "min_rows": 20,
        "hidden": 64,
        "epochs": 300,
        "lr": 0.01,
        "cache": "",
    },
    param_help={
        "weights": "Enformer weights: a from_pretrained directory or an epx-enformer .pt checkpoint "
                   "(empty: $EPX_ENFORMER_WEIGHTS, then ~/.cache/epx/enformer)",
        "targets": "basenji targets_human.txt naming the tracks (empty: targets.txt or targets_human.txt beside the weights)",
        "tracks": "track indices or names separated by ';' (or integers by ','), or 'all'; empty: the CAGE tracks "
                  "when a targets file names them, else all",
        "center_bins": "sum each track over this many 128 bp output bins around the TSS",
        "batch_size": "windows per Enformer forward pass",
        "cache": "prediction cache shared with epx personalize (empty: ~/.cache/epx/personalize.sqlite; 'none': memory only)",
        "device": "auto (cuda when present), cpu, cuda or cuda:N (an error without a GPU)",
        "head": "ridge (closed form; L2 logistic for binary) or mlp (one hidden layer)",
        "alpha": "L2 penalty of the ridge/logistic head on standardised features (mlp: weight decay alpha x 1e-3)",
        "log1p": "use log(1 + output) of each track as the feature",
        "per_cell_line": "also fit a head per training cell line (a gene's features are the same in every line)",
        "min_rows": "per_cell_line: fit a cell line's own head only with at least this many rows",
        "hidden": "mlp: hidden units",
        "epochs": "mlp: full-batch Adam steps",
        "lr": "mlp: Adam learning rate",
    },
    param_bounds={"center_bins": "[1, inf)", "batch_size": "[1, inf)", "alpha": "[0, inf)", "min_rows": "[1, inf)",
                  "hidden": "[1, inf)", "epochs": "[1, inf)", "lr": "(0, inf)"},
    param_choices={"head": ("ridge", "mlp")},
)


def load_predictor(options: dict[str, Any] | None = None) -> Any:
    """The ``epx.predictors`` factory (imports torch and enformer-pytorch when called)."""
    from epx_enformer.predictor import load_predictor as _load

    return _load(options)


__all__ = ["load_predictor", "spec"]
