"""Pictures of embeddings: a t-SNE map coloured by label, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor


def tsne_png(
    features: Tensor, labels: Tensor, path: Path, title: str = "", max_points: int = 2000, seed: int = 0
) -> Path:
    """A 2-D t-SNE (scikit-learn) of at most `max_points` seeded samples of `features`, each point
    coloured by its class (multi-label rows: by their first positive label; unlabelled: grey)."""
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    x = features.float().cpu().numpy()
    y = labels.cpu().numpy()
    if y.ndim == 2:
        y = np.where(y.max(axis=1) > 0, y.argmax(axis=1), -1)
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y = x[keep], y[keep]
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)

    figure = Figure(figsize=(6, 6), dpi=100)
    axes = figure.add_subplot()
    unlabelled = y < 0
    if unlabelled.any():
        axes.scatter(*xy[unlabelled].T, s=6, c="lightgrey", label="unlabelled")
    classes = np.unique(y[~unlabelled])
    colours = "tab10" if len(classes) <= 10 else "tab20"
    points = axes.scatter(*xy[~unlabelled].T, s=6, c=y[~unlabelled], cmap=colours)
    if 0 < len(classes) <= 20:
        axes.legend(*points.legend_elements(), title="label", loc="best", fontsize="small", markerscale=0.8)
    axes.set_title(title or f"t-SNE of {len(x)} embeddings")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
