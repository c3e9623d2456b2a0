"""The loss-defined methods through the CLI, as a user runs them: each config trains on digits and beats the
random-init kNN baseline; wrong combinations end with one clear line and exit code 2 before anything trains."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import run_cli, the_error_line
from tests.methods.conftest import method_config, only_run

QUICK = ["--tracking.system_metrics_interval", "0", "--tracking.log_checkpoints", "false"]
# config folder -> (the method tag of its run, epochs: fewer than its config's 30)
METHODS = {
    "supcon": ("supcon", 10),
    "barlow_twins": ("barlowtwins", 10),  # the slowest starter: 0.958 at 10 epochs (lr 1e-3), closest to the bar
    "vicreg": ("vicreg", 10),
    "dcl": ("dcl", 10),
    "dclw": ("dcl", 10),
    "ncl": ("ncl", 10),
    "simclr_margin": ("simclr", 10),
}
SLOW = {"barlow_twins", "vicreg"}  # batch 128 and a 3-layer projector: about 50 s on 2 cores
MARGIN = 0.015  # over the random-init kNN top-1 (about 0.933): a trained encoder clears it, a broken one does not


@pytest.mark.parametrize("method", [pytest.param(m, marks=[pytest.mark.slow] if m in SLOW else []) for m in METHODS])
def test_method_trains_past_random_init_on_digits(method, tmp_path, random_init_knn):
    tag, epochs = METHODS[method]
    options = ["--trainer.max_epochs", str(epochs), "--trainer.check_val_every_n_epoch", str(epochs)]
    run_cli("fit", "-c", str(method_config(method)), *options, *QUICK, cwd=tmp_path, timeout=600)
    run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.tags["method"] == tag
    metrics = run.data.metrics
    assert metrics["test/knn_top1"] >= random_init_knn + MARGIN, (metrics["test/knn_top1"], random_init_knn)
    if method == "vicreg":  # the three terms are logged apart, to see which one dominates
        assert {"train/invariance", "train/variance", "train/covariance"} <= set(metrics)


def make_unlabelled_folder(root):
    from PIL import Image
    from sklearn.datasets import load_digits

    root.mkdir()
    for i, image in enumerate(load_digits().images[:64]):
        Image.fromarray((image * 255 / 16).astype("uint8")).save(root / f"{i}.png")


UNLABELLED = (
    "--data.class_path contrastlab.datamodules.vision.ImageFolder --data.init_args.root scans "
    "--data.init_args.size 8 --data.init_args.channels 1 --data.init_args.batch_size 32"
).split()


@pytest.mark.parametrize(
    ("method", "args", "message"),
    [
        ("supcon", UNLABELLED, "model: SupCon needs labels, but data 'scans' has no classes"),
        ("dcl", ["--model.init_args.temperature", "0"], "model.init_args.temperature must be > 0, got 0"),
        ("dclw", ["--model.init_args.sigma", "-0.5"], "model.init_args.sigma must be > 0, got -0.5"),
        ("simclr_margin", ["--model.init_args.margin", "1.5"], "model.init_args.margin must be in [0, 1), got 1.5"),
        ("barlow_twins", ["--model.init_args.lambd", "0"], "model.init_args.lambd must be > 0, got 0"),
        (
            "vicreg",
            ["--model.init_args.var_weight", "0", "--model.init_args.cov_weight", "0"],
            "var_weight and cov_weight are both 0",
        ),
    ],
    ids=["supcon-unlabelled", "temperature", "sigma", "margin", "lambd", "vicreg-weights"],
)
def test_wrong_combinations_are_one_clear_line(method, args, message, tmp_path, cli_here):
    if "scans" in args:
        make_unlabelled_folder(tmp_path / "scans")
    assert message in the_error_line(*cli_here("fit", "-c", str(method_config(method)), *args, cwd=tmp_path))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("method", [*METHODS, "msc"])
def test_cifar10_configs_parse(method, capsys, monkeypatch):
    """CIFAR-10 configs cannot train here without the files, but must resolve; in-process, for speed."""
    from contrastlab.platform.cli import main

    monkeypatch.setattr(sys, "argv", ["contrastlab"])  # main() rewrites sys.argv for DDP launchers
    with pytest.raises(SystemExit) as done:
        main(["fit", "-c", str(method_config(method, "cifar10")), "--print_config"])
    assert done.value.code in (0, None)
    assert "class_path: contrastlab.modules." in capsys.readouterr().out
