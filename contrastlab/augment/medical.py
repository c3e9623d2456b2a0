"""Views of grey 2-D medical images on the batch's device (MedMNIST 2-D, X-ray, ultrasound); volumes: augment/volume.py.

`MedicalImageViews` is the grey 2-D recipe for MedMNIST-like images: `ImageViews` without colour (grey images have
no hue or saturation): crops of 50-100%, flips, a small affine, brightness and contrast, light blur and noise.
"""

from __future__ import annotations

from contrastlab.augment.vision import ImageViews
from contrastlab.errors import ConfigError


class MedicalImageViews(ImageViews):
    """The grey 2-D medical recipe (MedMNIST 2-D, X-ray, ultrasound): `ImageViews` without colour.

    Crops of 50-100% with real-valued boxes (small images), horizontal flips, a small rotation and shift,
    brightness and contrast only (no saturation, hue or grey conversion), light blur and noise.
    """

    def __init__(
        self,
        size: int = 28,
        num_views: int = 2,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        hflip_p: float = 0.5,
        affine_degrees: float = 10.0,
        affine_translate: float = 0.05,
        affine_p: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.0, 0.0),
        jitter_p: float = 0.8,
        blur_p: float = 0.2,
        noise_std: float = 0.03,
        noise_p: float = 0.5,
        crop_subpixel: bool = True,
        **kwargs,
    ):
        if any(jitter[2:]):
            raise ConfigError("MedicalImageViews: grey images have no saturation or hue; give jitter [b, c, 0, 0]")
        super().__init__(
            size=size,
            num_views=num_views,
            crop_scale=crop_scale,
            hflip_p=hflip_p,
            affine_degrees=affine_degrees,
            affine_translate=affine_translate,
            affine_p=affine_p,
            jitter=jitter,
            jitter_p=jitter_p,
            grayscale_p=0.0,
            blur_p=blur_p,
            blur_sigma=(0.1, 1.0),
            noise_std=noise_std,
            noise_p=noise_p,
            crop_subpixel=crop_subpixel,
            **kwargs,
        )
