"""wav2vec 2.0 through the CLI, as a user runs it: configs/wav2vec2/fsdd.yaml on espeak-ng spoken digits with a tiny
encoder trains, logs its two losses and its Gumbel temperature, and `contrastlab eval` evaluates the run's checkpoint
like any audio run's; and the mistakes of its keys are one line. Its losses and nets are tested in
tests/modules/test_wav2vec2.py, a few steps of it in test_every_method.py; how well it learns on FSDD is
benchmarks/cpc.py's job (`wav2vec2`)."""

from __future__ import annotations

import pytest

from tests.conftest import in_process_store, store_client, the_error_line
from tests.learning import logged_finite
from tests.methods.conftest import method_config
from tests.methods.test_every_method import AUDIO


def spoken(root) -> list[str]:
    """The spoken digits (take 0 is test) with the tiny encoder of test_every_method.py, 2 steps of 32."""
    return [
        *("-c", str(method_config("wav2vec2", "fsdd")), "--data.init_args.root", str(root), *AUDIO["wav2vec2"][1]),
        *("--data.init_args.batch_size", "32", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"),
        *("--trainer.check_val_every_n_epoch", "2", "--trainer.log_every_n_steps", "1", "--test_after_fit", "false"),
        *("--tracking.log_checkpoints", "false"),
    ]


def test_wav2vec2_trains_on_spoken_digits_and_is_evaluated_by_contrastlab_eval(spoken_digits, tmp_path, cli_here):
    """Every weight moving is test_every_method.py's check; here, what a user sees: the run and its evaluation."""
    code, err = cli_here("fit", *spoken(spoken_digits), *in_process_store(tmp_path), cwd=tmp_path)
    assert code == 0, err[-3000:]
    client = store_client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("fsdd").experiment_id])
    metrics = run.data.metrics
    assert (run.data.tags["modality"], run.data.tags["backbone"]) == ("audio", "wav2vec2")
    assert all(logged_finite(metrics[f"train/{k}_epoch"]) for k in ("loss", "contrastive", "diversity"))
    assert 0 <= metrics["train/diversity_epoch"] <= 1 and metrics["train/gumbel_temperature_step"] < 2.0

    # the learned features only: the baselines beside them are tests/eval's subject
    evaluate = ["eval", "--run", run.info.run_id, "--protocols", "knn", "--tsne-points", "0", "--baselines", "none"]
    code, err = cli_here(*evaluate, *in_process_store(tmp_path)[:2], cwd=tmp_path)
    assert code == 0, err[-3000:]
    evaluated = client.get_run(run.info.run_id).data.metrics
    assert 0 < evaluated["eval/knn/top1_k1"] <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model.init_args.backbone", "cpc", "--model.init_args.backbone_kwargs", "null"],
            "needs the wav2vec2 encoder",
        ),
        (
            [
                "--model.init_args.backbone_kwargs",
                "{strides: [40, 40], conv_width: 8, dim: 8, heads: 2, pos_groups: 2}",
            ],
            "give 1 latent step(s)",
        ),
    ],
    ids=["backbone", "strides"],
)
def test_wav2vec2_mistakes_are_one_line(args, message, spoken_digits, tmp_path, cli_here):
    full = ["fit", *spoken(spoken_digits), *args, *in_process_store(tmp_path)]
    assert message in the_error_line(*cli_here(*full, cwd=tmp_path))
