"""LGBMModel: LightGBM for epx, with the ML4G two-stage model.

Stages (the names used by ``importance_by_stage``, ``contributions`` and the saved files):

``nonzero``
    Stage 1 (two-stage rank/regression only): a binary classifier of expression > 0, trained on
    ``train.targets["nonzero"]``. ``predict_proba`` returns its P(expressed).
``main``
    The task's model: the stage-2 regressor of ``train.y`` (the normalised per-cell-line rank for
    ``rank``), or the single-stage model (``binary`` always, and rank/regression with
    ``two_stage=false``).

Two-stage prediction is ``main x 1[P(expressed) >= threshold]`` with ``mask=true`` (the ML4G
rule, threshold 0.4), and the unmasked ``main`` prediction with ``mask=false``.

Choices the contract leaves open (documented here and in the README):

* Stage-1 labels, in order of preference: ``targets["nonzero"]``; else ``targets["raw"] > 0``;
  else derived from ``y`` per cell line (``rows["cell_line"]``): ``y > min(y)`` when the minimum
  is tied (a block of zero-expression genes, which raw, log1p and average-tie rank targets all
  produce), and every row counts as expressed when it is not (no zero block). So without targets
  on continuous data without ties, as in epx's synthetic conformance data, stage 1 is skipped.
* A stage-1 training side with a single class is not fitted: P(expressed) is that class,
  a constant 1.0 or 0.0.
* Early stopping uses ``valid`` when it is given with labels (stage 1 on its nonzero labels,
  derived as above; stage 2 on ``valid.y``), for ``early_stopping_rounds`` rounds of no
  improvement in binary log-loss / L2. Without ``valid`` each stage trains a fixed
  ``min(n_estimators, rounds_without_valid)`` rounds. Each booster is truncated to its best
  iteration, so prediction, importance, SHAP values and the saved model all use the same trees.
* Both stages train on every training row, from one binned LightGBM Dataset per fit (stage 1
  sets its labels, then stage 2 its own); the validation side is binned on the train side's bin
  edges. The trees are the ones separately binned stages give (binning ignores labels).
* ``n_jobs=0`` means all cores, except one thread below 10,000 rows (OpenMP start-up dominates
  on small folds, e.g. 0.9 s instead of 0.15 s for a 240-row fit on two cores).
* Features reach LightGBM under internal names ``f0..fN`` (epx feature names may contain
  characters LightGBM rejects); results are reported under ``FoldData.feature_names``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from epx.errors import PluginError
from epx.models import FoldData

FORMAT_VERSION = 1
SMALL_DATA_ROWS = 10_000  # n_jobs=0 trains on one thread below this: threads cost more than they gain
STAGE1 = "nonzero"
MAIN = "main"
_META = "lgbm.json"


def _booster_file(stage: str) -> str:
    return f"{stage}.lgbm.txt"


class LGBMModel:
    """LightGBM model for one fold; see the module docstring for the two-stage rule."""

    def __init__(self, params: dict[str, Any], task: str, seed: int = 0) -> None:
        from epx_lgbm import spec

        if task not in spec.tasks:
            raise PluginError(f"model 'lgbm' does not support task {task!r}; use one of {', '.join(spec.tasks)}")
        # fills missing keys, coerces strings, rejects unknown keys and values outside the spec's bounds
        self.params = spec.resolve_params(params)
        self.task = task
        self.seed = int(seed)
        self.feature_names_: list[str] = []
        self.boosters_: dict[str, lgb.Booster] = {}
        self.best_iteration_: dict[str, int] = {}
        self.stage1_constant_: float | None = None  # P(expressed) when stage 1 had a single class
        self.stage1_labels_: str | None = None  # where the stage-1 labels came from
        self._train_threads = int(self.params["n_jobs"])

    # -- configuration -------------------------------------------------------------------------

    @property
    def two_stage(self) -> bool:
        """True when this model has a stage-1 nonzero classifier (rank/regression, two_stage=true)."""
        return bool(self.params["two_stage"]) and self.task in ("rank", "regression")

    def _lgb_params(self, objective: str) -> dict[str, Any]:
        p = self.params
        return {
            "objective": objective,
            "metric": "binary_logloss" if objective == "binary" else "l2",
            "learning_rate": p["learning_rate"],
            "num_leaves": p["num_leaves"],
            "max_depth": p["max_depth"],
            "min_data_in_leaf": p["min_child_samples"],
            "feature_fraction": p["feature_fraction"],
            "bagging_fraction": p["bagging_fraction"],
            "bagging_freq": p["bagging_freq"],
            "lambda_l2": p["lambda_l2"],
            "max_bin": p["max_bin"],
            "num_threads": self._train_threads,
            # determinism: one seed drives bagging, feature sampling and binning
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    # -- data ----------------------------------------------------------------------------------

    @staticmethod
    def _matrix(data: FoldData) -> np.ndarray:
        X = np.asarray(data.X, dtype=np.float64).reshape(len(data), -1)
        if np.isinf(X).any():  # inf -> missing, as NaN already is
            X = np.where(np.isinf(X), np.nan, X)
        return X

    def _checked_matrix(self, data: FoldData) -> np.ndarray:
        if not self.boosters_:
            raise PluginError("model 'lgbm' is not fitted; call fit() or load() first")
        X = self._matrix(data)
        if X.shape[1] != len(self.feature_names_):
            raise PluginError(f"model 'lgbm' was trained on {len(self.feature_names_)} features, got {X.shape[1]}")
        names = list(data.feature_names or [])
        if names and names != self.feature_names_:
            diff = next(i for i, (a, b) in enumerate(zip(names, self.feature_names_, strict=False)) if a != b)
            raise PluginError(
                f"model 'lgbm': feature {diff} is {names[diff]!r}, but the model was trained with {self.feature_names_[diff]!r}"
            )
        return X

    @staticmethod
    def _labels(data: FoldData) -> np.ndarray:
        if data.y is None:
            raise PluginError("model 'lgbm': fit() needs labels (FoldData.y is None)")
        y = np.asarray(data.y, dtype=np.float64).reshape(-1)
        if y.shape[0] != len(data):
            raise PluginError(f"model 'lgbm': {y.shape[0]} labels for {len(data)} rows")
        if not np.isfinite(y).all():
            raise PluginError("model 'lgbm': labels contain NaN or inf")
        return y

    @staticmethod
    def _nonzero_labels(data: FoldData, y: np.ndarray) -> tuple[np.ndarray, str]:
        """Stage-1 labels (1 = expressed) and where they came from; see the module docstring."""
        targets = data.targets or {}
        if "nonzero" in targets:
            return (np.asarray(targets["nonzero"], dtype=np.float64).reshape(-1) > 0.5).astype(np.float64), "targets.nonzero"
        if "raw" in targets:
            return (np.asarray(targets["raw"], dtype=np.float64).reshape(-1) > 0).astype(np.float64), "targets.raw > 0"
        rows = data.rows
        if rows is not None and "cell_line" in getattr(rows, "columns", ()):
            _, group = np.unique(np.asarray(rows["cell_line"]).astype(str), return_inverse=True)
        else:
            group = np.zeros(y.shape[0], dtype=np.int64)
        z = np.ones_like(y)
        for g in np.unique(group):
            idx = np.flatnonzero(group == g)
            lowest = y[idx].min()
            at_min = y[idx] == lowest
            if at_min.sum() >= 2:  # a tied block at the minimum: the zero-expression genes
                z[idx[at_min]] = 0.0
        return z, "y > min(y) per cell line (tied minimum)"

    # -- training ------------------------------------------------------------------------------

    def _binned(self, X: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        """X binned into LightGBM's Dataset, labels unset. The train side is binned once per fold and
        shared by both stages (each sets its labels before training): binning depends on the
        features and the dataset parameters, which the stages share, not on the labels or objective.
        The validation side takes the train side's bin edges (``reference``)."""
        names = [f"f{i}" for i in range(X.shape[1])]
        # the training parameters minus the stage's own: what binned each stage before they shared it
        params = {k: v for k, v in self._lgb_params("regression").items() if k not in ("objective", "metric")}
        return lgb.Dataset(X, feature_name=names, params=params, reference=reference, free_raw_data=True).construct()

    def _train(self, objective: str, dtrain: lgb.Dataset, y: np.ndarray,
               valid: tuple[lgb.Dataset, np.ndarray] | None) -> tuple[lgb.Booster, int]:
        """Train one stage on the shared binned ``dtrain`` (and ``valid``'s Dataset) with labels ``y``."""
        p = self.params
        params = self._lgb_params(objective)
        dtrain.set_label(y)
        if valid is not None and p["early_stopping_rounds"] > 0:
            dvalid = valid[0].set_label(valid[1])
            booster = lgb.train(
                params, dtrain, num_boost_round=p["n_estimators"], valid_sets=[dvalid], valid_names=["valid"],
                callbacks=[lgb.early_stopping(p["early_stopping_rounds"], first_metric_only=True, verbose=False)],
            )
            best = booster.best_iteration or booster.current_iteration()
        else:
            rounds = p["n_estimators"] if valid is not None else min(p["n_estimators"], p["rounds_without_valid"])
            booster = lgb.train(params, dtrain, num_boost_round=rounds)
            best = booster.current_iteration()
        # keep only the trees that are used: prediction, importance, SHAP and save agree
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        return booster, int(best)

    def fit(self, train: FoldData, valid: FoldData | None = None) -> None:
        X = self._matrix(train)
        y = self._labels(train)
        names = list(train.feature_names or [])
        if names and len(names) != X.shape[1]:
            raise PluginError(f"model 'lgbm': {len(names)} feature names for {X.shape[1]} features")
        self.feature_names_ = names or [f"f{i}" for i in range(X.shape[1])]
        if self.task == "binary" and not np.isin(y, (0.0, 1.0)).all():
            raise PluginError("model 'lgbm': the binary task needs 0/1 labels")

        has_valid = valid is not None and valid.y is not None and len(valid) > 0
        Xv = self._matrix(valid) if has_valid else None
        yv = self._labels(valid) if has_valid else None
        if has_valid and Xv.shape[1] != X.shape[1]:
            raise PluginError(f"model 'lgbm': validation side has {Xv.shape[1]} features, training side {X.shape[1]}")

        self.boosters_, self.best_iteration_ = {}, {}
        self.stage1_constant_, self.stage1_labels_ = None, None
        self._train_threads = self._threads(len(train))
        dtrain = self._binned(X)
        del X  # LightGBM holds the binned copy; the float64 matrix is not needed again
        dvalid = self._binned(Xv, reference=dtrain) if has_valid and self.params["early_stopping_rounds"] > 0 else None
        if self.two_stage:
            z, self.stage1_labels_ = self._nonzero_labels(train, y)
            if z.min() == z.max():  # a single class: no classifier, P(expressed) is that class
                self.stage1_constant_ = float(z[0])
            else:
                zv = self._nonzero_labels(valid, yv)[0] if has_valid else None
                self.boosters_[STAGE1], self.best_iteration_[STAGE1] = self._train(
                    "binary", dtrain, z, (dvalid, zv) if has_valid else None)
        objective = "binary" if self.task == "binary" else "regression"
        self.boosters_[MAIN], self.best_iteration_[MAIN] = self._train(
            objective, dtrain, y, (dvalid, yv) if has_valid else None)

    @property
    def best_iteration(self) -> int:
        """Boosting rounds kept by the final-stage (``main``) model."""
        return self.best_iteration_.get(MAIN, 0)

    # -- prediction ----------------------------------------------------------------------------

    def _threads(self, n_rows: int) -> int:
        """LightGBM num_threads: n_jobs, except one thread for small data when n_jobs is 0 (all
        cores), where OpenMP start-up costs more than it gains. Fits are deterministic for a given
        thread count, and this choice depends only on the data size; predictions do not depend on it."""
        n_jobs = int(self.params["n_jobs"])
        return 1 if n_jobs == 0 and n_rows < SMALL_DATA_ROWS else n_jobs

    def _p_expressed(self, X: np.ndarray) -> np.ndarray:
        if STAGE1 in self.boosters_:
            return self.boosters_[STAGE1].predict(X, num_threads=self._threads(X.shape[0])).astype(np.float64)
        return np.full(X.shape[0], 1.0 if self.stage1_constant_ is None else self.stage1_constant_)

    def predict_score(self, data: FoldData) -> np.ndarray:
        """The stage-2 prediction before the mask (rank clipped to [0, 1]); ``epx stack --rule
        seed`` averages these across runs and applies a mask of averaged probabilities."""
        X = self._checked_matrix(data)
        pred = self.boosters_[MAIN].predict(X, num_threads=self._threads(X.shape[0])).astype(np.float64)
        if self.task in ("rank", "binary"):
            pred = np.clip(pred, 0.0, 1.0)
        return pred

    def predict(self, data: FoldData) -> np.ndarray:
        """One float per row: masked stage 2 (two-stage), rank clipped to [0, 1], P(y=1) for binary."""
        pred = self.predict_score(data)
        if self.two_stage and self.params["mask"]:
            X = self._checked_matrix(data)
            pred = np.where(self._p_expressed(X) >= self.params["threshold"], pred, 0.0)
        return pred

    @property
    def predict_proba(self):
        """``predict_proba(data)``: stage-1 P(expressed) (two-stage), or P(y=1) for binary.

        Single-stage rank/regression models have no class probability, so the attribute is then
        absent (``hasattr(model, "predict_proba")`` is False), as scikit-learn's ``available_if``.
        """
        if not (self.two_stage or self.task == "binary"):
            raise AttributeError("predict_proba: a single-stage rank/regression lgbm model has no classifier")
        return self._predict_proba

    def _predict_proba(self, data: FoldData) -> np.ndarray:
        X = self._checked_matrix(data)
        if self.task == "binary":
            return np.clip(self.boosters_[MAIN].predict(X, num_threads=self._threads(X.shape[0])).astype(np.float64), 0.0, 1.0)
        return np.clip(self._p_expressed(X), 0.0, 1.0)

    # -- interpretation ------------------------------------------------------------------------

    def importance_by_stage(self) -> dict[str, dict[str, float]]:
        """Total gain per feature for each fitted stage (``nonzero``, ``main``)."""
        out = {}
        for stage, booster in self.boosters_.items():
            gain = booster.feature_importance(importance_type="gain")
            out[stage] = {name: float(g) for name, g in zip(self.feature_names_, gain, strict=True)}
        return out

    def importance(self) -> dict[str, float]:
        """Total gain per feature, summed over the fitted stages."""
        total = dict.fromkeys(self.feature_names_, 0.0)
        for gains in self.importance_by_stage().values():
            for name, g in gains.items():
                total[name] += g
        return total

    def contributions(self, data: FoldData, stage: str = MAIN) -> np.ndarray:
        """SHAP values (rows, n_features + 1; last column the bias) from LightGBM's TreeSHAP.

        They sum per row to the stage's raw score: the unclipped, unmasked stage-2 prediction for
        rank/regression, log-odds for the binary model and the ``nonzero`` classifier.
        """
        X = self._checked_matrix(data)
        if stage not in (STAGE1, MAIN):
            raise PluginError(f"model 'lgbm': unknown stage {stage!r}; use {STAGE1!r} or {MAIN!r}")
        if stage not in self.boosters_:
            raise PluginError(f"model 'lgbm': stage {stage!r} was not fitted (two_stage off, or one class in training)")
        contrib = self.boosters_[stage].predict(X, pred_contrib=True, num_threads=self._threads(X.shape[0]))
        return np.asarray(contrib, dtype=np.float64).reshape(X.shape[0], X.shape[1] + 1)

    def raw_score(self, data: FoldData, stage: str = MAIN) -> np.ndarray:
        """A stage's raw score (what ``contributions`` rows sum to)."""
        X = self._checked_matrix(data)
        if stage not in self.boosters_:
            raise PluginError(f"model 'lgbm': stage {stage!r} was not fitted")
        return self.boosters_[stage].predict(X, raw_score=True, num_threads=self._threads(X.shape[0])).astype(np.float64)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        if not self.boosters_:
            raise PluginError("model 'lgbm' is not fitted; nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for stage, booster in self.boosters_.items():
            (directory / _booster_file(stage)).write_text(booster.model_to_string())
        meta = {
            "format": FORMAT_VERSION,
            "lightgbm": lgb.__version__,
            "params": self.params,
            "task": self.task,
            "seed": self.seed,
            "threshold": self.params["threshold"],
            "feature_names": self.feature_names_,
            "stages": list(self.boosters_),
            "best_iteration": self.best_iteration_,
            "stage1_constant": self.stage1_constant_,
            "stage1_labels": self.stage1_labels_,
            "train_threads": self._train_threads,
        }
        (directory / _META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> LGBMModel:
        directory = Path(directory)
        path = directory / _META
        if not path.is_file():
            raise PluginError(f"{directory}: not a saved lgbm model (no {_META})")
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT_VERSION:
            raise PluginError(f"{path}: unsupported lgbm model format {meta.get('format')!r}")
        model = cls(meta["params"], meta["task"], meta["seed"])
        model.feature_names_ = list(meta["feature_names"])
        model.best_iteration_ = {k: int(v) for k, v in meta["best_iteration"].items()}
        constant = meta.get("stage1_constant")
        model.stage1_constant_ = None if constant is None else float(constant)
        model.stage1_labels_ = meta.get("stage1_labels")
        model.boosters_ = {
            stage: lgb.Booster(model_str=(directory / _booster_file(stage)).read_text()) for stage in meta["stages"]
        }
        return model
