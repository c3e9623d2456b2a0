"""CPC through the CLI, as a user runs it, on tiny nets: configs/cpc/fsdd.yaml on espeak-ng spoken digits (a
two-trial sweep, then a trial resumed into its run), configs/cpc/ucr.yaml on an unequal-length UEA set (NaN-padded,
masked steps), and the mistakes of CPC's and the speaker config's keys. How well CPC learns (kNN against the
random-init encoder on FSDD) and the speaker embeddings' kNN are benchmarks/cpc.py's job."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import in_process_store, store_client, the_error_line
from tests.learning import build, logged_finite, untrained, untrained_weights
from tests.methods.conftest import method_config

TINY_ENCODER = "{strides: [5, 4, 2, 2, 2], width: 16, context_dim: 16}"
# One epoch, validated, nothing copied into the store that the test does not read.
QUICK = [
    *("--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1"),
    *("--tracking.log_checkpoints", "false"),
]
NO_TEST = ["--test_after_fit", "false"]


def spoken(root) -> list[str]:
    """The espeak-ng digits as FSDD (4 voices x 5 takes; take 0 is test), half-second clips, small batches."""
    return [
        *("--data.init_args.root", str(root), "--data.init_args.test_takes", "1"),
        *("--data.init_args.duration", "0.5", "--data.init_args.batch_size", "32"),
    ]


def epochs_logged(client, run_id: str) -> list[int]:
    return sorted({m.step for m in client.get_metric_history(run_id, "val/knn_top1")})


def test_a_cpc_sweep_trial_on_spoken_digits_resumes_into_its_run(spoken_digits, tmp_path, cli_here):
    """A one-trial sweep of configs/cpc/fsdd.yaml with a tiny encoder (one epoch; many trials and workers are
    tests/sweeps' subject), then the trial's run continued for a second epoch with `fit --resume RUN_ID`, as a
    user extends a trial."""
    base = yaml.safe_load(method_config("cpc", "fsdd").read_text())
    base["data"]["init_args"].update(root=str(spoken_digits), test_takes=1, duration=0.5, batch_size=32)
    base["model"]["init_args"]["backbone_kwargs"] = yaml.safe_load(TINY_ENCODER)
    sweep = {
        "name": "cpc-sweep",
        "base": base,
        "fixed": {
            **{"trainer.max_epochs": 1, "trainer.check_val_every_n_epoch": 1, "trainer.log_every_n_steps": 1},
            **{"tracking.system_metrics_interval": 0, "tracking.log_checkpoints": False, "test_after_fit": False},
        },
        "space": {"model.prediction_steps": {"type": "categorical", "choices": [2, 3]}},
        "objective": {"metric": "val/knn_top1", "direction": "maximize"},
        "n_trials": 1,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    store = in_process_store(tmp_path)
    code, err = cli_here("sweep", "-c", "sweep.yaml", "--tracking-uri", store[1], cwd=tmp_path)
    assert code == 0, err[-3000:]
    client = store_client(tmp_path)
    experiment = client.get_experiment_by_name("cpc-sweep").experiment_id
    trials = [r for r in client.search_runs([experiment]) if r.data.tags.get("sweep.role") == "trial"]
    assert [r.data.tags["sweep.state"] for r in trials] == ["complete"]
    for run in trials:
        metrics = run.data.metrics
        assert run.data.tags["modality"] == "audio" and run.data.tags["backbone"] == "cpc"
        assert logged_finite(metrics["train/loss_epoch"]) and 0 <= metrics["train/cpc_accuracy_epoch"] <= 1
        assert {"val/knn_top1", "val/probe_acc"} <= set(metrics)

    trial = trials[0]
    steps = trial.data.params["model.prediction_steps"]
    (tmp_path / "trial.yaml").write_text(yaml.safe_dump(base))
    before = epochs_logged(client, trial.info.run_id)
    resume = [*QUICK, "--model.init_args.prediction_steps", steps, "--tracking.experiment", "cpc-sweep"]
    args = ["-c", "trial.yaml", *resume, "--trainer.max_epochs", "2", "--resume", trial.info.run_id, *store]
    code, err = cli_here("fit", *args, cwd=tmp_path)
    assert code == 0, err[-3000:]
    resumed = client.get_run(trial.info.run_id)
    after = epochs_logged(client, trial.info.run_id)
    assert resumed.info.status == "FINISHED" and after[: len(before)] == before and len(after) == len(before) + 1
    assert "test/knn_top1" in resumed.data.metrics


def test_cpc_trains_on_unequal_length_series_with_masks(tmp_path, cli_here):
    """JapaneseVowels (12 channels, 7 to 29 steps) through configs/cpc/ucr.yaml: NaN-padded batches, masked steps."""
    args = [
        *("-c", str(method_config("cpc", "ucr")), "--data.init_args.name", "JapaneseVowels"),
        *("--model.init_args.backbone_kwargs", "{strides: [1, 2], width: 16, context_dim: 16}"),
        *("--model.init_args.prediction_steps", "2", "--data.init_args.batch_size", "64"),
        *QUICK,
        *NO_TEST,
        *in_process_store(tmp_path),
    ]
    code, err = cli_here("fit", *args, cwd=tmp_path)
    assert code == 0, err[-3000:]
    client = store_client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("JapaneseVowels").experiment_id])
    assert run.data.tags["modality"] == "series" and logged_finite(run.data.metrics["train/loss_epoch"])
    # It trained: every encoder weight moved from where the fit started (its config's model, same seed). One epoch
    # moves the validation kNN by a sample (measured 0.341, untrained 0.338; chance 1/9), so that is held to the
    # untrained encoder's on the same masked split, not above it.
    still = untrained_weights(
        build(args)[0], tmp_path / "checkpoints" / "JapaneseVowels" / run.info.run_id / "last.ckpt"
    )
    assert not still, f"encoder weights that did not train: {still}"
    before = untrained(cli_here, "validate", args, tmp_path, "val/knn_top1")
    assert run.data.metrics["val/knn_top1"] >= before - 0.02, (run.data.metrics["val/knn_top1"], before)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.init_args.negatives", "others"], "model.init_args.negatives must be one of batch, sequence, both"),
        (
            ["--model.init_args.backbone", "toy_conv1d", "--model.init_args.backbone_kwargs", "null"],
            "CPC needs an encoder with step-level outputs",
        ),
        (
            ["--model.init_args.backbone_kwargs", "{strides: [8, 8, 8, 8]}"],
            "model.backbone_kwargs.strides: views of 4000 samples give 0 step(s)",
        ),
        (["--data.init_args.duration", "0.1"], "model.augment.crop=4800 needs fixed-length samples"),
    ],
    ids=["negatives", "backbone", "strides", "crop"],
)
def test_cpc_and_speaker_config_mistakes_are_one_line(args, message, spoken_digits, tmp_path, cli_here):
    import tests.test_toy_modality  # noqa: F401  (registers toy_conv1d, a backbone without steps)

    config = "supcon/fsdd_speakers" if "crop" in message else "cpc/fsdd"
    method, dataset = config.split("/")
    full = ["fit", "-c", str(method_config(method, dataset)), *spoken(spoken_digits), *args]
    assert message in the_error_line(*cli_here(*full, *in_process_store(tmp_path), cwd=tmp_path))
