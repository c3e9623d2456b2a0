"""Non-contrastive losses, as pure functions of tensors: no negatives.

Regression of one view's prediction onto the other's embedding (BYOL, SimSiam) and the redundancy-reduction
losses computed from batch statistics (Barlow Twins, VICReg). Formulas and papers are in the docstrings;
tests compare each with a plain loop written from the formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastlab.modules.losses.precision import in_float32

# -- Predictor methods (BYOL, SimSiam) -----------------------------------------------------------------------


@in_float32
def normalized_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """BYOL's loss (Grill et al. 2020, eq. 2): ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z), mean over the batch.

    The target gets no special treatment here: the method passes it from the EMA network or detached.
    """
    return (2 - 2 * F.cosine_similarity(prediction, target, dim=1)).mean()


@in_float32
def negative_cosine(prediction: Tensor, target: Tensor) -> Tensor:
    """SimSiam's D(p, z) = -p/||p|| . z/||z|| (Chen & He 2021, eq. 1), mean over the batch.

    The stop-gradient of SimSiam's loss belongs to the method, which passes `z.detach()`.
    """
    return -F.cosine_similarity(prediction, target, dim=1).mean()


# -- Redundancy reduction (Barlow Twins, VICReg) -------------------------------------------------------------


def _standardise(z: Tensor, eps: float) -> Tensor:
    """Each dimension to zero mean and unit (biased) variance over the batch, as an affine-free BatchNorm."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


@in_float32
def barlow_twins(z1: Tensor, z2: Tensor, lambd: float = 5e-3, eps: float = 1e-5) -> Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. 1-2): decorrelate the cross-correlation matrix towards identity.

    With each dimension of z1 and z2 standardised over the N samples of the batch,
    C_ij = 1/N sum_b z1_bi z2_bj and

        loss = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2.

    Args:
        z1, z2: (N, D) embeddings of two views, N >= 2 (the global batch: C is a batch statistic).
        lambd: weight of the off-diagonal (redundancy reduction) term; the paper uses 5.1e-3 for D = 8192.
    """
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"Barlow Twins needs two (N >= 2, D) embeddings of one shape, got {z1.shape} and {z2.shape}")
    c = _standardise(z1, eps).T @ _standardise(z2, eps) / z1.shape[0]
    on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
    off_diagonal = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diagonal + lambd * off_diagonal


@in_float32
def vicreg_terms(z1: Tensor, z2: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """The three VICReg terms (Bardes et al. 2022, eq. 1-5), unweighted: (invariance, variance, covariance).

    s(Z, Z') = 1/N sum_b ||z_b - z'_b||^2 / D                (the mean squared error)
    v(Z)     = 1/D sum_j max(0, gamma - sqrt(Var(z^j) + eps))   (unbiased variance over the batch)
    c(Z)     = 1/D sum_{i != j} Cov(Z)_ij^2
    variance = v(Z) + v(Z'),  covariance = c(Z) + c(Z')
    """
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"VICReg needs two (N >= 2, D) embeddings of one shape, got {z1.shape} and {z2.shape}")
    invariance = F.mse_loss(z1, z2)
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        n, d = z.shape
        variance = variance + F.relu(gamma - torch.sqrt(z.var(dim=0) + eps)).mean()
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / (n - 1)
        covariance = covariance + (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d
    return invariance, variance, covariance


@in_float32
def vicreg(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    """VICReg (Bardes et al. 2022, eq. 6): lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')].

    The paper's weights are lambda = mu = 25, nu = 1; see `vicreg_terms` for the terms.
    """
    invariance, variance, covariance = vicreg_terms(z1, z2, gamma, eps)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance
