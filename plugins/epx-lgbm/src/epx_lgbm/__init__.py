"""epx-lgbm: LightGBM for epx, reproducing the ML4G two-stage model.

Stage 1 is a binary classifier of "expressed" (expression > 0); stage 2 a regressor of the task's
target (the normalised rank for ``rank``); the prediction is stage 2 x 1[P(expressed) >= threshold].

This module is what the ``epx.models`` entry point loads: it imports only ``epx.models`` (no numpy,
no lightgbm), because ``epx models`` and shell completion import every plugin's spec.
"""

from epx.models import ModelSpec

spec = ModelSpec(
    name="lgbm",
    description="LightGBM; the ML4G two-stage model (nonzero classifier x regressor, probability mask).",
    input_kind="tabular",
    tasks=("rank", "regression", "binary"),
    model="epx_lgbm.model:LGBMModel",
    params={
        "two_stage": True,
        "mask": True,
        "threshold": 0.4,
        "n_estimators": 2000,
        "learning_rate": 0.05,
        "num_leaves": 31,
        "max_depth": -1,
        "min_child_samples": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "early_stopping_rounds": 100,
        "rounds_without_valid": 300,
        "max_bin": 63,
        "n_jobs": 0,
    },
    param_help={
        "two_stage": "rank/regression: stage 1 classifies expression > 0, stage 2 regresses the target (binary is always one stage)",
        "mask": "two-stage: set predictions to 0 where P(expressed) < threshold; false keeps the unmasked stage-2 prediction",
        "threshold": "two-stage mask threshold on P(expressed) in [0, 1] (0 = no masking; the ML4G stack used 0.4)",
        "n_estimators": "maximum boosting rounds per stage (early stopping on the validation side picks fewer)",
        "learning_rate": "shrinkage per boosting round",
        "num_leaves": "maximum leaves per tree",
        "max_depth": "maximum tree depth (-1 = unlimited)",
        "min_child_samples": "minimum rows in a leaf (LightGBM min_data_in_leaf)",
        "feature_fraction": "fraction of features sampled per tree",
        "bagging_fraction": "fraction of rows sampled per bagging round",
        "bagging_freq": "bag every k rounds (0 = no bagging)",
        "lambda_l2": "L2 penalty on leaf values",
        "early_stopping_rounds": "stop a stage when its validation loss has not improved for this many rounds (0 = off)",
        "rounds_without_valid": "boosting rounds per stage when no validation side is given (capped by n_estimators)",
        "max_bin": "histogram bins per feature (LightGBM's default is 255; 63 makes split finding ~3x faster on wide feature tables)",
        "n_jobs": "LightGBM threads (0 = all cores, or one below 10,000 training rows); fits are deterministic per thread count",
    },
    # "(" / ")" exclude an end, "[" / "]" include it; "inf" leaves it unbounded.
    param_bounds={
        "threshold": "[0, 1]",
        "n_estimators": "[1, inf)",
        "learning_rate": "(0, inf)",
        "num_leaves": "[2, inf)",
        "max_depth": "[-1, inf)",
        "min_child_samples": "[1, inf)",
        "feature_fraction": "(0, 1]",
        "bagging_fraction": "(0, 1]",
        "bagging_freq": "[0, inf)",
        "lambda_l2": "[0, inf)",
        "early_stopping_rounds": "[0, inf)",
        "rounds_without_valid": "[1, inf)",
        "max_bin": "[2, inf)",
        "n_jobs": "[0, inf)",
    },
)

__all__ = ["spec"]
