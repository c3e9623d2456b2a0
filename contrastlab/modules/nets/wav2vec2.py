"""wav2vec 2.0's nets (Baevski et al. 2020, "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations"): the convolutional feature encoder and Transformer context network, the Gumbel-softmax product
quantiser, and span masking of the latent steps. Written from the paper and read against fairseq's
models/wav2vec/wav2vec2.py and modules/gumbel_vector_quantizer.py.

As a backbone the encoder returns one vector per clip, the mean of the unmasked context over time, which is what
kNN, the probe and `contrastlab eval` read; `latents` and `context` expose the steps for the wav2vec 2.0 method.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastlab.errors import ConfigError
from contrastlab.modules.nets.registry import register_backbone


@register_backbone("wav2vec2", dims=1)
class Wav2Vec2Encoder(nn.Module):
    """f: X -> Z, strided 1-D convolutions (GroupNorm after the first, GELU), then LayerNorm; g: Z -> C, a linear
    map to the model width, a grouped convolution as relative positional embedding, and a Transformer.

    The paper's BASE at 16 kHz: 512 channels, strides (5, 2, 2, 2, 2, 2, 2), kernels (10, 3, 3, 3, 3, 2, 2) (one
    step every 20 ms), width 768, 12 layers, 8 heads, positional kernel 128 in 16 groups. At 8 kHz strides
    (5, 4, 2, 2, 2) give a step every 20 ms too.

    Args:
        in_chans: input channels (1 for mono audio).
        strides, kernels: one per conv layer, every kernel >= its stride (kernels default to 2*stride).
        conv_width: channels of the feature encoder (the latents' dimension).
        dim, layers, heads, ffn_dim: the Transformer's width, depth, attention heads and feed-forward width.
        pos_kernel, pos_groups: the positional convolution.
        dropout: of the Transformer.
    """

    def __init__(
        self,
        in_chans: int = 1,
        strides: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        kernels: Sequence[int] | None = None,
        conv_width: int = 512,
        dim: int = 768,
        layers: int = 12,
        heads: int = 8,
        ffn_dim: int = 3072,
        pos_kernel: int = 128,
        pos_groups: int = 16,
        dropout: float = 0.1,
    ):
        super().__init__()
        strides = [int(s) for s in strides]
        kernels = [2 * s for s in strides] if kernels is None else [int(k) for k in kernels]
        if not strides or len(kernels) != len(strides) or any(s < 1 or k < s for s, k in zip(strides, kernels)):
            raise ConfigError(
                f"model.backbone_kwargs: wav2vec2 needs one kernel per stride, every stride >= 1 and kernel >= its "
                f"stride; got strides {strides}, kernels {kernels}"
            )
        if dim % heads or dim % pos_groups:
            raise ConfigError(
                f"model.backbone_kwargs.dim={dim} must be a multiple of heads ({heads}) and pos_groups ({pos_groups})"
            )
        convs, channels = [], in_chans
        for i, (stride, kernel) in enumerate(zip(strides, kernels)):
            norm = [nn.GroupNorm(conv_width, conv_width)] if i == 0 else []  # fairseq's "default" mode
            convs += [nn.Conv1d(channels, conv_width, kernel, stride=stride, bias=False), *norm, nn.GELU()]
            channels = conv_width
        self.features = nn.Sequential(*convs)
        self.geometry = list(zip(kernels, strides))
        self.latent_norm = nn.LayerNorm(conv_width)
        self.project = nn.Linear(conv_width, dim)
        self.mask_embedding = nn.Parameter(torch.empty(dim).uniform_())
        self.position = nn.utils.parametrizations.weight_norm(
            nn.Conv1d(dim, dim, pos_kernel, padding=pos_kernel // 2, groups=pos_groups), dim=2
        )
        self.input_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout, activation="gelu", batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.latent_dim, self.num_features = conv_width, dim

    def num_steps(self, length: int) -> int:
        """Latent steps the feature encoder gives for `length` samples."""
        for kernel, stride in self.geometry:
            length = max(0, (length - kernel) // stride + 1)
        return length

    def latents(self, x: Tensor) -> Tensor:
        """z (B, S, conv_width): the feature encoder's steps, layer-normalised (the quantiser's input)."""
        return self.latent_norm(self.features(x).transpose(1, 2))

    def context(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        """c (B, S, dim) from the latents, the steps where `mask` (B, S) is True replaced by the learned mask
        embedding before the Transformer reads them."""
        h = self.project(z)
        if mask is not None:
            h = torch.where(mask[..., None], self.mask_embedding.to(h.dtype), h)
        position = F.gelu(self.position(h.transpose(1, 2))[..., : h.shape[1]]).transpose(1, 2)
        return self.transformer(self.dropout(self.input_norm(h + position)))

    def forward(self, x: Tensor) -> Tensor:
        return self.context(self.latents(x)).mean(dim=1)


class GumbelQuantizer(nn.Module):
    """The product quantiser: G codebooks of V entries of dim/G each; z picks one entry of each (a Gumbel-softmax
    sample while training, straight-through, so the choice is discrete forward and differentiable backward; the
    argmax otherwise), and the G entries are concatenated.

    Args:
        in_dim: the latents' dimension. groups, entries: G and V (the paper: 2 and 320). dim: of the quantised vector.
    """

    def __init__(self, in_dim: int, groups: int = 2, entries: int = 320, dim: int = 256):
        super().__init__()
        if dim % groups:
            raise ConfigError(f"model.init_args.codebook_dim={dim} must be a multiple of codebook_groups ({groups})")
        self.groups, self.entries = groups, entries
        self.logits = nn.Linear(in_dim, groups * entries)
        nn.init.normal_(self.logits.weight, std=1.0)
        nn.init.zeros_(self.logits.bias)
        self.codebooks = nn.Parameter(torch.rand(groups, entries, dim // groups))

    def forward(self, z: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        """The quantised vectors (N, dim) of z (N, in_dim), and the softmax over each codebook (N, G, V) without
        Gumbel noise (what the diversity loss averages)."""
        logits = self.logits(z).float().view(-1, self.groups, self.entries)
        if self.training:
            choice = F.gumbel_softmax(logits, tau=temperature, hard=True)
        else:
            choice = F.one_hot(logits.argmax(dim=-1), self.entries).to(logits.dtype)
        quantised = torch.einsum("ngv,gvd->ngd", choice, self.codebooks.float()).flatten(1)
        return quantised.to(z.dtype), logits.softmax(dim=-1)


def span_mask(batch: int, steps: int, prob: float, length: int, device=None) -> Tensor:
    """(batch, steps) bool: spans of `length` steps starting at about prob * steps / length random steps of each
    row (spans may overlap), then trimmed at random to the same count in every row, as fairseq's
    compute_mask_indices does, so the masked steps of a batch form a (batch, M, dim) block. At least 2 steps of
    each row are masked: a masked step's distractors are the others."""
    span = min(length, steps)
    starts = max(1, int(prob * steps / span + torch.rand(()).item()))
    starts = min(starts, steps - span + 1)
    begin = torch.rand(batch, steps - span + 1, device=device).argsort(dim=1)[:, :starts]
    covered = (begin[:, :, None] + torch.arange(span, device=device)).flatten(1)
    mask = torch.zeros(batch, steps, dtype=torch.bool, device=device).scatter_(1, covered, True)
    count = max(2, int(mask.sum(dim=1).min()))
    # keep `count` steps of each row: masked steps first, in random order
    order = (torch.rand(batch, steps, device=device) - mask.float() * 2).argsort(dim=1)[:, :count]
    return torch.zeros_like(mask).scatter_(1, order, True)
