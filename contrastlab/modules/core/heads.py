"""Projector and predictor heads: MLPs, DINO's head, and DirectPred's predictor set from feature statistics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int = 2,
    last_bn: bool = False,
    batch_norm: bool = True,
    gelu: bool = False,
) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a final Linear, the projector of SimCLR/BYOL (num_layers >= 1).

    `last_bn` adds an affine-free BatchNorm after the output layer, as in SimCLR v2, SimSiam and MoCo v3.
    `batch_norm=False` drops the hidden BatchNorms: MoCo v2's head is Linear-ReLU-Linear. `gelu` in place of
    ReLU: DINO's head.
    """
    if num_layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got num_layers={num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        if batch_norm:
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim)]
        else:
            layers.append(nn.Linear(dim, hidden_dim))
        layers.append(nn.GELU() if gelu else nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """DINO's projection head (Caron et al. 2021, sec. 3.1 and appendix): a 3-layer MLP with GELU and no BatchNorm
    down to a bottleneck, L2 normalisation, then a weight-normalised linear layer to K outputs, whose norms are fixed
    at 1 (`norm_last_layer`, the official default: it keeps the training stable) or learned."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        self.mlp = mlp(in_dim, hidden_dim, bottleneck_dim, num_layers=num_layers, batch_norm=False, gelu=True)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        norms = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            norms.fill_(1.0)
        norms.requires_grad_(not norm_last_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def direct_pred_weights(correlation: Tensor, eps: float) -> Tensor:
    """DirectPred's predictor W = U diag(p) U^T from F = U diag(s) U^T (Tian et al. 2021, sec. 5).

    p_j = sqrt(s_j) / max_k sqrt(s_k) + eps, with negative eigenvalues (round-off) clipped to 0.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(correlation)
    root = eigenvalues.clamp(min=0).sqrt()
    p = root / root.max().clamp(min=1e-12) + eps
    return eigenvectors @ torch.diag(p) @ eigenvectors.T


class DirectPredictor(nn.Module):
    """A linear predictor that is not trained but set from the running correlation of its inputs.

    DirectPred (Tian, Chen & Ganguli 2021, "Understanding self-supervised learning dynamics without
    contrastive pairs"): F <- rho * F + (1 - rho) * E[f f^T] over the batch, and every `update_every`
    updates W is recomputed from F's eigen-decomposition (`direct_pred_weights`). Gradients flow through
    W to the input, never into W: F and W are buffers, saved in checkpoints.
    """

    def __init__(self, dim: int, rho: float = 0.3, eps: float = 0.1, update_every: int = 1):
        super().__init__()
        if not 0 <= rho < 1:
            raise ValueError(f"DirectPred's rho must be in [0, 1), got {rho}")
        self.rho, self.eps, self.update_every = rho, eps, update_every
        self.register_buffer("correlation", torch.zeros(dim, dim))
        self.register_buffer("weight", torch.eye(dim))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, f: Tensor) -> None:
        """Fold the batch f (N, dim) into F; pass the batch gathered from every rank so all ranks agree."""
        f = f.detach().to(self.correlation.dtype)
        # From F = 0 the first update leaves F proportional to the batch's correlation; W ignores the scale.
        self.correlation.lerp_(f.T @ f / f.shape[0], 1 - self.rho)
        if int(self.updates) % self.update_every == 0:
            self.weight.copy_(direct_pred_weights(self.correlation, self.eps))
        self.updates += 1

    def forward(self, f: Tensor) -> Tensor:
        return f @ self.weight.T
