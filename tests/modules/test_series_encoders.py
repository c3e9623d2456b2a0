"""The TS2Vec and TS-TCC encoders (ts2vec, tstcc_cnn) and SoftCLT's DTW cache, on synthetic tensors."""

import numpy as np
import pytest
import torch

from contrastlab.contract import DataInfo
from contrastlab.metrics import dtw
from contrastlab.modules.core.backbones import create_backbone
from contrastlab.modules.nets.ts2vec import SamePadConv

INFO = DataInfo("toy", "series", (3, 40), 2)
NETS = {"ts2vec": {"hidden_dims": 8, "output_dims": 12, "depth": 3}, "tstcc_cnn": {"widths": (4, 8, 12)}}


@pytest.mark.parametrize("name", NETS)
def test_steps_under_the_mask_do_not_matter_and_nan_is_a_mask(name):
    torch.manual_seed(0)
    net = create_backbone(name, INFO, **NETS[name]).eval()
    x = torch.randn(4, 3, 40)
    mask = torch.ones(4, 40, dtype=torch.bool)
    mask[1, 25:] = False  # a shorter series
    mask[2, 5:9] = False  # missing steps
    noisy = x.clone()
    noisy[~mask[:, None, :].expand_as(x)] = 1e6
    as_nan = x.clone()
    as_nan[~mask[:, None, :].expand_as(x)] = float("nan")
    with torch.no_grad():
        reference = net(x, mask)
        assert reference.shape == (4, net.num_features)
        assert torch.allclose(net(noisy, mask), reference)
        assert torch.allclose(net(as_nan), reference)
        steps, valid = net.sequence(x, mask)
        assert steps.shape[:2] == valid.shape and steps.shape[-1] == net.num_features
        assert valid[0].all() and (name != "ts2vec" or not valid[1, -1])


def test_ts2vec_masks_timestamps_only_while_training():
    torch.manual_seed(0)
    net = create_backbone("ts2vec", INFO, **NETS["ts2vec"], dropout=0.0)
    x = torch.randn(2, 3, 40)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.train()
        assert not torch.equal(net(x), net(x))  # a new binomial mask each call
        net.mask_mode = "none"
        assert torch.equal(net(x), net(x))


def test_a_dilation_beyond_the_series_is_its_centre_tap():
    torch.manual_seed(0)
    conv = SamePadConv(4, 5, 3, dilation=64)
    x = torch.randn(2, 4, 50)
    assert torch.allclose(conv(x), conv.conv(x), atol=1e-6)


def dtw_reference(a, b):
    """Dependent multivariate DTW, full window: the cheapest warping path's sum of squared step distances."""
    cost = np.full((a.shape[1] + 1, b.shape[1] + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, a.shape[1] + 1):
        for j in range(1, b.shape[1] + 1):
            step = ((a[:, i - 1] - b[:, j - 1]) ** 2).sum()
            cost[i, j] = step + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
    return cost[-1, -1]


def test_dtw_matrix_is_the_dtw_of_prepared_series_cached_by_content(tmp_path):
    g = np.random.default_rng(0)
    series = [g.normal(size=(2, 8)) * 3 + 1 for _ in range(4)]  # two channels
    series[1][0, 3] = np.nan  # a missing value
    matrix, path, cached = dtw.cached_dtw(series, tmp_path)
    assert not cached and path.parent == tmp_path and matrix.shape == (4, 4)
    prepared = [dtw.prepare(s) for s in series]
    assert all(p.min() >= 0 and p.max() <= 1 and not np.isnan(p).any() for p in prepared)
    for i in range(4):
        for j in range(4):
            assert matrix[i, j] == pytest.approx(dtw_reference(prepared[i], prepared[j]))
    again, same_path, cached = dtw.cached_dtw(series, tmp_path)
    assert cached and same_path == path and np.array_equal(again, matrix)
    series[2] = series[2] * 2 + 1  # other content (not just another scale): another file
    series[2][0, 0] += 5
    _, other_path, cached = dtw.cached_dtw(series, tmp_path)
    assert not cached and other_path != path
