"""Losses as pure functions of tensors, one file per family; every public name is importable from here.

- `contrastive.py`: the InfoNCE family: multi-positive InfoNCE (NT-Xent, SupCon, keyed positives, additive
  margins, NCL, mean-shifted, G-SimCLR's cluster-excluded negatives), DCL/DCLW, CACR's weighted attraction and
  repulsion, one positive key per query (MoCo v3, NNCLR, MoCo's queue) and the
  bidirectional loss of paired data (ConVIRT, CLIP, CLAP).
- `blocked.py`: multi-positive InfoNCE and DCL's denominator by blocks of rows, for GradCache's large batches.
- `non_contrastive.py`: no negatives: BYOL's and SimSiam's regression, Barlow Twins, VICReg.
- `clustering.py`: the multi-crop methods' losses: SwAV's swapped prediction with Sinkhorn-Knopp, DINO's
  self-distillation from a centred teacher.
- `predictive.py`: a context predicts later or masked steps: CPC, TS-TCC's temporal contrasting, wav2vec 2.0's
  masked-step contrast against distractors of the same utterance and its codebook diversity.
- `series.py`: timestamp-level contrast of TS2Vec and SoftCLT, and SoftCLT's soft targets.
- `precision.py`: `in_float32`, which every loss wears.
"""

from contrastlab.modules.losses.blocked import blocked_info_nce, blocked_negative_logsumexp
from contrastlab.modules.losses.clustering import dino_loss, global_mean, sinkhorn_knopp, swav_loss
from contrastlab.modules.losses.contrastive import (
    cacr,
    dcl,
    guided_nt_xent,
    info_nce,
    keyed_info_nce,
    label_positives,
    mean_shifted_contrastive,
    multi_positive_info_nce,
    non_negative_nt_xent,
    nt_xent,
    paired_info_nce,
    queue_info_nce,
    supcon,
    view_positives,
)
from contrastlab.modules.losses.non_contrastive import (
    barlow_twins,
    negative_cosine,
    normalized_mse,
    vicreg,
    vicreg_terms,
)
from contrastlab.modules.losses.precision import LossFn, in_float32
from contrastlab.modules.losses.predictive import (
    CPC_NEGATIVES,
    codebook_diversity,
    cpc_info_nce,
    cpc_terms,
    sample_distractors,
    temporal_contrasting,
    wav2vec2_contrastive,
)
from contrastlab.modules.losses.series import (
    hierarchical_contrastive,
    instance_contrastive,
    normalise_distances,
    pair_weights,
    soft_instance_targets,
    soft_temporal_targets,
    temporal_contrastive,
)

__all__ = [
    "CPC_NEGATIVES",
    "LossFn",
    "barlow_twins",
    "blocked_info_nce",
    "blocked_negative_logsumexp",
    "cacr",
    "codebook_diversity",
    "cpc_info_nce",
    "cpc_terms",
    "dcl",
    "guided_nt_xent",
    "dino_loss",
    "global_mean",
    "hierarchical_contrastive",
    "in_float32",
    "info_nce",
    "instance_contrastive",
    "keyed_info_nce",
    "label_positives",
    "mean_shifted_contrastive",
    "multi_positive_info_nce",
    "negative_cosine",
    "non_negative_nt_xent",
    "normalise_distances",
    "normalized_mse",
    "nt_xent",
    "pair_weights",
    "paired_info_nce",
    "queue_info_nce",
    "sample_distractors",
    "sinkhorn_knopp",
    "soft_instance_targets",
    "soft_temporal_targets",
    "supcon",
    "swav_loss",
    "temporal_contrasting",
    "temporal_contrastive",
    "vicreg",
    "vicreg_terms",
    "view_positives",
    "wav2vec2_contrastive",
]
