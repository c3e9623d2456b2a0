"""The loss-defined methods through the CLI, as a user runs them: wrong combinations end with one clear line and
exit code 2 before anything trains, and the CIFAR-10 configs resolve. Each digits config trains a few steps in
test_every_method.py; how well it learns is benchmarks/methods.py's job."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import the_error_line
from tests.methods.conftest import method_config

# The loss-defined methods besides SimCLR: their cifar10 configs must resolve.
METHODS = ["supcon", "barlow_twins", "vicreg", "dcl", "dclw", "ncl", "simclr_margin"]


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
