"""Audio DataModules on the espeak-ng spoken digits and on WAV/FLAC files written here: layouts, splits by group,
resampling, channels, fixed length, bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from contrastlab.datamodules.audio import FSDD, AudioFolder, AudioManifest
from contrastlab.errors import ConfigError, DataError
from tests.conftest import SHARED_DATA


def tone(freq: float, rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave


def peak_hz(x: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy() * np.hanning(x.shape[-1])))
    return float(np.argmax(spectrum) * rate / x.shape[-1])


def test_fsdd_official_split_gives_fixed_length_float_waveforms_with_speaker_groups(spoken_digits):
    data = FSDD(root=str(spoken_digits), test_takes=1, duration=0.5, batch_size=8)
    info = data.info
    assert (info.modality, info.shape, info.num_classes, info.sample_rate) == ("audio", (1, 4000), 10, 8000.0)
    assert info.views == "contrastlab.augment.audio.CLMRViews"
    test, train, val = data.split("test"), data.split("train"), data.split("val")
    assert len(test) == 40 and len(train) + len(val) == 160 and len(val) > 0  # take 0 of 10 digits x 4 voices
    assert all(clip.path.stem.endswith("_0") for clip in test.clips)
    sample = test[0]
    assert sample["x"].dtype == torch.float32 and sample["x"].shape == (1, 4000)
    assert sample["y"] == int(test.clips[0].path.name[0]) and sample["group"] in range(4)
    assert torch.equal(test[0]["x"], test[0]["x"])  # evaluation: the centre, every time
    batch = next(iter(data.eval_loader("test")))
    assert batch["x"].shape == (8, 1, 4000) and batch["group"].dtype == torch.long


def test_fsdd_speaker_independent_split_holds_out_whole_speakers(spoken_digits):
    data = FSDD(root=str(spoken_digits), test_speakers=["3"], val_speakers=["2"], duration=0.25)
    groups = {
        s: {data.groups[data.split(s)[i]["group"]] for i in range(len(data.split(s)))} for s in ("train", "val", "test")
    }
    assert groups == {"train": {"0", "1"}, "val": {"2"}, "test": {"3"}}
    assert len(data.split("test")) == 50  # every take of speaker 3
    with pytest.raises(ConfigError, match="data.test_groups: 9 not among"):
        FSDD(root=str(spoken_digits), test_speakers=["9"]).split("test")


def test_fsdd_is_refused_with_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="free-spoken-digit-dataset"):
        FSDD(root=str(tmp_path / "nope"))


def test_folder_layout_resamples_keeps_or_mixes_channels_and_crops(tmp_path):
    for cls, freq in (("high", 2000.0), ("low", 500.0)):
        (tmp_path / "set" / cls).mkdir(parents=True)
        for i in range(3):
            sf.write(tmp_path / "set" / cls / f"spk{i}_nohash_{cls}.flac", tone(freq, 22050, 1.2, channels=2), 22050)
    (tmp_path / "set" / "_background_noise_").mkdir()
    data = AudioFolder(
        root=str(tmp_path / "set"), sample_rate=16000, duration=1.0, channels=2,
        group_pattern=r"^([^_]+)_nohash_", test_groups=["spk0"], val_fraction=0.0,
    )  # fmt: skip
    assert data.classes == ["high", "low"] and data.info.shape == (2, 16000)
    test = data.split("test")
    assert len(test) == 2 and {data.groups[test[i]["group"]] for i in range(2)} == {"spk0"}
    x = test[0]["x"]
    assert x.shape == (2, 16000)
    assert peak_hz(x[0], 16000) == pytest.approx(2000.0, abs=2)  # 22.05 kHz -> 16 kHz keeps the tone
    assert float(x[1].abs().max()) == pytest.approx(2 * float(x[0].abs().max()), rel=1e-3)  # channels kept apart
    mono = AudioFolder(root=str(tmp_path / "set"), sample_rate=8000, duration=1.5, channels=1)
    clip = mono.split("val")[0]["x"]
    sounding = clip[0].nonzero().flatten()
    assert clip.shape == (1, 12000) and int(sounding[0]) == pytest.approx(1200, abs=2)  # 1.2 s centred in 1.5 s
    assert int(sounding[-1] - sounding[0]) == pytest.approx(9600, abs=2)
    # training crops differ, evaluation takes the centre
    train = AudioFolder(root=str(tmp_path / "set"), sample_rate=8000, duration=0.3).split("train")
    crops = {round(float(train[0]["x"][0, 0]), 5) for _ in range(6)}
    assert len(crops) > 1


def test_manifest_reads_paths_labels_splits_and_any_column_as_group(tmp_path):
    rows = ["file,genre,part,session"]
    for i in range(8):
        sf.write(tmp_path / f"c{i}.wav", tone(300 + 100 * i, 8000, 0.5), 8000)
        rows.append(f"c{i}.wav,{'rock' if i % 2 else 'jazz'},{'test' if i < 2 else 'train'},s{i % 4}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    common = {
        "manifest": str(tmp_path / "m.csv"),
        "path_column": "file",
        "label_column": "genre",
        "sample_rate": 8000,
        "duration": 0.5,
    }
    data = AudioManifest(split_column="part", group_column="session", **common)
    assert data.classes == ["jazz", "rock"] and data.info.name == "m"
    assert len(data.split("test")) == 2 and len(data.split("train")) + len(data.split("val")) == 6
    by_session = AudioManifest(
        split_column=None, group_column="session", split_by_group=True, test_fraction=0.25, **common
    )
    test_groups = {by_session.split("test")[i]["group"] for i in range(len(by_session.split("test")))}
    train_groups = {by_session.split("train")[i]["group"] for i in range(len(by_session.split("train")))}
    assert len(test_groups) == 1 and not test_groups & train_groups
    with pytest.raises(ConfigError, match="data.label_column: 'label' is not a column of .*m.csv"):
        AudioManifest(manifest=str(tmp_path / "m.csv"), path_column="file")


def test_bad_files_are_skipped_and_counted_or_stop_naming_the_file(tmp_path, caplog):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            sf.write(tmp_path / cls / f"{i}.wav", tone(440, 8000, 0.2), 8000)
    (tmp_path / "a" / "broken.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    keep = {"root": str(tmp_path), "sample_rate": 8000, "duration": 0.2, "val_fraction": 0, "test_fraction": 0}
    with caplog.at_level(logging.WARNING, logger="contrastlab.datamodules.audio"):
        data = AudioFolder(on_bad_file="skip", **keep)
        assert len(data.split("train")) == 6
    assert data.skipped_count() == 1 and data.skipped_files["train"] == [str(tmp_path / "a" / "broken.wav")]
    assert "skipped 1 unreadable audio files" in caplog.text
    with pytest.raises(DataError, match=r"broken\.wav: unreadable audio .*on_bad_file: skip"):
        AudioFolder(on_bad_file="stop", **keep).split("train")
    # a file that breaks after its split was listed (decoded in a worker) is dropped from its batch
    good = tmp_path / "b" / "0.wav"
    data = AudioFolder(on_bad_file="skip", batch_size=6, **keep)
    dataset = data.split("train")
    good.write_bytes(b"garbage")
    batch = data.collate([dataset[i] for i in range(len(dataset))])
    assert batch["x"].shape[0] == 5 and dataset.skipped == 1 and data.skipped_count() == 2


@pytest.mark.skipif(not (SHARED_DATA / "fsdd" / "recordings").is_dir(), reason="FSDD is not under ../shared/data")
def test_real_fsdd_official_split_sizes():
    data = FSDD(root=str(SHARED_DATA / "fsdd" / "recordings"), val_fraction=0.0)
    assert (
        len(data.split("test")) == 300 and len(data.split("train")) == 2700 and data.groups[:2] == ["george", "jackson"]
    )
