"""The ``enformer`` train backend: a head fitted on frozen Enformer outputs at each gene's TSS.

Features: the predictor's outputs (selected tracks summed over the central bins) of each row's
reference window, ``log1p``-transformed (by default) and standardised on the training rows. Rows
of different cell lines share their gene's window, so Enformer runs once per distinct window: the
outputs are cached in memory for the process, keyed by the predictor's fingerprint and the sha256
of the window, so the folds of one cross-validation reuse them.

Heads: ``ridge`` (closed form; for ``binary`` an L2 logistic regression fitted by Newton's method,
same ``alpha``) or ``mlp`` (one hidden layer in torch, full-batch Adam for ``epochs`` steps). With
``per_cell_line`` a head is fitted per training cell line (with at least ``min_rows`` rows), since
Enformer's tracks are cell-type specific and a gene's features are the same in every cell line;
other cell lines get the pooled head.

A window whose length differs from the model's is cropped or padded with N (zeros) so that its
centre (the TSS, index ``length // 2``) lands on the model's ``window // 2``.

``save`` stores the heads and the options (the resolved weights path, track indices, centre bins
and the weights' fingerprint), never Enformer itself; ``load`` reopens the weights from the
recorded path when it first predicts, and refuses weights whose fingerprint changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from epx.errors import PluginError
from epx.models import FoldData

META_FILE = "enformer-head.json"
ARRAYS_FILE = "enformer-head.npz"
FORMAT_VERSION = 1
_FEATURES: dict[tuple[str, str], np.ndarray] = {}  # (fingerprint, window sha256) -> outputs


def fit_to_window(x: np.ndarray, window: int) -> np.ndarray:
    """Crop or N-pad (n, L, 4) windows to (n, window, 4), keeping index L // 2 at window // 2."""
    length = x.shape[1]
    if length == window:
        return x
    out = np.zeros((x.shape[0], window, 4), dtype=np.float32)
    offset = window // 2 - length // 2  # out[i + offset] = x[i]
    lo, hi = max(0, -offset), min(length, window - offset)
    out[:, lo + offset:hi + offset] = x[:, lo:hi]
    return out


def _take(X: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of an array or of the core's lazy view (whose ``[idx]`` reads them)."""
    return np.asarray(X[idx], dtype=np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


class EnformerHead:
    """A ridge (or MLP) head on Enformer outputs; see the module docstring."""

    def __init__(self, params: dict[str, Any], task: str, seed: int = 0) -> None:
        if task not in ("regression", "binary"):
            raise PluginError(f"model 'enformer' does not support task {task!r}; use regression or binary")
        self.params, self.task, self.seed = dict(params), task, seed
        self._predictor: Any = None
        self.meta: dict[str, Any] = {}
        self.heads: dict[str, dict[str, np.ndarray]] = {}
        self.stats: dict[str, np.ndarray] = {}

    # -- Enformer features -------------------------------------------------------------------
    def predictor(self) -> Any:
        if self._predictor is None:
            from epx_enformer.predictor import EnformerPredictor

            p = self.params
            if self.meta:  # a loaded model: the recorded weights and tracks, any device
                device = p.get("device") or "auto"
                if str(device).startswith("cuda"):
                    import torch

                    device = device if torch.cuda.is_available() else "cpu"
                pred = EnformerPredictor(weights=self.meta["weights"], tracks=self.meta["tracks"],
                                         center_bins=self.meta["center_bins"], device=device,
                                         batch_size=p.get("batch_size") or 2, head=self.meta["head"])
                if pred.fingerprint != self.meta["fingerprint"]:
                    raise PluginError(f"Enformer weights {self.meta['weights']} changed since this model was trained "
                                      "(fingerprint differs); retrain, or restore the original weights")
            else:
                pred = EnformerPredictor(weights=p.get("weights") or None, tracks=p.get("tracks") or None,
                                         center_bins=p.get("center_bins", 3), device=p.get("device") or "auto",
                                         batch_size=p.get("batch_size") or 2, targets=p.get("targets") or None)
            self._predictor = pred
        return self._predictor

    def _disk_cache(self, fingerprint: str):
        """The prediction cache ``epx personalize`` uses (same keys: the window's sequence), so a
        gene's reference window is predicted once across runs, folds and commands."""
        from epx.io.fasta import cache_dir
        from epx.sequence.cache import PredictionCache

        where = str(self.params.get("cache") or "")
        if where.lower() == "none":
            return PredictionCache(None, fingerprint)
        return PredictionCache(Path(where) if where else cache_dir() / "personalize.sqlite", fingerprint)

    def features(self, data: FoldData) -> np.ndarray:
        """(rows, tracks) Enformer outputs, computed once per distinct window.

        A dataset's lazy windows (:class:`epx.sequence.windows.SequenceRows`) are re-read at the
        model's own length (real flanking sequence, not padding) and looked up in the shared disk
        cache by sequence; other inputs are cropped or N-padded and cached in memory."""
        pred = self.predictor()
        X = data.X
        if hasattr(X, "resize") and hasattr(X, "sequences") and int(X.shape[1]) != int(pred.window):
            X = X.resize(int(pred.window))
        genes = data.rows["gene_id"].astype(str).to_numpy()
        _, first, inverse = np.unique(genes, return_index=True, return_inverse=True)
        per_gene = np.empty((len(first), len(pred.tracks)), dtype=np.float32)
        batch = max(int(pred.batch_size), 1) * 8
        order = np.argsort(first)  # read the rows in their stored order
        disk = self._disk_cache(pred.fingerprint) if hasattr(X, "sequences") else None
        try:
            for start in range(0, len(order), batch):
                sel = order[start:start + batch]
                if disk is not None:
                    from epx.sequence.cache import window_digest

                    digests = [window_digest(w) for w in X.sequences(first[sel])]
                    cached = [disk.get(d) for d in digests]
                    todo = [i for i, c in enumerate(cached) if c is None]
                    if todo:
                        out = pred.predict(np.asarray(X[first[sel][todo]], dtype=np.float32))
                        disk.put_many((digests[i], row) for i, row in zip(todo, out, strict=True))
                        for i, row in zip(todo, out, strict=True):
                            cached[i] = row
                    per_gene[sel] = np.stack(cached)
                    continue
                x = fit_to_window(_take(X, first[sel]), pred.window)
                keys = [(pred.fingerprint, hashlib.sha256(np.ascontiguousarray(w).tobytes()).hexdigest()) for w in x]
                todo = [i for i, k in enumerate(keys) if k not in _FEATURES]
                if todo:
                    out = pred.predict(x[todo])
                    for i, row in zip(todo, out, strict=True):
                        _FEATURES[keys[i]] = row
                per_gene[sel] = np.stack([_FEATURES[k] for k in keys])
        finally:
            if disk is not None:
                disk.close()
        feats = per_gene[inverse.reshape(-1)]
        return np.log1p(np.maximum(feats, 0)) if self.params.get("log1p", True) else feats

    # -- heads -------------------------------------------------------------------------------
    def _fit_head(self, Z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        alpha = float(self.params.get("alpha", 1.0))
        if self.params.get("head", "ridge") == "mlp":
            return self._fit_mlp(Z, y)
        A = Z.T @ Z + alpha * np.eye(Z.shape[1])
        if self.task == "regression":
            mean = y.mean()
            w = np.linalg.solve(A, Z.T @ (y - mean))
            return {"w": w, "b": np.array([mean])}
        # L2 logistic regression (intercept unpenalised) by Newton's method
        Zb = np.c_[Z, np.ones(len(Z))]
        penalty = np.diag(np.r_[np.full(Z.shape[1], alpha), 0.0])
        beta = np.zeros(Zb.shape[1])
        rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        beta[-1] = np.log(rate / (1 - rate))
        for _ in range(100):
            p = _sigmoid(Zb @ beta)
            grad = Zb.T @ (p - y) + penalty @ beta
            hess = (Zb * (p * (1 - p))[:, None]).T @ Zb + penalty + 1e-9 * np.eye(len(beta))
            step = np.linalg.solve(hess, grad)
            beta -= step
            if np.abs(step).max() < 1e-8:
                break
        return {"w": beta[:-1], "b": beta[-1:]}

    def _fit_mlp(self, Z: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        torch.manual_seed(self.seed)
        hidden = int(self.params.get("hidden", 64))
        net = torch.nn.Sequential(torch.nn.Linear(Z.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        opt = torch.optim.Adam(net.parameters(), lr=float(self.params.get("lr", 1e-2)),
                               weight_decay=float(self.params.get("alpha", 1.0)) * 1e-3)
        x = torch.from_numpy(Z.astype(np.float32))
        target = torch.from_numpy(y.astype(np.float32))
        mean = float(y.mean()) if self.task == "regression" else 0.0
        scale = (float(y.std()) or 1.0) if self.task == "regression" else 1.0
        for _ in range(int(self.params.get("epochs", 300))):
            opt.zero_grad()
            out = net(x).squeeze(-1)
            if self.task == "binary":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(out, target)
            else:
                loss = torch.nn.functional.mse_loss(out, (target - mean) / scale)
            loss.backward()
            opt.step()
        state = {k: v.detach().numpy().astype(np.float64) for k, v in net.state_dict().items()}
        return {"W1": state["0.weight"], "b1": state["0.bias"], "W2": state["2.weight"], "b2": state["2.bias"],
                "mean": np.array([mean]), "scale": np.array([scale])}

    def _apply_head(self, head: dict[str, np.ndarray], Z: np.ndarray) -> np.ndarray:
        if "W1" in head:
            h = np.maximum(Z @ head["W1"].T + head["b1"], 0)
            z = (h @ head["W2"].T + head["b2"])[:, 0]
            return _sigmoid(z) if self.task == "binary" else z * head["scale"][0] + head["mean"][0]
        z = Z @ head["w"] + head["b"][0]
        return _sigmoid(z) if self.task == "binary" else z

    # -- the epx contract ------------------------------------------------------------------------
    def fit(self, train: FoldData, valid: FoldData | None = None) -> None:
        if train.y is None:
            raise PluginError("model 'enformer': fit needs labelled rows")
        F = self.features(train).astype(np.float64)
        mu, sd = F.mean(axis=0), F.std(axis=0)
        sd[sd < 1e-12] = 1.0
        self.stats = {"mu": mu, "sd": sd}
        Z = (F - mu) / sd
        y = np.asarray(train.y, dtype=np.float64)
        self.heads = {"": self._fit_head(Z, y)}
        if self.params.get("per_cell_line", True):
            lines = train.rows["cell_line"].astype(str).to_numpy()
            names, counts = np.unique(lines, return_counts=True)
            if len(names) > 1:
                for name, count in zip(names, counts, strict=True):
                    mask = lines == name
                    if count >= int(self.params.get("min_rows", 20)) and (self.task != "binary" or 0 < y[mask].mean() < 1):
                        self.heads[name] = self._fit_head(Z[mask], y[mask])
        pred = self.predictor()
        self.meta = {"weights": str(pred.weights_path), "tracks": list(pred.tracks), "center_bins": pred.center_bins,
                     "head": pred.head, "fingerprint": pred.fingerprint, "output_names": list(pred.output_names),
                     "window": pred.window}

    def predict(self, data: FoldData) -> np.ndarray:
        if not self.heads:
            raise PluginError("model 'enformer': predict before fit")
        Z = (self.features(data).astype(np.float64) - self.stats["mu"]) / self.stats["sd"]
        out = self._apply_head(self.heads[""], Z)
        if len(self.heads) > 1:
            lines = data.rows["cell_line"].astype(str).to_numpy()
            for name, head in self.heads.items():
                mask = lines == name
                if name and mask.any():
                    out[mask] = self._apply_head(head, Z[mask])
        return out.astype(np.float64)

    def importance(self) -> dict[str, float]:
        """|ridge coefficient| per track (standardised features) of the pooled head."""
        head = self.heads.get("", {})
        if "w" not in head:
            return {}
        return {name: float(abs(w)) for name, w in zip(self.meta["output_names"], head["w"], strict=True)}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"stats/{k}": v for k, v in self.stats.items()}
        for name, head in self.heads.items():
            arrays.update({f"head/{name}/{k}": v for k, v in head.items()})
        np.savez(directory / ARRAYS_FILE, **arrays)
        meta = {"format_version": FORMAT_VERSION, "task": self.task, "seed": self.seed, "params": self.params,
                **self.meta}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> EnformerHead:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise PluginError(f"{directory}: not a saved enformer model ({META_FILE} is missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise PluginError(f"{meta_path}: format version {meta.get('format_version')} is not {FORMAT_VERSION}")
        model = cls(meta.pop("params"), meta.pop("task"), meta.pop("seed"))
        meta.pop("format_version")
        model.meta = meta
        with np.load(directory / ARRAYS_FILE) as arrays:
            for key in arrays.files:
                kind, _, rest = key.partition("/")
                if kind == "stats":
                    model.stats[rest] = arrays[key]
                else:
                    name, _, part = rest.rpartition("/")
                    model.heads.setdefault(name, {})[part] = arrays[key]
        return model
