"""``transformer``: the histone-transformer seed's model.

A residual CNN over the bins (marks as channels), max-pooled, projected to ``d_model`` with a
learned position embedding; a transformer encoder (default 10 layers, 8 heads); multi-head
attention pooling (a learned query attends over the positions); the shared regression head.
The seed's loss, MSE + (1 - Pearson), is the trainer's ``pearson_weight = 1``.
"""

from __future__ import annotations

import torch
from torch import nn

from epx_torch.trainer import AttentionModel


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(channels, channels, 3, padding=1), nn.BatchNorm1d(channels), nn.GELU(),
                                  nn.Conv1d(channels, channels, 3, padding=1), nn.BatchNorm1d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x + self.body(x))


class TransformerTrunk(nn.Module):
    def __init__(self, n_assays: int, n_bins: int, *, channels: int, d_model: int, heads: int, layers: int, ff: int,
                 pool: int, dropout: float) -> None:
        super().__init__()
        self.pool = pool if n_bins >= 2 * pool else 1
        self.cnn = nn.Sequential(nn.Conv1d(n_assays, channels, 5, padding=2), nn.GELU(), ResidualBlock(channels),
                                 ResidualBlock(channels), nn.MaxPool1d(self.pool) if self.pool > 1 else nn.Identity())
        positions, self.n_bins = n_bins // self.pool, n_bins
        self.project = nn.Linear(channels, d_model)
        self.position = nn.Parameter(torch.randn(1, positions, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.query = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.pooling = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.embedding_dim = d_model

    @staticmethod
    def check(d_model: int, heads: int, **_: object) -> None:
        if d_model % heads:
            raise ValueError(f"heads ({heads}) must divide d_model ({d_model})")

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.cnn(x).transpose(1, 2)
        h = self.encoder(self.project(h) + self.position)
        pooled, weights = self.pooling(self.query.expand(len(h), -1, -1), h, h)
        return self.norm(pooled.squeeze(1)), weights.squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)[0]

    def attention(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pooling attention over positions, spread over bins (each position covers ``pool`` bins;
        the trailing bins max-pooling drops get 0)."""
        weights = torch.repeat_interleave(self._encode(x)[1], self.pool, dim=-1) / self.pool
        return {"position": nn.functional.pad(weights, (0, self.n_bins - weights.shape[-1]))}


class Transformer(AttentionModel):
    name = "transformer"
    trunk = TransformerTrunk
