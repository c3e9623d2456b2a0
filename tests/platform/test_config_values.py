"""An option a config gives takes effect, and a default a class declares is what a config without the key gets.

LightningCLI's parser passes every parameter it knows, including a base class's reached through `**kwargs`, the
unset ones with the base's default or None. A subclass that fills in its own default with `kwargs.setdefault` is
then silently overruled: FSDD's `test_speakers` never reached the split, and TS2Vec without a `backbone` key got
the base class's resnet18. These tests build through the CLI's parser, as `contrastlab fit` does.
"""

from __future__ import annotations

import pytest

from tests.conftest import REPO, the_error_line
from tests.learning import build

CLMR_FSDD = str(REPO / "configs" / "clmr" / "fsdd.yaml")


@pytest.mark.parametrize(("method", "backbone"), [("TS2Vec", "ts2vec"), ("TSTCC", "tstcc_cnn")])
def test_a_method_named_without_a_backbone_gets_its_own(method, backbone):
    model, _ = build(["--model", f"contrastlab.modules.{method}", "--data", "contrastlab.datamodules.series.UCR"])
    assert model.hparams.backbone == backbone
    assert type(model.backbone).__module__.startswith("contrastlab.modules.nets")


def test_fsdd_test_speakers_given_on_the_command_line_hold_those_speakers_out(spoken_digits):
    # the spoken digits: 4 voices (speakers "0".."3") x 10 digits x 5 takes
    args = ["-c", CLMR_FSDD, "--data.init_args.root", str(spoken_digits)]
    _, data = build([*args, "--data.init_args.test_speakers", '["0", "1"]'])
    splits = data.assign_splits(data.clips())
    assert len(splits["test"]) == 100 and {clip.group for clip in splits["test"]} == {"0", "1"}
    assert {clip.group for clip in splits["train"] + splits["val"]} == {"2", "3"}
    assert data.test_groups == ["0", "1"]

    # without them, the official split: takes below test_takes of every speaker are the test set
    _, official = build([*args, "--data.init_args.test_takes", "1"])
    test = official.assign_splits(official.clips())["test"]
    assert len(test) == 40 and {clip.group for clip in test} == {"0", "1", "2", "3"}


def test_fsdd_speakers_given_twice_and_differently_are_refused_in_one_line(spoken_digits, cli_here, tmp_path):
    args = ["-c", CLMR_FSDD, "--data.init_args.root", str(spoken_digits)]
    twice = ["--data.init_args.test_speakers", '["0"]', "--data.init_args.test_groups", '["1"]']
    line = the_error_line(*cli_here("fit", *args, *twice, cwd=tmp_path))
    assert "data.test_speakers=['0'] and data.test_groups=['1'] disagree: give test_speakers only" in line
