"""Time-series views on the device: one (B, C, T) batch in, V views out, every parameter drawn per sample.

The ops are the field's: jitter, scaling (Um et al. 2017; TS-TCC's weak view), magnitude warp and time
warp (smooth random curves through a few knots, Um et al. 2017), segment permutation (TS-TCC's strong
view), timestamp masking, and TS2Vec's random overlapping crops (Yue et al. 2022: two crops of each series
that share a segment, whose representations the loss compares timestamp by timestamp). Each op is applied
to each sample with its probability and draws its strength per sample; none loops over samples.

Masks ride in the tensor: a padded or missing step is NaN (the series DataModules collate so), every op
keeps it NaN and never reads it, and the series backbones pool over `~x.isnan().any(1)`. Time warp and
permutation move steps within each series' own length, never into its padding.

The series are normalised by their DataModule (a per-series z-score after a scaling view would undo it), so
these views do not normalise again: the contract's rule (contrastlab/contract.py) puts what comes before the views
in the data.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.augment.ops import PerView, chosen, per_view
from contrastlab.contract import ViewPipeline
from contrastlab.errors import ConfigError


def series_lengths(x: Tensor) -> Tensor:
    """(B,) the length of each series: one past its last step observed in some channel (NaN marks padding)."""
    observed = ~x.isnan().all(dim=1)  # (B, T)
    steps = torch.arange(1, x.shape[-1] + 1, device=x.device)
    return (observed * steps).amax(dim=1)


def smooth_curves(n: int, channels: int, length: int, knots: int, sigma: float, device) -> Tensor:
    """(n, channels, length) random smooth curves around 1: `knots + 2` values ~ N(1, sigma) joined by a
    cubic (bicubic along one axis) interpolation, as Um et al.'s cubic splines."""
    values = 1 + sigma * torch.randn(n, channels, 1, knots + 2, device=device)
    curves = F.interpolate(values, size=(1, length), mode="bicubic", align_corners=True)
    return curves[:, :, 0]


def interpolate_at(x: Tensor, positions: Tensor) -> Tensor:
    """x (B, C, T) read at real-valued `positions` (B, T') by linear interpolation; NaN where a used
    neighbour is NaN, so a mask stays a mask."""
    last = x.shape[-1] - 1
    positions = positions.clamp(0, last)
    left = positions.floor().long().clamp(max=last)
    right = (left + 1).clamp(max=last)
    frac = (positions - left).unsqueeze(1)
    gather = lambda index: x.gather(2, index.unsqueeze(1).expand(-1, x.shape[1], -1))  # noqa: E731
    a, b = gather(left), gather(right)
    out = a + frac * (b - a)
    # exactly on a step: that step's value (NaN next door must not leak into it)
    return torch.where(frac == 0, a, out)


class Jitter(nn.Module):
    """x + N(0, s^2) noise, s ~ U(0, sigma] per sample (sigma in units of the normalised series)."""

    def __init__(self, sigma: float = 0.03, p: float = 1.0):
        super().__init__()
        self.sigma, self.p = sigma, p

    def forward(self, x: Tensor) -> Tensor:
        if self.sigma <= 0 or self.p <= 0:
            return x
        s = self.sigma * (1 - torch.rand(x.shape[0], 1, 1, device=x.device))
        return torch.where(chosen(x, self.p, keepdim=True, draw_when_certain=False), x + s * torch.randn_like(x), x)


class Scaling(nn.Module):
    """x * a, a ~ N(1, sigma^2) per sample and channel (TS-TCC's weak view scales each channel)."""

    def __init__(self, sigma: float = 0.1, p: float = 1.0):
        super().__init__()
        self.sigma, self.p = sigma, p

    def forward(self, x: Tensor) -> Tensor:
        if self.sigma <= 0 or self.p <= 0:
            return x
        a = 1 + self.sigma * torch.randn(x.shape[0], x.shape[1], 1, device=x.device, dtype=x.dtype)
        return torch.where(chosen(x, self.p, keepdim=True, draw_when_certain=False), x * a, x)


class MagnitudeWarp(nn.Module):
    """x times a smooth random curve around 1 through `knots` inner knots, per sample and channel."""

    def __init__(self, sigma: float = 0.2, knots: int = 4, p: float = 0.5):
        super().__init__()
        self.sigma, self.knots, self.p = sigma, knots, p

    def forward(self, x: Tensor) -> Tensor:
        if self.sigma <= 0 or self.p <= 0:
            return x
        curve = smooth_curves(x.shape[0], x.shape[1], x.shape[-1], self.knots, self.sigma, x.device).to(x.dtype)
        return torch.where(chosen(x, self.p, keepdim=True, draw_when_certain=False), x * curve, x)


class TimeWarp(nn.Module):
    """Resample each series along a smooth random time axis: a speed curve around 1 through `knots` inner
    knots, integrated and stretched back to the series' own length (its start and end stay put)."""

    def __init__(self, sigma: float = 0.2, knots: int = 4, p: float = 0.5):
        super().__init__()
        self.sigma, self.knots, self.p = sigma, knots, p

    def forward(self, x: Tensor) -> Tensor:
        if self.sigma <= 0 or self.p <= 0:
            return x
        n, _, length = x.shape
        lengths = series_lengths(x).to(x.dtype)  # (B,)
        speed = smooth_curves(n, 1, length, self.knots, self.sigma, x.device)[:, 0].clamp(min=0.05)
        t = torch.arange(length, device=x.device, dtype=x.dtype)
        u = (t / (lengths[:, None] - 1).clamp(min=1)).clamp(max=1)  # (B, T): 0..1 over each series
        # the warp w(u): the speed's running integral read at u, normalised so that w(0) = 0 and w(1) = 1
        integral = torch.cat([speed.new_zeros(n, 1), speed[:, :-1].cumsum(dim=1)], dim=1)
        integral = integral / integral[:, -1:].clamp(min=1e-8)
        warp = interpolate_at(integral.unsqueeze(1), u * (length - 1))[:, 0]
        source = warp * (lengths[:, None] - 1)
        warped = interpolate_at(x, source)
        warped = torch.where(t[None, None, :] < lengths[:, None, None], warped, x)  # padding stays padding
        return torch.where(chosen(x, self.p, keepdim=True, draw_when_certain=False), warped, x)


class SegmentPermutation(nn.Module):
    """Cut each series at random points into 2..`max_segments` segments and shuffle them (TS-TCC's strong
    view); the padding after a series stays at its end."""

    def __init__(self, max_segments: int = 5, p: float = 1.0):
        super().__init__()
        if max_segments < 2:
            raise ConfigError(f"model.augment.max_segments must be >= 2, got {max_segments}")
        self.max_segments, self.p = max_segments, p

    def forward(self, x: Tensor) -> Tensor:
        if self.p <= 0:
            return x
        n, _, length = x.shape
        device = x.device
        lengths = series_lengths(x)  # (B,)
        cuts_wanted = torch.randint(1, self.max_segments, (n, 1), device=device)  # 1..max-1 cuts
        cuts = (torch.rand(n, self.max_segments - 1, device=device) * lengths[:, None]).long().clamp(min=1)
        unused = torch.arange(self.max_segments - 1, device=device)[None, :] >= cuts_wanted
        cuts = torch.where(unused, lengths[:, None], cuts).sort(dim=1).values  # (B, S-1)
        t = torch.arange(length, device=device).expand(n, -1)
        segment = torch.searchsorted(cuts, t.contiguous(), right=True)  # (B, T): 0..S-1
        rank = torch.rand(n, self.max_segments, device=device).argsort(dim=1).argsort(dim=1)  # a permutation
        key = rank.gather(1, segment) * length + t
        key = torch.where(t < lengths[:, None], key, self.max_segments * length + t)  # padding last, in order
        order = key.argsort(dim=1)
        permuted = x.gather(2, order.unsqueeze(1).expand(-1, x.shape[1], -1))
        return torch.where(chosen(x, self.p, keepdim=True, draw_when_certain=False), permuted, x)


class TimestampMask(nn.Module):
    """Set each observed step to 0 with probability `ratio` (all channels at once), in the samples chosen
    with probability p: TS2Vec's timestamp masking, on the input."""

    def __init__(self, ratio: float = 0.1, p: float = 1.0):
        super().__init__()
        if not 0 <= ratio < 1:
            raise ConfigError(f"model.augment.mask_ratio must be in [0, 1), got {ratio}")
        self.ratio, self.p = ratio, p

    def forward(self, x: Tensor) -> Tensor:
        if self.ratio <= 0 or self.p <= 0:
            return x
        drop = torch.rand(x.shape[0], 1, x.shape[-1], device=x.device) < self.ratio
        drop = drop & chosen(x, self.p, keepdim=True, draw_when_certain=False)
        return torch.where(drop & ~x.isnan(), torch.zeros_like(x), x)


def overlapping_crops(
    x: Tensor, min_overlap: int = 2, per_sample_lengths: bool = False
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """TS2Vec's two random crops of each series sharing a segment of at least `min_overlap` steps.

    For a series of length L: the overlap [a2, b1) of length l ~ U{min_overlap..L}; view 1 is [a1, b1) with
    a1 ~ U{0..a2}, view 2 is [a2, b2) with b2 ~ U{b1..L}; both are shifted by one random offset per sample
    that keeps them inside the series (TS2Vec's crop_offset). TS2Vec draws l, a1, a2, b1, b2 once per batch
    (views of one length, the overlap at the same place in every row); `per_sample_lengths` draws them per
    sample too, and NaN pads each view to the batch's longest.

    Returns (view1, view2, keys): `crop_start` (B, 2) the first step of each view in the series' time,
    `overlap_start` (B, 2) where the shared segment begins inside each view, `overlap_length` (B,).
    """
    n, _, length = x.shape
    device = x.device
    lengths = series_lengths(x) if per_sample_lengths else torch.full((n,), length, device=device)
    if int(lengths.min()) < min_overlap:
        raise ConfigError(
            f"model.augment.crop_min_overlap={min_overlap} is longer than a series of {int(lengths.min())} steps"
        )
    rows = n if per_sample_lengths else 1

    def uniform(low: Tensor, high: Tensor) -> Tensor:  # integers in [low, high], per row
        return low + (torch.rand(low.shape, device=device) * (high - low + 1)).floor().long().clamp(max=high - low)

    total = lengths[:rows]
    overlap = uniform(torch.full_like(total, min_overlap), total)
    a2 = uniform(torch.zeros_like(total), total - overlap)  # the overlap's start
    b1 = a2 + overlap
    a1 = uniform(torch.zeros_like(total), a2)
    b2 = uniform(b1, total)
    a1, a2, b1, b2, overlap = (v.expand(n) for v in (a1, a2, b1, b2, overlap))
    # one shift per sample that keeps [a1, b2) inside the sample's series
    shift = uniform(-a1, lengths - b2)
    views, keys = [], {}
    width = int((b1 - a1).max()), int((b2 - a2).max())
    for start, stop, w in ((a1 + shift, b1 + shift, width[0]), (a2 + shift, b2 + shift, width[1])):
        steps = start[:, None] + torch.arange(w, device=device)[None, :]
        inside = steps < stop[:, None]
        view = x.gather(2, steps.clamp(max=length - 1).unsqueeze(1).expand(-1, x.shape[1], -1))
        views.append(torch.where(inside.unsqueeze(1), view, torch.full_like(view, float("nan"))))
    keys["crop_start"] = torch.stack([a1 + shift, a2 + shift], dim=1)
    keys["overlap_start"] = torch.stack([a2 - a1, torch.zeros_like(a2)], dim=1)
    keys["overlap_length"] = overlap.clone()
    return views[0], views[1], keys


class SeriesViews(ViewPipeline):
    """V views of a (B, C, T) series batch; each parameter is one value or one per view.

    Args:
        num_views: views per sample.
        crop: TS2Vec's two overlapping crops first (needs num_views 2; their positions go into the batch as
            `crop_start`, `overlap_start`, `overlap_length`, see `overlapping_crops`); then the ops below.
        crop_min_overlap, crop_per_sample: the shortest shared segment; lengths drawn per sample (else per batch,
            as TS2Vec).
        time_warp, time_warp_p, magnitude_warp, magnitude_warp_p, knots: the warps' sigma and probability.
        scaling, scaling_p: sigma of the per-channel factor around 1.
        jitter, jitter_p: the largest noise std.
        permutation_p, max_segments: segment permutation.
        mask_ratio, mask_p: timestamp masking.
    Defaults are a mild, generic recipe (warps, scaling, jitter); the methods' configs set theirs.
    """

    def __init__(
        self,
        num_views: int = 2,
        crop: bool = False,
        crop_min_overlap: int = 2,
        crop_per_sample: bool = False,
        time_warp: PerView = 0.2,
        time_warp_p: PerView = 0.5,
        magnitude_warp: PerView = 0.2,
        magnitude_warp_p: PerView = 0.5,
        knots: int = 4,
        scaling: PerView = 0.1,
        scaling_p: PerView = 1.0,
        jitter: PerView = 0.03,
        jitter_p: PerView = 1.0,
        permutation_p: PerView = 0.0,
        max_segments: int = 5,
        mask_ratio: PerView = 0.0,
        mask_p: PerView = 1.0,
    ):
        super().__init__()
        self.num_views = num_views
        v = lambda value, name: per_view(value, num_views, name)  # noqa: E731
        if crop and num_views != 2:
            raise ConfigError(f"model.augment.crop makes two overlapping crops; set num_views 2, not {num_views}")
        if crop and (
            any(v(time_warp_p, "time_warp_p"))
            and any(v(time_warp, "time_warp"))
            or any(v(permutation_p, "permutation_p"))
        ):
            raise ConfigError(
                "model.augment.crop: time warp and permutation move steps, so the crops' overlap would no longer "
                "line up; set time_warp_p and permutation_p to 0 with crop"
            )
        self.crop, self.crop_min_overlap, self.crop_per_sample = crop, crop_min_overlap, crop_per_sample
        self.chains = nn.ModuleList(
            nn.Sequential(
                TimeWarp(v(time_warp, "time_warp")[i], knots, v(time_warp_p, "time_warp_p")[i]),
                MagnitudeWarp(
                    v(magnitude_warp, "magnitude_warp")[i], knots, v(magnitude_warp_p, "magnitude_warp_p")[i]
                ),
                Scaling(v(scaling, "scaling")[i], v(scaling_p, "scaling_p")[i]),
                SegmentPermutation(max_segments, v(permutation_p, "permutation_p")[i]),
                Jitter(v(jitter, "jitter")[i], v(jitter_p, "jitter_p")[i]),
                TimestampMask(v(mask_ratio, "mask_ratio")[i], v(mask_p, "mask_p")[i]),
            )
            for i in range(num_views)
        )

    @torch.no_grad()
    def augment_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        x = batch["x"].float()
        keys: dict[str, Any] = {}
        if self.crop:
            first, second, keys = overlapping_crops(x, self.crop_min_overlap, self.crop_per_sample)
            inputs = [first, second]
        else:
            inputs = [x] * self.num_views
        keys["views"] = [chain(view) for chain, view in zip(self.chains, inputs)]
        return keys

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.augment_batch({"x": x})["views"]

    @torch.no_grad()
    def eval_view(self, x: Tensor) -> Tensor:
        return x.float()


class TSTCCViews(SeriesViews):
    """View 1 is weak, jitter-and-scale; view 2 is strong, permutation-and-jitter (TS-TCC's recipe).

    Args:
        weak_scaling: sigma of the weak view's per-channel factor around 1.
        weak_jitter, strong_jitter: the largest noise std of each view (in units of the normalised series).
        max_segments: the strong view cuts each series into 2 .. max_segments segments and shuffles them.
    """

    def __init__(
        self, weak_scaling: float = 0.5, weak_jitter: float = 0.1, strong_jitter: float = 0.3, max_segments: int = 5
    ):
        super().__init__(
            num_views=2,
            time_warp_p=0.0,
            magnitude_warp_p=0.0,
            scaling=[weak_scaling, 0.0],
            jitter=[weak_jitter, strong_jitter],
            permutation_p=[0.0, 1.0],
            max_segments=max_segments,
        )
