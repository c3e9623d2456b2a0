"""Methods (one LightningModule per file), their losses, heads and backbones."""

from contrastlab.modules.base import ContrastiveModule
from contrastlab.modules.simclr import SimCLR

__all__ = ["ContrastiveModule", "SimCLR"]

# -- momentum, predictor and memory methods --------------------------------------------------------------
from contrastlab.modules.byol import BYOL  # noqa: E402
from contrastlab.modules.moco import MoCoV2  # noqa: E402
from contrastlab.modules.moco_v3 import MoCoV3  # noqa: E402
from contrastlab.modules.nnclr import NNCLR  # noqa: E402
from contrastlab.modules.simsiam import SimSiam  # noqa: E402

__all__ += ["BYOL", "MoCoV2", "MoCoV3", "NNCLR", "SimSiam"]
