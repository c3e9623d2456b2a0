"""CACR and G-SimCLR through the CLI, as a user runs them: G-SimCLR's clustering under 2-process DDP (both ranks'
samples clustered into a checkpoint) and a CACR mistake as one line. Their losses are tested in
tests/modules/test_guided_losses.py, the pseudo-labels in tests/modules/test_clusters.py, a few steps of each digits
config in test_every_method.py; how well they learn is benchmarks/methods.py's job."""

from __future__ import annotations

import pytest

from contrastlab.platform.checkpoints import load_weights_only
from tests.conftest import in_process_store, run_cli, the_error_line
from tests.methods.conftest import method_config, only_run

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
TINY = [
    *("--model.init_args.proj_hidden_dim", "32", "--model.init_args.proj_dim", "16"),
    *("--model.init_args.backbone_kwargs", "{widths: [8, 16, 32]}", "--data.init_args.batch_size", "128"),
    *("--tracking.system_metrics_interval", "0", "--tracking.log_checkpoints", "false", "--test_after_fit", "false"),
]


@pytest.mark.slow
def test_gsimclr_clusters_both_ranks_samples_into_its_checkpoint(tmp_path):
    """Each rank sees half of the epoch (4 steps of 128 here); the bank gathers both halves, so rank 0 clusters
    the 1,024 samples of the global batches, not its own 512, broadcasts the labels, and the checkpoint (what
    --resume restores) holds them by dataset index."""
    args = ["-c", str(method_config("gsimclr")), *DDP, *TINY, "--trainer.max_epochs", "1"]
    run_cli(
        "fit", *args, "--model.init_args.refresh_every", "1", "--trainer.check_val_every_n_epoch", "2", cwd=tmp_path
    )
    run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.metrics["train/clustered"] == 4 * 2 * 128
    checkpoint = tmp_path / "checkpoints" / "digits" / run.info.run_id / "last.ckpt"
    state = load_weights_only(checkpoint)["state_dict"]
    labels, seen = state["pseudo_labels.labels"], state["pseudo_labels.seen"]
    assert seen.sum() == 4 * 2 * 128 and ((labels >= 0) == seen).all() and len(labels[seen].unique()) == 10


def test_a_cacr_mistake_is_one_line(tmp_path, cli_here):
    """The keys' other refusals are unit-tested in tests/modules/test_clusters.py."""
    args = ["fit", "-c", str(method_config("cacr")), "--model.init_args.augment.init_args.num_views", "1"]
    line = the_error_line(*cli_here(*args, *in_process_store(tmp_path), cwd=tmp_path))
    assert "model.augment.init_args.num_views=1: CACR contrasts views of each sample; give at least 2" in line
