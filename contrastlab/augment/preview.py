"""A picture of a few raw samples beside their views: the fastest way to see a broken recipe.

`views_figure` draws one row per sample and one column per picture (raw, the evaluation view, each
random view), choosing how to draw a panel from its rank alone: (C, H, W) as an image (one channel grey,
three RGB, otherwise the first channel), (C, T) as one line per channel, (C, D, H, W) as its middle slice.
A pipeline whose views read better another way (a spectrogram with a frequency axis, a CT window)
overrides `ViewPipeline.preview`. Each panel is scaled to its own range, so normalised views and raw
uint8 samples show alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL_INCHES = 1.4
MAX_LINES = 4  # channels drawn for a (C, T) panel: more is unreadable


def views_figure(columns: dict[str, Tensor], title: str = "") -> Figure:
    """Columns of batched tensors (B, C, ...) with one name each, drawn as a grid of B rows."""
    from matplotlib.figure import Figure

    names = list(columns)
    rows = min(len(t) for t in columns.values())
    figure = Figure(figsize=(PANEL_INCHES * len(names), PANEL_INCHES * rows), dpi=100, layout="constrained")
    axes = figure.subplots(rows, len(names), squeeze=False)
    for col, name in enumerate(names):
        batch = columns[name].detach().float().cpu()
        for row in range(rows):
            ax = axes[row][col]
            draw_panel(ax, batch[row].numpy())
            if row == 0:
                ax.set_title(name, fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


def draw_panel(ax, sample: np.ndarray) -> None:
    """One sample (C, ...) on one axis, by its rank."""
    ax.set_xticks([])
    ax.set_yticks([])
    if sample.ndim == 1:  # (C,): a feature vector
        ax.bar(np.arange(len(sample)), sample, color="tab:blue")
        return
    if sample.ndim == 2:  # (C, T)
        for channel in sample[:MAX_LINES]:
            ax.plot(channel, linewidth=0.7)
        return
    while sample.ndim > 3:  # (C, D, H, W) and deeper: the middle slice
        sample = sample[:, sample.shape[1] // 2]
    image = _unit_range(sample)
    if image.shape[0] == 3:
        ax.imshow(np.transpose(image, (1, 2, 0)), interpolation="nearest")
    else:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")


def _unit_range(x: np.ndarray) -> np.ndarray:
    low, high = float(np.nanmin(x)), float(np.nanmax(x))
    return np.zeros_like(x) if high <= low else (x - low) / (high - low)
