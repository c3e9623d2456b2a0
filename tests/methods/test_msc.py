"""Mean-shifted contrastive anomaly detection through the CLI, one-vs-rest: train on one normal class, test on
all classes. AUROC before and after adaptation, per digit, is in benchmarks/methods.py (`--msc-classes`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.conftest import in_process_store, run_cli, store_client, the_error_line
from tests.methods.conftest import method_config, only_run

QUICK = ["--tracking.system_metrics_interval", "0", "--tracking.log_checkpoints", "false"]
FASHION = Path("/usr/share/datasets/fashion-mnist")
NORMAL_DIGIT = "8"  # the hardest digit for the SimCLR encoder (AUROC 0.989 against 0.9997 for digit 1)


def auroc(cwd: Path) -> float:
    return only_run(cwd).data.metrics["test/auroc"]


def test_adapting_a_simclr_encoder_to_one_digit(tmp_path, cli_here):
    """The whole path in one process, short: a SimCLR run's checkpoint starts MSC on one digit, which validates
    and keeps its best checkpoint by AUROC. How much adaptation gains is measured by benchmarks/methods.py."""
    store = in_process_store(tmp_path)  # one store for both runs: creating one costs seconds
    pretrain = ["--trainer.max_epochs", "1", "--test_after_fit", "false", *QUICK, *store]
    code, err = cli_here("fit", "-c", str(method_config("simclr")), *pretrain, cwd=tmp_path)
    assert code == 0, err[-3000:]
    (ckpt,) = (tmp_path / "checkpoints" / "digits").rglob("last.ckpt")
    adapt = ["--data.init_args.normal_class", NORMAL_DIGIT, "--model.init_args.init_from", str(ckpt)]
    adapt += ["--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "1", *QUICK, *store]
    code, err = cli_here("fit", "-c", str(method_config("msc")), *adapt, cwd=tmp_path)
    assert code == 0, err[-3000:]
    client = store_client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("digits-anomaly").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["method"] == "meanshifted"
    metrics = run.data.metrics
    assert "val/auroc" in metrics and "val/knn_top1" not in metrics
    # a working detector, far from chance (the random-init small_cnn already scores about 0.96 on digit 8)
    assert metrics["test/auroc"] >= 0.8, metrics
    assert list((tmp_path / "checkpoints" / "digits-anomaly").rglob("best-*.ckpt")), "best checkpoint by val/auroc"


def fake_checkpoint(path: Path, state: dict) -> Path:
    torch.save({"state_dict": state, "hyper_parameters": {"backbone": "small_cnn"}}, path)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.init_args.init_from", "nope.ckpt"], "model.init_args.init_from: nope.ckpt not found"),
        (
            ["--model.init_args.init_from", "narrow.ckpt"],
            "narrow.ckpt was trained with backbone 'small_cnn' of another",
        ),
        (["--model.init_args.init_from", "foreign.ckpt"], "foreign.ckpt holds no backbone weights"),
        (["--data.init_args.normal_class", "12"], "data.normal_class must be a class of digits, 0 to 9; got 12"),
        (["--data.init_args.normal_class", "null"], "data.init_args.normal_class: the training split holds classes"),
    ],
    ids=["missing", "incompatible", "foreign", "class-range", "not-one-class"],
)
def test_wrong_starting_points_and_data_are_one_clear_line(args, message, tmp_path, cli_here):
    fake_checkpoint(tmp_path / "narrow.ckpt", {"backbone.features.0.weight": torch.zeros(8, 1, 3, 3)})
    fake_checkpoint(tmp_path / "foreign.ckpt", {"encoder.weight": torch.zeros(2)})
    assert message in the_error_line(*cli_here("fit", "-c", str(method_config("msc")), *args, *QUICK, cwd=tmp_path))


FASHION_DATA = [
    "--data.class_path=contrastlab.datamodules.vision.FashionMNIST",
    f"--data.init_args.root={FASHION}",
    "--data.init_args.val_size=1000",
    "--model.init_args.backbone_kwargs={widths: [32, 64, 128]}",  # narrower: seconds per epoch at 28 px
    "--model.init_args.augment.init_args.size=28",
    "--model.init_args.augment.init_args.crop_scale=[0.3, 1.0]",
    "--model.init_args.augment.init_args.hflip_p=0.5",
]


@pytest.mark.slow
@pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason="apt-get install dataset-fashion-mnist"
)
@pytest.mark.skipif(
    os.environ.get("CONTRASTLAB_LONG_TESTS") != "1", reason="about 3 minutes on 2 cores: CONTRASTLAB_LONG_TESTS=1"
)
def test_adapting_a_simclr_encoder_to_one_fashion_class(tmp_path):
    """One-vs-rest on Fashion-MNIST (normal: trousers) from a SimCLR encoder of a 2,000-image subset."""
    (tmp_path / "simclr").mkdir()
    short = ["--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "3", "--test_after_fit", "false"]
    subset = ["--data.init_args.max_train_samples", "2000"]
    simclr = str(method_config("simclr"))
    run_cli("fit", "-c", simclr, *FASHION_DATA, *subset, *short, *QUICK, cwd=tmp_path / "simclr", timeout=900)
    (ckpt,) = (tmp_path / "simclr" / "checkpoints").rglob("last.ckpt")
    one_class = ["--data.init_args.normal_class", "1", "--data.init_args.max_train_samples", "5000"]
    start = [*FASHION_DATA, *one_class, "--model.init_args.init_from", str(ckpt)]
    epochs = ["--trainer.max_epochs", "5", "--trainer.check_val_every_n_epoch", "5"]
    results = {}
    for name, verb, args in (("before", "test", start), ("after", "fit", [*start, *epochs])):
        (tmp_path / name).mkdir()
        run_cli(verb, "-c", str(method_config("msc")), *args, *QUICK, cwd=tmp_path / name, timeout=900)
        results[name] = auroc(tmp_path / name)
    print(results)
    # Measured: before 0.991, after 0.971. Adapting an encoder pretrained on the same images does not help
    # (the paper adapts ImageNet features); the test holds both to what a working pipeline reaches.
    assert results["before"] >= 0.9 and results["after"] >= 0.9, results
