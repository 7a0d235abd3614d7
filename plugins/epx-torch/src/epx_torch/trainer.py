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
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
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


def _loader(X: Any, y: np.ndarray | None, batch_size: int, shuffle: bool, seed: int) -> torch.utils.data.DataLoader:
    rows = _Rows(X, y)
    if shuffle:
        sampler: Any = torch.utils.data.RandomSampler(rows, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = torch.utils.data.SequentialSampler(rows)
    batches = torch.utils.data.BatchSampler(sampler, batch_size=batch_size, drop_last=False)
    return torch.utils.data.DataLoader(rows, sampler=batches, batch_size=None, num_workers=0)


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
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[Any, torch.Tensor], _: int) -> None:
        x, y = batch
        out = self(x)
        self.log("valid_loss", self.loss(out, y), on_step=False, on_epoch=True, batch_size=len(y))
        self._valid.append((out.detach().float().cpu(), y.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._valid:
            return
        out = torch.cat([o for o, _ in self._valid]).numpy()
        y = torch.cat([t for _, t in self._valid]).numpy()
        self._valid.clear()
        value = auroc(y, out) if self.task == "binary" else pearson(y, out)
        self.log("valid_metric", float(np.nan_to_num(value)), on_epoch=True)

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
        batch = int(self.params["batch_size"])
        train_loader = _loader(X_train, scale(y_train), batch, shuffle=True, seed=self.seed)
        valid_loader = _loader(X_valid, scale(y_valid), max(batch, 256), shuffle=False, seed=self.seed)
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
                accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                precision="16-mixed" if device == "cuda" else "32-true",
                max_epochs=int(self.params["max_epochs"]), callbacks=callbacks, logger=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                gradient_clip_val=float(self.params["grad_clip"]) or None, deterministic=device == "cpu",
                default_root_dir=ckpt_dir,
            )
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(does not have many workers|number of training batches|"
                                        "LeafSpec|Checkpoint directory).*")
                trainer.fit(module, train_loader, valid_loader)
            score = best.best_model_score
            if not best.best_model_path or score is None or not np.isfinite(float(score)):
                raise PluginError(f"model {self.name!r}: training diverged (the validation loss was never finite in "
                                  f"{trainer.current_epoch} epoch(s)); lower --param lr (now {self.params['lr']:g}) "
                                  "or keep --param grad_clip above 0")
            state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
        self.network = module.network.cpu().eval()
        self.history = {"epochs": int(trainer.current_epoch), "best_valid_loss": float(best.best_model_score),
                        "device": device, "last_lr": float(trainer.optimizers[0].param_groups[0]["lr"])}

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
        model = cls({**meta["params"], "device": "auto"}, meta["task"], meta["seed"])
        model.params["device"] = meta["params"].get("device", "cpu")
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
