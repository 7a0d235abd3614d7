"""Specs of torch models: the trainer's parameters, shared by every architecture.

Import-light (only ``epx.models``): ``epx models`` and shell completion import every spec. A third
party's spec is ``torch_spec(name=..., model="pkg.module:Class", params={...})``; its model class
subclasses :class:`epx_torch.trainer.TorchModel`.
"""

from __future__ import annotations

from typing import Any

from epx.models import ModelSpec

# Seed defaults of the epi_to_express CNN (Adam 1e-3, <= 100 epochs, patience 12, lr x0.2 on a
# plateau of 3 epochs, batch 128); architectures override what their seed project used.
TRAINER_PARAMS: dict[str, Any] = {
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "max_epochs": 100,
    "patience": 12,
    "lr_factor": 0.2,
    "lr_patience": 3,
    "batch_size": 128,
    "grad_clip": 1.0,
    "pearson_weight": 0.0,
    "valid_fraction": 0.1,
    "device": "cpu",
    "devices": 1,
    "num_nodes": 1,
    "strategy": "auto",
    "threads": 1,
    "verbose": True,
}
TRAINER_HELP = {
    "lr": "initial learning rate",
    "optimizer": "adam, or adamw (decoupled weight decay)",
    "weight_decay": "weight decay (L2 in adam, decoupled in adamw)",
    "max_epochs": "maximum epochs; early stopping on the validation side usually stops sooner",
    "patience": "stop after this many epochs without a lower validation loss (0 = never stop early)",
    "lr_factor": "multiply the learning rate by this on a validation-loss plateau (1 = constant)",
    "lr_patience": "epochs of plateau before the learning rate is reduced",
    "batch_size": "rows per batch (each batch is read from the dataset's bins when it is needed)",
    "grad_clip": "clip the gradient norm to this (0 = no clipping)",
    "pearson_weight": "regression: loss = MSE + w x (1 - Pearson) of the batch (the histone-transformer loss has w = 1)",
    "valid_fraction": "without a validation side, hold out this seeded fraction of training genes (all their cell lines) for early stopping",
    "device": "cpu, cuda (an error when no GPU is visible) or auto (cuda when present); cuda trains in mixed precision",
    "devices": "processes per node that train one model together, one per GPU (data-parallel, Lightning DDP); "
               "the batch size is per process. With device=cpu, CPU processes",
    "num_nodes": "nodes that train one model together (start one epx per task with srun; see docs/scale-out.md)",
    "strategy": "auto (ddp when devices x num_nodes > 1), ddp, or ddp_find_unused_parameters_true",
    "threads": "torch CPU threads (0 = torch's default, all cores); these small models train fastest on one",
    "verbose": "print each epoch's train/valid loss and metric on stderr",
}
TRAINER_BOUNDS = {
    "lr": "(0, inf)", "weight_decay": "[0, inf)", "max_epochs": "[1, inf)", "patience": "[0, inf)",
    "lr_factor": "(0, 1]", "lr_patience": "[0, inf)", "batch_size": "[1, inf)", "devices": "[1, inf)", "num_nodes": "[1, inf)", "grad_clip": "[0, inf)",
    "pearson_weight": "[0, inf)", "valid_fraction": "(0, 0.5]", "threads": "[0, inf)",
}
TRAINER_CHOICES = {"device": ("cpu", "cuda", "auto"), "optimizer": ("adam", "adamw"),
                   "strategy": ("auto", "ddp", "ddp_find_unused_parameters_true")}
TASKS = ("binary", "regression", "rank")


def torch_spec(*, name: str, description: str, model: str, params: dict[str, Any],
               param_help: dict[str, str] | None = None, param_bounds: dict[str, Any] | None = None,
               trainer: dict[str, Any] | None = None, tasks: tuple[str, ...] = TASKS,
               param_choices: dict[str, tuple[str, ...]] | None = None, **spec_fields: Any) -> ModelSpec:
    """A binned-input ModelSpec: the architecture's ``params`` plus the trainer's (``trainer``
    overrides the trainer defaults, e.g. ``{"patience": 5}``). ``spec_fields`` go to ModelSpec
    unchanged (e.g. the input geometries a model reads)."""
    overlap = set(params) & set(TRAINER_PARAMS)
    if overlap:
        raise ValueError(f"{name}: architecture parameters {sorted(overlap)} clash with trainer parameters; "
                         "pass trainer defaults through trainer={...}")
    merged = {**TRAINER_PARAMS, **(trainer or {}), **params}
    return ModelSpec(
        name=name, description=description, input_kind="binned", tasks=tasks, model=model, params=merged,
        param_help={**TRAINER_HELP, **(param_help or {})},
        param_bounds={**TRAINER_BOUNDS, **(param_bounds or {})},
        param_choices={**TRAINER_CHOICES, **(param_choices or {})}, **spec_fields,
    )
