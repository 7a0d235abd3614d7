"""``chromoformer``: Chromoformer (Lee et al. 2022, dohlee/chromoformer), written with torch.nn blocks.

Per geometry (one bin size and window, e.g. ``2000x20``, ``500x80``, ``100x400``):

* embedding transformer: the promoter's bins (assays projected to ``d_embed``, sinusoidal
  positions) through a transformer encoder; the promoter embedding is the TSS bin's token
  (bin ``n_bins // 2``);
* pairwise-interaction transformer: for each distal region (pCRE) the promoter's bin tokens are
  the queries and the region's bins (projected, with positions) the keys and values, padding bins
  masked; the region's embedding is the updated TSS token (as the reference, which takes the
  centre token of the promoter side);
* regulation transformer over ``[promoter, pCRE 1..R]`` (width ``d_embed``, attention width
  ``reg_d_model``, gated attention as the reference): the contact score, ``log1p(max(score, 0))``,
  is added to the promoter's attention logits towards each pCRE, scaled by a learned weight per
  layer and head; absent regions are masked as keys. Output: the promoter token plus the input
  promoter token (the reference's residual).

The geometries' outputs are concatenated and go through ``Linear(n_geometries x d_embed,
head_hidden)`` + ReLU; the trainer's ``Network`` adds the last ``Linear(head_hidden, 1)``.
Without regions (``use_regions=false``, or a dataset without pairs) only the embedding
transformers run: the promoter tokens go to the head (the reference's promoter-only ablation).

Masking: masked logits are -inf, so a masked key has weight exactly 0 and the output does not
depend on the signal of an absent region or of padding bins. A region with no bin inside its frame
would leave a query row with every key masked (NaN); such rows attend to every bin instead and
their result is dropped (the region is masked in the regulation transformer).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from epx.errors import PluginError
from epx.models import FoldData
from epx_torch.trainer import AttentionModel, Network

PLAIN = "X"  # the geometry name used when the data has no ``bins`` dict: the model reads X


def sinusoid(n: int, dim: int) -> torch.Tensor:
    """(n, dim) sine/cosine position encodings (Vaswani et al.)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    out = torch.zeros(n, dim + dim % 2)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out[:, :dim]


class Attention(nn.Module):
    """Multi-head (cross-)attention of width ``d_model`` on tokens of width ``d_in``, then the
    residual and a LayerNorm (post-norm, as the reference). ``gate``: the attended values are
    multiplied by a sigmoid gate computed from the query tokens (the reference's regulation layers)."""

    def __init__(self, d_in: int, d_model: int, heads: int, dropout: float, gate: bool = False) -> None:
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.query = nn.Linear(d_in, d_model, bias=False)
        self.key_value = nn.Linear(d_in, 2 * d_model, bias=False)
        self.gate = nn.Linear(d_in, d_model, bias=False) if gate else None
        self.out = nn.Linear(d_model, d_in)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_in)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, key_mask: torch.Tensor | None = None,
                bias: torch.Tensor | None = None, weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, Lq, d_in); context (B, Lk, d_in), default x; key_mask (B, Lk) True = attend;
        bias (B, heads, Lq, Lk) added to the logits. Returns the new x and, when ``weights`` or
        ``bias`` is given, the attention weights (B, heads, Lq, Lk)."""
        context = x if context is None else context
        q = self._split(self.query(x))
        k, v = (self._split(t) for t in self.key_value(context).chunk(2, dim=-1))
        probs = None
        if bias is None and not weights:  # the fused kernel: no (Lq x Lk) matrix kept per head
            mask = None if key_mask is None else key_mask[:, None, None, :]
            h = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                           dropout_p=self.drop.p if self.training else 0.0)
        else:
            logits = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
            if bias is not None:
                logits = logits + bias
            if key_mask is not None:
                logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            h = self.drop(probs) @ v
        if self.gate is not None:
            h = h * torch.sigmoid(self._split(self.gate(x)))
        h = h.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.norm(x + self.drop(self.out(h))), probs


class Block(nn.Module):
    """Attention, then a ReLU feed-forward with its residual and LayerNorm."""

    def __init__(self, d_in: int, d_model: int, heads: int, ff: int, dropout: float, gate: bool = False) -> None:
        super().__init__()
        self.attend = Attention(d_in, d_model, heads, dropout, gate)
        self.ff = nn.Sequential(nn.Linear(d_in, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d_in), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(d_in)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, probs = self.attend(x, **kwargs)
        return self.norm(x + self.ff(x)), probs


class Embedding(nn.Module):
    """Promoter bins (B, assays, n_bins) -> bin tokens (B, n_bins, d)."""

    def __init__(self, n_assays: int, n_bins: int, d: int, heads: int, ff: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.project = nn.Linear(n_assays, d, bias=False)
        self.register_buffer("position", sinusoid(n_bins, d), persistent=False)
        self.layers = nn.ModuleList(Block(d, d, heads, ff, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(x.transpose(1, 2)) + self.position
        for layer in self.layers:
            h = layer(h)[0]
        return h


class Pairwise(nn.Module):
    """Promoter bin tokens (B, N, d) x region signal (B, R, assays, F) -> one token per region (B, R, d)."""

    def __init__(self, n_assays: int, frame: int, d: int, heads: int, ff: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.project_promoter = nn.Linear(d, d, bias=False)
        self.project_region = nn.Linear(n_assays, d, bias=False)
        self.register_buffer("position", sinusoid(frame, d), persistent=False)
        self.layers = nn.ModuleList(Block(d, d, heads, ff, dropout) for _ in range(layers))

    def forward(self, promoter: torch.Tensor, signal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = promoter.shape
        r, frame = signal.shape[1], signal.shape[-1]
        q = self.project_promoter(promoter).unsqueeze(1).expand(b, r, n, d).reshape(b * r, n, d)
        c = self.project_region(signal.reshape(b * r, -1, frame).transpose(1, 2)) + self.position
        keys = mask.reshape(b * r, frame)
        keys = keys | ~keys.any(dim=-1, keepdim=True)  # no bin: attend to all; the caller drops the region
        for layer in self.layers:
            q = layer(q, context=c, key_mask=keys)[0]
        return q[:, n // 2].view(b, r, d)


class Regulation(nn.Module):
    """Tokens [promoter, pCRE 1..R] (B, 1 + R, d) with the contact score as an attention bias."""

    def __init__(self, d: int, d_model: int, heads: int, ff: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(d, d_model, heads, ff, dropout, gate=True) for _ in range(layers))
        self.score_weight = nn.Parameter(torch.ones(layers, heads))  # the reference's gamma per layer and head

    def forward(self, x: torch.Tensor, present: torch.Tensor, score: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, length, _ = x.shape
        keys = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), present], dim=1)
        base = torch.zeros(b, 1, length, length, dtype=x.dtype, device=x.device)
        base[:, 0, 0, 1:] = score  # the promoter's logits towards each pCRE, as the reference
        probs = []
        for layer, weight in zip(self.layers, self.score_weight, strict=True):
            x, p = layer(x, key_mask=keys, bias=base * weight.view(1, -1, 1, 1))
            probs.append(p)
        return x, probs


class Chromoformer(nn.Module):
    """The trunk: a dict batch (``bins:{g}``, ``regions:score``, ``regions:present``,
    ``regions:{g}``, ``regions:{g}.mask``) -> (B, head_hidden)."""

    def __init__(self, n_assays: int, geometries: dict[str, int], frames: dict[str, int], n_regions: int, *,
                 d_embed: int = 128, embed_heads: int = 2, embed_layers: int = 1, embed_ff: int = 128,
                 pair_layers: int = 2, pair_heads: int = 2, pair_ff: int = 256, reg_d_model: int = 256,
                 reg_heads: int = 8, reg_layers: int = 6, reg_ff: int = 256, head_hidden: int = 128,
                 dropout: float = 0.0, use_regions: bool = True, lr_decay: float = 0.13) -> None:
        super().__init__()
        self.check(d_embed=d_embed, embed_heads=embed_heads, pair_heads=pair_heads, reg_d_model=reg_d_model,
                   reg_heads=reg_heads)
        if not geometries:
            raise ValueError("no input geometry")
        self.geometries = {str(g): int(n) for g, n in geometries.items()}
        self.n_regions = int(n_regions) if use_regions and frames else 0
        if self.n_regions and set(self.geometries) - set(frames):
            raise ValueError(f"the regions have no frame for geometries {sorted(set(self.geometries) - set(frames))}")
        self.embed = nn.ModuleDict({_key(g): Embedding(n_assays, n, d_embed, embed_heads, embed_ff, embed_layers, dropout)
                                    for g, n in self.geometries.items()})
        if self.n_regions:
            self.pair = nn.ModuleDict({_key(g): Pairwise(n_assays, int(frames[g]), d_embed, pair_heads, pair_ff,
                                                         pair_layers, dropout) for g in self.geometries})
            self.regulate = nn.ModuleDict({_key(g): Regulation(d_embed, reg_d_model, reg_heads, reg_ff, reg_layers, dropout)
                                           for g in self.geometries})
        self.head = nn.Sequential(nn.Linear(len(self.geometries) * d_embed, head_hidden), nn.ReLU())
        self.embedding_dim = head_hidden

    @staticmethod
    def check(d_embed: int = 128, embed_heads: int = 2, pair_heads: int = 2, reg_d_model: int = 256, reg_heads: int = 8,
              **_: object) -> None:
        for heads, name, width, wname in ((embed_heads, "embed_heads", d_embed, "d_embed"),
                                          (pair_heads, "pair_heads", d_embed, "d_embed"),
                                          (reg_heads, "reg_heads", reg_d_model, "reg_d_model")):
            if heads < 1 or width % heads:
                raise ValueError(f"{name} ({heads}) must divide {wname} ({width})")

    def _run(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        outs, probs = [], []
        if self.n_regions:
            present = batch["regions:present"].bool()
            score = torch.log1p(batch["regions:score"].float().clamp(min=0))
        for g, n in self.geometries.items():
            tokens = self.embed[_key(g)](batch[f"bins:{g}"])
            promoter = tokens[:, n // 2]
            if not self.n_regions:
                outs.append(promoter)
                continue
            mask = batch[f"regions:{g}.mask"].bool()
            valid = present & mask.any(dim=-1)
            regions = self.pair[_key(g)](tokens, batch[f"regions:{g}"], mask)
            regions = torch.where(valid[..., None], regions, torch.zeros_like(regions))
            x = torch.cat([promoter[:, None], regions], dim=1)
            y, p = self.regulate[_key(g)](x, valid, torch.where(valid, score, torch.zeros_like(score)))
            outs.append(y[:, 0] + promoter)
            probs.extend(p)
        return self.head(torch.cat(outs, dim=-1)), probs

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._run(batch)[0]

    def attention(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``region`` (B, R): the promoter token's attention to each pCRE in the regulation
        transformers, averaged over heads, layers and geometries (0 for absent regions; the rest,
        with the weight on the promoter itself, sums to 1). Empty without regions."""
        if not self.n_regions:
            return {}
        probs = self._run(batch)[1]
        return {"region": torch.stack([p[:, :, 0, 1:].mean(dim=1) for p in probs]).mean(dim=0)}

    @staticmethod
    def configure_schedule(optimizer: torch.optim.Optimizer, params: dict[str, Any]) -> Any:
        """The reference's schedule: the learning rate times (1 - lr_decay) after each epoch."""
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=1 - float(params["lr_decay"]))


def _key(geometry: str) -> str:
    return geometry.replace(".", "_")  # ModuleDict keys cannot hold dots


class _Inputs:
    """The batches of one FoldData: ``[idx]`` -> {"bins:{g}": (n, assays, bins), "regions:...": ...}."""

    def __init__(self, bins: dict[str, Any], regions: Any, geometries: list[str]) -> None:
        self.bins, self.regions = bins, regions
        self.region_keys = ["score", "present", *(k for g in geometries for k in (g, f"{g}.mask"))]

    def __len__(self) -> int:
        return len(next(iter(self.bins.values())))

    def __getitem__(self, idx: Any) -> dict[str, np.ndarray]:
        out = {f"bins:{g}": view[idx] for g, view in self.bins.items()}
        if self.regions is not None:
            part = self.regions[idx]
            out.update({f"regions:{k}": part[k] for k in self.region_keys})
        return out


class ChromoformerModel(AttentionModel):
    name = "chromoformer"
    trunk = Chromoformer

    def input_shapes(self, data: FoldData) -> dict[str, Any]:
        """Promoter bins per geometry (``{"X": bins}`` when the data has no ``bins`` dict) and, when
        regions are used and present, their frames and count."""
        geometries = {g: int(v.shape[2]) for g, v in data.bins.items()} or {PLAIN: int(data.X.shape[2])}
        regions = data.regions if self.params["use_regions"] else None
        if regions is None or not int(regions.n_regions):
            return {"geometries": geometries, "frames": {}, "n_regions": 0}
        missing = [g for g in geometries if g not in regions.frames]
        if missing:
            raise PluginError(f"model {self.name!r}: the regions have no frame for geometries {', '.join(missing)}")
        return {"geometries": geometries, "frames": {g: int(regions.frames[g]) for g in geometries},
                "n_regions": int(regions.n_regions)}

    def build(self, n_assays: int, geometries: dict[str, int], frames: dict[str, int], n_regions: int) -> Network:
        try:
            return Network(self.trunk(n_assays, geometries, frames, n_regions, **self.architecture()))
        except (ValueError, RuntimeError) as exc:
            raise PluginError(f"model {self.name!r}: cannot build the network: {exc}") from None

    def inputs(self, data: FoldData) -> _Inputs:
        geometries = list(self.shapes["geometries"])
        bins = {g: data.X if g == PLAIN else data.bins[g] for g in geometries}
        return _Inputs(bins, data.regions if self.shapes["n_regions"] else None, geometries)

    def _check_input(self, data: FoldData) -> None:
        super()._check_input(data)
        for g, n in self.shapes["geometries"].items():
            if g == PLAIN:
                continue
            if g not in data.bins:
                raise PluginError(f"model {self.name!r} was trained on bins {', '.join(self.shapes['geometries'])}; "
                                  f"the data has {', '.join(data.bins) or 'none'}")
            if int(data.bins[g].shape[2]) != n:
                raise PluginError(f"model {self.name!r} was trained on {n} bins at {g}, given {data.bins[g].shape[2]}")
        if self.shapes["n_regions"]:
            regions = data.regions
            if regions is None:
                raise PluginError(f"model {self.name!r} was trained with distal regions; the data has none "
                                  "(train with --param use_regions=false for a promoter-only model)")
            frames = {g: int(regions.frames.get(g, -1)) for g in self.shapes["frames"]}
            if int(regions.n_regions) != self.shapes["n_regions"] or frames != self.shapes["frames"]:
                raise PluginError(f"model {self.name!r} was trained on {self.shapes['n_regions']} regions with frames "
                                  f"{self.shapes['frames']}, given {regions.n_regions} with {dict(regions.frames)}")
