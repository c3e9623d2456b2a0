"""MoCo v2, MoCo v3, BYOL, SimSiam (and DirectPred) and NNCLR through the CLI, as a user runs them: bad settings
end with one error line before training. Each digits config trains a few steps in test_every_method.py; how well
it learns (kNN against the random-init backbone) is benchmarks/methods.py's job."""

from __future__ import annotations

from tests.conftest import the_error_line
from tests.methods.conftest import method_config

DIRECTPRED = ["--model.init_args.predictor", "directpred", "--model.init_args.optimizer.lr", "0.001"]


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
