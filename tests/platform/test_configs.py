"""The shipped run configs: each resolves as recorded, no recipe's views are written twice, and each builds its model
and view pipeline and trains two steps.

A run config composes files written once (`base:`: configs/shared/recipes/ for a dataset's data, views and
budget, configs/shared/methods/ for a method's settings on every dataset). `resolved_configs.json` is every
config's resolved form, recorded when the copies became compositions; it changes only with a config.

Building and training need data that is here: digits' for the CIFAR-10 and Fashion-MNIST configs (their files may
not be here), a config's own where that ships inside a dependency (the UCR/UEA sets inside aeon), espeak-ng
spoken digits in FSDD's layout for audio. The digits configs train in tests/methods and tests/platform, the paired
configs in tests/methods/test_paired.py, the volume configs in tests/test_medical_cli.py on data they write.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import yaml

from contrastlab.contract import ViewPipeline
from contrastlab.modules.core.base import ContrastiveModule
from tests.conftest import REPO
from tests.learning import parsed_run

SNAPSHOT = Path(__file__).with_name("resolved_configs.json")
ALL = sorted(p for p in (REPO / "configs").glob("*/*.yaml") if p.parent.name not in ("sweeps", "shared"))
# Data classes whose configs' data needs no file of ours: the config builds on its own data.
SHIPPED_DATA = ("contrastlab.datamodules.series.UCR",)
# Volume configs cannot build on digits' 2-D images; the tests of their modality train them on data they write.
TRAINED_ON_THEIR_OWN_DATA = {"simclr/organmnist3d", "supcon/studies_by_patient"}
# Paired configs (data contrastlab.datamodules.paired) train in tests/methods/test_paired.py on the sets it writes.
CONFIGS = [
    p
    for p in ALL
    if p.stem != "digits"
    and f"{p.parent.name}/{p.stem}" not in TRAINED_ON_THEIR_OWN_DATA
    and "contrastlab.datamodules.paired." not in p.read_text()
]
# Two steps of one config per method and data class: the others differ from it only in numbers.
SMALL = {"proj_hidden_dim": 64, "proj_dim": 32, "pred_hidden_dim": 64, "queue_size": 64}


def name_of(config: Path) -> str:
    return f"{config.parent.name}/{config.stem}"


def raw(config: Path) -> dict:
    return yaml.safe_load(config.read_text())


def data_for(config, spoken_digits) -> list[str]:
    """Options that give `config` data that is here."""
    data = (raw(config).get("data") or {}).get("class_path", "")
    if data in SHIPPED_DATA:
        return []
    if data == "contrastlab.datamodules.speakers.FSDDSpeakers":
        return ["--data.init_args.root", str(spoken_digits)]
    if data.startswith("contrastlab.datamodules.audio."):
        args = ["--data", "contrastlab.datamodules.audio.FSDD", "--data.root", str(spoken_digits)]
        if ((raw(config).get("data") or {}).get("init_args") or {}).get("test_speakers"):
            args += ["--data.init_args.test_speakers", '["3"]']  # the spoken digits' voices are named 0-3
        return args
    return ["--data", "contrastlab.datamodules.vision.Digits"]


def build(args: list[str], monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["contrastlab"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parsed_run(args)


def flat(node, prefix="") -> dict:
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node}
    return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}{key}.").items()}


def resolved(config: Path) -> dict:
    """`config` as `contrastlab fit -c config --print_config` resolves it, flattened (the config paths left out)."""
    from contrastlab.platform.config_check import check_run_config

    dumped = yaml.safe_load(check_run_config(config))
    dumped.pop("config", None)
    return flat(dumped)


def test_every_config_resolves_as_recorded(caplog):
    """Key by key against the record; keys a newer Lightning or jsonargparse adds are not compared. To record a
    deliberate change: python -c 'from tests.platform.test_configs import record; record()'. No shipped config
    drops a key of its bases' dicts (`dropped_dict_keys`)."""
    caplog.set_level(logging.WARNING, logger="contrastlab")
    recorded = json.loads(SNAPSHOT.read_text())
    assert sorted(recorded) == [name_of(p) for p in ALL], "a config was added or removed: record() again"
    changed = {}
    for config in ALL:
        now = resolved(config)
        diff = {k: (v, now.get(k, "<missing>")) for k, v in recorded[name_of(config)].items() if now.get(k) != v}
        if diff:
            changed[name_of(config)] = diff
    assert not changed, changed
    assert not [r.message for r in caplog.records if "dropped" in r.message]


def record() -> None:
    SNAPSHOT.write_text(json.dumps({name_of(p): resolved(p) for p in ALL}, indent=1, sort_keys=True) + "\n")


def test_no_views_are_written_in_two_files():
    """A recipe's view pipeline (an `augment` with its class) is written once, in the file every config reads."""
    seen: dict[str, list[str]] = {}
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        augment = ((raw(path).get("model") or {}).get("init_args") or {}).get("augment")
        if isinstance(augment, dict) and "class_path" in augment:
            seen.setdefault(json.dumps(augment, sort_keys=True), []).append(str(path.relative_to(REPO)))
    twice = [files for files in seen.values() if len(files) > 1]
    assert not twice, twice


def test_the_digits_recipe_is_written_once_and_every_digits_config_reads_it():
    recipe = "configs/shared/recipes/digits.yaml"
    for config in (REPO / "configs").glob("*/digits.yaml"):
        bases = raw(config)["base"]
        assert recipe in ([bases] if isinstance(bases, str) else bases), config
        assert "augment" not in raw(config)["model"]["init_args"], config


@pytest.mark.parametrize(
    "base, message",
    [
        ("configs/shared/recipes/nope.yaml", "base: configs/shared/recipes/nope.yaml not found"),
        ("[3]", "base: expected a config path or a list of them, got 3"),
        ("me.yaml", "base: it starts from itself"),
    ],
)
def test_a_bad_base_is_one_line_naming_the_file(base, message, tmp_path, cli_here):
    from tests.conftest import the_error_line

    config = tmp_path / "me.yaml"
    config.write_text(f"base: {base}\nmodel:\n  class_path: contrastlab.modules.SimCLR\n")
    line = the_error_line(*cli_here("fit", "-c", str(config), "--print_config", cwd=tmp_path))
    assert str(config) in line and message in line, line


def test_a_dict_a_later_file_gives_whole_names_the_keys_it_drops(tmp_path, cli_here, caplog):
    """A dict-typed option is replaced, not merged, by a later file: the keys of the base that the run loses are
    named, with the file and the key; nested options (trainer:, init_args:) merge and say nothing."""
    caplog.set_level(logging.WARNING, logger="contrastlab")
    config = tmp_path / "deeper.yaml"
    config.write_text(
        "base: configs/ts2vec/ucr.yaml\ntrainer: {max_steps: 3}\nmodel: {init_args: {backbone_kwargs: {depth: 4}}}\n"
    )
    code, err = cli_here("fit", "-c", str(config), "--print_config", cwd=tmp_path)
    notes = [r.message for r in caplog.records if "dropped" in r.message]
    assert code == 0 and len(notes) == 1, err
    assert "configs/shared/methods/ts2vec.yaml: model.init_args.backbone_kwargs: hidden_dims, output_dims" in notes[0]

    caplog.clear()
    config.write_text(
        "base: configs/ts2vec/ucr.yaml\n"
        "model: {init_args: {backbone_kwargs: {hidden_dims: 64, output_dims: 320, depth: 4}}}\n"
    )
    code, err = cli_here(
        "fit", "-c", str(config), "--model.init_args.instance_weight", "0.4", "--print_config", cwd=tmp_path
    )
    assert code == 0 and not [r for r in caplog.records if "dropped" in r.message], err


def test_expanding_bases_twice_reads_each_file_once():
    """LightningCLI gives the verb's parser the arguments its main parser expanded: a base is not read again after
    the file that overrides it."""
    from contrastlab.platform.compose import expand_bases

    once = expand_bases(["-c", str(REPO / "configs" / "ts2vec" / "ucr.yaml")])
    assert [Path(a).name for a in once[1::2]] == ["ts2vec.yaml", "ucr.yaml"]
    assert expand_bases(once) == once


def test_print_config_shows_the_composed_config(tmp_path, monkeypatch, capsys):
    from contrastlab.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop, warnings.catch_warnings():
        main(["fit", "-c", str(REPO / "configs" / "byol" / "digits.yaml"), "--print_config"])
    shown = yaml.safe_load(capsys.readouterr().out)
    assert not stop.value.code and "base" not in shown
    assert shown["model"]["init_args"]["augment"]["init_args"]["crop_subpixel"] is True  # from the recipe
    assert shown["model"]["init_args"]["momentum"] == 0.99  # from BYOL's shared settings
    assert shown["data"]["init_args"]["batch_size"] == 64  # from the config itself


# Too slow for two steps on 2 cores: CIFAR-10's ResNet-18 (25-45 s; those methods train on digits in tests/methods),
# the log-mel ResNet and Speech Commands nets on audio (18 s each; SimCLR's FSDD speech config trains here, CLMR's in
# tests/methods/test_clmr.py), SoftCLT's DTW (12 s;
# its series methods train in tests/methods/test_series_methods.py), wav2vec 2.0's Transformer (10 s; it trains with
# a tiny encoder in tests/methods).
TOO_SLOW = {"simclr/fsdd_logmel", "clmr/speech_commands", "softclt/ucr", "wav2vec2/fsdd"}
TRAINED = list(
    {
        (raw(p)["model"]["class_path"], raw(p)["data"]["class_path"]): p
        for p in CONFIGS
        if p.stem != "cifar10" and name_of(p) not in TOO_SLOW
    }.values()
)


@pytest.mark.parametrize("config", CONFIGS, ids=[name_of(p) for p in CONFIGS])
def test_config_builds_and_trains(config, monkeypatch, tmp_path, spoken_digits):
    """Every config builds; one per method and data class also trains two steps (tiny heads, a batch of 8)."""
    args = ["-c", str(config), *data_for(config, spoken_digits)]
    train = config in TRAINED
    if train:
        args += ["--data.init_args.batch_size", "8", "--trainer.max_steps", "2"]
        if "contrastlab.datamodules.vision.Digits" in args:  # in place of a larger set: its own split sizes
            args += ["--data.init_args.val_size", "180"]
        if str(spoken_digits) in args:  # FSDD's test takes are 0-4, every take of the spoken digits
            args += ["--data.init_args.test_takes", "1"]
        shipped = raw(config)["model"].get("init_args") or {}
        args += [f"--model.init_args.{k}={v}" for k, v in SMALL.items() if k in shipped]
    cli = build(args, monkeypatch, tmp_path)
    assert isinstance(cli.model, ContrastiveModule) and isinstance(cli.model.augment, ViewPipeline)
    # every model option the parsed config holds reached the model as given (the views are built, the data's
    # description is linked from the DataModule)
    given = {k: v for k, v in cli.config.model.init_args.as_dict().items() if k not in ("augment", "data_info")}
    assert given == {k: cli.model.hparams.get(k, "(not received)") for k in given}
    if "cifar10" in config.stem:
        assert cli.model.backbone.conv1.stride == (1, 1)  # backbone_kwargs.cifar_stem reached the ResNet
    if not train:
        return
    trainer = L.Trainer(
        max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", precision="32-true",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(cli.model, cli.datamodule)
    assert trainer.global_step == 2
