"""The views picture: raw samples beside their views, drawn by sample rank, without moving the random stream."""

import torch
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from torch import Tensor

from contrastlab.contract import ViewPipeline, preview_views


class Jitter(ViewPipeline):
    """Adds noise: a view pipeline for samples of any rank."""

    num_views = 2

    def forward(self, x: Tensor) -> list[Tensor]:
        x = x.float()
        return [x + 0.1 * torch.randn_like(x) for _ in range(self.num_views)]

    def eval_view(self, x: Tensor) -> Tensor:
        return x.float()


def kinds(figure) -> list[list[str]]:
    """Per row of panels: 'image', 'lines' or '?'."""
    rows: dict[float, list[str]] = {}
    for ax in figure.axes:
        kind = "image" if any(isinstance(a, AxesImage) for a in ax.get_children()) else "?"
        kind = "lines" if ax.lines and all(isinstance(line, Line2D) for line in ax.lines) else kind
        rows.setdefault(round(ax.get_position().y0, 3), []).append(kind)
    return [rows[y] for y in sorted(rows, reverse=True)]


def test_images_are_drawn_as_a_grid_of_raw_eval_and_each_view():
    x = torch.randint(0, 255, (3, 1, 8, 8), dtype=torch.uint8)
    figure = Jitter().preview(x)
    assert [ax.get_title() for ax in figure.axes[:4]] == ["raw", "eval view", "view 1", "view 2"]
    assert kinds(figure) == [["image"] * 4] * 3


def test_series_are_line_plots_and_volumes_show_a_slice():
    assert kinds(preview_views(Jitter(), torch.randn(2, 3, 50))) == [["lines"] * 4] * 2
    assert kinds(preview_views(Jitter(), torch.randn(2, 1, 4, 8, 8))) == [["image"] * 4] * 2


def test_drawing_the_views_leaves_the_training_random_stream_alone():
    x = torch.randn(2, 3, 8, 8)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    preview_views(Jitter(), x)
    assert torch.equal(torch.rand(3), expected)


def test_multi_crop_views_are_drawn_each_at_its_size_and_named_by_it():
    from contrastlab.augment.vision import ImageViews

    x = torch.randint(0, 255, (2, 1, 8, 8), dtype=torch.uint8)
    figure = ImageViews(size=8, hflip_p=0.0, local_crops=4, local_size=6).preview(x)
    titles = [ax.get_title() for ax in figure.axes[:8]]
    assert titles == ["raw", "eval view", "view 1 (8x8)", "view 2 (8x8)", *[f"view {i} (6x6)" for i in range(3, 7)]]
    pixels = [ax.get_images()[0].get_array().shape for ax in figure.axes[:8]]
    assert pixels == [(8, 8)] * 4 + [(6, 6)] * 4
    assert kinds(figure) == [["image"] * 8] * 2
