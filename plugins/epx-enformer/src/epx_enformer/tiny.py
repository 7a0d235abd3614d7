"""A tiny, randomly initialised Enformer for tests and the demo, written in the layouts the
loader reads (so they exercise the real loading code).

Architecture: dim 48, depth 1, one attention head, 8 ``human`` tracks, ``target_length`` 16 on a
4,096 bp window (32 positions of 128 bp, the central 16 kept). Random weights give nearly constant
outputs because BatchNorm's initial running statistics (mean 0, variance 1) do not match the
activations; the running statistics are therefore set from 64 seeded random sequences (GC
0.3-0.7), after which the outputs vary with the sequence (a ridge on them recovers the GC content
of the central kilobase with a held-out Spearman of about 0.7). The outputs mean nothing biological.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_WINDOW = 4096
TINY_TRACKS = 8
TINY_CONFIG: dict[str, Any] = {
    "dim": 48, "depth": 1, "heads": 1, "output_heads": {"human": TINY_TRACKS}, "target_length": 16,
    "attn_dim_key": 8, "dim_divisible_by": 4, "num_downsamples": 7, "dropout_rate": 0.0,
    "attn_dropout": 0.0, "pos_dropout": 0.0, "epx_window": TINY_WINDOW,
}
TARGETS_HEADER = ["", "identifier", "file", "clip", "scale", "sum_stat", "description"]


def tiny_descriptions(n: int = TINY_TRACKS) -> list[str]:
    """Track descriptions of the tiny model: CAGE for even tracks, DNASE for odd ones."""
    return [f"{'CAGE' if i % 2 == 0 else 'DNASE'}:tiny tissue {i}" for i in range(n)]


def tiny_enformer(seed: int = 0) -> Any:
    """The tiny model in eval mode, its BatchNorm statistics set from seeded random sequences."""
    import numpy as np
    import torch
    from enformer_pytorch import Enformer, EnformerConfig

    torch.manual_seed(seed)
    model = Enformer(EnformerConfig(**TINY_CONFIG))
    rng = np.random.default_rng(seed)
    n = 64
    gc = rng.uniform(0.3, 0.7, size=(n, 1))
    strong = rng.uniform(size=(n, TINY_WINDOW)) < gc
    pick = rng.integers(0, 2, size=(n, TINY_WINDOW))
    bases = np.where(strong, 1 + pick, np.where(pick == 0, 0, 3))  # A C G T = 0 1 2 3
    x = torch.from_numpy(np.eye(4, dtype=np.float32)[bases])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(x, head="human")
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def write_targets(path: str | Path, descriptions: list[str]) -> Path:
    """A basenji ``targets_human.txt``-style file: tab-separated, an unnamed index column, then
    identifier, file, clip, scale, sum_stat, description."""
    path = Path(path)
    lines = ["\t".join(TARGETS_HEADER)]
    for i, description in enumerate(descriptions):
        lines.append("\t".join([str(i), f"TINY{i:04d}", f"/tiny/track{i}.w5", "384", "1", "sum", description]))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tiny_enformer(directory: str | Path, seed: int = 0, *, checkpoint: bool = False) -> Path:
    """Write the tiny model and a ``targets.txt`` into ``directory``; return the path to pass as
    ``weights``. Default: the ``from_pretrained`` layout (``config.json`` + ``pytorch_model.bin``,
    the directory is returned); ``checkpoint=True``: one ``tiny-enformer.pt`` file (returned)."""
    from epx_enformer.load import save_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = tiny_enformer(seed)
    write_targets(directory / "targets.txt", tiny_descriptions())
    if checkpoint:
        return save_checkpoint(model, directory / "tiny-enformer.pt", TINY_WINDOW)
    # safetensors refuses Enformer's shared tensors (stem.* is also _trunk.1.*); the official
    # repository ships pytorch_model.bin too
    model.save_pretrained(str(directory), safe_serialization=False)
    return directory
