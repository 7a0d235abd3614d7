"""Safe outputs through the real CLI: --force never deletes a user's file, one writer at a time,
writability checked before the work, and environment failures (read-only or full disk) in one line
with nothing partial left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_user_error, demo_labels
from filelock import FileLock

from epx.outputs import LOCK_SUFFIX, MARKER, SPLIT_HEADER, OutputError, atomic_dir, atomic_file


def _train(dataset, out, model):
    from typer.testing import CliRunner

    from epx.cli import app

    args = ["train", str(dataset), "--model", model, "--chr-kfold", "3", "--train-cells", "X1",
            "--predict-cells", "X3", "-o", str(out), "--shap-rows", "50"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def ridge_run(demo_dataset, tmp_path_factory):
    return _train(demo_dataset, tmp_path_factory.mktemp("ridge") / "run", "ridge")


@pytest.fixture(scope="module")
def lgbm_run(demo_dataset, tmp_path_factory):
    return _train(demo_dataset, tmp_path_factory.mktemp("lgbm") / "run", "lgbm")


def _featurize(demo_study, out, *extra):
    return ["featurize", "--genes", demo_study / "genes.tsv", "--manifest", demo_study / "manifest.tsv",
            *demo_labels(demo_study, ("X1",)), "--assays", "H3K4me3", "--cells", "X1", "-o", out, *extra]


def _user_files(directory: Path) -> dict[str, str]:
    """A user's files in a directory epx is asked to replace."""
    (directory / "labels").mkdir(parents=True, exist_ok=True)
    files = {"analysis.R": "x <- read.csv('oof.csv')\n", "labels/mine.tsv": "G1\t3\n", "thesis.tex": "\\chapter{}\n"}
    for rel, text in files.items():
        (directory / rel).write_text(text)
    return files


def _assert_kept(directory: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        assert (directory / rel).read_text() == text, rel


def _no_temp_left(parent: Path) -> None:
    leftovers = [p.name for p in parent.iterdir() if p.name.startswith(".") and (p.name.endswith(".tmp") or LOCK_SUFFIX in p.name)]
    assert not leftovers, leftovers


# -- --force replaces only epx's own outputs -----------------------------------------------------


def test_force_refuses_user_files_in_every_output_directory(run, demo_study, demo_dataset, ridge_run, tmp_path):
    cases = {
        "featurize": lambda out: _featurize(demo_study, out, "--force"),
        "train": lambda out: ["train", demo_dataset, "--model", "ridge", "--chr-kfold", "3", "--train-cells", "X1",
                              "-o", out, "--force"],
        "stack": lambda out: ["stack", ridge_run, ridge_run, "--rule", "mean", "-o", out, "--force"],
        "demo": lambda out: ["demo", out, "--force"],
    }
    for name, args in cases.items():
        # A directory that is not an epx output at all, and an epx output a user added files to.
        plain = tmp_path / f"{name}-plain"
        kept = _user_files(plain)
        assert_user_error(run(*args(plain)), str(plain), "not written by epx", "analysis.R")
        _assert_kept(plain, kept)
        assert sorted(p.name for p in plain.iterdir()) == ["analysis.R", "labels", "thesis.tex"]
        _no_temp_left(tmp_path)


def test_force_refuses_a_user_file_added_to_an_epx_output(run, demo_study, tmp_path):
    out = tmp_path / "ds"
    assert run(*_featurize(demo_study, out)).exit_code == 0
    assert (out / MARKER).is_file()
    kept = _user_files(out)
    assert_user_error(run(*_featurize(demo_study, out, "--force")), str(out), "holds analysis.R, which epx did not write")
    _assert_kept(out, kept)
    for rel in kept:
        (out / rel).unlink()
    (out / "labels").rmdir()
    assert run(*_featurize(demo_study, out, "--force")).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, "dataset.json", "genes.parquet", "labels.parquet", "features.parquet", "features_raw.parquet",
         "bins.npy", "bins_coverage.npy"])


def test_force_replaces_only_the_same_kind(run, demo_study, demo_dataset, ridge_run, tmp_path):
    assert_user_error(run(*_featurize(demo_study, ridge_run, "--force")), "is a run (epx train), not a dataset")
    assert_user_error(run("demo", demo_dataset, "--force"), "is a dataset", "not a demo study")
    assert (ridge_run / "metrics.json").is_file() and (demo_dataset / "dataset.json").is_file()


def test_nested_epx_outputs_are_not_this_outputs_to_delete(run, lgbm_run, tmp_path):
    """A run written into a demo study is not the demo's: --force on the demo refuses, naming it."""
    study = tmp_path / "study"
    assert run("demo", study, "--n-genes", "200").exit_code == 0
    assert run("split", study / "genes.tsv", "--loco", "-o", study / "split.tsv").exit_code == 0
    assert_user_error(run("demo", study, "--n-genes", "200", "--force"), "holds split.tsv, which epx did not write")
    assert (study / "split.tsv").is_file()
    (study / "split.tsv").unlink()
    assert run("demo", study, "--n-genes", "200", "--force").exit_code == 0
    # a plot explain writes into a run becomes part of the run
    assert run("explain", lgbm_run).exit_code == 0
    assert "top_features.png" in json.loads((lgbm_run / MARKER).read_text())["paths"]


def test_symlinks_and_inputs_are_never_outputs(run, ridge_run, demo_dataset, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    link = tmp_path / "link"
    link.symlink_to(empty)
    assert_user_error(run("predict", ridge_run, demo_dataset, "-o", link), "is a symbolic link")
    assert link.is_symlink() and list(empty.iterdir()) == []
    assert_user_error(run("stack", ridge_run, ridge_run.parent / "other", "-o", ridge_run, "--force"), "is the input")
    assert_user_error(run("predict", ridge_run, demo_dataset, "-o", ridge_run / "pred"), "is inside the input")
    assert (ridge_run / "metrics.json").is_file()


def test_stale_temporaries_of_a_killed_run_are_removed(run, small_genes, tmp_path):
    stale = tmp_path / ".split.tsv.epx-999999-abc.tmp"
    stale.write_text("half-written by a killed epx")
    user = tmp_path / ".split.tsv.mine.tmp"  # not epx's naming: left alone
    user.write_text("mine")
    assert run("split", small_genes, "--loco", "-o", tmp_path / "split.tsv").exit_code == 0
    assert not stale.exists() and user.read_text() == "mine"


def test_force_on_single_files_replaces_only_epx_files(run, small_genes, lgbm_run, tmp_path):
    user_tsv = tmp_path / "folds.tsv"
    user_tsv.write_text("my\town\ttable\n")
    assert_user_error(run("split", small_genes, "--loco", "-o", user_tsv, "--force"), str(user_tsv), "not written by epx")
    assert user_tsv.read_text() == "my\town\ttable\n"
    split = tmp_path / "split.tsv"
    assert run("split", small_genes, "--loco", "-o", split).exit_code == 0
    assert split.read_text().startswith(SPLIT_HEADER + "\n")
    assert_user_error(run("split", small_genes, "--loco", "-o", split), "already exists; pass --force")
    assert run("split", small_genes, "--chr-kfold", "2", "-o", split, "--force").exit_code == 0

    plot = tmp_path / "figure.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n a user's figure")
    assert_user_error(run("explain", lgbm_run, "--plot", plot), str(plot), "not written by epx")
    assert plot.read_bytes() == b"\x89PNG\r\n\x1a\n a user's figure"


def test_from_split_to_submission_epx_files_are_replaced(run, ridge_run, demo_study, tmp_path):
    zip_path = tmp_path / "Doe_Jane_Project1.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip a user made: not a submission
    args = ["submit", ridge_run, "--cell", "X3", "--genes", demo_study / "test_genes.tsv", "--last-name", "Doe",
            "--first-name", "Jane", "--out-dir", tmp_path, "--force"]
    assert_user_error(run(*args), "not written by epx")
    zip_path.unlink()
    assert run(*args[:-1]).exit_code == 0
    assert run(*args).exit_code == 0


def test_explain_plot_into_a_missing_directory(run, lgbm_run, tmp_path):
    plot = tmp_path / "figures" / "new" / "top.png"
    result = run("explain", lgbm_run, "--plot", plot)
    assert result.exit_code == 0, result.stderr
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert run("explain", lgbm_run, "--plot", plot).exit_code == 0  # its own plot: replaced


def test_output_cannot_be_the_current_directory(run, small_genes, demo_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_user_error(run("train", demo_dataset, "--model", "ridge", "--loco", "-o", ".", "--force"), "current directory")
    assert_user_error(run("demo", "..", "--force"), "current directory")


# -- one writer at a time ---------------------------------------------------------------------------


def test_second_writer_fails_at_once(run, small_genes, tmp_path):
    out = tmp_path / "split.tsv"
    with FileLock(str(tmp_path / f".split.tsv{LOCK_SUFFIX}")):
        t0 = time.perf_counter()
        result = run("split", small_genes, "--loco", "-o", out)
        assert time.perf_counter() - t0 < 30
    assert_user_error(result, str(out), "another epx command is writing this output")
    assert not out.exists()


def test_two_real_processes_writing_the_same_output(tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "epx.cli", "demo", str(out), "--genes", "2000"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / f".study{LOCK_SUFFIX}"
    deadline = time.time() + 60
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    second = subprocess.run(cmd, capture_output=True, text=True)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 2, second.stderr
    assert "another epx command is writing this output" in second.stderr and "Traceback" not in second.stderr
    assert (out / "genes.tsv").is_file()
    _no_temp_left(tmp_path)


def test_rename_never_replaces_an_output_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(OutputError, match="appeared while epx was working"):
        with atomic_dir(target, "run") as tmp:
            (tmp / "metrics.json").write_text("{}")
            target.mkdir()
            (target / "theirs.txt").write_text("another program's")
    assert (target / "theirs.txt").read_text() == "another program's"
    f = tmp_path / "split.tsv"
    with pytest.raises(OutputError, match="appeared while epx was working"):
        with atomic_file(f, "split") as tmp:
            tmp.write_text(SPLIT_HEADER + "\n")
            f.write_text("someone else's\n")
    assert f.read_text() == "someone else's\n"
    _no_temp_left(tmp_path)


def test_split_header_matches_the_split_contract():
    from epx.split import SPLIT_COLUMNS

    assert SPLIT_HEADER == "\t".join(SPLIT_COLUMNS)


# -- environment failures: read-only and full disks ------------------------------------------------


def _mount_prefix(probe: Path) -> list[str]:
    """A way to mount a private tmpfs: an unprivileged user namespace, or as root a mount namespace."""
    probe.mkdir(exist_ok=True)
    tried = []
    for prefix in (["unshare", "--user", "--map-root-user", "--mount"], ["unshare", "--mount"]):
        r = subprocess.run([*prefix, "sh", "-c", 'mount -t tmpfs -o size=64k none "$1"', "sh", str(probe)],
                           capture_output=True, text=True)
        if r.returncode == 0:
            return prefix
        tried.append(r.stderr.strip())
    raise AssertionError(f"cannot mount a private tmpfs for this test: {tried}")


def _in_mount(mount: Path, options: str, args: list) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the CLI where ``mount`` is a small private tmpfs; also return what was left in it."""
    mount.mkdir(exist_ok=True)
    script = ('m="$1"; shift; mount -t tmpfs -o "$1" none "$m" || exit 99; shift; "$@"; rc=$?; '
              'echo "LEFT:$(ls -A "$m" | tr "\\n" " ")"; exit $rc')
    cli = [sys.executable, "-m", "epx.cli", *map(str, args)]
    prefix = _mount_prefix(mount.with_name(mount.name + "-probe"))
    result = subprocess.run([*prefix, "sh", "-c", script, "sh", str(mount), options, *cli], capture_output=True, text=True)
    assert result.returncode != 99, result.stderr
    left = [ln for ln in result.stdout.splitlines() if ln.startswith("LEFT:")][-1][5:].split()
    return result, left


def _assert_one_line(result, *fragments):
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode != 0 and lines and lines[-1].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], (fragment, lines[-1])
    return lines


def test_read_only_output_fails_before_the_work(demo_study, demo_dataset, ridge_run, small_genes, tmp_path):
    ro = tmp_path / "ro"
    for args in (_featurize(demo_study, ro / "ds"),
                 ["train", demo_dataset, "--model", "ridge", "--loco", "--train-cells", "X1", "-o", ro / "run"],
                 ["split", small_genes, "--loco", "-o", ro / "split.tsv"],
                 ["submit", ridge_run, "--cell", "X3", "--genes", demo_study / "test_genes.tsv", "--last-name", "Doe",
                  "--first-name", "Jane", "--out-dir", ro]):
        result, _ = _in_mount(ro, "ro,size=1m", args)
        lines = _assert_one_line(result, "Read-only file system", str(ro))
        assert len(lines) == 1, result.stderr  # no progress: the work never started


def test_full_disk_is_one_line_and_leaves_nothing(demo_study, demo_dataset, tmp_path):
    full = tmp_path / "full"
    for args in (_featurize(demo_study, full / "ds"),
                 ["train", demo_dataset, "--model", "lgbm", "--loco", "--train-cells", "X1", "-o", full / "run"]):
        result, left = _in_mount(full, "size=64k", args)
        _assert_one_line(result, "No space left on device", "nothing was written", str(full))
        assert result.returncode == 1, result.stderr  # the environment, not the input
        assert left == [], left  # no temporary directory, no lock file


def test_os_errors_outside_outputs_are_one_line(run, tmp_path):
    unreadable = tmp_path / "genes.tsv"
    unreadable.mkdir()  # a directory where a file is expected
    result = run("check", "--genes", unreadable)
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:")


def test_debug_shows_the_traceback(run, small_genes, tmp_path):
    user_tsv = tmp_path / "folds.tsv"
    user_tsv.write_text("mine\n")
    result = run("--debug", "split", small_genes, "--loco", "-o", user_tsv, "--force")
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_gzipped_bigwig_is_one_line_without_c_library_noise(demo_study, tmp_path):
    """A subprocess, so anything a C library writes to file descriptor 2 is captured too."""
    import gzip

    manifest = (demo_study / "manifest.tsv").read_text().splitlines()
    header, row = manifest[0], next(r for r in manifest[1:] if r.split("\t")[2] == "bigwig")
    cell, assay, kind, rel = row.split("\t")
    gz = tmp_path / "signal.bw"
    gz.write_bytes(gzip.compress((demo_study / rel).read_bytes()))
    (tmp_path / "manifest.tsv").write_text(f"{header}\n{cell}\t{assay}\t{kind}\t{gz}\n")
    for cmd in (["check"], ["featurize", "-o", str(tmp_path / "ds")]):
        result = subprocess.run([sys.executable, "-m", "epx.cli", *cmd, "--genes", str(demo_study / "genes.tsv"),
                                 "--manifest", str(tmp_path / "manifest.tsv")], capture_output=True, text=True)
        lines = _assert_one_line(result, "gzip-compressed, not a bigWig", str(gz))
        assert len(lines) == 1 and "bwHdrRead" not in result.stderr, result.stderr
    assert not (tmp_path / "ds").exists()


def test_demo_on_a_full_disk_is_refused_before_it_starts(tmp_path):
    full = tmp_path / "full"
    result, left = _in_mount(full, "size=2m", ["demo", full / "study"])
    _assert_one_line(result, "MB free", "--n-genes")
    assert result.returncode == 1 and left == []


def test_damaged_epx_files_are_one_line(run, ridge_run, demo_dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(ridge_run, broken)
    (broken / "oof.parquet").write_text("garbage")
    assert_user_error(run("report", broken), "damaged out-of-fold predictions", "re-run")
    (broken / "config.json").write_text("[]")
    assert_user_error(run("submit", broken, "--cell", "X3", "--genes", tmp_path / "g.tsv", "--last-name", "A",
                          "--first-name", "B", "-o", tmp_path), "damaged config.json")
    fold = next((ridge_run / "models").iterdir()).name
    again = tmp_path / "again"
    shutil.copytree(ridge_run, again)
    for f in (again / "models" / fold).iterdir():
        f.write_text("{broken")
    assert_user_error(run("predict", again, demo_dataset, "-o", tmp_path / "p"), "cannot load this fold model", fold)
    assert not (tmp_path / "p").exists()


def test_a_bug_is_one_line_and_exit_3(run, ridge_run, monkeypatch):
    import epx.report

    def boom(*args, **kwargs):
        raise KeyError("column_that_should_exist")

    monkeypatch.setattr(epx.report, "load_entries", boom)
    result = run("report", ridge_run)
    assert result.exit_code == 3 and "Traceback" not in result.stderr
    assert "internal error (KeyError" in result.stderr and "--debug" in result.stderr


def test_ctrl_c_leaves_nothing_and_says_so(tmp_path):
    import signal

    out = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-m", "epx.cli", "demo", str(out), "--n-genes", "3000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lock = tmp_path / f".study{LOCK_SUFFIX}"
    deadline = time.time() + 60
    while not lock.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # inside the work
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no study, no temporary, no lock
