"""Image view pipelines on Kornia: one uint8 batch in, V float views in [0, 1] out, on the batch's device.

Normalisation by the dataset's mean and std is not done here: the method applies it from the data's
`DataInfo`, so one recipe serves every dataset of its kind. Grey (1-channel) batches skip the
colour-only ops (saturation, hue, grayscale), which have no meaning there.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PerView = float | Sequence[float]


def _per_view(value: PerView, num_views: int, name: str) -> list[float]:
    if isinstance(value, int | float):
        return [float(value)] * num_views
    values = [float(v) for v in value]
    if len(values) != num_views:
        raise ValueError(f"{name}: {len(values)} per-view values given for {num_views} views")
    return values


def _odd_kernel(size: int, fraction: float = 0.1) -> int:
    """SimCLR's blur kernel: about 10% of the image side, odd, at least 3."""
    k = max(3, int(round(size * fraction)))
    return k if k % 2 else k + 1


class ImageViews(nn.Module):
    """Random views of an image batch, each sample with its own random parameters.

    The defaults are SimCLR's recipe (Chen et al. 2020, appendix A): random resized crop (8-100% of the
    area), horizontal flip, colour jitter (0.4, 0.4, 0.4, 0.1 with p=0.8), grayscale (p=0.2). Options
    that take one value per view (blur, solarize) make asymmetric recipes such as BYOL's.

    Args:
        size: output side in pixels.
        num_views: V, the number of views returned.
        crop_scale, crop_ratio: area fraction and aspect-ratio range of the random resized crop.
        hflip_p: probability of a horizontal flip (0 for digits and characters).
        affine_degrees, affine_translate, affine_p: a small random rotation/translation after the crop.
        jitter: brightness, contrast, saturation, hue strengths; jitter_p its probability.
        grayscale_p: probability of converting to grey (colour images only).
        blur_p: probability of Gaussian blur, per view or one for all; blur_sigma its sigma range.
        solarize_p: probability of solarisation at 0.5, per view or one for all.
        noise_std, noise_p: additive Gaussian noise, clamped to [0, 1].
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
    ):
        super().__init__()
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.size = size
        self.num_views = num_views
        blur = _per_view(blur_p, num_views, "blur_p")
        solarize = _per_view(solarize_p, num_views, "solarize_p")
        brightness, contrast, saturation, hue = jitter
        # One pipeline per view so that asymmetric recipes are just per-view probabilities.
        self.geometric = nn.ModuleList()
        self.colour = nn.ModuleList()
        self.grey = nn.ModuleList()
        self.photometric = nn.ModuleList()
        for v in range(num_views):
            geometric: list[nn.Module] = [
                K.RandomResizedCrop((size, size), scale=crop_scale, ratio=crop_ratio, cropping_mode="resample")
            ]
            if hflip_p > 0:
                geometric.append(K.RandomHorizontalFlip(p=hflip_p))
            if affine_p > 0:
                geometric.append(
                    K.RandomAffine(affine_degrees, translate=(affine_translate, affine_translate), p=affine_p)
                )
            self.geometric.append(nn.Sequential(*geometric))
            colour: list[nn.Module] = []
            grey: list[nn.Module] = []
            if jitter_p > 0 and any(jitter):
                colour.append(K.ColorJitter(brightness, contrast, saturation, hue, p=jitter_p))
                if brightness or contrast:
                    grey.append(K.ColorJitter(brightness, contrast, 0.0, 0.0, p=jitter_p))
            if grayscale_p > 0:
                colour.append(K.RandomGrayscale(p=grayscale_p))
            self.colour.append(nn.Sequential(*colour))
            self.grey.append(nn.Sequential(*grey))
            photometric: list[nn.Module] = []
            if blur[v] > 0:
                kernel = _odd_kernel(size)
                photometric.append(K.RandomGaussianBlur((kernel, kernel), blur_sigma, p=blur[v]))
            if solarize[v] > 0:
                photometric.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=solarize[v]))
            if noise_p > 0 and noise_std > 0:
                photometric.append(K.RandomGaussianNoise(std=noise_std, p=noise_p))
            self.photometric.append(nn.Sequential(*photometric))

    @staticmethod
    def to_float(x: Tensor) -> Tensor:
        """uint8 [0, 255] or float [0, 1] images, (B, C, H, W), as float in [0, 1]."""
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.float()

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        """V augmented views of the batch, each (B, C, size, size) float in [0, 1]."""
        x = self.to_float(x)
        is_grey = x.shape[1] == 1
        views = []
        for v in range(self.num_views):
            view = self.geometric[v](x)
            view = (self.grey[v] if is_grey else self.colour[v])(view)
            view = self.photometric[v](view)
            views.append(view.clamp_(0.0, 1.0))
        return views

    @torch.no_grad()
    def eval_view(self, x: Tensor) -> Tensor:
        """The deterministic view for evaluation: the whole image resized to `size`."""
        x = self.to_float(x)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return x


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
