"""The methods with cross-rank state, trained by `contrastlab fit` under 2-process CPU DDP: SwAV (Sinkhorn-Knopp's
all-reduced sums, a queue per rank), DINO (the all-reduced centre) and G-SimCLR (both ranks' samples clustered).

One launch serves all three (tests/methods/ddp_fits.py): a pair of gloo processes runs the three fits in turn through
the CLI's own `main`, each in a folder and store of its own, so the interpreters' imports and the process group are
paid once rather than per method. Each method's checks then read its own run and checkpoint. That the reductions
give one process's result on the whole batch is tests/modules/test_distributed.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from contrastlab.platform.checkpoints import load_weights_only
from tests.conftest import REPO, give_store, store_client
from tests.learning import build, logged_finite, untrained_weights
from tests.methods.conftest import method_config, only_run
from tests.methods.ddp_fits import PLAN

DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
QUIET = ["--tracking.system_metrics_interval", "0", "--test_after_fit", "false"]
# SwAV and DINO: two epochs of two steps on each rank, so SwAV's prototypes (frozen in the first epoch) and DINO's
# last layer move once, and SwAV's queue of 64 fills in two steps of 32 and is scored from the third. No validation:
# it is the same under DDP for every method (tests/platform/test_cli.py), and it would double these fits.
SHORT = [
    *("--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0"),
    *("--data.init_args.batch_size", "32", "--model.init_args.proj_hidden_dim", "64"),
]
# G-SimCLR: one epoch of 4 steps of 128 per rank, clustered at its end (refresh_every 1), with a tiny net.
TINY = [
    *("--model.init_args.proj_hidden_dim", "32", "--model.init_args.proj_dim", "16"),
    *("--model.init_args.backbone_kwargs", "{widths: [8, 16, 32]}", "--data.init_args.batch_size", "128"),
    *("--tracking.log_checkpoints", "false", "--trainer.max_epochs", "1", "--model.init_args.refresh_every", "1"),
    *("--trainer.check_val_every_n_epoch", "2"),
]
FITS = {
    "swav": [*SHORT, "--model.init_args.queue_size", "64"],
    "dino": [*SHORT, "--model.init_args.out_dim", "128"],
    "gsimclr": TINY,
}


def fit_args(method: str) -> list[str]:
    return ["-c", str(method_config(method)), *DDP, *QUIET, *FITS[method]]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """The folder of each method's fit, all three made by one 2-process launch."""
    root = tmp_path_factory.mktemp("ddp")
    folders = {method: give_store(root / method) for method in FITS}
    plan = [
        [str(folder), ["fit", *fit_args(method), "--tracking.uri", f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"]]
        for method, folder in folders.items()
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {PLAN: json.dumps(plan)}
    helper = REPO / "tests" / "methods" / "ddp_fits.py"
    done = subprocess.run([sys.executable, str(helper)], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return folders


def trained_under_ddp(folder):
    run = only_run(folder)
    assert run.info.status == "FINISHED" and run.data.params["trainer.devices"] == "2"
    return run, folder / "checkpoints" / "digits" / run.info.run_id / "last.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["swav", "dino"])
def test_multi_crop_method_trains_under_two_process_ddp(method, ddp_runs):
    folder = ddp_runs[method]
    run, ckpt = trained_under_ddp(folder)
    assert logged_finite(run.data.metrics["train/loss_epoch"])
    artifacts = {a.path for a in store_client(folder).list_artifacts(run.info.run_id)}
    assert "views.png" in artifacts  # the preview draws global and local crops alike
    untrained = build(fit_args(method))[0]
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


@pytest.mark.slow
def test_gsimclr_clusters_both_ranks_samples_into_its_checkpoint(ddp_runs):
    """Each rank sees half of the epoch (4 steps of 128 here); the bank gathers both halves, so rank 0 clusters
    the 1,024 samples of the global batches, not its own 512, broadcasts the labels, and the checkpoint (what
    --resume restores) holds them by dataset index."""
    run, checkpoint = trained_under_ddp(ddp_runs["gsimclr"])
    assert run.data.metrics["train/clustered"] == 4 * 2 * 128
    state = load_weights_only(checkpoint)["state_dict"]
    labels, seen = state["pseudo_labels.labels"], state["pseudo_labels.seen"]
    assert seen.sum() == 4 * 2 * 128 and ((labels >= 0) == seen).all() and len(labels[seen].unique()) == 10
