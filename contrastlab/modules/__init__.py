"""Methods, one LightningModule per file (`simclr.py`, `moco.py`, ...), on what they share:

- `core/`: the base class (`ContrastiveModule`), heads, momentum targets, cross-rank gathering, optimisers and
  schedules, GradCache and the other speed options, memory banks, checks of arguments, weights from another run,
  the base of two-tower (paired) methods and the backbone factory (timm by name, else the nets' registry);
- `losses/`: losses as pure functions of tensors, one file per family;
- `nets/`: every local backbone, one file per kind of data, registered by name with `@register_backbone`.

nets and losses import no method and nothing of core; core imports no method.
"""

from contrastlab.modules.barlow_twins import BarlowTwins
from contrastlab.modules.byol import BYOL
from contrastlab.modules.cacr import CACR
from contrastlab.modules.clip import CLIP
from contrastlab.modules.convirt import ConVIRT
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.cpc import CPC
from contrastlab.modules.dcl import DCL
from contrastlab.modules.dino import DINO
from contrastlab.modules.gsimclr import GSimCLR
from contrastlab.modules.moco import MoCoV2
from contrastlab.modules.moco_v3 import MoCoV3
from contrastlab.modules.msc import MeanShifted
from contrastlab.modules.ncl import NCL
from contrastlab.modules.nnclr import NNCLR
from contrastlab.modules.simclr import SimCLR
from contrastlab.modules.simsiam import SimSiam
from contrastlab.modules.softclt import SoftCLT
from contrastlab.modules.supcon import SupCon
from contrastlab.modules.swav import SwAV
from contrastlab.modules.ts2vec import TS2Vec
from contrastlab.modules.tstcc import TSTCC
from contrastlab.modules.vicreg import VICReg
from contrastlab.modules.wav2vec2 import Wav2Vec2

__all__ = [
    "BYOL",
    "CACR",
    "CLIP",
    "CPC",
    "DCL",
    "DINO",
    "NCL",
    "NNCLR",
    "BarlowTwins",
    "ConVIRT",
    "ContrastiveModule",
    "GSimCLR",
    "MeanShifted",
    "MoCoV2",
    "MoCoV3",
    "SimCLR",
    "SimSiam",
    "SoftCLT",
    "SupCon",
    "SwAV",
    "TS2Vec",
    "TSTCC",
    "VICReg",
    "Wav2Vec2",
]
