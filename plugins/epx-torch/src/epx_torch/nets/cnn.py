"""``cnn``: the DeepChrome / epi_to_express 1-D CNN over the bins of every mark.

Convolution + ReLU + max-pool blocks (as many as the bins allow), then a dense layer; the marks
are the input channels. It takes any number of bins (the epi_to_express seed uses 400 x 25 bp).
"""

from __future__ import annotations

import torch
from torch import nn

from epx_torch.trainer import TorchModel


class CNNTrunk(nn.Module):
    def __init__(self, n_assays: int, n_bins: int, *, channels: int, kernel: int, conv_layers: int, pool: int,
                 hidden: int, dropout: float) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width, length = n_assays, n_bins
        for _ in range(conv_layers):
            if length < max(kernel, pool, 2):
                break
            blocks += [nn.Conv1d(width, channels, kernel, padding=kernel // 2), nn.BatchNorm1d(channels), nn.ReLU()]
            if pool > 1:
                blocks.append(nn.MaxPool1d(pool))
            width = channels
            length = (length + 2 * (kernel // 2) - kernel + 1) // max(pool, 1)
        if not blocks:
            raise ValueError(f"kernel {kernel} and pool {pool} leave no convolution on {n_bins} bins; "
                             "use a smaller --param kernel or pool")
        self.conv = nn.Sequential(*blocks)
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, n_assays, n_bins)).numel()
        self.dense = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, hidden), nn.ReLU(),
                                   nn.Dropout(dropout))
        self.embedding_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.conv(x))


class CNN(TorchModel):
    name = "cnn"
    trunk = CNNTrunk
