"""One vocabulary across commands: option names, Unix-style help, choices, hidden old spellings."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile

import pytest
from conftest import assert_user_error, train_run_dir

from epx import choices


def _wrote(stderr: str, path) -> bool:
    """The last stderr message is ``wrote PATH`` (rich may wrap a long path)."""
    return re.sub(r"\s+", "", stderr).endswith(f"wrote{path}")


def _helps(run):
    """(command path, help text) for every command and group of the real CLI."""
    import typer.main

    from epx.cli import app

    out = [("epx", run("--help").stdout)]
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        out.append((f"epx {name}", run(name, "--help").stdout))
        for sub in getattr(cmd, "commands", {}):
            out.append((f"epx {name} {sub}", run(name, sub, "--help").stdout))
    return out


def test_help_has_no_type_noise(run):
    helps = _helps(run)
    assert len(helps) >= 12
    for path, text in helps:
        assert text.startswith("Usage: "), path
        # Typer's defaults: <path>, <list[Path]>, <str>, <int> type labels and {ARG} usage braces
        assert not re.search(r"<[a-zA-Z]", text), (path, text)
        assert "{" not in text and "list[" not in text and "PATH" not in text, (path, text)


def test_help_metavars_required_and_choices(run):
    train = run("train", "--help").stdout
    assert "Usage: epx train [OPTIONS] DATASET" in train
    for fragment in ("--model NAME", "-o, --output DIR", "--test-cells CELLS", "--holdout CHROMS", "--random K",
                     "--param KEY=VALUE", "--target [raw|log1p|rank|nonzero|binary]"):
        assert fragment in train, fragment
    assert re.search(r"--model NAME .*\[required\]", train.replace("\n", " "))
    assert "--predict-cells" not in train  # the old spelling is hidden
    assert "--rule [seed|mean|rank-mean|nnls]" in run("stack", "--help").stdout
    assert "Usage: epx stack [OPTIONS] RUN..." in run("stack", "--help").stdout
    featurize = run("featurize", "--help").stdout
    assert "--tss-mode [one-sided|both]" in featurize and "--workers N" in featurize
    assert "--build [hg19|hg38]" in run("check", "--help").stdout
    submit = run("submit", "--help").stdout
    assert "-o, --output DIR" in submit and "--out-dir" not in submit
    demo = run("demo", "--help").stdout
    assert "--n-genes N" in demo and "--genes" not in demo
    deepchrome = run("import", "deepchrome", "--help").stdout
    assert "--keep-bins N" in deepchrome and "--bins" not in deepchrome


def test_choices_match_the_library():
    from epx.featurize import FeaturizeParams
    from epx.io.genes import BUILDS
    from epx.io.labels import TARGETS
    from epx.stack import RULES

    assert choices.TARGETS == TARGETS
    assert choices.STACK_RULES == RULES
    assert set(choices.BUILDS) == set(BUILDS)
    for mode in choices.TSS_MODES:
        FeaturizeParams(tss_mode=mode)
    with pytest.raises(Exception, match="tss-mode"):
        FeaturizeParams(tss_mode="upstream")


def test_choices_are_checked(run):
    result = run("train", "ds", "--model", "ridge", "-o", "x", "--target", "ranks")
    assert result.exit_code == 2 and "ranks" in result.stderr
    result = run("featurize", "--list-features", "--workers", "0")
    assert result.exit_code == 2 and "--workers" in result.stderr


def test_demo_n_genes_and_old_spelling(tmp_path, run):
    new, old = tmp_path / "new", tmp_path / "old"
    assert run("demo", new, "--n-genes", "200").exit_code == 0
    result = run("demo", old, "--genes", "200")
    assert result.exit_code == 0, result.stderr
    assert _wrote(result.stderr, old)
    assert (new / "genes.tsv").read_text() == (old / "genes.tsv").read_text()
    assert len((old / "genes.tsv").read_text().splitlines()) == 201
    assert_user_error(run("demo", tmp_path / "both", "--n-genes", "300", "--genes", "200"),
                      "--n-genes and --genes are the same option")


@pytest.fixture(scope="module")
def random_run(demo_dataset, tmp_path_factory):
    """epx train with the new spellings: --random K and --test-cells."""
    return train_run_dir(tmp_path_factory, "ridge-random", demo_dataset, "--model", "ridge", "--random", "3",
                         "--train-cells", "X1,X2", "--test-cells", "X3")


def test_train_random_and_test_cells(random_run):
    import json

    import pandas as pd

    from epx.split import RANDOM_WARNING

    out, result = random_run
    assert RANDOM_WARNING.split()[0] in result.stderr and "leakage" in result.stderr
    assert _wrote(result.stderr, out)
    config = json.loads((out / "config.json").read_text())
    assert config["predict_cells"] == ["X3"] and config["split"] == "random"
    split = pd.read_csv(out / "split.tsv", sep="\t")
    assert split.loc[split["cell_line"] != "X3", "fold"].nunique() == 3
    assert set(split.loc[split["cell_line"] == "X3", "role"]) == {"test"}
    assert set(pd.read_parquet(out / "oof.parquet")["cell_line"]) == {"X1", "X2", "X3"}


def test_train_refuses_two_schemes_including_random(demo_dataset, tmp_path, run):
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--loco", "--random", "3", "-o", tmp_path / "r"),
                      "--loco, --random")


def test_submit_output_and_table_header(random_run, demo_study, tmp_path, run):
    out, _ = random_run
    args = ["submit", out, "--cell", "X3", "--genes", demo_study / "test_genes.tsv", "--last-name", "Doe",
            "--first-name", "Jane"]
    result = run(*args, "-o", tmp_path / "new")
    assert result.exit_code == 0, result.stderr
    zip_path = tmp_path / "new" / "Doe_Jane_Project1.zip"
    assert zipfile.is_zipfile(zip_path)
    assert re.search(r"item\s.*value", result.stdout)  # the summary table has a header row
    assert _wrote(result.stderr, zip_path)
    result = run(*args, "--out-dir", tmp_path / "old")  # the old spelling still works
    assert result.exit_code == 0, result.stderr
    assert zipfile.is_zipfile(tmp_path / "old" / "Doe_Jane_Project1.zip")
    assert_user_error(run(*args, "-o", tmp_path / "a", "--out-dir", tmp_path / "b"), "--output and --out-dir")


def test_featurize_table_header_and_wrote(demo_study, tmp_path, run):
    out = tmp_path / "ds"
    result = run("featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
                 "--cells", "X1", "--assays", "H3K4me3", "--no-bins", "-o", out, "--workers", "1")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"item\s.*value", result.stdout)
    assert _wrote(result.stderr, out)


def test_root_help_light_path_matches_typer():
    """`epx --help` from the console-script entry point (no command built) equals Typer's own."""
    import os

    light = "import sys; sys.argv = ['epx', '{flag}']; from epx.cli import main; main()"
    typer = "import sys; sys.argv = ['epx', '{flag}']; from epx.cli import app; app(prog_name='epx')"
    for columns, flag in (("80", "--help"), ("50", "-h")):
        env = {**os.environ, "COLUMNS": columns}
        got = [subprocess.run([sys.executable, "-c", code.format(flag=flag)], capture_output=True, text=True, env=env)
               for code in (light, typer)]
        assert got[0].returncode == got[1].returncode == 0, got[0].stderr + got[1].stderr
        assert got[0].stdout == got[1].stdout
        assert "Commands:" in got[0].stdout and "train" in got[0].stdout
