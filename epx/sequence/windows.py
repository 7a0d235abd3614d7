"""Reference windows around each gene's TSS: the ``sequence`` input kind, built per batch.

A dataset featurized with ``--fasta REF --sequence-window L`` records the FASTA (absolute path,
size, a content sample) and ``L``; it stores no sequence. :class:`SequenceRows` reads the windows
of the rows a model asks for from the FASTA on each call and one-hot encodes them
(:func:`epx.sequence.onehot.one_hot_batch`).

Window convention: ``[tss - L // 2, tss - L // 2 + L)`` on the forward reference strand, so the
TSS (the first transcribed base, 0-based) is at index ``L // 2`` of every window whatever ``L``'s
parity. Minus-strand genes are NOT reverse-complemented (Enformer and similar models read both
strands, and a model that wants the transcribed strand can flip ``x[:, ::-1, ::-1]`` using
``rows``' strand); bases outside the chromosome are ``N`` (all-zero rows).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from epx.errors import DatasetError

DEFAULT_WINDOW = 196_608  # Enformer's input length: the reference models' windows without resizing
FASTA_ENV = "EPX_FASTA"  # point a dataset at its FASTA's new location (same file, moved)
_SAMPLE_BLOCKS = 64
_SAMPLE_SIZE = 1 << 16


def window_starts(tss: np.ndarray, window: int) -> np.ndarray:
    """0-based window starts putting each TSS at index ``window // 2``."""
    return np.asarray(tss, dtype=np.int64) - window // 2


def fasta_fingerprint(path: str | Path) -> dict[str, Any]:
    """Absolute path, size, mtime and a BLAKE2b of 64 evenly spaced 64 KiB blocks (the whole
    file when smaller): a FASTA replaced by another assembly or edited is caught, a 3 GB genome
    fingerprinted in milliseconds. The mtime is recorded, not compared (a copy changes it)."""
    p = Path(path).resolve()
    st = p.stat()
    h = hashlib.blake2b(digest_size=16)
    h.update(str(st.st_size).encode())
    with open(p, "rb") as fh:
        if st.st_size <= _SAMPLE_BLOCKS * _SAMPLE_SIZE:
            h.update(fh.read())
        else:
            step = (st.st_size - _SAMPLE_SIZE) // (_SAMPLE_BLOCKS - 1)
            for k in range(_SAMPLE_BLOCKS):
                h.update(os.pread(fh.fileno(), _SAMPLE_SIZE, k * step))
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sample_blake2b": h.hexdigest()}


def resolve_fasta(info: dict[str, Any], dataset: str | Path) -> Path:
    """The FASTA a dataset's ``sequence`` entry names ($EPX_FASTA when set), checked to be the same
    file featurize read; otherwise one line saying what to do."""
    recorded = info["fasta"]
    override = os.environ.get(FASTA_ENV)
    path = Path(override) if override else Path(recorded)
    where = f"${FASTA_ENV} {path}" if override else f"reference FASTA {path}"
    redo = (f"re-run epx featurize --fasta REF --sequence-window {info['window']}, or set {FASTA_ENV}=PATH "
            "to the same FASTA's new location")
    if not path.is_file():
        raise DatasetError(f"{where} of this dataset is missing; {redo}", path=dataset)
    mine = fasta_fingerprint(path)
    if mine["size"] != info.get("size") or mine["sample_blake2b"] != info.get("sample_blake2b"):
        raise DatasetError(f"{where} changed since epx featurize (size {mine['size']:,} bytes, recorded "
                           f"{info.get('size', 0):,}, or different content); {redo}", path=dataset)
    return path


class SequenceRows:
    """One-hot reference windows (rows, window, 4) float32 of chosen rows, built from the FASTA per call.

    The lazy ``FoldData.X`` of ``sequence`` models: ``view[idx]`` (an int, slice or index array)
    reads those rows' windows and one-hot encodes them (A, C, G, T; N and other codes all zero);
    ``view.take(idx)`` is a view of a subset (nothing read); ``view.resize(length)`` the same rows
    with windows of another length around the same TSS (narrower or wider). ``view.sequences(idx)``
    gives the raw bytes (case preserved); ``view.strand`` each row's gene strand (the windows are
    the forward strand for every gene). ``np.asarray(view)`` builds every row: 16 bytes per
    base, so stream batches for long windows. A view pickles without its open file.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, fasta: str | Path, chrom: np.ndarray, tss: np.ndarray, window: int,
                 strand: np.ndarray | None = None, reference: Any = None) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.fasta = Path(fasta)
        self.chrom = np.asarray(chrom, dtype=object)
        self.tss = np.asarray(tss, dtype=np.int64)
        self.window = int(window)
        # each row's gene strand, for a model that wants the transcribed strand (flip x[::-1, ::-1]);
        # the windows themselves are always the forward reference strand
        self.strand = np.full(len(self.tss), "+", dtype=object) if strand is None else np.asarray(strand, dtype=object)
        self._reference = reference

    @property
    def reference(self) -> Any:
        if self._reference is None:
            from epx.io.fasta import Reference

            self._reference = Reference(self.fasta)
        return self._reference

    @property
    def start(self) -> np.ndarray:
        """0-based window starts (may be negative near a chromosome start: N-padded)."""
        return window_starts(self.tss, self.window)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.tss), self.window, 4)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return len(self.tss)

    def take(self, idx: Any) -> SequenceRows:
        """A view of rows ``idx`` (nothing is read)."""
        return SequenceRows(self.fasta, self.chrom[idx], self.tss[idx], self.window, self.strand[idx], self._reference)

    def resize(self, length: int) -> SequenceRows:
        """The same rows with ``length`` bp windows, the TSS at index ``length // 2``."""
        return SequenceRows(self.fasta, self.chrom, self.tss, int(length), self.strand, self._reference)

    def sequences(self, idx: Any = slice(None)) -> list[bytes]:
        """The windows of rows ``idx`` as bytes (forward strand, case preserved, N-padded)."""
        chrom, start = np.atleast_1d(self.chrom[idx]), np.atleast_1d(self.start[idx])
        seen: dict[tuple[str, int], bytes] = {}  # a gene's window once per batch, whatever its cell lines
        out = []
        for c, s in zip(chrom, start, strict=True):
            key = (str(c), int(s))
            if key not in seen:
                seen[key] = self.reference.fetch(key[0], key[1], key[1] + self.window)
            out.append(seen[key])
        return out

    def __getitem__(self, idx: Any) -> np.ndarray:
        from epx.sequence.onehot import one_hot_batch

        scalar = np.ndim(self.tss[idx]) == 0
        seqs = self.sequences(idx)
        out = one_hot_batch(seqs) if seqs else np.zeros((0, self.window, 4), np.float32)
        return out[0] if scalar else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_reference"] = None  # a pyfaidx handle does not cross processes; reopened on use
        return state
