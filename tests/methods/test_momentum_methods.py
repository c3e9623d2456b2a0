"""MoCo v2, MoCo v3, BYOL, SimSiam (and DirectPred) and NNCLR through the CLI, as a user runs them.

Each trains on digits from its own config, shortened to EPOCHS, in a temporary MLflow store, and must
beat the random-init backbone's kNN by MARGIN; bad settings end with one error line before training.
"""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
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


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("contrastlab: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("method", ["mocov2", "nnclr"])
def test_a_queue_larger_than_the_training_set_is_refused_before_training(method, tmp_path):
    proc = run_cli(
        "fit", "-c", str(method_config(method)), "--model.init_args.queue_size", "5000", cwd=tmp_path, check=False
    )
    assert_one_line_error(proc, "model.init_args.queue_size=5000", "1257 training samples of digits")
    assert "train/loss" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("method, key", [("byol", "momentum"), ("mocov3", "final_momentum"), ("mocov2", "momentum")])
def test_a_momentum_outside_0_1_is_refused(method, key, tmp_path):
    proc = run_cli(
        "fit", "-c", str(method_config(method)), f"--model.init_args.{key}", "1.5", cwd=tmp_path, check=False
    )
    assert_one_line_error(proc, f"model.init_args.{key} must be in [0, 1], got 1.5")


def test_a_predictor_lr_ratio_for_directpred_is_refused(tmp_path):
    """The SimSiam config trains its MLP predictor at 10x the lr; DirectPred's predictor is not trained."""
    proc = run_cli("fit", "-c", str(method_config("simsiam")), *DIRECTPRED, cwd=tmp_path, check=False)
    assert_one_line_error(proc, "model.optimizer.predictor_lr_ratio=10.0", "remove the key")
    assert "train/loss" not in proc.stdout + proc.stderr
