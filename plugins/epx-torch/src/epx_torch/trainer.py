"""One trainer for every torch model: PyTorch Lightning around a trunk and a one-unit head.

Why Lightning (pytorch-lightning): early stopping, best-epoch checkpoints, LR schedules, gradient
clipping, seeding and mixed precision are maintained code rather than a hand-written loop, and the
same module later trains on several GPUs or nodes (``strategy=ddp``). Its import costs about 3 s
over torch's; the per-epoch overhead against a plain loop is measured in benchmarks/bench_torch.py.

A model is a subclass of :class:`TorchModel` naming its trunk: an ``nn.Module`` built as
``trunk(n_assays, n_bins, **architecture_params)`` that maps ``(batch, assays, bins)`` to
``(batch, trunk.embedding_dim)``. A trunk may also define ``attention(x) -> {name: tensor}``
(exposed to ``epx explain``) and ``configure_schedule(optimizer, params)`` (its own LR schedule).

Batches are read from ``TorchModel.inputs(data)`` (default ``FoldData.X``) one at a time: for epx
datasets that is a lazy view of the bins file (read and normalised per batch), so no copy of the
whole array is ever held. A batch is an array ``(batch, assays, bins)`` or, for a model with
several inputs (``chromoformer``: bins at several resolutions and distal regions), a dict of
arrays, handed to the trunk as a dict of tensors. Such a model also overrides
``input_shapes(data)`` (what ``build`` needs besides the assay count; saved in torch.json).

Several processes (``devices``/``num_nodes`` above 1) train one model with Lightning's DDP: every
process runs the same ``epx train`` (Lightning re-runs the command line once per extra device;
srun or torchrun start them all), each reads its share of every batch of rows, gradients are
averaged, and the validation loss that early stopping and the best checkpoint follow is reduced
over all of them. :meth:`TorchModel.training_processes` tells the core which process is rank 0,
the only one that writes.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from epx._version import __version__ as EPX_VERSION
from epx.errors import PluginError
from epx.metrics import auroc, pearson
from epx.models import FoldData
from epx_torch.spec import TRAINER_PARAMS

FORMAT_VERSION = 1
META_FILE = "torch.json"
WEIGHTS_FILE = "network.pt"
PREDICT_ROWS = 1024
DDP_TIMEOUT_HOURS = 4  # how long a process waits for the others at a collective

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)  # "GPU available: False", tips, seed messages


def resolve_device(choice: str) -> str:
    """``cpu``, or ``cuda`` when asked for (an error without one) or when ``auto`` finds one."""
    available = torch.cuda.is_available()
    if choice == "cuda" and not available:
        build = "a CPU-only build" if "+cpu" in torch.__version__ or torch.version.cuda is None else "a CUDA build"
        raise PluginError(f"device=cuda was asked for, but torch {torch.__version__} ({build}) sees no CUDA GPU; "
                          "use --param device=cpu, or device=auto to use a GPU only when one is present")
    if choice == "auto":
        return "cuda" if available else "cpu"
    return choice


def _cluster_rank(devices: int) -> tuple[int, bool]:
    """(global rank of this process, whether something other than Lightning started it), read
    from the environment the way Lightning's trainer will: torchrun, then SLURM's srun, then LSF,
    then MPI (with mpi4py); otherwise Lightning's own launcher, whose re-run children carry NODE_RANK and LOCAL_RANK."""
    from pytorch_lightning.plugins.environments import (
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    for kind in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "srun is available but not used": not an error here
            found = kind.detect()
        if found:
            return int(kind().global_rank()), True
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return node * devices + int(os.environ.get("LOCAL_RANK", 0)), "LOCAL_RANK" in os.environ


def _check_slurm_tasks(devices: int, nodes: int) -> None:
    """Under srun, one task per device: a job whose tasks do not match would hang or fail inside
    Lightning, so it is refused here, naming both settings."""
    from pytorch_lightning.plugins.environments import TorchElasticEnvironment

    if "SLURM_NTASKS" not in os.environ or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return  # not under srun (Lightning's own rule)
    if TorchElasticEnvironment.detect():
        return  # torchrun inside an allocation: Lightning follows torchrun, not SLURM
    per_node, n_nodes = os.environ.get("SLURM_NTASKS_PER_NODE"), os.environ.get("SLURM_NNODES")
    per_node = per_node.split("(")[0] if per_node else None  # "2(x3)" in heterogeneous jobs
    if per_node is None:
        raise PluginError(f"the SLURM job sets --ntasks={os.environ['SLURM_NTASKS']} without --ntasks-per-node; "
                          f"use sbatch --nodes={nodes} --ntasks-per-node={devices} (one task per device)")
    if int(per_node) != devices or (n_nodes is not None and int(n_nodes) != nodes):
        raise PluginError(f"the SLURM job runs {per_node} task(s) per node on {n_nodes or '?'} node(s), but the "
                          f"training asks for devices={devices} on num_nodes={nodes}: use sbatch --nodes={nodes} "
                          f"--ntasks-per-node={devices}, or --param devices={per_node} --param num_nodes={n_nodes or 1}")


def _relaunch_command() -> str | None:
    """What Lightning runs for each extra device (the command line of this process), or None when
    that is not an epx command (a test runner, a notebook, a user's script): re-running those
    would not train the same model."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    name = spec.name if spec is not None else Path(sys.argv[0]).name
    if name in ("epx", "epx.cli", "epx.__main__"):
        return None
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:3]]) + (" ..." if len(sys.argv) > 3 else "")


def _lost_peer(exc: BaseException) -> bool:
    """A collective that failed because another process of the training ended or hung."""
    text = str(exc)
    return any(m in text for m in ("closed by peer", "reset by peer", "remote worker", "Timed out", "timed out",
                                   "NCCL communicator was aborted", "Broken pipe"))


def _wait_for(procs: list[subprocess.Popen], seconds: float = 5.0) -> None:
    """At exit, rank 0 gives the processes Lightning started for the other devices a few seconds to
    end (after a successful run they end with their last fit, before rank 0 has written the run).
    Ones still running are waiting in a collective for a rank 0 that failed: they fail themselves
    once rank 0 is gone. They are not killed here: Lightning's observer would answer a killed
    child by killing rank 0, replacing epx's exit code and message."""
    deadline = time.monotonic() + seconds
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return


class Network(nn.Module):
    """A trunk and a one-unit linear head: one logit (or standardised value) per row."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(int(trunk.embedding_dim), 1)

    def forward(self, x: Any) -> torch.Tensor:
        return self.head(self.trunk(x)).squeeze(-1)


def _tensor(batch: Any) -> Any:
    """A batch read from the inputs as tensors: an array becomes float32, a dict of arrays a dict
    of tensors (float arrays float32, bool masks stay bool)."""
    if isinstance(batch, dict):
        return {k: torch.from_numpy(np.ascontiguousarray(v) if np.asarray(v).dtype == bool
                                    else np.ascontiguousarray(v, dtype=np.float32)) for k, v in batch.items()}
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))


class _Rows(torch.utils.data.Dataset):
    """Rows of the inputs (an array, epx's lazy view of the bins, or a model's multi-input view
    whose ``[idx]`` is a dict of arrays), fetched one batch of indices at a time."""

    def __init__(self, X: Any, y: np.ndarray | None) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, idx: Any) -> tuple[Any, torch.Tensor]:
        idx = np.asarray(idx)
        x = _tensor(self.X[idx])
        y = torch.from_numpy(self.y[idx].astype(np.float32)) if self.y is not None else torch.zeros(len(idx))
        return x, y


class _Batches(torch.utils.data.BatchSampler):
    """Batches of row indices; passes ``set_epoch`` on to a DistributedSampler, so every epoch
    deals the rows out to the processes in a new seeded order."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def _loader(X: Any, y: np.ndarray | None, batch_size: int, shuffle: bool, seed: int,
            world: int = 1, rank: int = 0) -> torch.utils.data.DataLoader:
    """Batches of whole index arrays (one lazy read of the bins per batch). With ``world``
    processes, each reads its own share: a DistributedSampler pads the rows to a multiple of
    ``world`` by repeating the first ones, so every process runs the same number of batches."""
    rows = _Rows(X, y)
    if world > 1:
        sampler: Any = torch.utils.data.DistributedSampler(rows, num_replicas=world, rank=rank, shuffle=shuffle,
                                                           seed=seed, drop_last=False)
    elif shuffle:
        sampler = torch.utils.data.RandomSampler(rows, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = torch.utils.data.SequentialSampler(rows)
    batches = _Batches(sampler, batch_size=batch_size, drop_last=False)
    return torch.utils.data.DataLoader(rows, sampler=batches, batch_size=None, num_workers=0)


class _Data(pl.LightningDataModule):
    """The fold's loaders, built once the trainer knows this process's rank and the world size."""

    def __init__(self, train: tuple[Any, np.ndarray], valid: tuple[Any, np.ndarray], batch_size: int, seed: int) -> None:
        super().__init__()
        self.train, self.valid, self.batch_size, self.seed = train, valid, batch_size, seed

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return _loader(*self.train, self.batch_size, True, self.seed, self.trainer.world_size, self.trainer.global_rank)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return _loader(*self.valid, max(self.batch_size, 256), False, self.seed, self.trainer.world_size,
                       self.trainer.global_rank)


def unpad_gathered(gathered: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` rows, in their order, from ``(world, rows per process)`` gathered from processes
    that read them through an unshuffled DistributedSampler: process ``r`` read rows ``r, r +
    world, ...`` of the list padded to a multiple of ``world`` by repeating its first rows."""
    world, per = gathered.shape[:2]
    position = (torch.arange(world)[:, None] + torch.arange(per)[None, :] * world).reshape(-1)
    flat = gathered.reshape(world * per, *gathered.shape[2:])
    keep = position < n
    return flat[keep][position[keep].argsort()]


def batch_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm() + 1e-8)


class LitModel(pl.LightningModule):
    """The Lightning side: loss per task, Adam or AdamW, ReduceLROnPlateau (or the trunk's schedule)."""

    def __init__(self, network: Network, task: str, params: dict[str, Any]) -> None:
        super().__init__()
        self.network, self.task, self.params = network, task, params
        self._valid: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: Any) -> torch.Tensor:
        return self.network(x)

    def on_fit_start(self) -> None:
        # again here: Lightning's DDP launch sets torch's threads to cores / processes in between
        _use_threads(self.params)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if self.task in ("binary", "rank"):  # rank targets in [0, 1] are soft labels
            return nn.functional.binary_cross_entropy_with_logits(out, y)
        loss = nn.functional.mse_loss(out, y)
        weight = float(self.params["pearson_weight"])
        if weight > 0 and len(y) > 2:
            loss = loss + weight * (1 - batch_pearson(out, y))
        return loss

    def training_step(self, batch: tuple[Any, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Any, torch.Tensor], _: int) -> None:
        x, y = batch
        out = self(x)
        self.log("valid_loss", self.loss(out, y), on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        self._valid.append((out.detach().float().cpu(), y.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._valid:
            return
        out = torch.cat([o for o, _ in self._valid])
        y = torch.cat([t for _, t in self._valid])
        self._valid.clear()
        if self.trainer.world_size > 1:  # every process scored its share: gather them all
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*")
                out, y = self.all_gather(out).cpu(), self.all_gather(y).cpu()
            n = len(self.trainer.val_dataloaders.dataset)
            out, y = unpad_gathered(out, n), unpad_gathered(y, n)
        out, y = out.numpy(), y.numpy()
        value = auroc(y, out) if self.task == "binary" else pearson(y, out)
        self.log("valid_metric", float(np.nan_to_num(value)), on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> Any:
        kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[str(self.params["optimizer"])]
        optimizer = kind(self.parameters(), lr=float(self.params["lr"]), weight_decay=float(self.params["weight_decay"]))
        own = getattr(self.network.trunk, "configure_schedule", None)
        if own is not None:
            return {"optimizer": optimizer, "lr_scheduler": own(optimizer, self.params)}
        if float(self.params["lr_factor"]) >= 1:
            return optimizer
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=float(self.params["lr_factor"]), patience=int(self.params["lr_patience"]))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "valid_loss"}}


class _EpochReport(pl.Callback):
    """One line per epoch on stderr: train/valid loss, the validation metric, the learning rate."""

    def __init__(self, label: str, task: str) -> None:
        self.label, self.metric = label, "auroc" if task == "binary" else "pearson"

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        from rich.markup import escape

        from epx import console

        m = trainer.callback_metrics
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        parts = [f"{self.label} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        for key, name in (("train_loss", "train loss"), ("valid_loss", "valid loss"), ("valid_metric", f"valid {self.metric}")):
            if key in m:
                parts.append(f"{name} {float(m[key]):.4f}")
        parts.append(f"lr {lr:.2g}")
        console.stderr().print(escape("  ".join(parts)), soft_wrap=True)  # one line each, also in log files


class TorchModel:
    """The epx model contract for any trunk (see the module docstring). Subclasses set ``name``
    (the spec's, checked when a saved model is loaded) and ``trunk``."""

    name: ClassVar[str] = ""
    trunk: ClassVar[type[nn.Module]]

    def __init__(self, params: dict[str, Any], task: str, seed: int = 0) -> None:
        self.params = {**TRAINER_PARAMS, **params}
        self.task, self.seed = task, int(seed)
        self.device = resolve_device(str(self.params["device"]))  # device=cuda without a GPU fails here, at once
        self._check_processes()
        check = getattr(self.trunk, "check", None)  # sizes that cannot work fail here too, before any data is read
        if check is not None:
            try:
                check(**self.architecture())
            except ValueError as exc:
                raise PluginError(f"model {self.name!r}: {exc}") from None
        self.network: Network | None = None
        self.assays: list[str] = []
        self.n_bins = 0
        self.shapes: dict[str, Any] = {}  # build's keyword arguments besides n_assays (input_shapes)
        self.y_mean, self.y_sd = 0.0, 1.0
        self.history: dict[str, Any] = {}

    # -- processes -----------------------------------------------------------------------------
    def training_processes(self) -> tuple[int, int]:
        """(rank, size) of this process among those training the model (epx's optional hook)."""
        devices, nodes = int(self.params["devices"]), int(self.params["num_nodes"])
        if devices * nodes == 1:
            return 0, 1
        return _cluster_rank(devices)[0], devices * nodes

    def _check_processes(self) -> None:
        """Process counts that cannot start fail here, in one line, before any bins are read."""
        devices, nodes = int(self.params["devices"]), int(self.params["num_nodes"])
        if devices * nodes == 1:
            return
        _check_slurm_tasks(devices, nodes)
        if self.device == "cuda" and devices > torch.cuda.device_count():
            raise PluginError(f"devices={devices} asks for {devices} GPUs per node, but torch sees "
                              f"{torch.cuda.device_count()}; lower --param devices")
        if _cluster_rank(devices)[1]:  # srun, torchrun or LSF started the processes
            return
        if nodes > 1 and "MASTER_ADDR" not in os.environ:
            raise PluginError(f"num_nodes={nodes}: start one epx train per node with srun (SLURM), or set "
                              "MASTER_ADDR, MASTER_PORT and NODE_RANK on every node")
        foreign = _relaunch_command()
        if foreign is not None:
            raise PluginError(f"devices={devices} trains in {devices} processes, started by re-running this "
                              f"command line ({foreign}), which is not epx: run epx train from a shell, or start "
                              "the processes yourself (srun, torchrun)")

    def _trainer_processes(self) -> dict[str, Any]:
        """The pl.Trainer arguments for one process, or for several (DDP)."""
        devices, nodes, strategy = int(self.params["devices"]), int(self.params["num_nodes"]), str(self.params["strategy"])
        if devices * nodes == 1 and strategy == "auto":
            return {"devices": 1}
        from pytorch_lightning.strategies import DDPStrategy

        # Between two fits rank 0 alone predicts and writes a fold while the others wait in the next
        # fit's first collective: a large test set must not hit torch's 30-minute default.
        ddp = DDPStrategy(timeout=timedelta(hours=DDP_TIMEOUT_HOURS),
                          find_unused_parameters=strategy == "ddp_find_unused_parameters_true")
        return {"devices": devices, "num_nodes": nodes, "strategy": ddp,
                "use_distributed_sampler": False,  # _Data shards the rows itself
                # batch statistics over every process's rows, as one process with the whole batch
                # would have them (torch's SyncBatchNorm is GPU-only)
                "sync_batchnorm": self.device == "cuda"}

    # -- building ------------------------------------------------------------------------------
    def architecture(self) -> dict[str, Any]:
        """The trunk's own parameters (everything that is not a trainer parameter)."""
        return {k: v for k, v in self.params.items() if k not in TRAINER_PARAMS}

    def inputs(self, data: FoldData) -> Any:
        """What the batches are read from: ``inputs(data)[idx]`` is one batch, an array or a dict of
        arrays. Default ``data.X`` (rows, assays, bins)."""
        return data.X

    def input_shapes(self, data: FoldData) -> dict[str, Any]:
        """The keyword arguments of :meth:`build` besides ``n_assays``, read from the training data
        and saved in torch.json. Default ``{"n_bins": bins of X}``."""
        return {"n_bins": int(data.X.shape[2])}

    def build(self, n_assays: int, n_bins: int) -> Network:
        try:
            return Network(self.trunk(n_assays, n_bins, **self.architecture()))
        except (ValueError, AssertionError, RuntimeError) as exc:  # e.g. heads not dividing d_model
            raise PluginError(f"model {self.name!r}: cannot build the network for {n_assays} assays x {n_bins} bins: {exc}") from None

    # -- training ------------------------------------------------------------------------------
    def fit(self, train: FoldData, valid: FoldData | None = None) -> None:
        if train.y is None:
            raise PluginError(f"model {self.name!r}: fit needs labels")
        device = self.device
        _use_threads(self.params)
        pl.seed_everything(self.seed, workers=True, verbose=False)
        _, n_assays, n_bins = train.X.shape
        self.assays, self.n_bins = list(train.feature_names), int(n_bins)
        self.shapes = self.input_shapes(train)
        if valid is None or not len(valid) or valid.y is None:  # every input is split (FoldData.subset)
            held, kept = holdout_genes(train.rows, float(self.params["valid_fraction"]), self.seed)
            train, valid = train.subset(kept), train.subset(held)
        y_train = np.asarray(train.y, dtype=np.float64)
        X_train, X_valid, y_valid = self.inputs(train), self.inputs(valid), np.asarray(valid.y, dtype=np.float64)
        if self.task == "regression":  # standardise: one scale for every target and loss weight
            self.y_mean, self.y_sd = float(y_train.mean()), float(y_train.std()) or 1.0
        scale = (lambda y: (y - self.y_mean) / self.y_sd) if self.task == "regression" else (lambda y: y)

        self.network = self.build(n_assays, **self.shapes)
        module = LitModel(self.network, self.task, self.params)
        data = _Data((X_train, scale(y_train)), (X_valid, scale(y_valid)), int(self.params["batch_size"]), self.seed)
        with tempfile.TemporaryDirectory(prefix="epx-torch-") as ckpt_dir:
            best = pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="valid_loss", mode="min",
                                                save_top_k=1, save_weights_only=True)
            callbacks: list[pl.Callback] = [best]
            if int(self.params["patience"]) > 0:
                callbacks.append(pl.callbacks.EarlyStopping(monitor="valid_loss", mode="min",
                                                            patience=int(self.params["patience"])))
            if self.params["verbose"]:
                callbacks.append(_EpochReport(f"{self.name} seed {self.seed}", self.task))
            trainer = pl.Trainer(
                accelerator="gpu" if device == "cuda" else "cpu", **self._trainer_processes(),
                precision="16-mixed" if device == "cuda" else "32-true",
                max_epochs=int(self.params["max_epochs"]), callbacks=callbacks, logger=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                gradient_clip_val=float(self.params["grad_clip"]) or None, deterministic=device == "cpu",
                default_root_dir=ckpt_dir,
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(does not have many workers|number of training batches|"
                                        "LeafSpec|Checkpoint directory).*")
                try:
                    trainer.fit(module, datamodule=data)
                except RuntimeError as exc:
                    if trainer.world_size > 1 and _lost_peer(exc):
                        raise PluginError(f"process {trainer.global_rank} of {trainer.world_size} lost its connection "
                                          "to the others; the first error of the run, printed by another process, "
                                          "is the cause") from None
                    raise
            self._wait_at_exit(trainer)
            score = best.best_model_score
            if not best.best_model_path or score is None or not np.isfinite(float(score)):
                raise PluginError(f"model {self.name!r}: training diverged (the validation loss was never finite in "
                                  f"{trainer.current_epoch} epoch(s)); lower --param lr (now {self.params['lr']:g}) "
                                  "or keep --param grad_clip above 0")
            # only rank 0 writes the best checkpoint; the other ranks' models are never saved
            state = (torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
                     if trainer.is_global_zero else None)
        if state is not None:
            module.load_state_dict(state)
        self.network = module.network.cpu().eval()
        self.history = {"epochs": int(trainer.current_epoch), "best_valid_loss": float(best.best_model_score),
                        "device": device, "processes": int(trainer.world_size),
                        "last_lr": float(trainer.optimizers[0].param_groups[0]["lr"])}

    _waiting: ClassVar[set[int]] = set()

    @classmethod
    def _wait_at_exit(cls, trainer: pl.Trainer) -> None:
        """Lightning started processes for the other devices (once per command): wait for them at exit."""
        procs = getattr(getattr(trainer.strategy, "launcher", None), "procs", None) or []
        if procs and id(procs) not in cls._waiting:
            cls._waiting.add(id(procs))
            atexit.register(_wait_for, list(procs))

    # -- prediction ----------------------------------------------------------------------------
    def _check_input(self, data: FoldData) -> None:
        if self.network is None:
            raise PluginError(f"model {self.name!r} is not fitted")
        if data.feature_names and list(data.feature_names) != self.assays:
            raise PluginError(f"model {self.name!r} was trained on assays {', '.join(self.assays)}, "
                              f"given {', '.join(data.feature_names)}")
        if data.X.shape[2] != self.n_bins:
            raise PluginError(f"model {self.name!r} was trained on {self.n_bins} bins, given {data.X.shape[2]}")

    def _batches(self, data: FoldData):
        inputs = self.inputs(data)
        for start in range(0, len(data), PREDICT_ROWS):
            yield _tensor(inputs[np.arange(start, min(start + PREDICT_ROWS, len(data)))])

    def predict(self, data: FoldData) -> np.ndarray:
        self._check_input(data)
        outs = []
        with torch.no_grad():
            for x in self._batches(data):
                outs.append(self.network(x).double().numpy())
        out = np.concatenate(outs) if outs else np.zeros(0)
        if self.task == "regression":
            return out * self.y_sd + self.y_mean
        return 1.0 / (1.0 + np.exp(-out))

    def saliency(self, data: FoldData) -> np.ndarray:
        """Input x gradient (Captum) per row, assay and bin: how each bin's signal moved the output."""
        from captum.attr import InputXGradient

        self._check_input(data)
        explainer = InputXGradient(self.network)
        parts = []
        for x in self._batches(data):
            if isinstance(x, dict):
                raise PluginError(f"model {self.name!r} reads several inputs (bins at several resolutions, regions): "
                                  "input x gradient saliency is not defined for it; use its attention instead")
            parts.append(explainer.attribute(x.requires_grad_(True)).detach().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, len(self.assays), self.n_bins), np.float32)

    # -- files ---------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)
        meta = {"format": FORMAT_VERSION, "model": self.name, "epx_version": EPX_VERSION, "params": self.params,
                "task": self.task, "seed": self.seed, "assays": self.assays, "n_bins": self.n_bins,
                "shapes": self.shapes, "y_mean": self.y_mean, "y_sd": self.y_sd, "history": self.history}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> TorchModel:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise PluginError(f"not a {cls.name!r} model: {META_FILE} is missing", path=directory)
        meta = json.loads(meta_path.read_text())
        if meta.get("model") != cls.name:
            raise PluginError(f"this checkpoint is a {meta.get('model')!r} model, not {cls.name!r}", path=directory)
        if meta.get("format") != FORMAT_VERSION or _minor(meta.get("epx_version")) != _minor(EPX_VERSION):
            raise PluginError(f"this checkpoint was written by epx {meta.get('epx_version')} (format {meta.get('format')}); "
                              f"epx {EPX_VERSION} reads format {FORMAT_VERSION}: re-train with this version", path=directory)
        # predicting needs no GPU: a model trained with device=cuda loads on a machine without one
        model = cls({**meta["params"], "device": "auto", "devices": 1, "num_nodes": 1, "strategy": "auto"},
                    meta["task"], meta["seed"])
        model.params.update({k: meta["params"][k] for k in ("device", "devices", "num_nodes", "strategy")
                             if k in meta["params"]})
        model.assays, model.n_bins = list(meta["assays"]), int(meta["n_bins"])
        model.shapes = meta.get("shapes") or {"n_bins": model.n_bins}
        model.y_mean, model.y_sd, model.history = float(meta["y_mean"]), float(meta["y_sd"]), meta.get("history", {})
        model.network = model.build(len(model.assays), **model.shapes)
        state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.network.load_state_dict(state)
        model.network.eval()
        _use_threads(model.params)
        return model


class AttentionModel(TorchModel):
    """A TorchModel whose trunk reports attention weights (``trunk.attention(x)``)."""

    def attention(self, data: FoldData) -> dict[str, np.ndarray]:
        """Per row: attention over each mark's bins (``bin``: rows x assays x bins) and over the
        marks (``mark``: rows x assays), as the trunk defines them."""
        self._check_input(data)
        parts: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for x in self._batches(data):
                for key, value in self.network.trunk.attention(x).items():
                    parts.setdefault(key, []).append(value.numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}


def holdout_genes(rows: Any, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held, kept) row positions: a seeded fraction of the genes, with all their cell lines, held
    out for early stopping. Holding out rows instead would put a gene's other cell lines on both
    sides when cell lines are pooled, and pick the epoch on genes the model trains on."""
    genes = rows["gene_id"].to_numpy() if "gene_id" in rows else np.arange(len(rows))
    unique = np.unique(genes)
    order = np.random.default_rng(seed).permutation(len(unique))
    n_valid = min(len(unique) - 1, max(1, int(round(len(unique) * fraction))))
    in_valid = np.isin(genes, unique[order[:n_valid]])
    return np.flatnonzero(in_valid), np.flatnonzero(~in_valid)


def _use_threads(params: dict[str, Any]) -> None:
    if int(params["threads"]) > 0:
        torch.set_num_threads(int(params["threads"]))


def _minor(version: Any) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])
