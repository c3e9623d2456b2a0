"""Pictures of an embedding: a quick PCA scatter (the end of every fit) and a t-SNE map (`contrastlab eval`);
Demšar's critical-difference diagram of methods ranked over datasets (`contrastlab eval --datasets`).

They return a matplotlib Figure or write a PNG; the caller logs them (a metric knows no tracker).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from contrastlab.evaluation.ranks import Ranking


def pca_2d(features: Tensor) -> Tensor:
    """(N, D) features projected on their first two principal components, (N, 2)."""
    x = features.detach().double().cpu()
    x = x - x.mean(0, keepdim=True)
    if x.shape[1] < 2:
        return torch.cat([x, torch.zeros(len(x), 2 - x.shape[1], dtype=x.dtype)], 1)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    return x @ v[:2].T


def scatter_figure(points: np.ndarray, labels: Tensor | None, title: str, axes: tuple[str, str]) -> Figure:
    """(N, 2) points, coloured by class where labels are single class indices (>= 0), plain otherwise."""
    from matplotlib.figure import Figure

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
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=9)
    return figure


def embedding_scatter(features: Tensor, labels: Tensor | None = None, title: str = "") -> Figure:
    """A PCA scatter of the features (about a second for thousands of samples)."""
    points = pca_2d(features).numpy()
    return scatter_figure(points, labels, title or f"embedding of {len(points)} samples (PCA)", ("PC 1", "PC 2"))


def tsne_png(
    features: Tensor, labels: Tensor, path: Path, title: str = "", max_points: int = 2000, seed: int = 0
) -> Path:
    """A 2-D t-SNE (scikit-learn) of at most `max_points` seeded samples of `features`, written to `path`."""
    from sklearn.manifold import TSNE

    x = features.float().cpu().numpy()
    keep = np.arange(len(x))
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
    perplexity = float(min(30.0, max(2.0, (len(keep) - 1) / 3)))
    points = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x[keep])
    title = title or f"t-SNE of {len(keep)} embeddings"
    figure = scatter_figure(points, labels[torch.from_numpy(keep)], title, ("t-SNE 1", "t-SNE 2"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def cd_diagram(ranking: Ranking, path: Path, title: str = "") -> Path:
    """Demšar's critical-difference diagram, written to `path`: the rank axis (1 = best, on the left), each
    method at its average rank, the CD as a bar above the axis, and a thick line joining each group of methods
    whose ranks differ by less than the CD (not told apart by the Nemenyi test)."""
    from matplotlib.figure import Figure

    order = ranking.order()
    k = len(order)
    left = (k + 1) // 2  # the better half is labelled on the left, the rest on the right
    groups = ranking.groups()
    height = 1.6 + 0.32 * max(left, k - left) + 0.18 * len(groups)
    figure = Figure(figsize=(7, height), dpi=100, layout="constrained")
    ax = figure.subplots()
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(max(left, k - left) + 1.5) * 0.32 - 0.2, 0.75)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", linewidth=1)
    for tick in range(1, k + 1):
        ax.vlines(tick, 0, 0.06, color="black", linewidth=1)
        ax.text(tick, 0.1, str(tick), ha="center", va="bottom", fontsize=8)
    ax.hlines(0.5, 1, 1 + ranking.cd, color="black", linewidth=1.5)
    ax.text(1 + ranking.cd / 2, 0.55, f"CD = {ranking.cd:.2f}", ha="center", va="bottom", fontsize=8)
    for position, j in enumerate(order):
        rank = float(ranking.average[j])
        on_left = position < left
        row = position if on_left else k - 1 - position
        y = -(row + 1) * 0.32
        edge = 0.6 if on_left else k + 0.4
        ax.plot([rank, rank, edge], [0, y, y], color="black", linewidth=0.8)
        label = f"{ranking.methods[j]} ({rank:.2f})"
        ax.text(edge, y, label, ha="right" if on_left else "left", va="center", fontsize=8)
    for number, (first, last) in enumerate(groups):
        y = -0.12 - 0.1 * number
        low, high = float(ranking.average[order[first]]), float(ranking.average[order[last]])
        ax.hlines(y, low - 0.03, high + 0.03, color="black", linewidth=3)
    n = len(ranking.datasets)
    ax.set_title(title or f"average rank over {n} datasets; Friedman p = {ranking.p_value:.3g}", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")  # the labels reach past the rank axis
    return path
