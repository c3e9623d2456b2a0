"""The view-pipeline contract: normalisation per channel at any rank, the data's default, refusals."""

import pytest
import torch
from torch import nn

from contrastlab.augment.ops import ChannelNormalize
from contrastlab.augment.vision import ImageViews
from contrastlab.contract import DataInfo, ViewPipeline, default_views
from contrastlab.errors import ConfigError
from contrastlab.modules import SimCLR


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 10), (4, 3, 5, 6), (4, 3, 2, 5, 6)])
def test_channel_statistics_apply_along_dim_1_at_any_rank(shape):
    x = torch.randn(shape)
    mean, std = (0.1, -0.2, 0.3), (1.0, 2.0, 0.5)
    out = ChannelNormalize(mean, std)(x)
    for c in range(3):
        assert torch.allclose(out[:, c], (x[:, c] - mean[c]) / std[c])


def test_normalisation_refuses_statistics_that_do_not_fit():
    with pytest.raises(ConfigError, match="2 channel means but 1"):
        ChannelNormalize((0.0, 0.0), (1.0,))
    with pytest.raises(ConfigError, match="std must be > 0"):
        ChannelNormalize((0.0,), (0.0,))
    with pytest.raises(ConfigError, match="1 channel statistics for samples with 3 channels"):
        ChannelNormalize((0.0,), (1.0,))(torch.zeros(2, 3, 8))


def test_image_views_normalise_by_the_data_they_are_bound_to_unless_told():
    views = "contrastlab.augment.vision.ImageViews"
    info = DataInfo("grey", "image", (1, 8, 8), 10, mean=(0.3,), std=(0.4,), views=views)
    x = (torch.rand(5, 1, 8, 8) * 255).to(torch.uint8)
    raw = ImageViews(size=8).eval_view(x)
    assert raw.min() >= 0 and raw.max() <= 1  # unbound: [0, 1]
    bound = default_views(info)
    assert isinstance(bound, ImageViews) and bound.size == 8
    assert torch.allclose(bound.eval_view(x), (raw - 0.3) / 0.4)
    own = ImageViews(size=8, mean=(0.5,), std=(0.5,))
    own.bind(info)  # the config's statistics win over the data's
    assert torch.allclose(own.eval_view(x), (raw - 0.5) / 0.5)
    views = bound(x)
    assert len(views) == 2 and views[0].min() < 0  # the random views are normalised too


def test_no_default_pipeline_or_a_wrong_one_is_one_clear_error():
    with pytest.raises(ConfigError, match="proposes no default view pipeline .* set model.init_args.augment"):
        default_views(DataInfo("raw", "series", (1, 16)))
    with pytest.raises(ConfigError, match="is not a contrastlab.contract.ViewPipeline subclass"):
        default_views(DataInfo("raw", "series", (1, 16), views="torch.nn.Identity"))
    with pytest.raises(ConfigError, match="names no importable class"):
        default_views(DataInfo("raw", "series", (1, 16), views="no.such.Views"))


def test_the_method_refuses_an_augment_that_is_no_pipeline():
    info = DataInfo("grey", "image", (1, 8, 8), 10, mean=(0.3,), std=(0.4,))
    with pytest.raises(ConfigError, match="model.augment: Identity lacks eval_view, num_views"):
        SimCLR(backbone="small_cnn", data_info=info, augment=nn.Identity())


def test_a_pipeline_that_only_subclasses_gets_the_contract_defaults():
    class Twice(ViewPipeline):
        def forward(self, x):
            return [x, x]

        def eval_view(self, x):
            return x

    pipeline = Twice.for_data(DataInfo("raw", "series", (1, 16)))
    assert pipeline.num_views == 2 and len(pipeline(torch.zeros(1, 1, 16))) == 2
