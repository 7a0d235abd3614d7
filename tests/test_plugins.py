"""The plugin contract: discovery, a broken plugin as a listed error, params, conformance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import assert_user_error

from epx.errors import PluginError
from epx.models.contract import FoldData
from epx.models.plugins import ModelSpec, coerce_param, discover, get_spec, read_param_config
from epx.models.testing import check_model


def test_models_lists_the_example_plugin(run):
    result = run("models", "--json")
    assert result.exit_code == 0
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    ridge = entries["ridge"]
    assert ridge["distribution"] == "epx-example" and ridge["version"] == "0.1.0"
    assert ridge["input_kind"] == "tabular" and "binary" in ridge["tasks"] and ridge["error"] is None
    table = run("models")
    assert "ridge" in table.stdout and "epx-example" in table.stdout
    params = run("models", "ridge")
    assert "alpha" in params.stdout and "1.0" in params.stdout


def test_unknown_model_lists_installed(run):
    assert_user_error(run("models", "nope"), "unknown model 'nope'", "ridge")


def _broken_plugins(tmp_path):
    """A real installed distribution whose entry points are broken in three ways."""
    dist = tmp_path / "epx_broken-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epx-broken\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(
        "[epx.models]\ncrash = epx_broken_import:spec\nnotaspec = epx_broken_obj:spec\nbadkind = epx_broken_kind:spec\n"
    )
    (tmp_path / "epx_broken_import.py").write_text("import a_module_that_does_not_exist\n")
    (tmp_path / "epx_broken_obj.py").write_text("spec = 42\n")
    (tmp_path / "epx_broken_kind.py").write_text(textwrap.dedent("""
        from epx.models.plugins import ModelSpec
        spec = ModelSpec(name="badkind", description="x", input_kind="images", tasks=("regression",), model="m:C")
    """))
    return tmp_path


def test_broken_plugin_is_listed_not_fatal(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(_broken_plugins(tmp_path))}
    result = subprocess.run([sys.executable, "-m", "epx.cli", "models", "--json"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert entries["ridge"]["error"] is None
    assert "ModuleNotFoundError" in entries["crash"]["error"]
    assert "not an epx ModelSpec" in entries["notaspec"]["error"]
    assert "unknown input kind 'images'" in entries["badkind"]["error"]
    assert entries["crash"]["distribution"] == "epx-broken"
    table = subprocess.run([sys.executable, "-m", "epx.cli", "models"], capture_output=True, text=True,
                           env={**env, "COLUMNS": "200"})  # one line per model: the message is not wrapped
    assert table.returncode == 0 and "failed to load" in table.stdout
    used = subprocess.run([sys.executable, "-m", "epx.cli", "models", "crash"], capture_output=True, text=True, env=env)
    assert used.returncode == 2 and "failed to load" in used.stderr


def test_param_coercion_and_config(tmp_path):
    spec = get_spec("ridge")
    assert spec.resolve_params({"alpha": "0.5", "fit_intercept": "false", "max_iter": "7"}) == {
        "alpha": 0.5, "fit_intercept": False, "max_iter": 7}
    with pytest.raises(PluginError, match="expects int"):
        spec.resolve_params({"max_iter": "many"})
    with pytest.raises(PluginError, match="no parameter 'lr'"):
        spec.resolve_params({"lr": "1"})
    assert coerce_param("m", "k", 3, 1.0) == 3.0 and coerce_param("m", "k", True, False) is True
    toml = tmp_path / "c.toml"
    toml.write_text("[ridge]\nalpha = 2.5\n")
    assert spec.resolve_params(read_param_config(toml, "ridge"))["alpha"] == 2.5
    yaml = tmp_path / "c.yaml"
    yaml.write_text("alpha: 3\n")
    assert spec.resolve_params(read_param_config(yaml, "ridge"))["alpha"] == 3.0


def test_spec_validation():
    with pytest.raises(PluginError, match="unknown task"):
        ModelSpec(name="x", description="d", input_kind="tabular", tasks=("clustering",), model="a:B")
    with pytest.raises(PluginError, match="module:Class"):
        ModelSpec(name="x", description="d", input_kind="tabular", tasks=("rank",), model="a.B")
    assert {e.name for e in discover()} >= {"ridge"}


def test_conformance_check_catches_a_bad_model(tmp_path, monkeypatch):
    """check_model must fail a model that ignores its input (so it can fail at all)."""
    module = tmp_path / "epx_constant_model.py"
    module.write_text(textwrap.dedent("""
        import numpy as np
        class Constant:
            def __init__(self, params, task, seed=0): pass
            def fit(self, train, valid=None): pass
            def predict(self, data): return np.zeros(len(data))
            def save(self, directory): directory.mkdir(parents=True, exist_ok=True); (directory / "x").write_text("")
            @classmethod
            def load(cls, directory): return cls({}, "regression")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec(name="constant", description="d", input_kind="tabular", tasks=("regression",),
                     model="epx_constant_model:Constant")
    with pytest.raises(AssertionError, match="constant"):
        check_model(spec, tmp_path)


def test_ridge_learns(tmp_path):
    from epx.models.testing import synthetic_fold

    check_model("ridge", tmp_path)
    cls = get_spec("ridge").load_class()
    train = synthetic_fold("tabular", 200, "regression", seed=1)
    model = cls(get_spec("ridge").resolve_params({}), "regression", 0)
    model.fit(train)
    X = train.X.copy()
    X[0, 3] = float("nan")  # a missing assay must not crash prediction
    pred = model.predict(FoldData(X=X, y=None, rows=train.rows))
    assert pred.shape == (200,) and bool(abs(pred[0]) < 100)


def test_every_optional_hook_is_documented_and_used():
    """Like datasette's hook meta-tests: a hook the core calls must be documented and tested."""
    from conftest import ROOT

    from epx.models.contract import OPTIONAL_HOOKS

    docs = (ROOT / "docs" / "plugins.md").read_text()
    core_src = "".join((ROOT / "epx" / name).read_text() for name in ("train.py", "explain.py"))
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    tests += "".join(p.read_text() for p in (ROOT / "plugins").glob("*/tests/test_*.py"))
    for hook in OPTIONAL_HOOKS:
        assert f"`{hook}(" in docs, f"{hook} is not documented in docs/plugins.md"
        assert f'"{hook}"' in core_src, f"neither epx train nor epx explain calls {hook}"
        assert hook in tests, f"no test exercises {hook}"


# -- parameter bounds and choices -------------------------------------------------------------


def _spec(**kw):
    base = {"name": "m", "description": "d", "input_kind": "tabular", "tasks": ("regression",), "model": "a:B",
            "params": {"alpha": 1.0, "rate": 0.1, "leaves": 31, "objective": "l2", "flag": True}}
    return ModelSpec(**{**base, **kw})


def test_bounds_and_choices_are_checked_by_resolve_params():
    spec = _spec(param_bounds={"alpha": (0, None), "rate": "(0, 1]", "leaves": "[2, inf)"},
                 param_choices={"objective": ("l2", "huber")})
    assert spec.resolve_params({"alpha": "0", "rate": "1", "leaves": "2", "objective": "huber"}) == {
        "alpha": 0.0, "rate": 1.0, "leaves": 2, "objective": "huber", "flag": True}
    for key, value, fragment in (("alpha", "-1", "[0, inf)"), ("rate", "0", "(0, 1]"), ("rate", "1.5", "(0, 1]"),
                                 ("leaves", "1", "[2, inf)"), ("alpha", "nan", "[0, inf)"), ("alpha", "inf", "[0, inf)")):
        with pytest.raises(PluginError) as err:
            spec.resolve_params({key: value})
        message = str(err.value)
        assert "\n" not in message and "model 'm'" in message and f"'{key}'" in message and fragment in message
    with pytest.raises(PluginError, match="'objective' = 'l1' is not allowed; choose one of l2, huber"):
        spec.resolve_params({"objective": "l1"})
    assert spec.allowed("rate") == "(0, 1]" and spec.allowed("objective") == "l2 | huber" and spec.allowed("flag") == ""


@pytest.mark.parametrize("kw, fragment", [
    ({"param_bounds": {"alhpa": (0, None)}}, "param_bounds names unknown parameter 'alhpa'"),
    ({"param_bounds": {"alpha": (2, None)}}, "default alpha=1.0 is outside its bounds [2, inf)"),
    ({"param_bounds": {"rate": "(0.1, 1]"}}, "default rate=0.1 is outside its bounds (0.1, 1]"),
    ({"param_bounds": {"alpha": (5, 1)}}, "is empty"),
    ({"param_bounds": {"alpha": "0..1"}}, "must be (low, high) or an interval"),
    ({"param_bounds": {"objective": (0, 1)}}, "needs a numeric default"),
    ({"param_bounds": {"flag": (0, 1)}}, "needs a numeric default"),
    ({"param_choices": {"objectiv": ("l2",)}}, "param_choices names unknown parameter 'objectiv'"),
    ({"param_choices": {"objective": ("huber", "l1")}}, "default objective='l2' is not one of its choices"),
    ({"param_choices": {"objective": "l2"}}, "non-empty tuple"),
])
def test_bad_bounds_fail_at_spec_construction(kw, fragment):
    with pytest.raises(PluginError) as err:
        _spec(**kw)
    assert fragment in str(err.value) and "model 'm'" in str(err.value)


def test_bad_bounds_are_caught_by_check_model(tmp_path):
    """A plugin whose spec declares a default outside its bounds is a listed error that check_model raises."""
    dist = tmp_path / "epx_badbounds-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epx-badbounds\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[epx.models]\nbadbounds = epx_badbounds:spec\n")
    (tmp_path / "epx_badbounds.py").write_text(textwrap.dedent("""
        from epx.models.plugins import ModelSpec
        spec = ModelSpec(name="badbounds", description="x", input_kind="tabular", tasks=("regression",),
                         model="m:C", params={"alpha": -1.0}, param_bounds={"alpha": (0, None)})
    """))
    code = "from epx.models.testing import check_model; check_model('badbounds', '.')"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode != 0 and "PluginError" in result.stderr
    assert "default alpha=-1.0 is outside its bounds [0, inf)" in result.stderr
    listed = subprocess.run([sys.executable, "-m", "epx.cli", "models", "--json"], capture_output=True, text=True, env=env)
    assert "outside its bounds" in {e["name"]: e for e in json.loads(listed.stdout)}["badbounds"]["error"]


def test_models_shows_bounds(run):
    table = run("models", "lgbm")
    assert table.exit_code == 0 and "allowed" in table.stdout and "(0, 1]" in table.stdout
    ridge = json.loads(run("models", "ridge", "--json").stdout)
    assert ridge["bounds"]["alpha"] == {"min": 0.0, "max": None, "min_inclusive": False, "max_inclusive": False,
                                        "interval": "(0, inf)"}
    assert ridge["bounds"]["max_iter"]["interval"] == "[1, inf)" and ridge["bounds"]["max_iter"]["min_inclusive"]
    assert ridge["params"]["alpha"] == 1.0 and ridge["choices"] == {}


@pytest.mark.parametrize("param, fragment", [
    ("alpha=-1", "model 'ridge': parameter 'alpha' = -1.0 is out of range; allowed: (0, inf)"),
    ("alpha=0", "parameter 'alpha' = 0.0 is out of range; allowed: (0, inf)"),
    ("max_iter=0", "parameter 'max_iter' = 0 is out of range; allowed: [1, inf)"),
])
def test_train_refuses_out_of_range_parameters(demo_dataset, run, tmp_path, param, fragment):
    out = tmp_path / "r"
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--loco", "-p", param, "-o", out), fragment)
    assert not out.exists()


def test_lgbm_bounds_through_the_cli(demo_dataset, run, tmp_path):
    for param, fragment in (("learning_rate=0", "(0, inf)"), ("feature_fraction=1.5", "(0, 1]"),
                            ("num_leaves=1", "[2, inf)")):
        out = tmp_path / param.split("=")[0]
        assert_user_error(run("train", demo_dataset, "--model", "lgbm", "--loco", "-p", param, "-o", out),
                          "model 'lgbm'", param.split("=")[0], fragment)
        assert not out.exists()
