"""wav2vec 2.0 (Baevski et al. 2020, "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations")."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from contrastlab.contract import Batch
from contrastlab.errors import ConfigError
from contrastlab.modules import losses
from contrastlab.modules.core import checks
from contrastlab.modules.core.base import ContrastiveModule
from contrastlab.modules.nets.wav2vec2 import GumbelQuantizer, span_mask


class Wav2Vec2(ContrastiveModule):
    """One view of raw audio; latents z = f(x); spans of latent steps are masked and the Transformer's context c
    at each masked step must pick that step's quantised latent q among `num_distractors` distractors from the
    other masked steps of the same clip (`losses.wav2vec2_contrastive`), plus `diversity_weight` times the
    codebook diversity loss (`losses.codebook_diversity`).

    The Gumbel-softmax temperature falls from `gumbel_temperature[0]` by the factor `[2]` each optimiser step to
    at least `[1]` (the paper: 2, 0.5, 0.999995), read from the trainer's step, so it is right after --resume.
    The backbone must be `wav2vec2` (`modules/nets/wav2vec2.py`); what kNN, the probe and `contrastlab eval`
    read is its unmasked context averaged over the clip. fairseq's feature penalty and scaled-down encoder
    gradient are left out.

    Args:
        mask_prob, mask_length: the chance of a step starting a masked span and the span's length (0.65, 10).
        num_distractors: K (100).
        temperature: k of the contrastive task (0.1).
        diversity_weight: alpha (0.1).
        codebook_groups, codebook_entries, codebook_dim: G, V and the quantised vector's size (2, 320, 256).
        final_dim: the space where context and quantised latents are compared (256).
        gumbel_temperature: (start, end, decay per step).
    """

    def __init__(
        self,
        mask_prob: float = 0.65,
        mask_length: int = 10,
        num_distractors: int = 100,
        temperature: float = 0.1,
        diversity_weight: float = 0.1,
        codebook_groups: int = 2,
        codebook_entries: int = 320,
        codebook_dim: int = 256,
        final_dim: int = 256,
        gumbel_temperature: Sequence[float] = (2.0, 0.5, 0.999995),
        backbone: str = "wav2vec2",
        **base,
    ):
        checks.positive("temperature", temperature)
        checks.non_negative("diversity_weight", diversity_weight)
        if not 0 < mask_prob <= 1 or mask_length < 1 or num_distractors < 1:
            raise ConfigError(
                f"model.init_args: wav2vec 2.0 needs 0 < mask_prob <= 1, mask_length >= 1 and num_distractors >= 1; "
                f"got {mask_prob}, {mask_length}, {num_distractors}"
            )
        start, end, decay = gumbel_temperature
        if not 0 < end <= start or not 0 < decay <= 1:
            raise ConfigError(
                f"model.init_args.gumbel_temperature=[start, end, decay] needs 0 < end <= start and 0 < decay <= 1, "
                f"got {list(gumbel_temperature)}"
            )
        super().__init__(backbone=backbone, **base)
        if not callable(getattr(self.backbone, "latents", None)):
            raise ConfigError(
                f"model.backbone: wav2vec 2.0 needs the wav2vec2 encoder (latents and context), not {backbone!r}"
            )
        views = self.augment.view_info(self.data_info) if hasattr(self.augment, "view_info") else self.data_info
        length = views.shape[-1]
        if length and self.backbone.num_steps(length) < 2:
            raise ConfigError(
                f"model.backbone_kwargs.strides: views of {length} samples give {self.backbone.num_steps(length)} "
                "latent step(s), and a masked step needs another as its distractor; use smaller strides"
            )
        self.quantizer = GumbelQuantizer(self.backbone.latent_dim, codebook_groups, codebook_entries, codebook_dim)
        self.project_quantised = nn.Linear(codebook_dim, final_dim)
        self.project_context = nn.Linear(self.backbone.num_features, final_dim)

    @property
    def gumbel_temperature(self) -> float:
        start, end, decay = self.hparams.gumbel_temperature
        return max(start * decay**self.global_step, end)

    def encode(self, batch: Batch, views: list[Tensor]) -> list[Tensor]:
        """While training, the masked pass: its latents, mask and context go to `batch["steps"]`, the clip's mean
        context is returned; otherwise the backbone's unmasked features."""
        if not self.training:
            return [self.backbone(v) for v in views]
        hp, steps = self.hparams, []
        for view in views:
            z = self.backbone.latents(view)
            mask = span_mask(z.shape[0], z.shape[1], hp.mask_prob, hp.mask_length, device=z.device)
            steps.append((z, mask, self.backbone.context(z, mask)))
        batch["steps"] = steps
        return [c.mean(dim=1) for _, _, c in steps]

    def contrastive_loss(self, feats: list[Tensor], batch: Batch) -> Tensor:
        z, mask, c = batch["steps"][0]
        b = z.shape[0]
        quantised, probs = self.quantizer(z[mask], self.gumbel_temperature)
        targets = self.project_quantised(quantised).view(b, -1, self.hparams.final_dim)
        context = self.project_context(c[mask]).view(b, -1, self.hparams.final_dim)
        distractors = losses.sample_distractors(b, targets.shape[1], self.hparams.num_distractors, z.device)
        contrastive = losses.wav2vec2_contrastive(context, targets, distractors, self.hparams.temperature)
        diversity = losses.codebook_diversity(probs)
        self.log_dict(
            {
                "train/contrastive": contrastive,
                "train/diversity": diversity,
                "train/gumbel_temperature": self.gumbel_temperature,
            },
            on_step=True,
            on_epoch=True,
            batch_size=b,
        )
        return contrastive + self.hparams.diversity_weight * diversity
