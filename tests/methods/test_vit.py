"""ViT backbones from timm on small images: a ViT SimCLR run on digits trains, resumes and is evaluated through
the CLI; MoCo v3 (its patch embedding frozen at random), DINO and SwAV (multi-crop: two view sizes) take one too."""

from __future__ import annotations

import sys
import warnings

import lightning as L
import pytest
import torch

from tests.conftest import DIGITS_CONFIG, in_process_store, store_client
from tests.learning import build, untrained_weights
from tests.methods.conftest import method_config, only_run

# vit_tiny's recipe cut to 8 px digits: 2 px patches (16 tokens), 1 block of width 48
VIT = "{img_size: 8, patch_size: 2, depth: 1, embed_dim: 48, num_heads: 3}"
VIT_ARGS = ["--model.init_args.backbone", "vit_tiny_patch16_224", "--model.init_args.backbone_kwargs", VIT]
SMALL = [
    *("--data.init_args.batch_size", "64", "--data.init_args.max_train_samples", "128"),
    *("--model.init_args.proj_hidden_dim", "64", "--trainer.check_val_every_n_epoch", "1"),
    *("--test_after_fit", "false"),
]


def test_a_vit_simclr_run_on_digits_trains_resumes_and_is_evaluated(tmp_path, cli_here):
    args = ["-c", str(DIGITS_CONFIG), *VIT_ARGS, *SMALL, *in_process_store(tmp_path)]
    code, err = cli_here("fit", *args, "--trainer.max_epochs", "1", cwd=tmp_path)
    assert code == 0, err[-3000:]
    first = only_run(tmp_path)
    code, err = cli_here("fit", *args, "--trainer.max_epochs", "2", "--resume", cwd=tmp_path)
    assert code == 0, err[-3000:]
    run = only_run(tmp_path)  # the resume continued the run
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    ckpt = tmp_path / "checkpoints" / "digits" / run.info.run_id / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 2 * 128 // 64
    assert not untrained_weights(build(args)[0], ckpt), "ViT weights that did not train"

    code, err = cli_here(
        "eval",
        "--run",
        run.info.run_id,
        "--protocols",
        "knn",
        "--k",
        "5",
        "--tsne-points",
        "0",
        "--baselines",
        "none",
        cwd=tmp_path,  # the learned features only: baselines are tests/eval's subject
    )
    assert code == 0, err[-3000:]
    metrics = store_client(tmp_path).get_run(run.info.run_id).data.metrics
    # evaluated from the run's checkpoint, ViT and all: how well 4 steps learn is not this test's question
    assert 0.0 <= metrics["eval/knn/top1_k5"] <= 1.0


MULTI_CROP_VIT = "{img_size: 8, patch_size: 2, depth: 1, embed_dim: 24, num_heads: 2, dynamic_img_size: true}"
ACCEPT = {
    "mocov3": ["--model.init_args.freeze_patch_embed", "true", "--model.init_args.pred_hidden_dim", "64"],
    "dino": ["--model.init_args.backbone_kwargs", MULTI_CROP_VIT, "--model.init_args.out_dim", "64"],
    "swav": ["--model.init_args.backbone_kwargs", MULTI_CROP_VIT],
}


@pytest.mark.parametrize("method", ACCEPT)
def test_moco_v3_dino_and_swav_train_a_vit(method, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["contrastlab"])
    args = ["-c", str(method_config(method)), *VIT_ARGS, *ACCEPT[method], "--model.init_args.proj_hidden_dim", "64"]
    model, data = build(args)
    start = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    held = {"swav": "prototypes.weight", "dino": "head.last_layer.parametrizations.weight.original1"}.get(method)
    held_start = model.state_dict()[held].clone() if held else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer = L.Trainer(
            accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False
        )
        trainer.fit(model, data)
    moved = {k for k, v in model.backbone.named_parameters() if not torch.equal(v, start[k])}
    embedding = {k for k in start if k.startswith("patch_embed.")}
    if method == "mocov3":  # the patch projection stays random, in the online and the key encoder alike
        assert embedding and not moved & embedding and moved == set(start) - embedding
        key = dict(model.key_backbone.named_parameters())
        assert all(torch.equal(key[k], start[k]) for k in embedding)
    else:
        assert moved == set(start)
        # the one step is in the first epoch, where SwAV's prototypes (kept on the unit sphere) and DINO's last
        # layer stay still
        expected = torch.nn.functional.normalize(held_start, dim=1) if method == "swav" else held_start
        assert torch.allclose(model.state_dict()[held], expected, atol=1e-7)
