"""Methods (one LightningModule per file), their losses, heads and backbones."""

from contrastlab.modules.barlow_twins import BarlowTwins
from contrastlab.modules.base import ContrastiveModule
from contrastlab.modules.dcl import DCL
from contrastlab.modules.msc import MeanShifted
from contrastlab.modules.ncl import NCL
from contrastlab.modules.simclr import SimCLR
from contrastlab.modules.supcon import SupCon
from contrastlab.modules.vicreg import VICReg

__all__ = ["ContrastiveModule", "SimCLR"]
# Loss-defined methods
__all__ += ["BarlowTwins", "DCL", "MeanShifted", "NCL", "SupCon", "VICReg"]
