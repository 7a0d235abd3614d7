"""`epx workflow run`: the Snakemake workflow on the demo, against the direct commands it stands for.

Featurize shards (one per cell line) -> merge -> split -> one train job per (model, fold, seed) ->
collect -> stack -> report -> submit, with `--cores 2`; then: a second run does nothing, and
deleting one fold's part re-runs that fold and what is assembled from it, nothing else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from epx.cli import app

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None and not Path(sys.executable).with_name("snakemake").exists(),
                                reason="snakemake is installed by scripts/install.sh")
runner = CliRunner()
FAST = {"n_estimators": 40, "rounds_without_valid": 40, "learning_rate": 0.1, "n_jobs": 1}  # one thread: bit-identical fits


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _workflow(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("epx")), "workflow", "run", str(config), "--cores", "2",
                           *extra], capture_output=True, text=True, env=_env(), cwd=config.parent)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wf")
    result = runner.invoke(app, ["demo", str(root / "study"), "--n-genes", "240"])
    assert result.exit_code == 0, result.output
    config = root / "config.yaml"
    config.write_text(
        "genes: study/genes.tsv\nmanifest: study/manifest.tsv\n"
        "labels: {X1: study/labels/X1.tsv, X2: study/labels/X2.tsv, X3: study/labels/X3.tsv}\n"
        "output: results\n"
        "featurize: {shard_by: cells, shards: [[X1], [X2, X3]]}\n"
        "split: {scheme: chr-kfold, k: 3, test: chr1, train_cells: [X1, X2], test_cells: [X3]}\n"
        f"models:\n  lgbm: {{params: {json.dumps(FAST)}}}\n  ridge: {{target: rank, seeds: 2}}\n"
        "stack: {runs: [lgbm, ridge], rule: mean}\n"
        "submit: {cell: X3, genes: study/test_genes.tsv, last_name: Doe, first_name: Jane}\n")
    result = _workflow(config)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_workflow_equals_the_direct_commands(study, tmp_path):
    s, r = study / "study", study / "results"
    labels = [f"--labels={c}={s}/labels/{c}.tsv" for c in ("X1", "X2", "X3")]
    direct = tmp_path / "direct"
    assert runner.invoke(app, ["featurize", "--genes", str(s / "genes.tsv"), "--manifest", str(s / "manifest.tsv"),
                               *labels, "-o", str(direct / "dataset")]).exit_code == 0
    for name in ("features.parquet", "features_raw.parquet", "bins.npy", "dataset.json"):
        assert (direct / "dataset" / name).read_bytes() == (r / "dataset" / name).read_bytes(), name
    assert runner.invoke(app, ["split", str(direct / "dataset"), "--chr-kfold", "3", "--test", "chr1",
                               "--train-cells", "X1,X2", "--test-cells", "X3", "-o", str(direct / "split.tsv")]).exit_code == 0
    assert (direct / "split.tsv").read_bytes() == (r / "split.tsv").read_bytes()
    params = [a for k, v in FAST.items() for a in ("--param", f"{k}={v}")]
    # Snakemake runs each job with OMP_NUM_THREADS = its threads (1): BLAS on one thread here too, so
    # sums run in the same order and predictions are bit-identical (ridge differs by 1e-11 otherwise)
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(1)
    for model, extra in (("lgbm", ["--target", "rank", *params]), ("ridge", ["--target", "rank", "--seeds", "2"])):
        out = direct / model
        result = runner.invoke(app, ["train", str(r / "dataset"), "--model", model, *extra, "--split",
                                     str(r / "split.tsv"), "--train-cells", "X1,X2", "--test-cells", "X3",
                                     "-o", str(out)])
        assert result.exit_code == 0, result.output
        for name in ("oof.parquet", "test.parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(r / "runs" / model / name),
                                          check_exact=True)
        assert json.loads((out / "metrics.json").read_text()) == json.loads((r / "runs" / model / "metrics.json").read_text())
    limits.restore_original_limits()
    assert (r / "submission" / "Doe_Jane_Project1.zip").is_file()
    assert "lgbm" in (r / "report.md").read_text()


def test_a_second_run_does_nothing_and_a_deleted_fold_reruns_alone(study):
    config = study / "config.yaml"
    again = _workflow(config)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    parts = study / "results" / "parts" / "run-lgbm"
    fold = sorted(p.name for p in parts.iterdir())[0]
    shutil.rmtree(parts / fold)
    redo = _workflow(config)
    assert redo.returncode == 0, redo.stderr[-3000:]
    stats = (redo.stdout + redo.stderr).split("Job stats:", 1)[1].split("total", 1)[0]
    jobs = {line.split()[0]: int(line.split()[1]) for line in stats.splitlines() if line.strip() and line.split()[-1].isdigit()}
    assert jobs.get("train_fold") == 1 and "featurize_shard" not in jobs and "merge" not in jobs and "split" not in jobs
    assert jobs.get("collect") == 1  # only lgbm's run is assembled again


def test_bad_configs_are_one_line_before_any_job(study, tmp_path):
    base = (study / "config.yaml").read_text().replace("study/", f"{study}/study/").replace("output: results",
                                                                                            f"output: {tmp_path}/out")
    cases = {
        "unknown key": (base + "colour: blue\n", "unknown key 'colour'"),
        "missing file": (base.replace("X1.tsv", "nope.tsv"), "nope.tsv"),
        "unknown model": (base.replace("ridge: {target: rank, seeds: 2}", "ridge: {model: nosuch}"), "nosuch"),
        "bad type": (base.replace("k: 3", "k: three"), "split.k"),
    }
    for name, (text, needle) in cases.items():
        config = tmp_path / f"{name.replace(' ', '_')}.yaml"
        config.write_text(text)
        result = runner.invoke(app, ["workflow", "run", str(config)])
        assert result.exit_code == 2, (name, result.output)
        assert needle in result.output and len(result.output.strip().splitlines()) == 1, (name, result.output)
        assert not (tmp_path / "out").exists()
