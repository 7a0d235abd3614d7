"""epx-example: the ridge baseline, written exactly as a third-party epx plugin would be.

This module is what the ``epx.models`` entry point loads: it must stay light (no numpy import),
because ``epx models`` imports every plugin's spec.
"""

from epx.models.plugins import ModelSpec

spec = ModelSpec(
    name="ridge",
    description="Ridge regression (logistic for binary targets) on standardised tabular features.",
    input_kind="tabular",
    tasks=("regression", "rank", "binary"),
    model="epx_example.model:RidgeModel",
    params={"alpha": 1.0, "fit_intercept": True, "max_iter": 50},
    param_help={
        "alpha": "L2 penalty on the standardised coefficients",
        "fit_intercept": "learn an unpenalised intercept",
        "max_iter": "Newton steps for the logistic (binary) fit",
    },
    # (low, high) bounds are inclusive and None leaves an end unbounded; an interval string says
    # which ends are open: alpha = 0 (no penalty) makes the normal equations singular on
    # collinear features, so alpha must be > 0.
    param_bounds={"alpha": "(0, inf)", "max_iter": (1, None)},
)
