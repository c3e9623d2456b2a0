"""contrastlab: contrastive and self-supervised representation learning experiments on PyTorch Lightning."""

__version__ = "0.1.0"
