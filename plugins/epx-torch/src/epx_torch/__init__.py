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

chromoformer = torch_spec(
    name="chromoformer",
    description="Chromoformer: promoter bins at three resolutions, distal pCREs by their contacts; transformers "
                "over bins, promoter-pCRE pairs and the regulatory set.",
    model="epx_torch.nets.chromoformer:ChromoformerModel",
    params={"d_embed": 128, "embed_heads": 2, "embed_layers": 1, "embed_ff": 128, "pair_layers": 2, "pair_heads": 2,
            "pair_ff": 256, "reg_d_model": 256, "reg_heads": 8, "reg_layers": 6, "reg_ff": 256, "head_hidden": 128,
            "dropout": 0.0, "lr_decay": 0.13, "use_regions": True},
    param_help={
        "d_embed": "token width of the embedding and pairwise transformers (and of the regulation tokens)",
        "embed_heads": "attention heads over the promoter bins (must divide d_embed)",
        "embed_layers": "encoder layers over the promoter bins",
        "embed_ff": "feed-forward width of the embedding layers",
        "pair_layers": "promoter x pCRE cross-attention layers",
        "pair_heads": "heads of the pairwise layers (must divide d_embed)",
        "pair_ff": "feed-forward width of the pairwise layers",
        "reg_d_model": "attention width of the regulation transformer over [promoter, pCREs]",
        "reg_heads": "heads of the regulation transformer (must divide reg_d_model)",
        "reg_layers": "regulation transformer layers",
        "reg_ff": "feed-forward width of the regulation layers",
        "head_hidden": "units of the dense layer after the geometries are concatenated",
        "dropout": "dropout in every transformer (the reference uses none)",
        "lr_decay": "multiply the learning rate by (1 - lr_decay) after each epoch (0.13: about half after five)",
        "use_regions": "read the distal regions (false: the promoter-only ablation, also on a dataset with pairs)",
    },
    param_bounds={"d_embed": "[1, inf)", "embed_heads": "[1, inf)", "embed_layers": "[1, inf)", "embed_ff": "[1, inf)",
                  "pair_layers": "[1, inf)", "pair_heads": "[1, inf)", "pair_ff": "[1, inf)", "reg_d_model": "[1, inf)",
                  "reg_heads": "[1, inf)", "reg_layers": "[1, inf)", "reg_ff": "[1, inf)", "head_hidden": "[1, inf)",
                  "dropout": "[0, 1)", "lr_decay": "[0, 1)"},
    # the seed: AdamW lr 3e-5, 10 epochs, batch 64, lr x 0.87 per epoch, no early stopping (the best
    # epoch's weights are kept), MSE on log2(RPKM + 1) (epx's --target log1p)
    trainer={"optimizer": "adamw", "lr": 3e-5, "max_epochs": 10, "batch_size": 64, "patience": 0, "pearson_weight": 0.0},
    # the reference's 40 kb at three resolutions; `epx train --bins` picks others (e.g. one, 100x100)
    geometries=("2000x20", "500x80", "100x400"), regions=True,
)

__all__ = ["bilstm_attn", "bilstm_transformer", "chromoformer", "cnn", "hybrid", "torch_spec", "transformer"]
