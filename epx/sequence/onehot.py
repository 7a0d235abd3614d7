"""One-hot DNA: the encoding every sequence model in epx reads.

A, C, G, T (either case) are the four channels in that order, as Enformer, Basenji and
kipoiseq use; N and every other byte (IUPAC codes, gaps) are all zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALPHABET = b"ACGT"
_LOOKUP = np.zeros((256, 4), dtype=np.float32)
for _i, _base in enumerate(ALPHABET):
    _LOOKUP[_base, _i] = 1.0
    _LOOKUP[ord(chr(_base).lower()), _i] = 1.0


def one_hot(seq: bytes | str, dtype: type = np.float32) -> np.ndarray:
    """``(len(seq), 4)`` one-hot of one sequence."""
    data = seq.encode("ascii") if isinstance(seq, str) else seq
    codes = np.frombuffer(data, dtype=np.uint8)
    return _LOOKUP[codes].astype(dtype, copy=False)


def one_hot_batch(seqs: Sequence[bytes | str], dtype: type = np.float32) -> np.ndarray:
    """``(n, L, 4)`` one-hot of sequences of one length ``L``."""
    if not seqs:
        return np.zeros((0, 0, 4), dtype=dtype)
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise ValueError(f"sequences of different lengths {sorted(lengths)} cannot form one batch")
    data = b"".join(s.encode("ascii") if isinstance(s, str) else s for s in seqs)
    codes = np.frombuffer(data, dtype=np.uint8).reshape(len(seqs), -1)
    return _LOOKUP[codes].astype(dtype, copy=False)
