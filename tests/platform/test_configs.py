"""Every shipped run config that no other test trains builds its model and view pipeline (on digits' data: the
CIFAR-10 and Fashion-MNIST files may not be here; on its own data where that ships inside a dependency, as the
UCR/UEA sets inside aeon; audio configs on FSDD's layout in an empty folder, since building reads no file, except
speaker identification, whose classes are the speakers found: on espeak-ng digits). The digits configs train in
tests/methods and tests/platform, the paired configs in tests/methods/test_paired.py."""

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
# Volume configs cannot build on digits' 2-D images; the tests of their modality train them on data they write.
TRAINED_ON_THEIR_OWN_DATA = {"simclr/organmnist3d", "supcon/studies_by_patient"}
# Paired configs (data contrastlab.datamodules.paired) train in tests/methods/test_paired.py on the sets it writes.
CONFIGS = sorted(
    p
    for p in (REPO / "configs").glob("*/*.yaml")
    if p.parent.name != "sweeps"
    and p.stem != "digits"
    and f"{p.parent.name}/{p.stem}" not in TRAINED_ON_THEIR_OWN_DATA
    and "contrastlab.datamodules.paired." not in p.read_text()
)


def data_for(config, request, tmp_path) -> list[str]:
    """Options that give `config` data that is here."""
    data = (yaml.safe_load(config.read_text()).get("data") or {}).get("class_path", "")
    if data in SHIPPED_DATA:
        return []
    if data == "contrastlab.datamodules.speakers.FSDDSpeakers":
        return ["--data.init_args.root", str(request.getfixturevalue("spoken_digits"))]
    if data.startswith("contrastlab.datamodules.audio."):
        return ["--data", "contrastlab.datamodules.audio.FSDD", "--data.root", str(tmp_path)]
    return ["--data", "contrastlab.datamodules.vision.Digits"]


@pytest.mark.parametrize("config", CONFIGS, ids=[f"{p.parent.name}/{p.stem}" for p in CONFIGS])
def test_config_builds_its_model(config, monkeypatch, tmp_path, request):
    from contrastlab.platform.cli import ContrastlabCLI

    class BuildOnly(ContrastlabCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    args = ["-c", str(config), *data_for(config, request, tmp_path)]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["contrastlab"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = BuildOnly(run=False, args=args)
    assert isinstance(cli.model, ContrastiveModule) and isinstance(cli.model.augment, ViewPipeline)
    if "cifar10" in config.stem:
        assert cli.model.backbone.conv1.stride == (1, 1)  # backbone_kwargs.cifar_stem reached the ResNet
