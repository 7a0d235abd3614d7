"""epx.ranks, the numpy average-ties rank that replaced scipy.stats.rankdata, and the metrics on it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from epx.io.labels import derive_target
from epx.metrics import auroc, spearman
from epx.ranks import rankdata


@pytest.mark.parametrize(("values", "ranks"), [
    ([], []),
    ([7.0], [1.0]),
    ([3.0, 1.0, 2.0], [3.0, 1.0, 2.0]),
    ([0.0, 0.0, 5.0, 10.0, 2.0], [1.5, 1.5, 4.0, 5.0, 3.0]),  # a tie at the bottom: the zero-expression block
    ([2.0, 2.0, 2.0], [2.0, 2.0, 2.0]),
    ([1.0, 3.0, 3.0, 3.0, 0.5, 9.0, 9.0], [2.0, 4.0, 4.0, 4.0, 1.0, 6.5, 6.5]),
    ([-np.inf, 0.0, -0.0, np.inf], [1.0, 2.5, 2.5, 4.0]),  # -0.0 ties 0.0, infinities rank at the ends
    ([np.nan, 2.0, 1.0, np.nan, 2.0], [np.nan, 2.5, 1.0, np.nan, 2.5]),  # NaN stays NaN, the rest rank among themselves
    ([np.nan, np.nan], [np.nan, np.nan]),
])
def test_rankdata_known_values(values, ranks):
    np.testing.assert_array_equal(rankdata(np.array(values)), np.array(ranks))


def test_rankdata_matches_average_ties_definition():
    """Every value's rank is (#smaller) + (#equal + 1) / 2, checked on data with many ties."""
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32, np.int64):
        v = rng.integers(0, 20, size=500).astype(dtype)
        smaller = (v[None, :] < v[:, None]).sum(axis=1)
        equal = (v[None, :] == v[:, None]).sum(axis=1)
        np.testing.assert_array_equal(rankdata(v), smaller + (equal + 1) / 2.0)
    assert rankdata(np.arange(6).reshape(2, 3)).shape == (6,)  # flattened, as scipy with axis=None


def test_rank_target_ignores_nan():
    v = np.array([0.0, np.nan, 0.0, 5.0, 10.0, 2.0])
    np.testing.assert_allclose(derive_target(v, "rank"), [0.125, np.nan, 0.125, 0.75, 1.0, 0.5])
    np.testing.assert_array_equal(derive_target(np.array([3.0]), "rank"), [0.0])
    np.testing.assert_array_equal(derive_target(np.array([np.nan, 3.0]), "rank"), [np.nan, 0.0])


def test_rank_metrics_on_ties():
    t = np.array([0.0, 0.0, 1.0, 2.0, 3.0, np.nan])
    p = np.array([0.1, 0.1, 0.1, 0.5, 0.4, 0.9])  # the NaN truth row is ignored
    # ranks t: 1.5 1.5 3 4 5; p: 2 2 2 5 4 -> Pearson of the ranks
    rt, rp = np.array([1.5, 1.5, 3, 4, 5]), np.array([2.0, 2, 2, 5, 4])
    assert spearman(t, p) == pytest.approx(np.corrcoef(rt, rp)[0, 1])
    # AUROC with a tied score across the classes counts the tie as one half
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.5, 0.5, 0.9])) == pytest.approx(0.875)


def test_metrics_do_not_import_scipy():
    code = ("import sys, numpy as np\nfrom epx.metrics import evaluate\nfrom epx.io.labels import derive_target\n"
            "evaluate(np.arange(9.0), np.arange(9.0) % 4, False)\nevaluate(np.arange(9.0) % 2, np.arange(9.0), True)\n"
            "derive_target(np.arange(9.0), 'rank')\nprint('scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
