"""The one image decoder of the file-reading DataModules (image folders, paired image-text CSVs): a file to a
uint8 (C, size, size) tensor, its shorter side resized to `size` and centre-cropped (PIL's `ImageOps.fit`),
grey (C = 1) or RGB (C = 3). Augmentation and normalisation come later, in the view pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastlab.errors import DataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def decode_image(path: Path, size: int, channels: int) -> Tensor:
    """uint8 (channels, size, size); a file PIL cannot decode is a DataError naming it."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = ImageOps.fit(img.convert("L" if channels == 1 else "RGB"), (size, size))
    except OSError as err:
        raise DataError(f"{path} cannot be decoded as an image ({err}); remove or replace it") from err
    x = torch.from_numpy(np.array(img, dtype=np.uint8))
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)


class ImageDecoder:
    """`decode_image` at a fixed size and channel count, as a picklable callable for loader workers."""

    def __init__(self, size: int, channels: int):
        self.size, self.channels = size, channels

    def __call__(self, path: Path) -> Tensor:
        return decode_image(path, self.size, self.channels)
