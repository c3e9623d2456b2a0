"""FSDDSpeakers: FSDD labelled by speaker for speaker identification, on espeak-ng digits (one voice a speaker)."""

from __future__ import annotations

import pytest

from contrastlab.datamodules.speakers import FSDDSpeakers
from contrastlab.errors import ConfigError


def test_the_speaker_is_the_class_and_the_group_on_the_official_split(spoken_digits):
    data = FSDDSpeakers(root=str(spoken_digits), test_takes=1, duration=0.25)
    assert data.info.name == "fsdd_speakers" and data.info.num_classes == 4 and data.classes == ["0", "1", "2", "3"]
    train, test = data.split("train"), data.split("test")
    for split in (train, test):
        speakers = {int(c.path.stem.split("_")[1]) for c in split.clips}
        assert speakers == {0, 1, 2, 3}  # every speaker in train and test: closed-set identification
        assert split.labels == split.groups == [int(c.path.stem.split("_")[1]) for c in split.clips]
    sample = test[0]
    assert sample["y"] == sample["group"] and sample["x"].shape == (1, 2000)


def test_held_out_speakers_are_refused(spoken_digits):
    with pytest.raises(ConfigError, match="data.test_speakers: speaker identification classifies the speakers"):
        FSDDSpeakers(root=str(spoken_digits), test_speakers=["3"])
