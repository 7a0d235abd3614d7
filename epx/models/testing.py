"""Conformance checks any model plugin can run in its own tests (like scikit-learn's
``check_estimator``)::

    from epx.models.testing import check_model
    def test_conforms(tmp_path):
        check_model("ridge", tmp_path)

Each check raises AssertionError with a message saying what the plugin must fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from epx.models.contract import INPUT_KINDS, FoldData
from epx.models.plugins import ModelSpec, get_spec


def synthetic_fold(input_kind: str, n: int, task: str, seed: int = 0, n_features: int = 8) -> FoldData:
    """Learnable synthetic data in the model's input kind: signal in the first features (tabular), the
    central bins of the first assay (binned), or the GC content around the TSS (sequence: ``X`` is a
    lazy view of 128 bp windows, :class:`SyntheticSequenceRows`, like those ``epx train`` gives)."""
    rng = np.random.default_rng(seed)
    if input_kind == "tabular":
        X = rng.normal(size=(n, n_features)).astype(np.float32)
        signal = X[:, 0] + 0.5 * X[:, 1]
        names = [f"f{i}" for i in range(n_features)]
    elif input_kind == "binned":
        X = rng.normal(size=(n, 3, 20)).astype(np.float32)
        signal = X[:, 0, 8:12].mean(axis=1) * 2
        names = ["A", "B", "C"]
    elif input_kind == "sequence":
        X, signal = synthetic_sequences(n, rng)
        names = ["A", "C", "G", "T"]
    else:
        raise AssertionError(f"unknown input kind {input_kind!r}")
    noise = rng.normal(scale=0.3, size=n)
    latent = signal + noise
    if task == "binary":
        y = (latent > np.median(latent)).astype(np.float64)
    elif task == "rank":
        y = (pd.Series(latent).rank().to_numpy() - 1) / (n - 1)
    else:
        y = latent.astype(np.float64)
    rows = pd.DataFrame({"gene_id": [f"g{seed}_{i}" for i in range(n)], "cell_line": "C1"})
    return FoldData(X=X, y=y, rows=rows, feature_names=names)


class SyntheticSequenceRows:
    """A lazy one-hot view over an in-memory genome with the interface of
    :class:`epx.sequence.windows.SequenceRows` (what ``epx train`` hands sequence models):
    ``shape``, ``len``, ``view[idx]`` -> (n, window, 4) float32 built per call, ``take(idx)``,
    ``resize(length)``, ``sequences(idx)`` and ``strand``. (The plugin surface does not import
    epx.sequence, so this is a stand-in, not the class itself.)"""

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, genome: bytes, tss: np.ndarray, window: int, strand: np.ndarray) -> None:
        self.genome, self.tss, self.window, self.strand = genome, np.asarray(tss, np.int64), int(window), strand

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.tss), self.window, 4)

    def __len__(self) -> int:
        return len(self.tss)

    def take(self, idx: Any) -> SyntheticSequenceRows:
        return SyntheticSequenceRows(self.genome, self.tss[idx], self.window, self.strand[idx])

    def resize(self, length: int) -> SyntheticSequenceRows:
        return SyntheticSequenceRows(self.genome, self.tss, int(length), self.strand)

    def sequences(self, idx: Any = slice(None)) -> list[bytes]:
        out = []
        for t in np.atleast_1d(self.tss[idx]):
            start = int(t) - self.window // 2
            lo, hi = max(start, 0), min(start + self.window, len(self.genome))
            out.append(b"N" * (lo - start) + self.genome[lo:hi] + b"N" * (start + self.window - max(hi, lo)))
        return out

    def __getitem__(self, idx: Any) -> np.ndarray:
        seqs = self.sequences(idx)
        codes = np.frombuffer(b"".join(seqs), np.uint8).reshape(len(seqs), self.window)
        out = _ONE_HOT[codes]
        return out[0] if np.ndim(self.tss[idx]) == 0 else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


_ONE_HOT = np.zeros((256, 4), np.float32)  # A, C, G, T in either case; N and the rest all zero
for _i, _b in enumerate(b"ACGT"):
    _ONE_HOT[_b, _i] = _ONE_HOT[_b + 32, _i] = 1.0
SYNTHETIC_WINDOW = 128


def synthetic_sequences(n: int, rng: np.random.Generator, window: int = SYNTHETIC_WINDOW) -> tuple[Any, np.ndarray]:
    """A lazy one-hot view of ``n`` windows over an in-memory genome, and the signal: the G+C count
    of the central 32 bp (each row's GC fraction there drawn from U(0.2, 0.8); flanks uniform;
    lower case and a few N as in real FASTAs). Half the genes are on the minus strand (their
    windows are still the forward strand); the last rows run past the genome's end, so part of
    their window is N."""
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    genome = bases[rng.integers(0, 4, size=n * window)].copy()
    centre = window // 2
    gc = rng.uniform(0.2, 0.8, size=n)
    core = np.zeros(n)
    for i in range(n):
        lo = i * window + centre - 16
        is_gc = rng.random(32) < gc[i]
        genome[lo:lo + 32] = np.where(is_gc, rng.choice(np.frombuffer(b"GC", np.uint8), 32),
                                      rng.choice(np.frombuffer(b"AT", np.uint8), 32))
        core[i] = is_gc.sum()
    genome[rng.random(len(genome)) < 0.1] += 32  # soft-masked (lower-case) bases count as bases
    genome[rng.random(len(genome)) < 0.002] = ord("N")
    tss = np.arange(n, dtype=np.int64) * window + centre
    tss[-max(1, n // 50):] += window // 4  # the last windows run past the end: N-padded
    strand = np.where(np.arange(n) % 2 == 0, "+", "-").astype(object)
    view = SyntheticSequenceRows(genome.tobytes(), tss, window, strand)
    return view, (core - core.mean()) / max(core.std(), 1e-9)


def check_spec(spec: ModelSpec) -> None:
    assert spec.input_kind in INPUT_KINDS, f"{spec.name}: unknown input kind {spec.input_kind}"
    assert spec.description and "\n" not in spec.description, f"{spec.name}: description must be one line"
    assert spec.tasks, f"{spec.name}: declares no tasks"
    for key in spec.params:
        assert key.isidentifier(), f"{spec.name}: parameter name {key!r} is not an identifier"


def check_model(spec_or_name: ModelSpec | str, tmp_dir: str | Path, n: int = 240, min_spearman: float = 0.3) -> None:
    """Fit, predict, save and load the model for every declared task on synthetic data."""
    from scipy.stats import spearmanr

    spec = get_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    check_spec(spec)
    cls = spec.load_class()
    params = spec.resolve_params({})
    for task in spec.tasks:
        train = synthetic_fold(spec.input_kind, n, task, seed=1)
        valid = synthetic_fold(spec.input_kind, n // 4, task, seed=2)
        test = synthetic_fold(spec.input_kind, n // 2, task, seed=3)
        test_unlabelled = FoldData(X=test.X, y=None, rows=test.rows, feature_names=test.feature_names)

        model = cls(params, task, 0)
        model.fit(train, valid)
        pred = np.asarray(model.predict(test_unlabelled))
        assert pred.shape == (len(test),), f"{spec.name}/{task}: predict returned shape {pred.shape}, expected ({len(test)},)"
        assert np.issubdtype(pred.dtype, np.floating), f"{spec.name}/{task}: predictions must be floats, got {pred.dtype}"
        assert np.isfinite(pred).all(), f"{spec.name}/{task}: predictions contain NaN or inf"
        if task == "binary":
            assert pred.min() >= 0 and pred.max() <= 1, f"{spec.name}/binary: predict must return probabilities in [0, 1]"
        assert np.ptp(pred) > 0, f"{spec.name}/{task}: predictions are constant; the model ignores its input"
        rho = spearmanr(pred, test.y).statistic
        assert rho > min_spearman, f"{spec.name}/{task}: Spearman {rho:.2f} on easy synthetic data (needs > {min_spearman})"

        again = cls(params, task, 0)
        again.fit(train, valid)
        np.testing.assert_allclose(
            again.predict(test_unlabelled), pred, rtol=1e-5, atol=1e-6,
            err_msg=f"{spec.name}/{task}: two fits with the same seed give different predictions",
        )
        if spec.input_kind == "sequence":  # X is a lazy view: a batch's predictions must not depend on its company
            part = np.arange(0, len(test), 3)
            np.testing.assert_allclose(
                np.asarray(model.predict(test_unlabelled.subset(part))), pred[part], rtol=1e-4, atol=1e-5,
                err_msg=f"{spec.name}/{task}: predictions of a subset of rows (FoldData.subset, view.take) differ "
                        "from those rows' predictions in the full set",
            )
        no_valid = cls(params, task, 0)
        no_valid.fit(train, None)  # validation data is optional

        out = Path(tmp_dir) / f"{spec.name}-{task}"
        model.save(out)
        assert out.is_dir() and any(out.iterdir()), f"{spec.name}/{task}: save() wrote nothing to {out}"
        loaded = cls.load(out)
        np.testing.assert_allclose(
            loaded.predict(test_unlabelled), pred, rtol=1e-5, atol=1e-6,
            err_msg=f"{spec.name}/{task}: predictions change after save() and load()",
        )
