"""RidgeModel: closed-form ridge, or L2 logistic regression by Newton steps for binary targets.

Missing features (an assay absent in a cell line) are imputed with the training mean, then
every feature is standardised with training statistics, so the penalty treats features alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from epx.models.contract import FoldData


class RidgeModel:
    def __init__(self, params: dict[str, Any], task: str, seed: int = 0) -> None:
        self.params = dict(params)
        self.task = task
        self.seed = seed
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        X = np.where(np.isnan(X), self.mean_, X)
        return (X - self.mean_) / self.scale_

    def fit(self, train: FoldData, valid: FoldData | None = None) -> None:
        X = np.asarray(train.X, dtype=np.float64).reshape(len(train), -1)
        y = np.asarray(train.y, dtype=np.float64)
        mean = np.nanmean(np.where(np.isfinite(X), X, np.nan), axis=0)
        self.mean_ = np.nan_to_num(mean)
        Xf = np.where(np.isfinite(X), X, self.mean_)
        scale = Xf.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        Z = (Xf - self.mean_) / self.scale_
        alpha = float(self.params["alpha"])
        if self.task == "binary":
            self._fit_logistic(Z, y, alpha)
        else:
            self._fit_ridge(Z, y, alpha)

    def _fit_ridge(self, Z: np.ndarray, y: np.ndarray, alpha: float) -> None:
        y_mean = y.mean() if self.params["fit_intercept"] else 0.0
        A = Z.T @ Z + alpha * np.eye(Z.shape[1])
        self.coef_ = np.linalg.solve(A, Z.T @ (y - y_mean))
        self.intercept_ = float(y_mean)

    def _fit_logistic(self, Z: np.ndarray, y: np.ndarray, alpha: float) -> None:
        n, p = Z.shape
        Z1 = np.hstack([Z, np.ones((n, 1))]) if self.params["fit_intercept"] else Z
        w = np.zeros(Z1.shape[1])
        penalty = np.full(Z1.shape[1], alpha)
        if self.params["fit_intercept"]:
            penalty[-1] = 0.0
        for _ in range(int(self.params["max_iter"])):
            prob = 1.0 / (1.0 + np.exp(-np.clip(Z1 @ w, -30, 30)))
            grad = Z1.T @ (prob - y) + penalty * w
            hess = (Z1 * (prob * (1 - prob))[:, None]).T @ Z1 + np.diag(penalty) + 1e-9 * np.eye(Z1.shape[1])
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.max(np.abs(step)) < 1e-8:
                break
        self.coef_ = w[:p]
        self.intercept_ = float(w[p]) if self.params["fit_intercept"] else 0.0

    def predict(self, data: FoldData) -> np.ndarray:
        Z = self._standardise(np.asarray(data.X).reshape(len(data), -1))
        score = Z @ self.coef_ + self.intercept_
        if self.task == "binary":
            return 1.0 / (1.0 + np.exp(-np.clip(score, -30, 30)))
        return score

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "ridge.npz", mean=self.mean_, scale=self.scale_, coef=self.coef_)
        meta = {"params": self.params, "task": self.task, "seed": self.seed, "intercept": self.intercept_}
        (directory / "ridge.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> RidgeModel:
        directory = Path(directory)
        meta = json.loads((directory / "ridge.json").read_text())
        model = cls(meta["params"], meta["task"], meta["seed"])
        arrays = np.load(directory / "ridge.npz")
        model.mean_, model.scale_, model.coef_ = arrays["mean"], arrays["scale"], arrays["coef"]
        model.intercept_ = float(meta["intercept"])
        return model
