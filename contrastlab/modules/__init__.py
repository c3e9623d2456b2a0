"""Methods (one LightningModule per file), their losses, heads and backbones."""

from contrastlab.modules import nets  # noqa: F401  (registers the local 1-D and 3-D backbones by name)
from contrastlab.modules.barlow_twins import BarlowTwins
from contrastlab.modules.base import ContrastiveModule
from contrastlab.modules.byol import BYOL
from contrastlab.modules.clip import CLIP
from contrastlab.modules.convirt import ConVIRT
from contrastlab.modules.cpc import CPC
from contrastlab.modules.dcl import DCL
from contrastlab.modules.moco import MoCoV2
from contrastlab.modules.moco_v3 import MoCoV3
from contrastlab.modules.msc import MeanShifted
from contrastlab.modules.ncl import NCL
from contrastlab.modules.nnclr import NNCLR
from contrastlab.modules.simclr import SimCLR
from contrastlab.modules.simsiam import SimSiam
from contrastlab.modules.softclt import SoftCLT
from contrastlab.modules.supcon import SupCon
from contrastlab.modules.ts2vec import TS2Vec
from contrastlab.modules.tstcc import TSTCC
from contrastlab.modules.vicreg import VICReg

__all__ = [
    "BYOL",
    "CLIP",
    "CPC",
    "DCL",
    "NCL",
    "NNCLR",
    "BarlowTwins",
    "ConVIRT",
    "ContrastiveModule",
    "MeanShifted",
    "MoCoV2",
    "MoCoV3",
    "SimCLR",
    "SimSiam",
    "SoftCLT",
    "SupCon",
    "TS2Vec",
    "TSTCC",
    "VICReg",
]
