"""Finding and loading Enformer weights (enformer-pytorch), and choosing the device.

Two on-disk layouts are read:

* **a directory** as ``Enformer.from_pretrained(dir)`` reads it: ``config.json`` and
  ``pytorch_model.bin`` or ``model.safetensors`` (possibly sharded, with an ``*.index.json``).
  The Hugging Face repository ``EleutherAI/enformer-official-rough`` has this layout::

      huggingface-cli download EleutherAI/enformer-official-rough --local-dir ~/.cache/epx/enformer

* **a single checkpoint file** (``*.pt``), written by :func:`save_checkpoint`: ``torch.save`` of
  ``{"format": "epx-enformer", "version": 1, "config": EnformerConfig.to_dict(),
  "state_dict": model.state_dict()}``, read with ``torch.load(weights_only=True)``.

The input window is ``config.epx_window`` when the config has it (the tiny test model does);
otherwise the official geometry (``target_length`` 896, 128 bp bins) implies 196,608 bp.

With ``weights=None`` the lookup order is ``$EPX_ENFORMER_WEIGHTS``, then
``${XDG_CACHE_HOME:-~/.cache}/epx/enformer``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from epx.errors import EpxError

ENV_VAR = "EPX_ENFORMER_WEIGHTS"
HF_REPO = "EleutherAI/enformer-official-rough"
CHECKPOINT_FORMAT = "epx-enformer"
CHECKPOINT_VERSION = 1
OFFICIAL_WINDOW = 196_608
OFFICIAL_TARGET_LENGTH = 896
BIN_SIZE = 128  # 2 ** num_downsamples with the default 7 downsamplings
WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth")
# The official architecture; weights converted from TensorFlow need its precomputed gamma
# positional features (enformer_pytorch.from_pretrained sets these for the hub name only).
OFFICIAL_ARCH = {"dim": 1536, "depth": 11, "heads": 8, "target_length": 896}


class WeightsError(EpxError):
    """Enformer weights are missing, unreadable or do not match their config."""


def default_weights_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/epx/enformer``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "epx" / "enformer"


def missing_message(looked: list[str]) -> str:
    target = default_weights_dir()
    return (f"no Enformer weights found (looked in {', '.join(looked)}); download them with "
            f"`huggingface-cli download {HF_REPO} --local-dir {target}` "
            f"(or set ${ENV_VAR}, or pass --weights DIR or a checkpoint FILE)")


def find_weights(weights: str | Path | None) -> Path:
    """The weights path to load: ``weights`` when given (it must exist), else the first of
    ``$EPX_ENFORMER_WEIGHTS`` and the cache directory that holds weights."""
    if weights is not None and str(weights) != "":
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsError(f"Enformer weights {path} do not exist; " + missing_message([str(path)]).split("; ", 1)[1])
        return path
    looked = []
    env = os.environ.get(ENV_VAR)
    candidates = ([Path(env).expanduser()] if env else []) + [default_weights_dir()]
    for path in candidates:
        looked.append(str(path) + (f" (${ENV_VAR})" if env and path == candidates[0] else ""))
        if path.is_file() or (path.is_dir() and (path / "config.json").is_file()):
            return path
    raise WeightsError(missing_message(looked))


def resolve_device(choice: str | None) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda``/``cuda:N`` without one is
    an error, never a silent fallback to the CPU."""
    import torch

    choice = (choice or "auto").strip().lower()
    available = torch.cuda.is_available()
    if choice == "auto":
        return "cuda" if available else "cpu"
    if choice == "cpu":
        return "cpu"
    if choice == "cuda" or (choice.startswith("cuda:") and choice[5:].isdigit()):
        if not available:
            build = "a CPU-only build" if torch.version.cuda is None else "a CUDA build"
            raise EpxError(f"device {choice} was asked for, but torch {torch.__version__} ({build}) sees no CUDA GPU; "
                           "use --device cpu, or --device auto to use a GPU only when one is present")
        if ":" in choice and int(choice[5:]) >= torch.cuda.device_count():
            raise EpxError(f"device {choice} was asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
        return choice
    raise EpxError(f"unknown device {choice!r}; use auto, cpu, cuda or cuda:N")


@dataclass
class LoadedEnformer:
    """An Enformer in eval mode on ``device`` with what the predictor needs to know about it."""

    model: Any  # enformer_pytorch.Enformer
    path: Path  # the directory or checkpoint file it was read from
    files: list[Path]  # the files whose content defines the weights (config + tensors)
    window: int  # input length in bp
    bins: int  # output bins (target_length)
    heads: dict[str, int] = field(default_factory=dict)  # output head -> tracks
    device: str = "cpu"

    @property
    def crop(self) -> int:
        """Input bins cropped from each side before the output bins (``(window/128 - bins) / 2``)."""
        return (self.window // BIN_SIZE - self.bins) // 2

    @property
    def tss_bin(self) -> int:
        """The output bin holding input position ``window // 2`` (for the official model, bin 448
        of 896, whose first base is that position)."""
        return (self.window // 2) // BIN_SIZE - self.crop


def window_of(config: Any, where: Path) -> int:
    """The input window of a config: ``epx_window``, or 196,608 for the official geometry."""
    window = getattr(config, "epx_window", None)
    target = int(config.target_length)
    if window is None:
        if target == OFFICIAL_TARGET_LENGTH:
            window = OFFICIAL_WINDOW
        else:
            raise WeightsError(f"config has target_length {target} and no epx_window; add \"epx_window\": "
                               "<input length in bp> to its config", path=where)
    window = int(window)
    positions = window // BIN_SIZE
    if int(getattr(config, "num_downsamples", 7)) != 7:
        raise WeightsError("only 128 bp output bins (num_downsamples 7) are supported", path=where)
    if window % BIN_SIZE or positions < target or (positions - target) % 2:
        raise WeightsError(f"window {window} bp does not fit target_length {target}: it must be a multiple of "
                           f"{BIN_SIZE} with (window/{BIN_SIZE} - target_length) even and >= 0", path=where)
    return window


def _official(config: Any) -> bool:
    return all(getattr(config, k, None) == v for k, v in OFFICIAL_ARCH.items())


def _set_tf_gamma(model: Any, raw_config: dict[str, Any]) -> None:
    """Use TensorFlow's precomputed gamma positions for the official weights (as
    ``enformer_pytorch.from_pretrained`` does for the hub name) unless the config says otherwise."""
    from enformer_pytorch.modeling_enformer import Attention

    if "use_tf_gamma" in raw_config or not _official(model.config):
        return
    model.config.use_tf_gamma = True
    model.use_tf_gamma = True
    for module in model.modules():
        if isinstance(module, Attention):
            module.use_tf_gamma = True


def _weight_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and (
        p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".index.json")))


def _load_directory(path: Path) -> tuple[Any, dict[str, Any], list[Path]]:
    from enformer_pytorch import Enformer

    config_path = path / "config.json"
    if not config_path.is_file():
        raise WeightsError("not an Enformer weights directory: config.json is missing", path=path)
    try:
        raw = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"config.json is not valid JSON ({exc})", path=path) from None
    files = _weight_files(path)
    if not files:
        raise WeightsError("no weights file (pytorch_model.bin or model.safetensors) beside config.json", path=path)
    try:
        model, info = Enformer.from_pretrained(str(path), output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - transformers/torch/safetensors raise many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot load Enformer weights ({type(exc).__name__}: {first[:300]})", path=path) from None
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {sorted(map(str, v))[0]})" for k, v in problems.items())
        raise WeightsError(f"weights do not match config.json: {detail}", path=path)
    return model, raw, [config_path, *files]


def _load_checkpoint(path: Path) -> tuple[Any, dict[str, Any], list[Path]]:
    import torch
    from enformer_pytorch import Enformer, EnformerConfig

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip/torch errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot read Enformer checkpoint ({type(exc).__name__}: {first[:300]})", path=path) from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or not {"config", "state_dict"} <= set(data):
        raise WeightsError(f"not an {CHECKPOINT_FORMAT} checkpoint (a dict with format, config and state_dict; "
                           "see epx_enformer.load.save_checkpoint)", path=path)
    raw = dict(data["config"])
    try:
        model = Enformer(EnformerConfig(**raw))
        result = model.load_state_dict(data["state_dict"], strict=False)
    except Exception as exc:  # noqa: BLE001 - shape mismatches are RuntimeErrors, bad configs anything
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"checkpoint weights do not match its config ({type(exc).__name__}: {first[:300]})",
                           path=path) from None
    if result.missing_keys or result.unexpected_keys:
        keys = result.missing_keys or result.unexpected_keys
        kind = "missing" if result.missing_keys else "unexpected"
        raise WeightsError(f"checkpoint weights do not match its config: {len(keys)} {kind} keys (e.g. {keys[0]})",
                           path=path)
    return model, raw, [path]


def load_enformer(weights: str | Path | None, device: str = "auto") -> LoadedEnformer:
    """Load Enformer weights (a ``from_pretrained`` directory or an epx-enformer checkpoint file;
    None = ``$EPX_ENFORMER_WEIGHTS``, then the cache directory) in eval mode on ``device``."""
    dev = resolve_device(device)
    path = find_weights(weights)
    model, raw, files = _load_directory(path) if path.is_dir() else _load_checkpoint(path)
    window = window_of(model.config, path)
    _set_tf_gamma(model, raw)
    model.eval()
    model.to(dev)
    return LoadedEnformer(model=model, path=path.resolve(), files=[f.resolve() for f in files], window=window,
                          bins=int(model.config.target_length), heads=dict(model.config.output_heads), device=dev)


def save_checkpoint(model: Any, path: str | Path, window: int | None = None) -> Path:
    """Write ``model`` as a single epx-enformer checkpoint file (see the module docstring);
    ``window`` is recorded as ``config["epx_window"]``."""
    import torch

    config = model.config.to_dict()
    for key in ("transformers_version", "architectures", "dtype", "torch_dtype"):
        config.pop(key, None)
    if window is not None:
        config["epx_window"] = int(window)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config, "state_dict": state}, path)
    return path
