"""epx-torch: neural models on binned tracks, written as any third-party epx plugin would be.

Every model is a trunk (an ``nn.Module`` from ``(batch, assays, bins)`` to an embedding) under one
shared trainer (:mod:`epx_torch.trainer`, PyTorch Lightning) with a one-unit head. This module is
what the ``epx.models`` entry points load, so it imports neither torch nor Lightning.
"""

from epx_torch.spec import torch_spec

cnn = torch_spec(
    name="cnn",
    description="DeepChrome / epi_to_express 1-D CNN: convolutions and pooling over the bins, dense head.",
    model="epx_torch.nets.cnn:CNN",
    params={"channels": 64, "kernel": 5, "conv_layers": 3, "pool": 2, "hidden": 128, "dropout": 0.3},
    param_help={
        "channels": "filters per convolution", "kernel": "convolution width in bins",
        "conv_layers": "convolution + max-pool blocks (fewer when the bins run out)", "pool": "max-pool width",
        "hidden": "units of the dense layer", "dropout": "dropout before the dense layers",
    },
    param_bounds={"channels": "[1, inf)", "kernel": "[1, inf)", "conv_layers": "[1, inf)", "pool": "[1, inf)",
                  "hidden": "[1, inf)", "dropout": "[0, 1)"},
)

_ATTENTIVE = {"lstm_hidden": 32, "mark_hidden": 16, "d_model": 64, "heads": 4, "layers": 2, "dropout": 0.1}
_ATTENTIVE_HELP = {
    "lstm_hidden": "BiLSTM units per direction over each mark's bins",
    "mark_hidden": "BiLSTM units per direction over the marks (mark-level attention)",
    "d_model": "transformer width over the mark embeddings",
    "heads": "transformer attention heads (must divide d_model)",
    "layers": "transformer encoder layers over the marks",
    "dropout": "dropout before the head (and in the transformer, where there is one)",
}
_ATTENTIVE_BOUNDS = {"lstm_hidden": "[1, inf)", "mark_hidden": "[1, inf)", "d_model": "[1, inf)", "heads": "[1, inf)",
                     "layers": "[1, inf)", "dropout": "[0, 1)"}
# AttentiveChrome trains with Adam lr 1e-3 and batch 16 (64 learns far less on a few hundred genes)
_ATTENTIVE_TRAINER = {"batch_size": 16, "max_epochs": 60, "patience": 10}


def _attentive(name: str, description: str, cls: str, used: tuple[str, ...]):
    """A spec listing only the parameters this member of the family uses."""
    return torch_spec(name=name, description=description, model=f"epx_torch.nets.attentive:{cls}",
                      params={k: _ATTENTIVE[k] for k in used}, param_help={k: _ATTENTIVE_HELP[k] for k in used},
                      param_bounds={k: _ATTENTIVE_BOUNDS[k] for k in used}, trainer=_ATTENTIVE_TRAINER)


bilstm_attn = _attentive("bilstm-attn", "AttentiveChrome: a BiLSTM per mark with bin-level attention, then mark-level attention.",
                         "BiLSTMAttention", ("lstm_hidden", "mark_hidden", "dropout"))
bilstm_transformer = _attentive("bilstm-transformer", "AttentiveChrome's bin level, a transformer encoder over the mark embeddings.",
                                "BiLSTMTransformer", ("lstm_hidden", "d_model", "heads", "layers", "dropout"))
hybrid = _attentive("hybrid", "ChromaFormer's hybrid: mark-level attention and a transformer encoder, concatenated.",
                    "Hybrid", tuple(_ATTENTIVE))

transformer = torch_spec(
    name="transformer",
    description="histone-transformer: residual CNN, transformer encoder, multi-head attention pooling.",
    model="epx_torch.nets.transformer:Transformer",
    params={"channels": 64, "d_model": 64, "heads": 8, "layers": 10, "ff": 128, "pool": 2, "dropout": 0.1},
    param_help={
        "channels": "filters of the residual CNN", "d_model": "transformer width",
        "heads": "attention heads (encoder and pooling; must divide d_model)", "layers": "transformer encoder layers",
        "ff": "feed-forward width of each encoder layer",
        "pool": "max-pool width after the CNN (positions = bins / pool; 1 when there are fewer than 2 x pool bins)",
        "dropout": "dropout in the encoder and the head",
    },
    param_bounds={"channels": "[1, inf)", "d_model": "[1, inf)", "heads": "[1, inf)", "layers": "[1, inf)",
                  "ff": "[1, inf)", "pool": "[1, inf)", "dropout": "[0, 1)"},
    # the seed: weighted MSE + (1 - Pearson), Adam with weight decay 1e-4, ReduceLROnPlateau, patience 5
    trainer={"weight_decay": 1e-4, "patience": 5, "pearson_weight": 1.0, "lr_factor": 0.5, "lr_patience": 2,
             "batch_size": 64},
)

__all__ = ["bilstm_attn", "bilstm_transformer", "cnn", "hybrid", "torch_spec", "transformer"]
