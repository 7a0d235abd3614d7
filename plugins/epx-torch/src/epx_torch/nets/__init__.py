"""Trunks: one module per architecture, each an ``nn.Module`` plus its TorchModel subclass."""
