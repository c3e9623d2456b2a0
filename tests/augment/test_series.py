"""Series views: per-sample parameters, their statistics, masks kept, and TS2Vec's crop overlaps."""

from __future__ import annotations

import pytest
import torch

from contrastlab.augment.series import (
    Jitter,
    MagnitudeWarp,
    Scaling,
    SegmentPermutation,
    SeriesViews,
    TimestampMask,
    TimeWarp,
    overlapping_crops,
    series_lengths,
)
from contrastlab.errors import ConfigError

NAN = float("nan")


def padded_batch(n: int = 64, channels: int = 2, length: int = 60, seed: int = 0) -> torch.Tensor:
    """Random walks; every other series NaN-padded to a random shorter length, one missing step in sample 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, length, generator=g).cumsum(-1) / 5
    for i in range(0, n, 2):
        x[i, :, int(torch.randint(20, length, (1,), generator=g)) :] = NAN
    x[1, :, 30] = NAN
    return x


OPS = [
    Jitter(0.2),
    Scaling(0.2),
    MagnitudeWarp(0.3, p=1.0),
    TimeWarp(0.3, p=1.0),
    SegmentPermutation(5),
    TimestampMask(0.3),
]


@pytest.mark.parametrize("op", OPS, ids=lambda op: type(op).__name__)
def test_each_op_draws_per_sample_and_keeps_padding_as_padding(op):
    torch.manual_seed(0)
    same = torch.randn(1, 2, 60).cumsum(-1).expand(32, -1, -1).contiguous()
    out = op(same)
    assert out.shape == same.shape and not torch.equal(out[0], out[1])  # identical inputs, different views
    distinct = {tuple(out[i].flatten().round(decimals=4).tolist()) for i in range(32)}
    assert len(distinct) >= 24  # a permutation may draw the identity order

    x = padded_batch()
    y = op(x)
    lengths = series_lengths(x)
    padding = torch.arange(60)[None, :] >= lengths[:, None]
    assert y.isnan().all(1)[padding].all() and torch.equal(series_lengths(y), lengths)  # padding untouched
    if not isinstance(op, TimeWarp | SegmentPermutation):  # these move the missing step; the rest keep it
        assert torch.equal(y.isnan(), x.isnan())


def test_jitter_and_scaling_have_the_drawn_statistics():
    torch.manual_seed(0)
    x = torch.ones(4000, 1, 50)
    noise = Jitter(0.3)(x) - x  # std per sample ~ U(0, 0.3]: mean of s^2 is 0.3^2 / 3
    assert noise.pow(2).mean().item() == pytest.approx(0.3**2 / 3, rel=0.05)
    per_sample = noise.std(-1).flatten()
    assert per_sample.max() < 0.42 and per_sample.min() < 0.05  # strengths spread over (0, sigma]
    factor = Scaling(0.2)(torch.ones(4000, 3, 10))
    assert torch.equal(factor, factor[..., :1].expand_as(factor))  # one factor per sample and channel
    assert factor[..., 0].mean().item() == pytest.approx(1.0, abs=0.01)
    assert factor[..., 0].std().item() == pytest.approx(0.2, rel=0.05)
    assert not torch.equal(factor[:, 0], factor[:, 1])
    half = Scaling(0.2, p=0.5)(torch.ones(4000, 1, 4))
    assert (half == 1).all(-1).float().mean().item() == pytest.approx(0.5, abs=0.04)


def test_time_warp_is_a_monotone_resampling_that_keeps_each_series_ends():
    torch.manual_seed(0)
    x = padded_batch()
    ramp = torch.arange(60.0).expand(64, 1, 60).clone()
    ramp[x[:, :1].isnan()] = NAN
    warped = TimeWarp(0.4, p=1.0)(ramp)
    lengths = series_lengths(ramp)
    for i in (0, 2, 3):  # (sample 1 has a missing step, which the warp spreads to its neighbours)
        series = warped[i, 0, : lengths[i]]
        assert series[0] == 0 and series[-1] == pytest.approx(float(lengths[i] - 1), abs=1e-3)
        assert (series.diff() >= -1e-4).all() and not torch.allclose(series, ramp[i, 0, : lengths[i]])


def test_permutation_moves_whole_segments_within_each_series():
    torch.manual_seed(0)
    ramp = torch.arange(40.0).expand(256, 1, 40).clone()
    ramp[::2, :, 30:] = NAN
    out = SegmentPermutation(4)(ramp)
    for i in range(8):
        length = int(series_lengths(ramp[i : i + 1]))
        values = out[i, 0, :length]
        assert torch.equal(values.sort().values, torch.arange(float(length)))  # the same steps, reordered
        assert int((values.diff() != 1).sum()) <= 3  # at most 4 segments: 3 jumps
    moved = (out[:, 0, :30] != ramp[:, 0, :30]).any(1).float().mean()
    assert moved > 0.8


def test_timestamp_mask_zeroes_a_ratio_of_steps_across_channels():
    torch.manual_seed(0)
    out = TimestampMask(0.25)(torch.ones(500, 3, 40))
    zero = out == 0
    assert torch.equal(zero.all(1), zero.any(1)) and zero[:, 0].float().mean().item() == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("per_sample", [False, True])
def test_crops_share_the_segment_the_batch_keys_say(per_sample):
    torch.manual_seed(0)
    x = padded_batch(n=128)
    view1, view2, keys = overlapping_crops(x, min_overlap=4, per_sample_lengths=per_sample)
    lengths = series_lengths(x)
    start, shared, overlap = keys["crop_start"], keys["overlap_start"], keys["overlap_length"]
    assert start.shape == (128, 2) and shared.shape == (128, 2) and overlap.shape == (128,) and overlap.min() >= 4
    for i in range(128):
        o = int(overlap[i])
        a = view1[i, :, shared[i, 0] : shared[i, 0] + o]
        b = view2[i, :, shared[i, 1] : shared[i, 1] + o]
        assert torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0))  # the same steps of the series
        w1 = int(shared[i, 0]) + o  # view 1 ends where the overlap does
        for view, at, width in ((view1, int(start[i, 0]), w1), (view2, int(start[i, 1]), o)):
            assert torch.equal(view[i, :, :width].nan_to_num(7.0), x[i, :, at : at + width].nan_to_num(7.0))
        assert view1[i, :, w1:].isnan().all() and start[i, 0] >= 0 and start[i, 0] + w1 <= x.shape[-1]
        if per_sample:  # each sample's crops inside its own series
            assert start[i, 1] + int(series_lengths(view2[i : i + 1])) <= lengths[i]
    if per_sample:
        assert len(overlap.unique()) > 10 and len(shared[:, 0].unique()) > 5
    else:  # TS2Vec: one overlap length and place per batch, offsets per sample
        assert len(overlap.unique()) == 1 and len(start[:, 0].unique()) > 5


def test_the_pipeline_hands_crop_positions_to_the_batch_and_refuses_moving_ops():
    views = SeriesViews(crop=True, time_warp_p=0.0, magnitude_warp_p=0.0, jitter=[0.0, 0.1], scaling=0.0)
    batch = {"x": padded_batch(n=8)}
    keys = views.augment_batch(batch)
    assert {"views", "crop_start", "overlap_start", "overlap_length"} <= set(keys) and len(keys["views"]) == 2
    o, s, c = int(keys["overlap_length"][1]), keys["overlap_start"][1], keys["crop_start"][1]
    first, second = keys["views"][0][1, :, s[0] : s[0] + o], keys["views"][1][1, :, s[1] : s[1] + o]
    raw = batch["x"][1, :, c[0] + s[0] : c[0] + s[0] + o]  # the shared steps of the input series
    assert torch.equal(raw.nan_to_num(7.0), batch["x"][1, :, c[1] + s[1] : c[1] + s[1] + o].nan_to_num(7.0))
    assert torch.equal(first.nan_to_num(7.0), raw.nan_to_num(7.0))  # view 1 had no jitter: the raw crop
    noise = (second - raw)[~raw.isnan()]  # view 2: the same steps plus jitter of std at most 0.1
    assert (noise != 0).all() and noise.abs().max() < 0.5
    assert torch.equal(views.eval_view(batch["x"]).isnan(), batch["x"].isnan())
    with pytest.raises(ConfigError, match="time warp and permutation move steps"):
        SeriesViews(crop=True)
    with pytest.raises(ConfigError, match="2 per-view values given for 3 views"):
        SeriesViews(num_views=3, jitter=[0.1, 0.2])


def test_a_method_receives_the_crop_positions_in_its_batch():
    from types import SimpleNamespace

    from contrastlab.contract import DataInfo
    from contrastlab.modules import SimCLR

    info = DataInfo("walks", "series", (2, 0), 2, views="contrastlab.augment.series.SeriesViews")
    views = SeriesViews(crop=True, time_warp_p=0.0, jitter=0.05)
    model = SimCLR(backbone="fcn1d", backbone_kwargs={"widths": (4, 4, 4)}, augment=views, data_info=info)
    model._trainer = SimpleNamespace(training=True)  # what on_after_batch_transfer reads of its trainer
    batch = model.on_after_batch_transfer({"x": padded_batch(n=8), "y": torch.zeros(8, dtype=torch.long)}, 0)
    assert {"views", "overlap_start", "overlap_length", "crop_start"} <= set(batch)
    loss = model.contrastive_loss(model.encode(batch, batch["views"]), batch)
    loss.backward()
    assert loss.isfinite() and all(p.grad.isfinite().all() for p in model.backbone.parameters() if p.grad is not None)
