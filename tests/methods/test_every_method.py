"""Every shipped digits config, built as the CLI builds it and trained for a few steps on one batch, in-process.

For each method (every `configs/*/digits.yaml`, plus SimSiam's DirectPred predictor, and wav2vec 2.0's FSDD config
on synthesised spoken digits): the training loss falls
on that batch, gradients reach the backbone (its weights move and stay finite), and a checkpoint saved by
the trainer loads (`weights_only`) into a freshly built model that then gives the same features.

How well a method learns (kNN against the random-init backbone after epochs of training) is measured by
`benchmarks/methods.py`, not here: a quality run per method costs minutes, a step check seconds.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from contrastlab.modules.core.base import ContrastiveModule
from tests.conftest import REPO
from tests.learning import parsed_run

STEPS = 8
BATCH = 32
# Smaller heads and memories than the configs ship, where a config has the key: the checks below do not
# depend on width, and a queue of 1024 keys of one repeated batch would be mostly copies of it.
SMALL = {"proj_hidden_dim": 64, "proj_dim": 32, "pred_hidden_dim": 64, "queue_size": 64}
# No warm-up and no decay: every one of the few steps learns at the config's lr.
CONSTANT_LR = ["--model.init_args.optimizer.warmup_epochs", "0", "--model.init_args.optimizer.min_lr_ratio", "1"]
# As configs/simsiam/digits.yaml says to run DirectPred: its predictor is set, not trained, so no 10x lr for it.
DIRECTPRED = [
    *("--model.init_args.predictor", "directpred", "--model.init_args.optimizer.lr", "0.001"),
    *("--model.init_args.optimizer.predictor_lr_ratio", "1"),
]
# MSC's config adapts a pretrained encoder gently (lr 1e-4); from random init, a few steps need a larger one.
MSC_FROM_SCRATCH = ["--model.init_args.optimizer.lr", "0.003"]
# DINO's loss is a cross-entropy to targets that move: the teacher (an EMA of the student) and its centre. From
# random init over a few steps, they move faster than the student fits them and the loss rises toward log K (the
# paper's curves rise early too). Here they are held (momentum 1, a centre that barely moves, no temperature warm-up)
# so that a falling loss says the student learns its targets; the centre's statistics are tests/modules/
# test_distributed.py's, the EMA tests/modules/test_momentum.py's, and DINO's DDP fit
# tests/methods/test_ddp_methods.py's.
DINO_HELD_TARGETS = [
    *("--model.init_args.momentum", "1.0", "--model.init_args.final_momentum", "null"),
    *("--model.init_args.center_momentum", "0.999", "--model.init_args.teacher_temperature_warmup_epochs", "0"),
]
# The multi-crop methods encode 6 views a step and CACR and G-SimCLR weigh or cluster every pair: at small_cnn's
# width (64-128-256) they were a minute of this file's time. A quarter of the width still checks what the test
# promises (the loss falls, every backbone weight trains, the checkpoint round-trips).
NARROW = ["--model.init_args.backbone_kwargs", "{widths: [16, 32, 64]}"]
CONFIGS = {p.parent.name: p for p in sorted((REPO / "configs").glob("*/digits.yaml"))}
EXTRA = {
    "simsiam-directpred": ("simsiam", DIRECTPRED),
    "msc": ("msc", MSC_FROM_SCRATCH),
    "dino": ("dino", [*DINO_HELD_TARGETS, *NARROW]),
    "swav": ("swav", NARROW),
    "cacr": ("cacr", NARROW),
    "gsimclr": ("gsimclr", NARROW),
}
# wav2vec 2.0 learns from raw audio: its FSDD config on the espeak-ng spoken digits (tests/speech.py), half-second
# clips (25 latent steps), a tiny encoder and codebooks.
AUDIO = {
    "wav2vec2": (
        REPO / "configs" / "wav2vec2" / "fsdd.yaml",
        [
            *("--data.init_args.test_takes", "1", "--data.init_args.duration", "0.5"),
            *("--model.init_args.codebook_entries", "16", "--model.init_args.codebook_dim", "16"),
            *("--model.init_args.final_dim", "16", "--model.init_args.optimizer.lr", "0.002"),
            "--model.init_args.backbone_kwargs",
            "{strides: [5, 4, 2, 2, 2], conv_width: 16, dim: 16, layers: 1, heads: 2, ffn_dim: 32, pos_kernel: 5, "
            "pos_groups: 2}",
        ],
    )
}
CASES = (
    {name: (path, []) for name, path in CONFIGS.items()} | {k: (CONFIGS[c], a) for k, (c, a) in EXTRA.items()} | AUDIO
)
# What a method logs beside its loss, so a user can see what drives it (all methods log train/loss).
ALSO_LOGGED = {
    "vicreg": {"train/invariance", "train/variance", "train/covariance"},
    "mocov2": {"train/momentum"},
    "mocov3": {"train/momentum"},
    "byol": {"train/momentum"},
    "wav2vec2": {"train/contrastive", "train/diversity", "train/gumbel_temperature"},
    "dino": {"train/momentum", "train/teacher_temperature"},
}
# MoCo's queue starts empty, so its first step has no negatives: a loss of 0 and no gradient.
EMPTY_FIRST_STEP = {"mocov2"}


def overrides(config: Path) -> list[str]:
    """The command-line options that shrink `config` to a step test: small heads, one batch of BATCH."""
    shipped = yaml.safe_load(config.read_text())["model"]["init_args"]
    args = ["--data.init_args.batch_size", str(BATCH), *CONSTANT_LR]
    for key, value in SMALL.items():
        if key in shipped:
            args += [f"--model.init_args.{key}", str(value)]
    return args


def build(config: Path, extra: list[str]) -> tuple[ContrastiveModule, L.LightningDataModule]:
    """The model and data of `config` through the run CLI's parser, as `contrastlab fit -c config` builds them."""
    cli = parsed_run(["-c", str(config), *overrides(config), *extra])
    return cli.model, cli.datamodule


class StepRecord(L.Callback):
    """The method's own loss at each step (without the probe's), and whether the backbone got a gradient.

    It also reseeds the RNG before each step's batch is augmented (an epoch is one step here), so every step
    sees the same views of the same batch and a falling loss is the model fitting them, not augmentation noise.
    """

    def __init__(self):
        self.losses: list[float] = []
        self.backbone_grads: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        torch.manual_seed(0)

    def on_after_backward(self, trainer, module):
        grads = [p.grad.norm() for p in module.backbone.parameters() if p.grad is not None]
        self.backbone_grads.append(float(torch.stack(grads).norm()) if grads else 0.0)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(trainer.callback_metrics["train/loss_step"]))


def one_batch_trainer(record: StepRecord) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=STEPS,  # overfit_batches=1: an epoch is the same one batch
        overfit_batches=1,
        check_val_every_n_epoch=STEPS + 1,  # no validation: the CLI smoke tests run it
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[record],
    )


@pytest.mark.parametrize("name", CASES)
def test_a_few_steps_on_one_batch(name, tmp_path, monkeypatch, request):
    config, extra = CASES[name]
    if name in AUDIO:
        extra = ["--data.init_args.root", str(request.getfixturevalue("spoken_digits")), *extra]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["contrastlab"])
    model, data = build(config, extra)
    start = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    record = StepRecord()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*overfit.*|.*does not have many workers.*")
        trainer = one_batch_trainer(record)
        trainer.fit(model, data)

    # the loss falls on the views it keeps seeing
    first = 1 if name in EMPTY_FIRST_STEP else 0
    assert not first or record.losses[0] == 0.0, record.losses
    losses, grads = record.losses[first:], record.backbone_grads[first:]
    assert len(record.losses) == STEPS and torch.isfinite(torch.tensor(losses)).all(), losses
    assert losses[-1] < losses[0] - 0.1 and sum(losses[-3:]) < sum(losses[:3]), f"{name}: no fall: {losses}"
    assert ALSO_LOGGED.get(name, set()) <= set(trainer.callback_metrics)
    # gradients reach the backbone, and every weight of it moved (not only BatchNorm's running statistics)
    assert all(g > 0 for g in grads), grads
    still = [k for k, v in model.backbone.named_parameters() if torch.equal(v, start[k])]
    assert not still, f"{name}: backbone weights that did not train: {still}"
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())

    # a checkpoint is data: it loads with weights_only into a fresh model, which then embeds as the trained one
    path = tmp_path / "step.ckpt"
    trainer.save_checkpoint(path)
    fresh, _ = build(config, extra)
    batch = next(iter(data.eval_loader("test")))
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh.embed(batch), model.embed(batch)), "the fresh model already embeds the same"
        fresh.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
        assert torch.equal(fresh.embed(batch), model.embed(batch))
    trained = model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())
