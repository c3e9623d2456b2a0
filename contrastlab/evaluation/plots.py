"""Pictures of an embedding. They return matplotlib Figures; the caller logs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pca_2d(features: Tensor) -> Tensor:
    """(N, D) features projected on their first two principal components, (N, 2)."""
    x = features.detach().double().cpu()
    x = x - x.mean(0, keepdim=True)
    if x.shape[1] < 2:
        return torch.cat([x, torch.zeros(len(x), 2 - x.shape[1], dtype=x.dtype)], 1)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    return x @ v[:2].T


def embedding_scatter(features: Tensor, labels: Tensor | None = None, title: str = "") -> Figure:
    """A PCA scatter of the features, coloured by class where labels are single class indices (>= 0)."""
    from matplotlib.figure import Figure

    points = pca_2d(features).numpy()
    figure = Figure(figsize=(5, 4.5), dpi=100, layout="constrained")
    ax = figure.subplots()
    single = labels is not None and labels.ndim == 1 and bool((labels >= 0).any())
    if single:
        y = labels.cpu().numpy()
        scatter = ax.scatter(points[:, 0], points[:, 1], c=y, cmap="tab10" if y.max() < 10 else "tab20", s=6)
        if y.max() < 20:
            figure.colorbar(scatter, ax=ax, label="class", ticks=sorted(set(y.tolist())))
    else:
        ax.scatter(points[:, 0], points[:, 1], s=6, color="tab:blue")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or f"embedding of {len(points)} samples (PCA)", fontsize=9)
    return figure
