"""epx-lgbm: conformance, the ML4G two-stage mask, early stopping, interpretation, persistence."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from epx_lgbm import spec
from epx_lgbm.model import LGBMModel

from epx.errors import PluginError
from epx.io.labels import derive_target
from epx.models.contract import FoldData
from epx.models.testing import check_model

# Names LightGBM itself would reject (JSON characters, spaces): the model maps them internally.
FEATURES = ["DNase:tss", "H3K27ac [gene]", 'H3K4me3 "tss"', "noise_a", "noise_b", "noise_c"]
FAST = {"n_estimators": 60, "learning_rate": 0.1, "early_stopping_rounds": 10, "rounds_without_valid": 40}


def expression_fold(n: int, seed: int, *, zero_frac: float = 0.5, with_targets: bool = True,
                    target: str = "rank") -> FoldData:
    """Two cell lines; ~zero_frac of genes are not expressed (decided by feature 0), the level of
    the others by feature 1: the shape of the ML4G data, where the two-stage model pays off."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    expressed = X[:, 0] + rng.normal(scale=0.3, size=n) > np.quantile(X[:, 0], zero_frac)
    raw = np.where(expressed, np.exp(1.0 + X[:, 1] + rng.normal(scale=0.2, size=n)), 0.0)
    cells = np.where(np.arange(n) % 2 == 0, "X1", "X2")
    rows = pd.DataFrame({"gene_id": [f"g{seed}_{i}" for i in range(n)], "cell_line": cells})
    targets = {kind: np.empty(n) for kind in ("raw", "log1p", "rank", "nonzero")}
    for cell in ("X1", "X2"):
        idx = np.flatnonzero(cells == cell)
        for kind in targets:
            targets[kind][idx] = derive_target(raw[idx], kind)
    return FoldData(X=X, y=targets[target].copy(), rows=rows, feature_names=list(FEATURES),
                    targets=targets if with_targets else {})


def unlabelled(fold: FoldData) -> FoldData:
    return FoldData(X=fold.X, y=None, rows=fold.rows, feature_names=fold.feature_names)


@pytest.fixture(scope="module")
def folds():
    return expression_fold(800, 1), expression_fold(200, 2), expression_fold(400, 3)


@pytest.fixture(scope="module")
def two_stage(folds):
    train, valid, _ = folds
    model = LGBMModel(FAST, "rank", seed=0)
    model.fit(train, valid)
    return model


# -- the contract ---------------------------------------------------------------------------------


def test_conforms(tmp_path):
    check_model("lgbm", tmp_path)


def test_spec_module_is_light():
    code = "import sys, epx_lgbm\nprint(sorted(m for m in ('numpy', 'pandas', 'scipy', 'lightgbm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing the spec pulled in {out}"


def test_spec():
    assert spec.name == "lgbm" and spec.input_kind == "tabular"
    assert set(spec.tasks) == {"rank", "regression", "binary"}
    assert set(spec.param_help) == set(spec.params)
    assert spec.params["threshold"] == 0.4 and spec.params["two_stage"] is True


def test_params_are_resolved_and_checked():
    model = LGBMModel({"threshold": "0.25", "mask": "false"}, "rank")
    assert model.params["threshold"] == 0.25 and model.params["mask"] is False
    assert model.params["n_estimators"] == spec.params["n_estimators"]  # defaults fill the rest
    with pytest.raises(PluginError, match="no parameter"):
        LGBMModel({"nope": 1}, "rank")
    with pytest.raises(PluginError, match="threshold"):
        LGBMModel({"threshold": 1.5}, "rank")
    with pytest.raises(PluginError, match="task"):
        LGBMModel({}, "multiclass")


# -- the two-stage model --------------------------------------------------------------------------


def test_mask_zeroes_rows_below_threshold(folds, two_stage):
    test = unlabelled(folds[2])
    p = two_stage.predict_proba(test)
    pred = two_stage.predict(test)
    below = p < 0.4
    assert 0.2 < below.mean() < 0.8, "synthetic data should leave about half the genes unexpressed"
    assert (pred[below] == 0.0).all()
    assert (pred[~below] != 0.0).all()
    # the classifier learned which genes are expressed
    truth = folds[2].targets["nonzero"]
    assert ((p >= 0.5) == (truth == 1)).mean() > 0.85


def test_mask_off_and_threshold_zero_do_not_mask(folds, two_stage):
    train, valid, test = folds
    masked = two_stage.predict(unlabelled(test))
    p = two_stage.predict_proba(unlabelled(test))
    for override in ({"mask": False}, {"threshold": 0.0}):
        model = LGBMModel({**FAST, **override}, "rank", seed=0)
        model.fit(train, valid)
        plain = model.predict(unlabelled(test))
        assert (plain != 0.0).all(), f"{override}: no prediction may be forced to 0"
        keep = p >= 0.4
        np.testing.assert_array_equal(plain[keep], masked[keep])  # same stages, only the mask differs


def test_predict_score_is_the_unmasked_stage2(folds, two_stage):
    test = unlabelled(folds[2])
    score, pred, p = two_stage.predict_score(test), two_stage.predict(test), two_stage.predict_proba(test)
    np.testing.assert_array_equal(pred, np.where(p >= 0.4, score, 0.0))
    assert (score > 0).mean() > 0.9 and score.max() <= 1.0


def test_two_stage_ranks_well(folds, two_stage):
    from scipy.stats import spearmanr

    test = folds[2]
    rho_two = spearmanr(two_stage.predict(unlabelled(test)), test.y).statistic
    assert rho_two > 0.6


def test_predict_proba_ranges_and_availability(folds, two_stage):
    train, valid, test = folds
    p = two_stage.predict_proba(unlabelled(test))
    assert p.shape == (len(test),) and p.min() >= 0 and p.max() <= 1 and np.ptp(p) > 0

    binary = FoldData(X=train.X, y=train.targets["nonzero"], rows=train.rows, feature_names=FEATURES)
    model = LGBMModel(FAST, "binary", seed=0)
    model.fit(binary, None)
    proba = model.predict_proba(unlabelled(test))
    np.testing.assert_array_equal(proba, model.predict(unlabelled(test)))
    assert proba.min() >= 0 and proba.max() <= 1

    single = LGBMModel({**FAST, "two_stage": False}, "regression", seed=0)
    assert not hasattr(single, "predict_proba")  # no classifier: the optional method is absent
    assert hasattr(LGBMModel(FAST, "regression"), "predict_proba")


def test_single_class_stage1_is_skipped(folds):
    train, _, test = folds
    everything = dict(train.targets, nonzero=np.ones(len(train)))
    model = LGBMModel(FAST, "rank", seed=0)
    model.fit(FoldData(train.X, train.y, train.rows, FEATURES, everything))
    assert "nonzero" not in model.boosters_ and model.stage1_constant_ == 1.0
    assert (model.predict_proba(unlabelled(test)) == 1.0).all()
    assert (model.predict(unlabelled(test)) != 0.0).all()

    nothing = dict(train.targets, nonzero=np.zeros(len(train)))
    model.fit(FoldData(train.X, train.y, train.rows, FEATURES, nothing))
    assert (model.predict_proba(unlabelled(test)) == 0.0).all()
    assert (model.predict(unlabelled(test)) == 0.0).all()


def test_stage1_labels_without_targets(folds):
    train, _, _ = folds
    # rank/log1p/raw targets tie the zero-expression genes at each cell line's minimum
    bare = expression_fold(800, 1, with_targets=False, target="log1p")
    model = LGBMModel(FAST, "regression", seed=0)
    model.fit(bare)
    assert model.stage1_labels_.startswith("y > min(y)")
    with_targets = LGBMModel(FAST, "regression", seed=0)
    with_targets.fit(FoldData(bare.X, bare.y, bare.rows, FEATURES, train.targets))
    assert with_targets.stage1_labels_ == "targets.nonzero"
    np.testing.assert_array_equal(model.predict(unlabelled(bare)), with_targets.predict(unlabelled(bare)))
    # continuous data without a tied minimum has no zero block: stage 1 is skipped
    rng = np.random.default_rng(0)
    smooth = FoldData(train.X, rng.normal(size=len(train)), train.rows, FEATURES)
    model.fit(smooth)
    assert "nonzero" not in model.boosters_ and model.stage1_constant_ == 1.0


def test_missing_features_are_allowed(folds):
    train, valid, test = folds
    X = train.X.copy()
    X[::3, 2] = np.nan
    X[:, 5] = np.nan  # an assay absent in every row
    model = LGBMModel(FAST, "rank", seed=0)
    model.fit(FoldData(X, train.y, train.rows, FEATURES, train.targets), valid)
    Xt = test.X.copy()
    Xt[::2, 0] = np.inf
    pred = model.predict(FoldData(Xt, None, test.rows, FEATURES))
    assert np.isfinite(pred).all()


def test_feature_mismatch_is_an_error(folds, two_stage):
    test = folds[2]
    with pytest.raises(PluginError, match="features"):
        two_stage.predict(FoldData(test.X[:, :3], None, test.rows, FEATURES[:3]))
    with pytest.raises(PluginError, match="trained with"):
        two_stage.predict(FoldData(test.X, None, test.rows, FEATURES[::-1]))


# -- one binning per fold ------------------------------------------------------------------------


def test_stages_share_one_binned_dataset(folds, monkeypatch):
    """A two-stage fit with a validation side builds two LightGBM Datasets, not four: the train
    side, binned once and shared by both stages, and the validation side on its bin edges."""
    import lightgbm as lgb

    train, valid, _ = folds
    built = []
    real_init = lgb.Dataset.__init__

    def counting_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(lgb.Dataset, "__init__", counting_init)
    model = LGBMModel(FAST, "rank", seed=0)
    model.fit(train, valid)
    assert set(model.boosters_) == {"nonzero", "main"}
    assert [d.reference is None for d in built] == [True, False]
    assert built[1].reference is built[0]  # the validation side is binned with the train side's edges
    built.clear()
    model.fit(train)
    assert len(built) == 1


def test_shared_binning_changes_no_prediction(folds):
    """Sharing the binned Dataset changes nothing: each stage is the model its stage alone makes
    (tree for tree), and the predictions are those of the code before the sharing."""
    import json
    from pathlib import Path

    import lightgbm as lgb

    train, valid, _ = folds
    two = LGBMModel(FAST, "rank", seed=0)
    two.fit(train, valid)
    alone = LGBMModel({**FAST, "two_stage": False}, "rank", seed=0)
    alone.fit(train, valid)
    nonzero = lambda f: FoldData(f.X, f.targets["nonzero"], f.rows, FEATURES)  # noqa: E731
    classifier = LGBMModel(FAST, "binary", seed=0)
    classifier.fit(nonzero(train), nonzero(valid))
    assert two.boosters_["main"].model_to_string() == alone.boosters_["main"].model_to_string()
    assert two.boosters_["nonzero"].model_to_string() == classifier.boosters_["main"].model_to_string()

    recorded = json.loads((Path(__file__).parent / "data" / "prechange_predictions.json").read_text())
    if recorded["lightgbm"] != lgb.__version__:
        pytest.skip(f"predictions recorded with lightgbm {recorded['lightgbm']}, this is {lgb.__version__}")
    train, valid, test = expression_fold(400, 11), expression_fold(100, 12), unlabelled(expression_fold(40, 13))
    for case, va in (("valid", valid), ("no_valid", None)):
        model = LGBMModel(FAST, "rank", seed=0)
        model.fit(train, va)
        want = recorded["cases"][case]
        assert model.best_iteration_ == want["best_iteration"]
        np.testing.assert_allclose(model.predict(test), want["predict"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(model.predict_proba(test), want["predict_proba"], rtol=1e-9, atol=1e-12)


# -- early stopping -------------------------------------------------------------------------------


def test_early_stopping_uses_valid(folds):
    train, valid, _ = folds
    rng = np.random.default_rng(5)
    noise = lambda fold: FoldData(fold.X, rng.normal(size=len(fold)), fold.rows, FEATURES)  # noqa: E731
    params = {**FAST, "n_estimators": 400, "two_stage": False}
    model = LGBMModel(params, "regression", seed=0)
    model.fit(noise(train), noise(valid))  # nothing to learn: validation loss stops improving early
    assert 1 <= model.best_iteration < 400
    assert model.boosters_["main"].current_iteration() == model.best_iteration  # truncated

    staged = LGBMModel({**FAST, "n_estimators": 400}, "rank", seed=0)
    staged.fit(train, valid)
    assert set(staged.best_iteration_) == {"nonzero", "main"}
    assert all(1 <= it < 400 for it in staged.best_iteration_.values())


def test_without_valid_trains_a_fixed_number_of_rounds(folds):
    train = folds[0]
    model = LGBMModel({**FAST, "n_estimators": 400, "rounds_without_valid": 25}, "rank", seed=0)
    model.fit(train, None)
    assert model.best_iteration_ == {"nonzero": 25, "main": 25}
    capped = LGBMModel({**FAST, "n_estimators": 12, "rounds_without_valid": 25}, "rank", seed=0)
    capped.fit(train)
    assert capped.best_iteration == 12


# -- interpretation -------------------------------------------------------------------------------


def test_importance(two_stage):
    total = two_stage.importance()
    by_stage = two_stage.importance_by_stage()
    assert list(total) == FEATURES
    assert set(by_stage) == {"nonzero", "main"}
    for gains in by_stage.values():
        assert list(gains) == FEATURES
        assert all(isinstance(v, float) and v >= 0 for v in gains.values())
    for name in FEATURES:
        assert total[name] == pytest.approx(by_stage["nonzero"][name] + by_stage["main"][name])
    # feature 0 decides expression, feature 1 its level
    assert max(by_stage["nonzero"], key=by_stage["nonzero"].get) == FEATURES[0]
    assert by_stage["main"][FEATURES[1]] > by_stage["main"][FEATURES[3]]


def test_contributions_sum_to_raw_prediction(folds, two_stage):
    test = unlabelled(folds[2])
    for stage in ("main", "nonzero"):
        contrib = two_stage.contributions(test, stage=stage)
        assert contrib.shape == (len(test), len(FEATURES) + 1)
        raw = two_stage.boosters_[stage].predict(np.asarray(test.X, dtype=float), raw_score=True)
        np.testing.assert_allclose(contrib.sum(axis=1), raw, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(two_stage.raw_score(test, stage), raw)
    # for the regressor the raw score is the unmasked, unclipped stage-2 prediction
    p = two_stage.predict_proba(test)
    keep = p >= 0.4
    summed = np.clip(two_stage.contributions(test).sum(axis=1), 0, 1)
    np.testing.assert_allclose(summed[keep], two_stage.predict(test)[keep], rtol=1e-6, atol=1e-8)

    single = LGBMModel({**FAST, "two_stage": False}, "rank", seed=0)
    single.fit(folds[0])
    with pytest.raises(PluginError, match="not fitted"):
        single.contributions(test, stage="nonzero")


# -- persistence and determinism ------------------------------------------------------------------


def test_save_load_round_trip(tmp_path, folds, two_stage):
    test = unlabelled(folds[2])
    two_stage.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["lgbm.json", "main.lgbm.txt", "nonzero.lgbm.txt"]
    loaded = LGBMModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(test), two_stage.predict(test))
    np.testing.assert_array_equal(loaded.predict_proba(test), two_stage.predict_proba(test))
    np.testing.assert_array_equal(loaded.contributions(test), two_stage.contributions(test))
    assert loaded.importance() == two_stage.importance()
    assert loaded.best_iteration_ == two_stage.best_iteration_
    assert (loaded.params, loaded.task, loaded.seed, loaded.feature_names_) == (
        two_stage.params, two_stage.task, two_stage.seed, two_stage.feature_names_)


def test_save_load_keeps_a_skipped_stage1(tmp_path, folds):
    train, _, test = folds
    model = LGBMModel(FAST, "rank", seed=0)
    model.fit(FoldData(train.X, train.y, train.rows, FEATURES, dict(train.targets, nonzero=np.zeros(len(train)))))
    model.save(tmp_path / "z")
    loaded = LGBMModel.load(tmp_path / "z")
    assert loaded.stage1_constant_ == 0.0
    assert (loaded.predict(unlabelled(test)) == 0.0).all()


def test_deterministic(folds, two_stage):
    train, valid, test = folds
    again = LGBMModel(FAST, "rank", seed=0)
    again.fit(train, valid)
    np.testing.assert_array_equal(again.predict(unlabelled(test)), two_stage.predict(unlabelled(test)))
    np.testing.assert_array_equal(again.predict_proba(unlabelled(test)), two_stage.predict_proba(unlabelled(test)))
    other = LGBMModel(FAST, "rank", seed=1)  # bagging and feature sampling follow the seed
    other.fit(train, valid)
    assert not np.array_equal(other.predict(unlabelled(test)), two_stage.predict(unlabelled(test)))
