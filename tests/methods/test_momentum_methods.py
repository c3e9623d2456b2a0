"""MoCo v2, MoCo v3, BYOL, SimSiam (and DirectPred) and NNCLR through the CLI, as a user runs them.

Each trains on digits from its own config, shortened to EPOCHS, in a temporary MLflow store, and must
beat the random-init backbone's kNN by MARGIN; bad settings end with one error line before training.
"""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, the_error_line
from tests.methods.conftest import method_config, only_run

EPOCHS = "12"
MARGIN = 0.015  # over the random-init kNN top-1 (about 0.933): 5-6 more of the 360 test digits right
SHORT = [
    "--trainer.max_epochs",
    EPOCHS,
    "--trainer.check_val_every_n_epoch",
    EPOCHS,
    "--tracking.system_metrics_interval",
    "0",
    "--tracking.log_checkpoints",
    "false",
]
DIRECTPRED = ["--model.init_args.predictor", "directpred", "--model.init_args.optimizer.lr", "0.001"]
RUNS = {
    "mocov2": ("mocov2", []),
    "mocov3": ("mocov3", []),
    "byol": ("byol", []),
    "simsiam": ("simsiam", []),
    "simsiam-directpred": ("simsiam", [*DIRECTPRED, "--model.init_args.optimizer.predictor_lr_ratio", "1"]),
    "nnclr": ("nnclr", []),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNS)
def test_method_beats_the_random_init_backbone_on_digits(name, tmp_path, random_init_knn):
    method, extra = RUNS[name]
    run_cli("fit", "-c", str(method_config(method)), *SHORT, *extra, cwd=tmp_path)
    run = only_run(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.tags["method"] == method
    if method in ("mocov2", "mocov3", "byol"):
        assert "train/momentum" in run.data.metrics
    knn = run.data.metrics["test/knn_top1"]
    assert knn >= random_init_knn + MARGIN, f"{name}: test kNN {knn:.4f} vs random init {random_init_knn:.4f}"


# One CLI run per kind of refusal: every method's value checks are unit-tested in tests/modules (test_momentum.py,
# test_memory.py); these show the check fires from a config, before training, as one line.
def test_a_queue_larger_than_the_training_set_is_refused_before_training(tmp_path, cli_here):
    code, stderr = cli_here(
        "fit", "-c", str(method_config("mocov2")), "--model.init_args.queue_size", "5000", cwd=tmp_path
    )
    line = the_error_line(code, stderr)
    assert "model.init_args.queue_size=5000" in line and "1257 training samples of digits" in line
    assert "train/loss" not in stderr


def test_a_momentum_outside_0_1_is_refused(tmp_path, cli_here):
    args = ("fit", "-c", str(method_config("mocov3")), "--model.init_args.final_momentum", "1.5")
    assert "model.init_args.final_momentum must be in [0, 1], got 1.5" in the_error_line(*cli_here(*args, cwd=tmp_path))


def test_a_predictor_lr_ratio_for_directpred_is_refused(tmp_path, cli_here):
    """The SimSiam config trains its MLP predictor at 10x the lr; DirectPred's predictor is not trained."""
    code, stderr = cli_here("fit", "-c", str(method_config("simsiam")), *DIRECTPRED, cwd=tmp_path)
    line = the_error_line(code, stderr)
    assert "model.optimizer.predictor_lr_ratio=10.0" in line and "remove the key" in line
    assert "train/loss" not in stderr
