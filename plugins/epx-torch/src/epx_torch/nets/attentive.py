"""The AttentiveChrome family (Singh et al. 2017) and ChromaFormer's transformer hybrids.

Bin level (all three): a BiLSTM reads each mark's bins and a learned context vector attends over
them, giving one embedding per mark. The marks share the LSTM's weights, told apart by a one-hot
mark channel: one batched LSTM call instead of one per mark (AttentiveChrome keeps separate
LSTMs; the sharing is what makes the model fast on a CPU).
Mark level: ``bilstm-attn`` runs a second BiLSTM over the mark embeddings with attention
(AttentiveChrome); ``bilstm-transformer`` a transformer encoder over them; ``hybrid`` both,
concatenated (the ChromaFormer seed's primary model).
"""

from __future__ import annotations

import torch
from torch import nn

from epx_torch.trainer import AttentionModel


class Attention(nn.Module):
    """Soft attention with a learned context vector: weights over a sequence and their weighted sum."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.score(h).squeeze(-1), dim=-1)
        return (weights.unsqueeze(-1) * h).sum(dim=1), weights


class MarkEncoder(nn.Module):
    """(batch, marks, bins) -> per-mark embeddings (batch, marks, 2 x hidden) and bin attention."""

    def __init__(self, n_assays: int, hidden: int) -> None:
        super().__init__()
        self.n_assays = n_assays
        self.lstm = nn.LSTM(1 + n_assays, hidden, batch_first=True, bidirectional=True)
        self.attend = Attention(2 * hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, m, n = x.shape
        mark = torch.eye(m, device=x.device, dtype=x.dtype).repeat(b, 1).unsqueeze(1).expand(b * m, n, m)
        seq = torch.cat([x.reshape(b * m, n, 1), mark], dim=-1)
        h, _ = self.lstm(seq)
        emb, weights = self.attend(h)
        return emb.reshape(b, m, -1), weights.reshape(b, m, n)


class _Family(nn.Module):
    use_attention = True
    use_transformer = False

    def __init__(self, n_assays: int, n_bins: int, *, lstm_hidden: int, dropout: float, mark_hidden: int = 16,
                 d_model: int = 64, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.marks = MarkEncoder(n_assays, lstm_hidden)
        dim = 2 * lstm_hidden
        self.embedding_dim = 0
        if self.use_attention:
            self.mark_lstm = nn.LSTM(dim, mark_hidden, batch_first=True, bidirectional=True)
            self.mark_attend = Attention(2 * mark_hidden)
            self.embedding_dim += 2 * mark_hidden
        if self.use_transformer:
            self.project = nn.Linear(dim, d_model)
            self.mark_id = nn.Parameter(torch.zeros(1, n_assays, d_model))
            layer = nn.TransformerEncoderLayer(d_model, heads, 2 * d_model, dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.embedding_dim += d_model
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def check(d_model: int = 64, heads: int = 4, **_: object) -> None:
        if d_model % heads:
            raise ValueError(f"heads ({heads}) must divide d_model ({d_model})")

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        emb, bin_weights = self.marks(x)
        parts, attn = [], {"bin": bin_weights}
        if self.use_attention:
            h, _ = self.mark_lstm(emb)
            pooled, mark_weights = self.mark_attend(h)
            parts.append(pooled)
            attn["mark"] = mark_weights
        if self.use_transformer:
            parts.append(self.encoder(self.project(emb) + self.mark_id).mean(dim=1))
        return self.dropout(torch.cat(parts, dim=-1)), attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)[0]

    def attention(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._encode(x)[1]


class BiLSTMAttentionTrunk(_Family):
    pass


class BiLSTMTransformerTrunk(_Family):
    use_attention, use_transformer = False, True


class HybridTrunk(_Family):
    use_attention, use_transformer = True, True

    def attention(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # the mark-level attention weighs only one of the two branches the head reads, so it
        # would rank the marks by half the network: epx explain ranks them by saliency instead
        return {"bin": self._encode(x)[1]["bin"]}


class BiLSTMAttention(AttentionModel):
    name = "bilstm-attn"
    trunk = BiLSTMAttentionTrunk


class BiLSTMTransformer(AttentionModel):
    name = "bilstm-transformer"
    trunk = BiLSTMTransformerTrunk


class Hybrid(AttentionModel):
    name = "hybrid"
    trunk = HybridTrunk
