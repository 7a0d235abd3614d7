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


def one_hot_batch(seqs: Sequence[bytes | str], dtype: type = np.float32, out: np.ndarray | None = None) -> np.ndarray:
    """``(n, L, 4)`` one-hot of sequences of one length ``L``.

    ``out`` (a buffer of at least ``n * L * 4`` elements of ``dtype``) is filled and a view of it
    returned: on a fresh 3 MB array per 196 kb window the page faults cost more than the encoding,
    so batch loops keep one buffer (see :class:`OneHotBuffer`)."""
    if not seqs:
        return np.zeros((0, 0, 4), dtype=dtype)
    lengths = {len(s) for s in seqs}
    if len(lengths) != 1:
        raise ValueError(f"sequences of different lengths {sorted(lengths)} cannot form one batch")
    data = b"".join(s.encode("ascii") if isinstance(s, str) else s for s in seqs)
    codes = np.frombuffer(data, dtype=np.uint8)
    lookup = _LOOKUP if dtype == np.float32 else _LOOKUP.astype(dtype)
    if out is None:
        out = np.empty((codes.size, 4), dtype=dtype)
    target = out.reshape(-1)[: codes.size * 4].reshape(codes.size, 4)
    np.take(lookup, codes, axis=0, out=target)
    return target.reshape(len(seqs), -1, 4)


class OneHotBuffer:
    """One reusable output buffer for :func:`one_hot_batch`; each call overwrites the last batch."""

    def __init__(self, dtype: type = np.float32):
        self.dtype = dtype
        self._buffer = np.empty(0, dtype=dtype)

    def __call__(self, seqs: Sequence[bytes | str]) -> np.ndarray:
        need = sum(len(s) for s in seqs) * 4
        if self._buffer.size < need:
            self._buffer = np.empty(need, dtype=self.dtype)
        return one_hot_batch(seqs, self.dtype, out=self._buffer)
