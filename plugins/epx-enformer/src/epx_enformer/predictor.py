"""The Enformer sequence predictor: one-hot windows centred on the TSS -> selected tracks summed
over the central output bins.

Geometry: the input window (196,608 bp for real Enformer) is cut into 128 bp bins and cropped to
``target_length`` output bins (896) in the middle; the TSS is input position ``window // 2``,
which falls in output bin ``tss_bin`` (448 for real Enformer: its first base). ``center_bins = N``
sums the output bins ``tss_bin - N // 2`` to ``tss_bin - N // 2 + N - 1``: for odd N the TSS bin
and (N - 1) / 2 bins on each side (N = 3: bins 447, 448, 449); for even N, N / 2 bins on each side
of the TSS position (N = 2: bins 447 and 448, which meet at the TSS).

Fingerprint: sha256 over the name, window, head, selected track indices, ``center_bins`` and each
weights file (config and tensors): its content sha256 when it is at most 256 MiB, else its
resolved path, size and modification time (the official 1 GB ``pytorch_model.bin`` is not read
again on every run; moving or touching it changes the fingerprint, which only costs a recompute).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from epx.errors import EpxError
from epx_enformer.load import LoadedEnformer, load_enformer
from epx_enformer.targets import (
    Target,
    find_targets,
    output_names,
    parse_track_list,
    read_targets,
    select_tracks,
)

CONTENT_HASH_LIMIT = 256 * 1024 * 1024
DEFAULT_CENTER_BINS = 3
DEFAULT_BATCH_SIZE = 2


def file_digest(path: Path) -> str:
    """sha256 of the file's content, or of ``path|size|mtime_ns`` for files over 256 MiB."""
    stat = path.stat()
    if stat.st_size > CONTENT_HASH_LIMIT:
        return "stat:" + hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _int_option(options: dict[str, Any], key: str, default: int, low: int = 1) -> int:
    value = options.get(key)
    if value is None or value == "":
        return default
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise EpxError(f"--{key.replace('_', '-')} expects an integer, got {value!r}") from None
    if number < low:
        raise EpxError(f"--{key.replace('_', '-')} must be at least {low}, got {number}")
    return number


class EnformerPredictor:
    """Enformer behind epx's SequencePredictor interface (see the module docstring for the bins)."""

    name = "enformer"

    def __init__(self, weights: str | Path | None = None, tracks: Any = None, center_bins: int = DEFAULT_CENTER_BINS,
                 device: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE, targets: str | Path | None = None,
                 head: str = "human") -> None:
        self.loaded: LoadedEnformer = load_enformer(weights, device)
        self.device = self.loaded.device
        self.window = self.loaded.window
        self.weights_path = self.loaded.path
        if head not in self.loaded.heads:
            raise EpxError(f"Enformer weights {self.weights_path} have no {head!r} head (heads: {', '.join(self.loaded.heads)})")
        self.head = head
        n_tracks = self.loaded.heads[head]
        self.targets_path = Path(targets).expanduser() if targets else find_targets(self.weights_path)
        self.targets: list[Target] | None = None
        if self.targets_path is not None:
            if not self.targets_path.is_file():
                raise EpxError(f"targets file {self.targets_path} does not exist")
            self.targets = read_targets(self.targets_path)
            if len(self.targets) != n_tracks:
                raise EpxError(f"targets file {self.targets_path} lists {len(self.targets)} tracks but the {head!r} "
                               f"head of {self.weights_path} has {n_tracks}")
        self.tracks = select_tracks(parse_track_list(tracks), self.targets, n_tracks, self.targets_path)
        self.output_names = output_names(self.tracks, self.targets)
        self.center_bins = _int_option({"center_bins": center_bins}, "center_bins", DEFAULT_CENTER_BINS)
        if self.center_bins > self.loaded.bins:
            raise EpxError(f"--center-bins {self.center_bins} exceeds the model's {self.loaded.bins} output bins")
        self.batch_size = _int_option({"batch_size": batch_size}, "batch_size", DEFAULT_BATCH_SIZE)
        start = self.loaded.tss_bin - self.center_bins // 2
        start = min(max(start, 0), self.loaded.bins - self.center_bins)
        self.center = slice(start, start + self.center_bins)
        self.fingerprint = self._fingerprint()

    @property
    def bins(self) -> int:
        """Output bins per window (``target_length``)."""
        return self.loaded.bins

    def _fingerprint(self) -> str:
        files = {f.name: file_digest(f) for f in self.loaded.files}
        key = {"name": self.name, "window": self.window, "head": self.head, "tracks": self.tracks,
               "center": [self.center.start, self.center.stop], "files": files}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def _check(self, onehot: np.ndarray) -> np.ndarray:
        x = np.asarray(onehot)
        if x.ndim != 3 or x.shape[1] != self.window or x.shape[2] != 4:
            raise EpxError(f"Enformer expects one-hot windows of shape (n, {self.window}, 4); got {tuple(x.shape)}")
        return x

    def _run(self, onehot: np.ndarray, reduce: Any) -> np.ndarray:
        import torch

        x = self._check(onehot)
        index = torch.as_tensor(self.tracks, dtype=torch.long, device=self.device)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(x), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[start:start + self.batch_size], dtype=np.float32))
                out = self.loaded.model(batch.to(self.device), head=self.head)  # (b, bins, tracks)
                parts.append(reduce(out.index_select(-1, index)).float().cpu().numpy())
        if not parts:
            return reduce(torch.zeros((0, self.bins, len(self.tracks)))).numpy()
        return np.concatenate(parts).astype(np.float32, copy=False)

    def predict(self, onehot: np.ndarray) -> np.ndarray:
        """(n, window, 4) float32 one-hot -> (n, tracks) float32: each selected track summed over
        the central ``center_bins`` output bins, ``batch_size`` windows per forward pass."""
        return self._run(onehot, lambda out: out[:, self.center].sum(dim=1))

    def profile(self, onehot: np.ndarray) -> np.ndarray:
        """(n, window, 4) -> (n, bins, tracks): every output bin of the selected tracks."""
        return self._run(onehot, lambda out: out)


def load_predictor(options: dict[str, Any] | None = None) -> EnformerPredictor:
    """The ``epx.predictors`` factory: options ``weights``, ``tracks``, ``center_bins``, ``device``,
    ``batch_size``, ``targets`` (strings or typed values; missing or None = the default)."""
    options = dict(options or {})
    known = {"weights", "tracks", "center_bins", "device", "batch_size", "targets", "head"}
    unknown = sorted(k for k, v in options.items() if k not in known and v is not None)
    if unknown:
        raise EpxError(f"enformer: unknown option(s) {', '.join(unknown)} (options: {', '.join(sorted(known))})")
    return EnformerPredictor(
        weights=options.get("weights") or None, tracks=options.get("tracks"),
        center_bins=_int_option(options, "center_bins", DEFAULT_CENTER_BINS),
        device=options.get("device") or "auto", batch_size=_int_option(options, "batch_size", DEFAULT_BATCH_SIZE),
        targets=options.get("targets") or None, head=options.get("head") or "human",
    )
