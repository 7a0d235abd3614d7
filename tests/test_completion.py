"""Shell completion that completes: cell lines, choices, model parameters and chromosomes, through
the console-script entry point (its light path) and through Typer's own completion, on the demo
dataset written by the test session. Timings belong to benchmarks/bench_startup.py, not here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import train_run_dir

HEAVY = ["pandas", "numpy", "torch", "lightgbm", "pyBigWig", "pyarrow", "scipy", "epx_lgbm.model",
         "epx_example.model", "epx.io.genes", "epx.split", "typer._adapters", "pydantic"]

LIGHT = ("import sys\nsys.argv = ['epx']\nfrom epx.cli import main\ntry:\n    main()\nexcept SystemExit as e:\n"
         "    code = e.code\nelse:\n    code = None\n"
         f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], code, file=sys.stderr)\n")


def _env(line: str, shell: str) -> dict[str, str]:
    env = {**os.environ, "_EPX_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        env.update(COMP_WORDS=line, COMP_CWORD=str(len(line.split(" ")) - 1))
    else:
        env.update(_TYPER_COMPLETE_ARGS=line, _TYPER_COMPLETE_FISH_ACTION="get-args")
    return env


def light(line: str, shell: str = "bash") -> tuple[str, list[str]]:
    """Complete through `epx` as the shell runs it (the entry point's light path); (stdout, heavy modules)."""
    result = subprocess.run([sys.executable, "-c", LIGHT], env=_env(line, shell), capture_output=True, text=True)
    marker = [ln for ln in result.stderr.splitlines() if ln.startswith("HEAVY")]
    assert marker, result.stderr
    heavy, _, code = marker[-1].removeprefix("HEAVY ").rpartition("] ")
    assert code in ("0", "None"), result.stderr
    return result.stdout, [m for m in re.findall(r"'([^']+)'", heavy)]


def via_typer(line: str, shell: str = "bash") -> str:
    """Complete through Typer's own machinery (`app()` builds the whole command tree)."""
    code = "from epx.cli import app\napp(prog_name='epx')"
    return subprocess.run([sys.executable, "-c", code], env=_env(line, shell), capture_output=True, text=True).stdout


def both(line: str) -> list[str]:
    """Completions of `line`, asserting the light path and Typer agree (and that the light path stays light)."""
    fast, heavy = light(line)
    assert heavy == [], (line, heavy)
    assert sorted(fast.split()) == sorted(via_typer(line).split()), line
    return fast.split()


@pytest.fixture(scope="module")
def run_dir(demo_dataset, tmp_path_factory):
    out, _ = train_run_dir(tmp_path_factory, "ridge", demo_dataset, "--model", "ridge", "--chr-kfold", "3",
                           "--train-cells", "X1", "--test-cells", "X3")
    return out


def test_cell_lines_after_a_dataset_argument(demo_dataset):
    ds = str(demo_dataset)
    assert both(f"epx train {ds} --train-cells ") == ["X1", "X2", "X3"]
    assert both(f"epx train {ds} --train-cells X1,") == ["X1,X2", "X1,X3"]
    assert both(f"epx train --model ridge {ds} --test-cells X") == ["X1", "X2", "X3"]
    assert both(f"epx train {ds} --predict-cells X3") == ["X3"]  # the old spelling completes too
    assert both(f"epx split {ds} --test-cells X") == ["X1", "X2", "X3"]
    assert both(f"epx split {ds} --loco --cells=X2") == ["X2"]


def test_cell_lines_of_a_run(run_dir):
    got = both(f"epx submit {run_dir} --cell ")
    assert got[0] == "X3" and sorted(got) == ["X2", "X3"]  # unseen first; X1, trained on, is not submittable


def test_choices(demo_dataset):
    assert both(f"epx train {demo_dataset} --target r") == ["raw", "rank"]
    assert both("epx stack a b --rule ") == ["seed", "mean", "rank-mean", "nnls"]
    assert both("epx featurize --tss-mode ") == ["one-sided", "both"]
    assert both("epx check --build=h") == ["hg19", "hg38"]
    assert both("epx import deepchrome --build ") == ["hg19", "hg38"]


def test_model_parameters_without_model_code(demo_dataset):
    ds = str(demo_dataset)
    assert both(f"epx train {ds} --model lgbm --param n_") == ["n_estimators=", "n_jobs="]
    assert both(f"epx train {ds} --model ridge -p ") == ["alpha=", "fit_intercept=", "max_iter="]
    assert both(f"epx train {ds} --param ") == []  # no model chosen yet
    assert both(f"epx train {ds} --model l") == ["lgbm"]


def test_chromosomes(demo_dataset, demo_study):
    import pandas as pd

    from epx.io.chroms import chrom_sort_key

    expected = sorted(set(pd.read_csv(demo_study / "genes.tsv", sep="\t")["chr"]), key=chrom_sort_key)
    assert len(expected) > 3
    assert both(f"epx train {demo_dataset} --test ") == expected
    assert both(f"epx train {demo_dataset} --holdout {expected[0]},") == [f"{expected[0]},{c}" for c in expected[1:]]
    assert both(f"epx split {demo_study / 'genes.tsv'} --test chrX") == [c for c in expected if c.startswith("chrX")]
    # featurize records them, so completion need not read the gene table
    assert json.loads((demo_dataset / "dataset.json").read_text())["chroms"] == expected


def test_names_commands_and_paths(demo_dataset):
    ds = str(demo_dataset)
    assert both("epx tr") == ["train"]
    assert both("epx import ") == ["deepchrome"]
    assert both(f"epx train {ds} --t") == ["--test", "--train-cells", "--test-cells", "--target"]
    assert both(f"epx train {ds} --loco --lo") == []  # given once already
    assert "--predict-cells" not in both(f"epx train {ds} --")  # hidden
    assert both("epx train ") == []  # a directory: the shell completes paths
    assert both("epx demo --n") == ["--n-genes"]
    assert both("epx --debug --d") == []  # a root flag given once


def test_zsh_and_fish(demo_dataset):
    for shell in ("zsh", "fish"):
        for line in (f"epx train {demo_dataset} --train-cells X", "epx stack --", "epx ", "epx train x --seed "):
            fast, heavy = light(line, shell)
            assert heavy == []
            # Typer renders help through rich, which wraps long help lines; compare modulo whitespace
            assert fast.split() == via_typer(line, shell).split(), (shell, line)
    assert '"X1"' in light(f"epx train {demo_dataset} --train-cells X", "zsh")[0]
