"""Start-up discipline and shell completion: `epx` must stay instant on every TAB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

HEAVY = ["pandas", "numpy", "torch", "lightgbm", "pyBigWig", "pybedtools", "pyarrow", "scipy", "cyvcf2", "pyfaidx",
         "sklearn", "bed_reader", "enformer_pytorch", "epx_enformer", "epx.sequence", "epx.personalize",
         "epx_example", "epx.io.genes", "epx.split"]


def test_import_cli_is_light():
    code = (
        "import sys, epx.cli\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import epx.cli pulled in heavy modules: {out}"


def test_model_completion_does_not_import_plugins():
    code = (
        "import os, sys\n"
        "os.environ.update(_EPX_COMPLETE='complete_bash', _TYPER_COMPLETE_ARGS='epx models ri', COMP_WORDS='epx models ri', COMP_CWORD='2')\n"
        "from epx.cli import app\n"
        "try:\n    app(prog_name='epx')\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "ridge" in out
    assert "HEAVY []" in out, out


def test_version_and_help(run):
    from epx import __version__

    assert run("--version").stdout.strip() == f"epx {__version__}"
    help_text = run("--help").stdout
    for command in ("demo", "models", "check", "split"):
        assert command in help_text


def _complete(run, line: str) -> list[str]:
    words = line.split(" ")
    env = {"_EPX_COMPLETE": "complete_bash", "_TYPER_COMPLETE_ARGS": line,
           "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    result = run(env=env)
    return result.stdout.split()


def test_dynamic_completion(run):
    assert _complete(run, "epx models ri") == ["ridge"]
    # cell lines come from the dataset/labels already on the command line
    got = _complete(run, "epx split genes.tsv --labels X1=a.tsv --labels X2=b.tsv --train-cells X")
    assert got == ["X1", "X2"]
    got = _complete(run, "epx split genes.tsv --labels X1=a.tsv --labels X2=b.tsv --train-cells X1,")
    assert got == ["X1,X2"]


def test_static_completion_scripts_are_fresh():
    result = subprocess.run([sys.executable, str(ROOT / "completions" / "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (ROOT / "completions" / "_epx").read_text().startswith("#compdef epx\n")


def test_show_completion():
    """In a fresh process: in-process, click's state left by earlier tests made this flaky."""
    env = {**os.environ, "SHELL": "/bin/bash"}
    sibling = Path(sys.executable).with_name("epx")  # this environment's console script
    epx = str(sibling) if sibling.exists() else shutil.which("epx")
    result = subprocess.run([epx, "--show-completion", "bash"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "_epx_completion" in result.stdout, result.stdout


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_clean_including_import_ban():
    result = subprocess.run(["ruff", "check", "epx", "plugins", "tests", "benchmarks", "completions"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
