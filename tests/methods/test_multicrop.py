"""Multi-crop through the CLI: SwAV and DINO train under 2-process DDP with their shipped digits configs (2 global
+ 4 local crops), and methods that cannot take views of several sizes, or GradCache, refuse them in one line."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import DIGITS_CONFIG, in_process_store, run_cli, store_client, the_error_line
from tests.learning import build, logged_finite, untrained_weights
from tests.methods.conftest import method_config, only_run

LOCAL_CROPS = [
    "--model.init_args.augment.init_args.local_crops",
    "2",
    "--model.init_args.augment.init_args.local_size",
    "6",
]


def test_a_method_of_one_view_size_refuses_local_crops_in_one_line(tmp_path, cli_here):
    args = ["fit", "-c", str(DIGITS_CONFIG), *LOCAL_CROPS, *in_process_store(tmp_path)]
    line = the_error_line(*cli_here(*args, cwd=tmp_path))
    assert "model.augment: SimCLR takes views of one size" in line and "2 local of (1, 6, 6)" in line


def test_grad_cache_refuses_multi_crop_in_one_line(tmp_path, cli_here):
    args = ["fit", "-c", str(DIGITS_CONFIG), *LOCAL_CROPS, "--model.init_args.grad_cache_chunk", "16"]
    line = the_error_line(*cli_here(*args, *in_process_store(tmp_path), cwd=tmp_path))
    assert "model.init_args.grad_cache_chunk: GradCache encodes views of one size" in line and "multi-crop" in line


# Two epochs of two steps on each rank: SwAV's prototypes (frozen in the first epoch) and DINO's last layer then
# move once; SwAV's queue of 64 fills in two steps of 32 and is scored from the third. No validation: it is the
# same under DDP for every method (tests/platform/test_cli.py), and it would double these fits.
SHORT_DDP = [
    *("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"),
    *("--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0"),
    *("--data.init_args.batch_size", "32", "--model.init_args.proj_hidden_dim", "64", "--test_after_fit", "false"),
    *("--tracking.system_metrics_interval", "0"),
]
EXTRA = {"swav": ["--model.init_args.queue_size", "64"], "dino": ["--model.init_args.out_dim", "128"]}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["swav", "dino"])
def test_multi_crop_method_trains_under_two_process_ddp(method, tmp_path):
    args = ["-c", str(method_config(method)), *SHORT_DDP, *EXTRA[method]]
    run_cli("fit", *args, cwd=tmp_path)
    run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.params["trainer.devices"] == "2"
    assert logged_finite(run.data.metrics["train/loss_epoch"])
    artifacts = {a.path for a in store_client(tmp_path).list_artifacts(run.info.run_id)}
    assert "views.png" in artifacts  # the preview draws global and local crops alike
    ckpt = tmp_path / "checkpoints" / "digits" / run.info.run_id / "last.ckpt"
    untrained = build(args)[0]
    assert not untrained_weights(untrained, ckpt), "backbone weights that did not train"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    start = untrained.state_dict()
    if method == "swav":
        # the queues hold 64 normalised embeddings each; the prototypes moved in the second epoch only
        assert all(int(state[f"queues.{i}.filled"]) == 64 for i in range(2))
        assert not torch.equal(state["prototypes.weight"], start["prototypes.weight"])
    else:
        # the centre: a running mean of the teacher's outputs over both ranks' batches, moved from zero
        assert torch.isfinite(state["center"]).all() and state["center"].abs().sum() > 0
        last = "head.last_layer.parametrizations.weight.original1"
        assert not torch.equal(state[last], start[last])
