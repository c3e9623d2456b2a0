"""Methods (one LightningModule per file), their losses, heads and backbones."""

from contrastlab.modules.base import ContrastiveModule
from contrastlab.modules.simclr import SimCLR

__all__ = ["ContrastiveModule", "SimCLR"]
