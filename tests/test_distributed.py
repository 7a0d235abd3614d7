"""One model trained across processes (Lightning DDP, issue 12): two CPU processes on this machine,
started by Lightning re-running `epx train` and by an srun-style launch (SLURM's environment
variables, one `epx train` per task), through the real CLI. Only rank 0 writes; both launches train
the same model; launches that cannot work are one line before any data is read."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import assert_user_error

pytest.importorskip("epx_torch", reason="plugins/epx-torch is installed by scripts/install.sh with torch")

EPX = str(Path(sys.executable).with_name("epx"))
TINY = ["--param", "max_epochs=2", "--param", "channels=8", "--param", "hidden=16", "--param", "patience=0"]
SPLIT = ["--holdout", "chr2", "--test", "chr1", "--train-cells", "X1,X2", "--test-cells", "X3"]
SLURM_VARS = ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES", "SLURM_PROCID", "SLURM_LOCALID",
              "SLURM_NODEID", "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_NODELIST", "MASTER_ADDR", "MASTER_PORT",
              "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SLURM_VARS}
    return {**env, "COLUMNS": "200", **extra}


def _train_args(dataset: Path, out: Path) -> list[str]:
    return [EPX, "train", str(dataset), "--model", "cnn", *SPLIT, *TINY, "--param", "devices=2", "-o", str(out)]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.fixture(scope="module")
def local_run(demo_dataset, tmp_path_factory):
    """devices=2 on CPU: Lightning starts the second process by re-running the command line."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = subprocess.run(_train_args(demo_dataset, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_two_processes_train_one_model_and_only_rank_0_reports(local_run):
    out, proc = local_run
    meta = json.loads((out / "models" / "fold_holdout" / "torch.json").read_text())
    assert meta["history"]["processes"] == 2 and meta["params"]["devices"] == 2
    # rank 1 trains in step but is silent: each epoch line once, one table, one "wrote"
    for epoch in (1, 2):
        assert proc.stderr.count(f"cnn seed 0 epoch {epoch}/2") == 1, proc.stderr
    assert proc.stderr.count("wrote ") == 1 and proc.stdout.count("cnn on ") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["test"]["by_cell_line"]["X3"]["spearman"] > 0.3
    # nothing else beside the run: no second run, no temporaries, no lock
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]


def test_an_srun_launch_trains_the_same_model(local_run, demo_dataset, tmp_path):
    """What docs/scale-out.md's sbatch script does: srun starts one epx train per task; SLURM's
    variables say which task is which. Rank 1 writes nothing and prints nothing."""
    out = tmp_path / "run"
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_NODEID": "0",
             "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "epx", "SLURM_NODELIST": "127.0.0.1",
             "MASTER_PORT": _free_port()}
    procs = [subprocess.Popen(_train_args(demo_dataset, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(**slurm, SLURM_PROCID=str(r), SLURM_LOCALID=str(r))) for r in (0, 1)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert results[1] == ("", ""), results[1]
    assert "wrote " in results[0][1]
    local = pd.read_parquet(local_run[0] / "test.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(out / "test.parquet"), local)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


RANK0_FAILS = """
import importlib.abc, importlib.util, os, sys
if "LOCAL_RANK" not in os.environ:  # rank 0 only: Lightning's re-run children carry LOCAL_RANK
    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "epx.train":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module
            def exec_module(module):
                run(module)
                def fail(*args, **kwargs):
                    raise module.EpxError("rank 0 failed after its first fit")
                module.combine_fold = fail
            spec.loader.exec_module = exec_module
            return spec
    sys.meta_path.insert(0, Hook())
"""


def test_when_rank_0_fails_after_a_fit_every_process_stops(demo_dataset, tmp_path):
    """Rank 0 fails between two fits while rank 1 waits in the next fit's first collective (a
    sitecustomize makes rank 0's fold assembly raise): the command exits with rank 0's error, rank
    1 says in one line that it lost the others, no process is left and nothing is written."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(RANK0_FAILS)
    out = tmp_path / "run"
    args = [EPX, "train", str(demo_dataset), "--model", "cnn", "--chr-kfold", "2", *TINY, "--param", "devices=2",
            "-o", str(out)]
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors[0] == "error: rank 0 failed after its first fit", proc.stderr
    assert "Traceback" not in proc.stderr and len(errors) <= 2, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(out) not in ps


def test_a_ddp_trained_model_predicts_in_one_process(local_run, demo_dataset, run, tmp_path):
    """The saved model is rank 0's best checkpoint: epx predict (one process) reproduces the run."""
    out = tmp_path / "pred"
    result = run("predict", local_run[0], demo_dataset, "-o", out, "--cells", "X3")
    assert result.exit_code == 0, result.stderr
    pred = pd.read_parquet(out / "predictions.parquet")
    test = pd.read_parquet(local_run[0] / "test.parquet").query("cell_line == 'X3'")
    merged = test.merge(pred, on=["gene_id", "cell_line"], suffixes=("_run", "_predict"))
    assert len(merged) == len(test) > 50
    np.testing.assert_allclose(merged["y_pred_predict"], merged["y_pred_run"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("args", "env", "expected"), [
    # in-process (a test runner, a notebook): re-running the command line would not be epx
    (["--param", "devices=2"], {}, "which is not epx"),
    (["--param", "num_nodes=2"], {}, "MASTER_ADDR"),
    (["--param", "strategy=ddp_spawn"], {}, "ddp_find_unused_parameters_true"),
    (["--param", "devices=4"], {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1",
                                "SLURM_PROCID": "0", "SLURM_JOB_NAME": "epx"}, "--ntasks-per-node=4"),
    (["--param", "devices=2"], {"SLURM_NTASKS": "2", "SLURM_PROCID": "0", "SLURM_JOB_NAME": "epx"},
     "without --ntasks-per-node"),
])
def test_launches_that_cannot_work_are_one_line(demo_dataset, run, tmp_path, args, env, expected):
    out = tmp_path / "run"
    result = run("train", demo_dataset, "--model", "cnn", *SPLIT, *TINY, *args, "-o", out, env=env)
    assert_user_error(result, expected)
    assert not out.exists()


def test_ablate_refuses_a_model_trained_across_processes(demo_dataset, tmp_path):
    out = tmp_path / "ablation"
    proc = subprocess.run([EPX, "ablate", str(demo_dataset), "--model", "cnn", *SPLIT, *TINY, "--param", "devices=2",
                           "-o", str(out)], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1, proc.stderr
    assert "2 processes" in proc.stderr and "epx train --assays" in proc.stderr
    assert not out.exists()


def test_gathered_validation_rows_lose_the_samplers_padding():
    """What each process scored, gathered, is every validation row once and in order: checked
    against torch's own DistributedSampler for row counts that do and do not divide evenly."""
    import torch
    from epx_torch.trainer import unpad_gathered

    for world in (2, 3, 4):
        for n in (1, 2, 5, 10, 11):
            parts = [list(torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False))
                     for r in range(world)]
            assert unpad_gathered(torch.tensor(parts), n).tolist() == list(range(n)), (world, n)
