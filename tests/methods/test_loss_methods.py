"""The loss-defined methods through the CLI, as a user runs them: wrong combinations end with one clear line and
exit code 2 before anything trains, and the CIFAR-10 configs resolve. Each digits config trains a few steps in
test_every_method.py; how well it learns is benchmarks/methods.py's job."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
import yaml

from contrastlab.modules import losses
from tests.conftest import in_process_store, store_client, the_error_line
from tests.learning import logged_finite
from tests.methods.conftest import method_config
from tests.test_toy_modality import ToySignals
from tests.test_toy_modality import run_config as toy_run_config

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
    from contrastlab.cli import main

    monkeypatch.setattr(sys, "argv", ["contrastlab"])  # main() rewrites sys.argv for DDP launchers
    with pytest.raises(SystemExit) as done:
        main(["fit", "-c", str(method_config(method, "cifar10")), "--print_config"])
    assert done.value.code in (0, None)
    assert "class_path: contrastlab.modules." in capsys.readouterr().out


class GroupedSignals(ToySignals):
    """The toy signals with no class labels, only a `group` key (the signal's kind), as a patient or a speaker
    would be: positives from metadata, not from classes."""

    @property
    def info(self):
        return dataclasses.replace(super().info, name="grouped_signals", num_classes=0)

    def load_split(self, split: str):
        return GroupedSamples(super().load_split(split))


class GroupedSamples(torch.utils.data.Dataset):
    def __init__(self, samples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        sample = self.samples[i]
        return {**sample, "y": -1, "group": sample["y"]}


def grouped_supcon_args(tmp_path, *extra: str) -> list[str]:
    config = toy_run_config()
    config["model"] = {
        "class_path": "contrastlab.modules.SupCon",
        "init_args": {**config["model"]["init_args"], "positives_key": "group", "margin": 0.1},
    }
    config["data"]["class_path"] = "tests.methods.test_loss_methods.GroupedSignals"
    config["trainer"]["max_epochs"] = 1
    return ["fit", "--config", yaml.safe_dump(config), *in_process_store(tmp_path), *extra]


def test_supcon_takes_positives_from_a_group_key_without_labels(tmp_path, cli_here):
    code, err = cli_here(*grouped_supcon_args(tmp_path), cwd=tmp_path)
    assert code == 0, err[-2000:]
    client = store_client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("grouped_signals").experiment_id])
    assert run.data.params["model.positives_key"] == "group"
    assert run.info.status == "FINISHED" and logged_finite(run.data.metrics["train/loss_epoch"])


def test_a_positives_key_the_data_lacks_is_one_line(tmp_path, cli_here):
    args = grouped_supcon_args(tmp_path, "--model.init_args.positives_key", "patient")
    line = the_error_line(*cli_here(*args, cwd=tmp_path))
    assert "model.init_args.positives_key: samples of 'grouped_signals' carry no 'patient'" in line
    assert "group" in line


def test_group_positives_replace_the_labels_in_the_loss():
    from contrastlab.modules import SupCon

    torch.manual_seed(0)
    model = SupCon(
        positives_key="group",
        proj_hidden_dim=8,
        proj_dim=4,
        data_info=GroupedSignals().info,
        backbone="toy_conv1d",
        backbone_kwargs={"width": 4},
    )
    feats = [torch.randn(6, 4) for _ in range(2)]
    batch = {"y": torch.full((6,), -1), "group": torch.tensor([0, 0, 1, 1, 2, -1])}
    expected = losses.supcon([model.projector(f) for f in feats], batch["group"], 0.1)
    unlabelled = losses.supcon([model.projector(f) for f in feats], batch["y"], 0.1)
    assert torch.allclose(model.contrastive_loss(feats, batch), expected)
    assert not torch.allclose(expected, unlabelled)
