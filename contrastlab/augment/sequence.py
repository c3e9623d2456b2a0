"""Light views of (B, C, T) sequences, audio or series, for methods that learn from the sequence itself.

CPC (van den Oord et al. 2018) needs no second view: its positives are the sequence's own future steps.
It takes one view, lightly perturbed: a random window of the sequence, a gain, a little noise. Every
op draws its parameters per sample and runs batched on the batch's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from contrastlab.augment.ops import ChannelNormalize, check_views, gain, random_crop, uniform
from contrastlab.contract import ViewPipeline
from contrastlab.errors import ConfigError

if TYPE_CHECKING:
    from contrastlab.contract import DataInfo

NORMALIZE = ("instance", "channel", "none")


class SequenceViews(ViewPipeline):
    """`num_views` views of a (B, C, T) batch: random crop, random gain, normalisation, Gaussian noise.

    Args:
        num_views: views per sample (CPC: 1).
        crop: length of the random window each view takes (fixed-length data only; None: the whole
            sequence). The evaluation view is always the whole sequence.
        gain_db: (low, high) gain in dB drawn per sample; (0, 0) is off. After "instance" normalisation
            a gain changes nothing, so it is for "channel" or "none".
        noise_std: standard deviation of Gaussian noise added after normalisation (in normalised units).
        normalize: "instance" (each sample's channels to zero mean and unit variance over time: audio of
            any loudness), "channel" (the data's per-channel mean and std from its DataInfo) or "none"
            (data the DataModule already normalised, e.g. z-normalised series).
    """

    def __init__(
        self,
        num_views: int = 1,
        crop: int | None = None,
        gain_db: Sequence[float] = (0.0, 0.0),
        noise_std: float = 0.0,
        normalize: str = "instance",
    ):
        super().__init__()
        check_views(num_views)
        if crop is not None and crop < 1:
            raise ConfigError(f"model.augment.crop must be a positive length or null, got {crop}")
        if len(gain_db) != 2 or gain_db[0] > gain_db[1]:
            raise ConfigError(f"model.augment.gain_db must be [low, high] in dB, got {list(gain_db)}")
        if noise_std < 0:
            raise ConfigError(f"model.augment.noise_std must be >= 0, got {noise_std}")
        if normalize not in NORMALIZE:
            raise ConfigError(f"model.augment.normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        self.num_views, self.crop, self.noise_std, self.normalize = num_views, crop, noise_std, normalize
        self.gain_db = (float(gain_db[0]), float(gain_db[1]))
        self.channel_norm: nn.Module = nn.Identity()

    def bind(self, info: DataInfo) -> None:
        length = info.shape[-1]
        variable = length == 0
        if self.crop is not None and (variable or self.crop > length):
            raise ConfigError(
                f"model.augment.crop={self.crop} needs fixed-length samples of at least that length; "
                f"{info.name!r} gives {info.shape[-1] or 'variable-length'} steps: lower crop or set it to null"
            )
        if variable and self.normalize == "instance":
            raise ConfigError(
                f"model.augment.normalize=instance would count the padding of {info.name!r}'s variable-length "
                "samples: normalise in the DataModule and set normalize: none (or channel)"
            )
        if self.normalize == "channel":
            if not info.mean:
                raise ConfigError(
                    f"model.augment.normalize=channel: data {info.name!r} gives no channel statistics; "
                    "use instance or none"
                )
            self.channel_norm = ChannelNormalize(info.mean, info.std)

    def view_info(self, info: DataInfo) -> DataInfo:
        """The training views' shape: `crop` steps when cropping."""
        return info if self.crop is None else replace(info, shape=(*info.shape[:-1], self.crop))

    def _normalise(self, x: Tensor) -> Tensor:
        if self.normalize == "instance":
            return (x - x.mean(dim=-1, keepdim=True)) / x.std(dim=-1, keepdim=True).clamp(min=1e-5)
        return self.channel_norm(x)

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        x = x.float()
        views = []
        for _ in range(self.num_views):
            view = x if self.crop is None else random_crop(x, self.crop)
            low, high = self.gain_db
            if high > low or low != 0:
                view = gain(view, uniform(x, low, high))
            view = self._normalise(view)
            if self.noise_std:
                view = view + self.noise_std * torch.randn_like(view)
            views.append(view)
        return views

    @torch.no_grad()
    def eval_view(self, x: Tensor) -> Tensor:
        return self._normalise(x.float())
