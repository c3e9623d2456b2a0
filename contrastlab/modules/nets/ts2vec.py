"""TS2Vec's encoder: timestamp-level representations of series by dilated convolutions.

Series encoders here (and in tstcc.py) take (B, C, T) series and an optional validity mask (B, T)
(False on padding; NaN steps count as missing too) and give, through `sequence(x, mask)`,
representations (B, T', D) with their validity mask (B, T'); `forward(x, mask)` pools the valid steps
to one (B, D) instance (max-pooling, as TS2Vec's `full_series` encoding), the features kNN, the probe
and the SVM read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.errors import ConfigError
from contrastlab.modules.nets.registry import register_backbone


def valid_steps(x: Tensor, mask: Tensor | None) -> Tensor:
    """(B, T) True where a step is real: inside the mask and without a NaN in any channel."""
    valid = ~torch.isnan(x).any(dim=1)
    return valid if mask is None else valid & mask.to(torch.bool)


def masked_max_pool(h: Tensor, valid: Tensor) -> Tensor:
    """Max over the valid steps of (B, T, D) -> (B, D); a sample without any valid step pools to zeros."""
    pooled = h.masked_fill(~valid[..., None], float("-inf")).amax(dim=1)
    return torch.where(valid.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))


class SamePadConv(nn.Module):
    """A dilated 1-D conv whose output has the input's length."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        receptive_field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=receptive_field // 2, dilation=dilation)
        self.trim = 1 if receptive_field % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        center = conv.kernel_size[0] // 2
        if not self.trim and conv.dilation[0] >= x.shape[-1]:
            # every tap but the centre falls in the zero padding: the same sum, as a 1x1 conv (PyTorch's
            # dilated conv on CPU is much slower than this at TS2Vec's last dilations of 512 and 1024)
            return F.conv1d(x, conv.weight[:, :, center : center + 1], conv.bias)
        out = conv(x)
        return out[:, :, : out.shape[-1] - self.trim]


class DilatedBlock(nn.Module):
    """GELU-conv-GELU-conv with a residual connection (a 1x1 conv where the width changes, and on the last block)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, final: bool = False):
        super().__init__()
        self.conv1 = SamePadConv(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = SamePadConv(out_channels, out_channels, kernel_size, dilation)
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels or final else None

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.projector is None else self.projector(x)
        return self.conv2(F.gelu(self.conv1(F.gelu(x)))) + residual


@register_backbone("ts2vec", dims=1)
class TS2VecEncoder(nn.Module):
    """TS2Vec's encoder (Yue et al. 2022, sec. 3.1): a per-step linear input projection, timestamp masking
    while training, then `depth` residual blocks of dilated convolutions (dilation 2^i) and a final block to
    `output_dims`; representations per timestamp, max-pooled to an instance.

    Args:
        in_chans: channels of the series.
        hidden_dims, output_dims, depth: widths and number of hidden blocks (64, 320, 10 in the paper).
        mask_mode: "binomial" (each step's projection zeroed with probability 1 - mask_p while training, the
            paper's augmentation) or "none".
        mask_p: probability that a step is kept under binomial masking.
        dropout: on the output representations while training.
    """

    def __init__(
        self,
        in_chans: int = 1,
        hidden_dims: int = 64,
        output_dims: int = 320,
        depth: int = 10,
        kernel_size: int = 3,
        mask_mode: str = "binomial",
        mask_p: float = 0.5,
        dropout: float = 0.1,
    ):
        super().__init__()
        if mask_mode not in ("binomial", "none"):
            raise ConfigError(f"model.backbone_kwargs.mask_mode must be binomial or none, got {mask_mode!r}")
        if not 0 < mask_p <= 1:
            raise ConfigError(f"model.backbone_kwargs.mask_p must be in (0, 1], got {mask_p}")
        self.mask_mode, self.mask_p = mask_mode, mask_p
        self.input_fc = nn.Linear(in_chans, hidden_dims)
        widths = [hidden_dims] * depth + [output_dims]
        self.blocks = nn.Sequential(
            *(
                DilatedBlock(widths[i - 1] if i else hidden_dims, widths[i], kernel_size, 2**i, final=i == depth)
                for i in range(len(widths))
            )
        )
        self.dropout = nn.Dropout(dropout)
        self.num_features = output_dims

    def sequence(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, C, T) -> representations (B, T, output_dims) and the valid steps (B, T)."""
        valid = valid_steps(x, mask)
        h = self.input_fc(torch.nan_to_num(x, nan=0.0).transpose(1, 2))  # B x T x hidden
        keep = valid
        if self.training and self.mask_mode == "binomial":
            keep = keep & (torch.rand(keep.shape, device=x.device) < self.mask_p)
        h = h * keep[..., None].to(h.dtype)
        h = self.dropout(self.blocks(h.transpose(1, 2))).transpose(1, 2)
        return h, valid

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return masked_max_pool(*self.sequence(x, mask))
