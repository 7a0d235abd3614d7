"""kmer-ridge, the example sequence model, runs epx's conformance check on a lazy one-hot view."""

import numpy as np
from epx_example import kmer_spec
from epx_example.kmer import kmer_frequencies

from epx.models.testing import check_model


def test_kmer_ridge_conforms(tmp_path):
    check_model(kmer_spec, tmp_path)  # the spec itself: conforms whether or not the entry point is installed


def test_kmer_frequencies_skip_n_and_collapse_strands():
    eye = np.eye(4, dtype=np.float32)
    x = np.stack([eye[[0, 0, 1, 2]], np.concatenate([eye[[0, 0]], np.zeros((1, 4)), eye[[3]]])])  # AACG, AANT
    f = kmer_frequencies(x, 2)
    assert f.shape == (2, 16)
    np.testing.assert_allclose(f[0, [0, 1, 6]], 1 / 3)  # AA, AC, CG
    np.testing.assert_allclose(f[1, 0], 1.0)  # AN and NT are skipped
    c = kmer_frequencies(eye[[3, 3]][None], 2, canonical=True)  # TT counts as its reverse complement AA
    assert c[0, 0] == 1.0
