"""epx-example: the ridge baseline, written exactly as a third-party epx plugin would be, and
``kmer-ridge``, its smallest ``sequence`` model (k-mer frequencies around the TSS, then ridge).

This module is what the ``epx.models`` entry points load: it must stay light (no numpy import),
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

kmer_spec = ModelSpec(
    name="kmer-ridge",
    description="Ridge (logistic for binary targets) on k-mer frequencies of the reference around the TSS.",
    input_kind="sequence",
    tasks=("regression", "binary"),
    model="epx_example.kmer:KmerRidgeModel",
    params={"k": 3, "span": 1000, "canonical": False, "alpha": 1.0, "fit_intercept": True, "max_iter": 50,
            "batch_rows": 512},
    param_help={
        "k": "k-mer length (4**k features)",
        "span": "central bp of each window counted (the whole window when it is shorter)",
        "canonical": "count a k-mer and its reverse complement as one (strand-free features)",
        "alpha": "L2 penalty on the standardised coefficients",
        "fit_intercept": "learn an unpenalised intercept",
        "max_iter": "Newton steps for the logistic (binary) fit",
        "batch_rows": "windows built from the FASTA at a time",
    },
    param_bounds={"k": (1, 8), "span": (1, None), "alpha": "(0, inf)", "max_iter": (1, None), "batch_rows": (1, None)},
)
