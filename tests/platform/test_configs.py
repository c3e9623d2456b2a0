"""Every shipped run config that no other test trains builds its model and view pipeline (on digits' data: the
CIFAR-10 and Fashion-MNIST files may not be here; on its own data where that ships inside a dependency, as the
UCR/UEA sets inside aeon). The digits configs train in tests/methods and tests/platform."""

from __future__ import annotations

import sys
import warnings

import pytest
import yaml

from contrastlab.augment.base import ViewPipeline
from contrastlab.modules.base import ContrastiveModule
from tests.conftest import REPO

# Data classes whose configs' data needs no file of ours: the config builds on its own data.
SHIPPED_DATA = ("contrastlab.datamodules.series.UCR",)
CONFIGS = sorted(p for p in (REPO / "configs").glob("*/*.yaml") if p.parent.name != "sweeps" and p.stem != "digits")


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{p.parent.name}/{p.stem}" for p in CONFIGS])
def test_config_builds_its_model(config, monkeypatch, tmp_path):
    from contrastlab.platform.cli import ContrastlabCLI

    class BuildOnly(ContrastlabCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    data = (yaml.safe_load(config.read_text()).get("data") or {}).get("class_path", "")
    args = ["-c", str(config)] + ([] if data in SHIPPED_DATA else ["--data", "contrastlab.datamodules.vision.Digits"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["contrastlab"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = BuildOnly(run=False, args=args)
    assert isinstance(cli.model, ContrastiveModule) and isinstance(cli.model.augment, ViewPipeline)
    if "cifar10" in config.stem:
        assert cli.model.backbone.conv1.stride == (1, 1)  # backbone_kwargs.cifar_stem reached the ResNet
