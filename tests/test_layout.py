"""The package layout: stages import one way (io < features < steps), old module paths still work."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest
from conftest import ROOT

# What each stage may import from epx besides itself: readers know nothing of features, features
# nothing of the pipeline steps, and the plugin surface only the shell's errors. epx.ranks is a
# numpy-only helper below every stage.
ALLOWED = {
    "io": ("epx.io", "epx.errors", "epx._version", "epx.console", "epx.ranks"),
    "features": ("epx.features", "epx.io", "epx.errors", "epx._version", "epx.console"),
    "models": ("epx.models", "epx.errors", "epx._version"),
}


def _epx_imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("epx"):
            names = [node.module] if node.module != "epx" else [f"epx.{a.name}" for a in node.names]
            yield from ((node.lineno, n) for n in names)
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("epx"))


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_stages_import_one_way(stage):
    bad = []
    for path in sorted((ROOT / "epx" / stage).glob("*.py")):
        for line, name in _epx_imports(path):
            if not any(name == a or name.startswith(a + ".") for a in ALLOWED[stage]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("old,new", [
    ("epx.contract", "epx.models.contract"), ("epx.plugins", "epx.models.plugins"),
    ("epx.testing", "epx.models.testing"), ("epx.genes", "epx.io.genes"), ("epx.bigwig", "epx.io.bigwig"),
    ("epx.windows", "epx.features.windows"), ("epx.peaks", "epx.features.peaks"),
])
def test_old_module_paths_are_the_same_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    assert importlib.import_module(new).__spec__.name == new


def test_plugin_written_against_old_paths_still_imports():
    code = ("from epx.plugins import ModelSpec; from epx.contract import FoldData; "
            "from epx.features import derive_features; from epx.testing import check_model; "
            "from epx.models import ModelSpec as M; assert M is ModelSpec; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
