"""TS-TCC's encoder: three conv blocks giving per-step features at a lower rate, pooled to an instance."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.errors import ConfigError
from contrastlab.modules.nets.registry import register_backbone
from contrastlab.modules.nets.ts2vec import masked_max_pool, valid_steps


@register_backbone("tstcc_cnn", dims=1)
class TSTCCEncoder(nn.Module):
    """TS-TCC's encoder (Eldele et al. 2021): three conv-BN-ReLU-maxpool blocks; per-step features (B, T', D)
    at a quarter to an eighth of the input rate, max-pooled over the valid steps to an instance.

    Args:
        in_chans: channels; widths: channels of the three blocks; kernel_size, stride: of the first conv
            (the later ones use 8 and 1, as the paper); dropout: after the first block.
    """

    def __init__(
        self,
        in_chans: int = 1,
        widths: tuple[int, int, int] = (32, 64, 128),
        kernel_size: int = 8,
        stride: int = 1,
        dropout: float = 0.35,
    ):
        super().__init__()
        if len(widths) != 3:
            raise ConfigError(f"model.backbone_kwargs.widths: tstcc_cnn has three blocks, got {len(widths)} widths")
        kernels, strides, channels = (kernel_size, 8, 8), (stride, 1, 1), (in_chans, *widths)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(channels[i], channels[i + 1], kernels[i], strides[i], padding=kernels[i] // 2, bias=False),
                nn.BatchNorm1d(channels[i + 1]),
                nn.ReLU(),
                nn.MaxPool1d(2, 2, padding=1),
                nn.Dropout(dropout if i == 0 else 0.0),
            )
            for i in range(3)
        )
        self.num_features = widths[-1]

    def sequence(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        valid = valid_steps(x, mask)
        h = torch.nan_to_num(x, nan=0.0) * valid[:, None].to(x.dtype)
        for block in self.blocks:
            conv = block[0]
            h = block(h)
            # a step of the output is valid when its window saw a valid input step
            v = F.max_pool1d(valid[:, None].float(), conv.kernel_size[0], conv.stride[0], conv.padding[0])
            v = F.max_pool1d(v, 2, 2, padding=1)
            valid = v[:, 0] > 0
            h = h * valid[:, None].to(h.dtype)
        return h.transpose(1, 2), valid

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return masked_max_pool(*self.sequence(x, mask))
