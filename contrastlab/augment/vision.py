"""Image view pipelines on Kornia: one uint8 batch in, V float views out, on the batch's device.

Views are normalised by the dataset's per-channel mean and std, taken from the data's `DataInfo` when
the method binds the pipeline (`ViewPipeline.bind`) unless the config gives them, so one recipe serves
every dataset of its kind; an unbound pipeline returns views in [0, 1]. Grey (1-channel) batches skip the
colour-only ops (saturation, hue, grayscale), which have no meaning there. Crops and colour are our
own batched tensor code (`RandomGeometry`, `ColourJitter`, ...: one resampling and a few per-sample
blends per view; Kornia's generic ops spent most of their time outside the arithmetic on small
images, see benchmarks/README.md); the Gaussian blur is Kornia's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.augment.ops import ChannelNormalize, PerView, RandomNoise, check_views, chosen, per_view
from contrastlab.contract import DataInfo, ViewGroup, ViewPipeline
from contrastlab.errors import ConfigError


def _odd_kernel(size: int, fraction: float = 0.1) -> int:
    """SimCLR's blur kernel: about 10% of the image side, odd, at least 3."""
    k = max(3, int(round(size * fraction)))
    return k if k % 2 else k + 1


# RGB <-> YIQ: hue is a rotation of the (I, Q) chroma plane, one 3x3 matrix per sample.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
_GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


class RandomGeometry(nn.Module):
    """Random resized crop, horizontal flip and a small affine in one batched resampling.

    The crop follows torchvision's RandomResizedCrop (area fraction from `scale`, log-uniform aspect
    ratio from `ratio`, ten tries, then the centre crop); flip and affine are folded into the same 2x3
    matrix per sample, so each view costs one `grid_sample` instead of one pass per op. The affine
    (rotation in degrees, translation as a fraction of the crop) acts on the crop's frame and samples
    the image around it, so it leaves black corners only where it leaves the image.

    `subpixel` draws boxes with real-valued sides and corners instead of torchvision's whole pixels: on
    tiny images (8 px digits) integer boxes allow only a handful of crop sizes and positions, while the
    resampling costs the same for any box.
    """

    TRIES = 10

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip_p: float = 0.5,
        affine_degrees: float = 0.0,
        affine_translate: float = 0.0,
        affine_p: float = 0.0,
        subpixel: bool = False,
    ):
        super().__init__()
        self.subpixel = subpixel
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.size, self.scale, self.ratio, self.hflip_p = size, scale, ratio, hflip_p
        self.affine_degrees, self.affine_translate, self.affine_p = affine_degrees, affine_translate, affine_p

    def crop_boxes(self, n: int, height: int, width: int, device: torch.device) -> Tensor:
        """(n, 4) boxes (centre x, centre y, width, height) in pixels, torchvision's sampling."""
        area = height * width
        target = torch.empty(n, self.TRIES, device=device).uniform_(*self.scale) * area
        log_ratio = torch.empty(n, self.TRIES, device=device).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = log_ratio.exp()
        w = (target * aspect).sqrt()
        h = (target / aspect).sqrt()
        if not self.subpixel:
            w, h = w.round(), h.round()
        fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
        first = torch.where(fits.any(dim=1), fits.int().argmax(dim=1), -1)
        # Fallback (no try fits): the largest centred crop with the ratio clamped into range.
        in_ratio = width / height
        fw, fh = (
            (width, round(width / self.ratio[1]))
            if in_ratio > self.ratio[1]
            else (round(height * self.ratio[0]), height)
            if in_ratio < self.ratio[0]
            else (width, height)
        )
        pick = first.clamp(min=0).unsqueeze(1)
        w = torch.where(first >= 0, w.gather(1, pick).squeeze(1), torch.full((n,), float(fw), device=device))
        h = torch.where(first >= 0, h.gather(1, pick).squeeze(1), torch.full((n,), float(fh), device=device))
        if self.subpixel:
            x0 = torch.rand(n, device=device) * (width - w)
            y0 = torch.rand(n, device=device) * (height - h)
        else:
            x0 = (torch.rand(n, device=device) * (width - w + 1)).floor()
            y0 = (torch.rand(n, device=device) * (height - h + 1)).floor()
        x0 = torch.where(first >= 0, x0, (width - w) / 2)
        y0 = torch.where(first >= 0, y0, (height - h) / 2)
        return torch.stack([x0 + w / 2, y0 + h / 2, w, h], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        n, _, height, width = x.shape
        device = x.device
        cx, cy, w, h = self.crop_boxes(n, height, width, device).unbind(dim=1)
        flip = torch.where(torch.rand(n, device=device) < self.hflip_p, -1.0, 1.0)
        angle = torch.zeros(n, device=device)
        shift = torch.zeros(n, 2, device=device)
        if self.affine_p > 0:
            apply = torch.rand(n, device=device) < self.affine_p
            angle = torch.empty(n, device=device).uniform_(-self.affine_degrees, self.affine_degrees) * apply
            angle = angle * (math.pi / 180)
            shift = torch.empty(n, 2, device=device).uniform_(-1, 1) * (2 * self.affine_translate) * apply[:, None]
        # Output coords p in [-1, 1]^2 -> crop frame: rotate, shift, flip -> input normalised coords.
        cos, sin = angle.cos(), angle.sin()
        sx, sy = w / width * flip, h / height
        theta = torch.stack(
            [
                torch.stack([sx * cos, -sx * sin, sx * shift[:, 0] + (2 * cx / width - 1)], dim=1),
                torch.stack([sy * sin, sy * cos, sy * shift[:, 1] + (2 * cy / height - 1)], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta.to(x.dtype), [n, x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ColourJitter(nn.Module):
    """Batched colour jitter with per-sample factors, applied with probability p to each sample.

    Brightness, contrast and saturation follow torchvision's definitions (blend with black, the mean
    grey level, the grey image; clamp after each). Hue is a rotation by 2*pi*h in YIQ space, the fast
    linear form that GPU pipelines such as DALI use, instead of torchvision's round trip through HSV:
    one matrix product per sample instead of a per-pixel conversion, which made Kornia's jitter the
    slowest op of the SimCLR recipe. 1-channel batches take brightness and contrast only.
    """

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p: float = 0.8):
        super().__init__()
        if not 0 <= hue <= 0.5:
            raise ConfigError(f"hue must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def _factors(self, strength: float, apply: Tensor) -> Tensor | None:
        if not strength:
            return None
        f = torch.empty(apply.shape[0], device=apply.device).uniform_(max(0.0, 1 - strength), 1 + strength)
        return torch.where(apply, f, torch.ones_like(f))

    def forward(self, x: Tensor) -> Tensor:
        apply = chosen(x, self.p)
        hue = None
        if self.hue:
            hue = torch.empty(x.shape[0], device=x.device).uniform_(-self.hue, self.hue) * apply
        return jitter_colour(
            x,
            self._factors(self.brightness, apply),
            self._factors(self.contrast, apply),
            self._factors(self.saturation, apply),
            hue,
        )


def jitter_colour(
    x: Tensor, brightness: Tensor | None, contrast: Tensor | None, saturation: Tensor | None, hue: Tensor | None
) -> Tensor:
    """Per-sample colour adjustments of a float (B, C, H, W) batch in [0, 1], in this order.

    brightness, contrast, saturation: (B,) factors, 1 leaves a sample unchanged; hue: (B,) shifts in
    turns (0.5 = half a turn), 0 leaves it unchanged. None skips an adjustment. Grey batches take only
    brightness and contrast.
    """
    per_sample = (-1, 1, 1, 1)
    if brightness is not None:
        x = (x * brightness.view(per_sample).to(x.dtype)).clamp_(0, 1)
    if contrast is not None:
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = torch.lerp(mean, x, contrast.view(per_sample).to(x.dtype)).clamp_(0, 1)
    if x.shape[1] != 3:
        return x
    if saturation is not None:
        x = torch.lerp(_grey(x), x, saturation.view(per_sample).to(x.dtype)).clamp_(0, 1)
    if hue is not None:
        angle = hue * (2 * torch.pi)
        cos, sin = angle.cos(), angle.sin()
        rotation = torch.zeros(x.shape[0], 3, 3, device=x.device)
        rotation[:, 0, 0] = 1
        rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
        matrix = _YIQ_TO_RGB.to(x.device) @ rotation @ _RGB_TO_YIQ.to(x.device)
        x = torch.einsum("nij,njhw->nihw", matrix.to(x.dtype), x).clamp_(0, 1)
    return x


class RandomGrey(nn.Module):
    """Grey conversion (ITU-R 601 luma, kept as 3 channels) of each sample with probability p."""

    def __init__(self, p: float = 0.2):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(chosen(x, self.p, keepdim=True), _grey(x).expand_as(x), x)


class RandomSolarize(nn.Module):
    """Invert the pixels above `threshold` (x -> 1 - x) of each sample with probability p."""

    def __init__(self, p: float = 0.2, threshold: float = 0.5):
        super().__init__()
        self.p, self.threshold = p, threshold

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(chosen(x, self.p, keepdim=True) & (x >= self.threshold), 1 - x, x)


def _grey(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(1)


class ImageViews(ViewPipeline):
    """Random views of an image batch, each sample with its own random parameters.

    The defaults are SimCLR's recipe (Chen et al. 2020, appendix A): random resized crop (8-100% of the
    area), horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1 with p=0.8), grayscale (p=0.2). Options
    that take one value per view (blur, solarize) make asymmetric recipes such as BYOL's.

    Args:
        size: output side in pixels.
        num_views: the (global) views returned; with local crops V = num_views + local_crops.
        crop_scale, crop_ratio: area fraction and aspect-ratio range of the random resized crop.
        crop_subpixel: crop boxes with real-valued sides and corners (see `RandomGeometry`), not whole pixels.
        hflip_p: probability of a horizontal flip (0 for digits and characters).
        affine_degrees, affine_translate, affine_p: a small random rotation/translation after the crop.
        jitter: brightness, contrast, saturation, hue strengths; jitter_p its probability.
        grayscale_p: probability of converting to grey (colour images only).
        blur_p: probability of Gaussian blur, per view or one for all; blur_sigma its sigma range.
        solarize_p: probability of solarisation at 0.5, per view or one for all.
        noise_std, noise_p: additive Gaussian noise, clamped to [0, 1].
        mean, std: per-channel normalisation of the views; by default the data's (`DataInfo.mean/std`).
        local_crops, local_size, local_crop_scale: multi-crop (Caron et al. 2020): after the `num_views` global
            crops of `size` px, this many local crops of `local_size` px covering `local_crop_scale` of the area
            (0 local crops, the default, is the plain recipe). Per-view options then take one value per view,
            the global views first. Only methods that take views of several sizes accept them (SwAV, DINO).
    """

    def __init__(
        self,
        size: int = 32,
        num_views: int = 2,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip_p: float = 0.5,
        affine_degrees: float = 0.0,
        affine_translate: float = 0.0,
        affine_p: float = 0.0,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        grayscale_p: float = 0.2,
        blur_p: PerView = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize_p: PerView = 0.0,
        noise_std: float = 0.0,
        noise_p: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        crop_subpixel: bool = False,
        local_crops: int = 0,
        local_size: int = 0,
        local_crop_scale: tuple[float, float] = (0.05, 0.4),
    ):
        super().__init__()
        check_views(num_views)
        if local_crops < 0 or (local_crops and not 0 < local_size <= size):
            raise ConfigError(
                f"model.augment.local_size={local_size} with local_crops={local_crops}: local crops need "
                f"0 < local_size <= size ({size}); local_crops: 0 turns multi-crop off"
            )
        self.size, self.local_size = size, local_size
        self.global_views, self.local_crops = num_views, local_crops
        self.num_views = num_views + local_crops
        blur = per_view(blur_p, self.num_views, "blur_p")
        solarize = per_view(solarize_p, self.num_views, "solarize_p")
        brightness, contrast, saturation, hue = jitter
        # One pipeline per view so that asymmetric recipes are just per-view probabilities.
        self.geometric = nn.ModuleList()
        self.colour = nn.ModuleList()
        self.photometric = nn.ModuleList()
        for v in range(self.num_views):
            side, scale = (size, crop_scale) if v < num_views else (local_size, local_crop_scale)
            self.geometric.append(
                RandomGeometry(
                    side, scale, crop_ratio, hflip_p, affine_degrees, affine_translate, affine_p, crop_subpixel
                )
            )
            colour: list[nn.Module] = []
            if jitter_p > 0 and any(jitter):
                colour.append(ColourJitter(brightness, contrast, saturation, hue, p=jitter_p))
            if grayscale_p > 0:
                colour.append(RandomGrey(p=grayscale_p))
            self.colour.append(nn.Sequential(*colour))
            photometric: list[nn.Module] = []
            if blur[v] > 0:
                kernel = _odd_kernel(side)
                photometric.append(K.RandomGaussianBlur((kernel, kernel), blur_sigma, p=blur[v]))
            if solarize[v] > 0:
                photometric.append(RandomSolarize(p=solarize[v]))
            if noise_p > 0 and noise_std > 0:
                photometric.append(RandomNoise(std=noise_std, p=noise_p))
            self.photometric.append(nn.Sequential(*photometric))
        self.normalize: nn.Module = nn.Identity()
        if mean is not None or std is not None:
            self._normalize_by(mean, std)

    def _normalize_by(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        if mean is None or std is None:
            raise ConfigError("ImageViews: give both mean and std, or neither (the data's are used)")
        self.normalize = ChannelNormalize(mean, std)

    def bind(self, info) -> None:
        """Normalise by the data's statistics, unless the config gave its own."""
        if isinstance(self.normalize, nn.Identity) and info.mean and info.std:
            self._normalize_by(info.mean, info.std)

    def view_groups(self, info: DataInfo) -> tuple[ViewGroup, ...]:
        channels = info.channels
        groups = (ViewGroup("global", self.global_views, (channels, self.size, self.size)),)
        if self.local_crops:
            groups += (ViewGroup("local", self.local_crops, (channels, self.local_size, self.local_size)),)
        return groups

    @classmethod
    def for_data(cls, info) -> ImageViews:
        """SimCLR's recipe at the data's image size, normalised by its statistics."""
        pipeline = cls(size=info.shape[-1])
        pipeline.bind(info)
        return pipeline

    @staticmethod
    def to_float(x: Tensor) -> Tensor:
        """uint8 [0, 255] or float [0, 1] images, (B, C, H, W), as float in [0, 1]."""
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.float()

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        """V augmented views of the batch, each (B, C, size, size) float, in [0, 1] before normalisation; with
        local crops, the global views then the local ones (B, C, local_size, local_size)."""
        x = self.to_float(x)
        views = []
        for v in range(self.num_views):
            view = self.geometric[v](x)
            view = self.colour[v](view)
            view = self.photometric[v](view)
            views.append(self.normalize(view.clamp_(0.0, 1.0)))
        return views

    @torch.no_grad()
    def eval_view(self, x: Tensor) -> Tensor:
        """The deterministic view for evaluation: the whole image resized to `size`."""
        x = self.to_float(x)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.normalize(x)


class SimCLRViews(ImageViews):
    """SimCLR's recipe (Chen et al. 2020): crop, flip, strong colour jitter, grayscale, blur on large images."""

    def __init__(self, size: int = 32, num_views: int = 2, blur_p: PerView = 0.0, **kwargs):
        super().__init__(size=size, num_views=num_views, blur_p=blur_p, **kwargs)


class BYOLViews(ImageViews):
    """BYOL's asymmetric recipe (Grill et al. 2020, table 6).

    Blur with p = 1.0 / 0.1 and solarize with p = 0.0 / 0.2 on the two views; jitter (0.4, 0.4, 0.2, 0.1).
    """

    def __init__(
        self,
        size: int = 32,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
        blur_p: PerView = (1.0, 0.1),
        solarize_p: PerView = (0.0, 0.2),
        **kwargs,
    ):
        super().__init__(size=size, num_views=2, jitter=jitter, blur_p=blur_p, solarize_p=solarize_p, **kwargs)
