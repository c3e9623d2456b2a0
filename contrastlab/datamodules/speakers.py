"""Speaker identification data: the speaker is the class, so kNN top-1 and the probe measure speaker embeddings."""

from __future__ import annotations

from dataclasses import replace

from contrastlab.datamodules.audio import FSDD, Clip
from contrastlab.errors import ConfigError


class FSDDSpeakers(FSDD):
    """The Free Spoken Digit Dataset labelled by speaker (closed-set speaker identification).

    The split is FSDD's official one (takes below `test_takes` of every speaker and digit are test), so every
    speaker is in train and test and a test clip is classified among the speakers heard in training. A
    sample's `group` is its speaker too, which SupCon's `positives_key: group` reads; the spoken digit is
    not a label here.
    """

    dataset_name = "fsdd_speakers"

    def __init__(self, **kwargs):
        if kwargs.get("test_speakers") or kwargs.get("val_speakers"):
            raise ConfigError(
                "data.test_speakers: speaker identification classifies the speakers heard in training; "
                "held-out speakers have no class. Remove test_speakers/val_speakers (FSDD takes them)"
            )
        super().__init__(**kwargs)

    @property
    def classes(self) -> list[str]:
        return self.groups

    def catalogue(self) -> list[Clip]:
        clips = super().catalogue()
        speakers = sorted({c.group for c in clips if c.group is not None})
        return [replace(c, label=speakers.index(c.group)) for c in clips]
