"""Series DataModules: aeon's shipped UCR/UEA sets, the archive's file formats and arrays, masks, normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastlab.datamodules.series import UCR, SeriesFiles, series_collate
from contrastlab.datamodules.series_files import read_series_file
from contrastlab.errors import ConfigError, DataError
from tests.conftest import in_process_store, the_error_line

# A small univariate set: series of unequal length (the last is shorter), one missing value, two classes.
SERIES = [[0.0, 1.0, 2.0, 3.0, 4.0], [1.0, np.nan, 0.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0], [2.0, 2.5, 3.0]]
LABELS = ["a", "b", "a", "b"]


def _fmt(v: float) -> str:
    return "?" if np.isnan(v) else repr(v)


def write_ts(path: Path, series=SERIES, labels=LABELS, bad_line: str | None = None) -> Path:
    lines = ["# toy set", "@problemName toy", "@timeStamps false", "@missing true", "@univariate true"]
    lines += ["@equalLength false", "@classLabel true a b", "@data"]
    lines += [",".join(_fmt(v) for v in s) + f":{y}" for s, y in zip(series, labels)]
    if bad_line is not None:
        lines.insert(len(lines) - 1, bad_line)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_delimited(path: Path, delimiter: str, bad_line: str | None = None) -> Path:
    rows = [delimiter.join([y] + ["NaN" if np.isnan(v) else str(v) for v in s]) for s, y in zip(SERIES, LABELS)]
    if bad_line is not None:
        rows.insert(2, bad_line)
    path.write_text("\n".join(rows) + "\n")
    return path


def write_arff(path: Path, bad_line: str | None = None) -> Path:
    equal = [s for s in SERIES if len(s) == 5]  # the archive's .arff files hold equal-length series
    lines = ["@relation toy", *[f"@attribute t{i} numeric" for i in range(5)], "@attribute target {a,b}", "@data"]
    lines += [",".join(_fmt(v) for v in s) + f",{y}" for s, y in zip(equal, LABELS)]
    if bad_line is not None:
        lines.append(bad_line)
    path.write_text("\n".join(lines) + "\n")
    return path


def same_series(read: list[np.ndarray], expected) -> bool:
    return len(read) == len(expected) and all(
        np.allclose(np.asarray(r)[0], np.asarray(e, dtype=np.float32), equal_nan=True) for r, e in zip(read, expected)
    )


# -- aeon's shipped sets ------------------------------------------------------------------------------


def test_gunpoint_has_its_official_split_and_is_z_normalised_per_series():
    dm = UCR("GunPoint", batch_size=10)
    info = dm.info
    assert (info.name, info.modality, info.shape, info.num_classes) == ("GunPoint", "series", (1, 150), 2)
    assert info.views == "contrastlab.augment.series.SeriesViews" and info.extra["equal_length"]
    train, val, test = dm.split("train"), dm.split("val"), dm.split("test")
    # the archive has no validation split: a seeded, stratified 20% of train is held out (24 and 26 per class)
    assert (len(train), len(val), len(test)) == (40, 10, 150) and sorted(val.labels) == [0] * 5 + [1] * 5
    x = torch.stack([train[i]["x"] for i in range(len(train))])
    assert torch.allclose(x.mean(-1), torch.zeros(40, 1), atol=1e-5)
    assert torch.allclose(x.std(-1, unbiased=False), torch.ones(40, 1), atol=1e-4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (10, 1, 150) and "mask" not in batch  # equal length, nothing missing


@pytest.mark.parametrize(
    ("name", "shape", "classes", "sizes"),
    [("ArrowHead", (1, 251), 3, (30, 6, 175)), ("OSULeaf", (1, 427), 6, (159, 41, 242)),
     ("ACSF1", (1, 1460), 10, (80, 20, 100))],
)  # fmt: skip
def test_the_other_univariate_sets_of_the_benchmark_load_with_a_holdout_in_every_class(name, shape, classes, sizes):
    dm = UCR(name)
    assert (dm.info.shape, dm.info.num_classes) == (shape, classes)
    assert tuple(len(dm.split(s)) for s in ("train", "val", "test")) == sizes
    assert sorted(set(dm.split("val").labels)) == list(range(classes))


def test_the_holdout_follows_the_data_seed_and_the_papers_protocol_keeps_all_of_train():
    def held(**kwargs) -> list:
        dm = UCR("GunPoint", **kwargs)
        return [dm.split("val").x[i] for i in range(len(dm.split("val")))]

    same = [torch.equal(a, b) for a, b in zip(held(seed=0), held(seed=0))]
    assert all(same) and not all(torch.equal(a, b) for a, b in zip(held(seed=0), held(seed=1)))
    papers = UCR("GunPoint", val_size=0)
    assert (len(papers.split("train")), len(papers.split("val"))) == (50, 150)  # val reads test: choose nothing on it
    with pytest.raises(ConfigError, match="data.val_size must be a fraction"):
        UCR("GunPoint", val_size=1.5)


def test_basic_motions_is_multivariate_and_a_holdout_is_stratified():
    dm = UCR("BasicMotions", val_size=0.25, normalize="dataset")
    assert dm.info.shape == (6, 100) and dm.info.num_classes == 4 and len(dm.info.mean) == 6
    train, val = dm.split("train"), dm.split("val")
    assert (len(train), len(val)) == (32, 8) and sorted(set(val.labels)) == [0, 1, 2, 3]
    everything = torch.cat([train.x[i] for i in range(len(train))] + [val.x[i] for i in range(len(val))], dim=1)
    assert torch.allclose(everything.mean(1), torch.zeros(6), atol=1e-4)  # the train split's own statistics


def test_japanese_vowels_unequal_lengths_pad_with_a_mask_or_crop():
    dm = UCR("JapaneseVowels", batch_size=32)
    info = dm.info
    assert info.shape == (12, 0) and not info.extra["equal_length"] and info.num_classes == 9
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    lengths, mask, x = batch["lengths"], batch["mask"], batch["x"]
    assert x.shape[:2] == (32, 12) and x.shape[2] == int(lengths.max()) and lengths.min() < lengths.max()
    assert torch.equal(mask, torch.arange(x.shape[2])[None, :] < lengths[:, None])
    assert x.isnan().any(1).eq(~mask).all()  # the padding is NaN exactly where the mask is False

    cropped = UCR("JapaneseVowels", unequal="crop")
    shortest = cropped.info.extra["min_length"]
    assert cropped.info.shape == (12, shortest) and cropped.info.extra["equal_length"]
    assert {s.shape[-1] for s in cropped.split("train").x} == {shortest}


def test_a_set_that_is_not_here_says_where_to_put_its_files(tmp_path):
    with pytest.raises(DataError, match=r"no NotASet_TRAIN.ts .* unzip the set .* data.download"):
        UCR("NotASet", root=str(tmp_path)).split("train")


def test_a_set_under_root_is_read_in_the_archive_layout(tmp_path):
    (tmp_path / "Toy").mkdir()
    write_ts(tmp_path / "Toy" / "Toy_TRAIN.ts")
    write_delimited(tmp_path / "Toy" / "Toy_TEST.tsv", "\t")
    dm = UCR("Toy", root=str(tmp_path), normalize="none", batch_size=4, val_size=0)  # all 4 train series
    assert dm.info.extra["missing"] and dm.info.shape == (1, 0) and dm.info.extra["classes"] == ["a", "b"]
    batch = series_collate([dm.split("train")[i] for i in range(4)])
    assert batch["mask"].tolist()[1] == [True, False, True, True, True]  # the missing value
    assert batch["mask"].tolist()[3] == [True, True, True, False, False]  # the short series' padding
    assert torch.equal(batch["y"], torch.tensor([0, 1, 0, 1]))


# -- files in every format ---------------------------------------------------------------------------


def test_every_file_format_reads_the_same_series(tmp_path):
    assert same_series(read_series_file(write_ts(tmp_path / "a.ts"))[0], SERIES)
    assert same_series(read_series_file(write_delimited(tmp_path / "a.tsv", "\t"))[0], SERIES)
    series, labels = read_series_file(write_delimited(tmp_path / "a.csv", ","))
    assert same_series(series, SERIES) and labels.tolist() == LABELS
    series, labels = read_series_file(write_arff(tmp_path / "a.arff"))
    assert same_series(series, SERIES[:3]) and labels.tolist() == LABELS[:3]
    padded = np.full((4, 5), np.nan, np.float32)
    for i, s in enumerate(SERIES):
        padded[i, : len(s)] = s
    np.save(tmp_path / "x.npy", padded)
    (tmp_path / "y.txt").write_text("\n".join(LABELS))
    series, labels = read_series_file(tmp_path / "x.npy", labels=tmp_path / "y.txt")
    assert same_series(series, SERIES) and labels.tolist() == LABELS  # trailing NaN: a shorter series
    np.savez(tmp_path / "m.npz", x=np.stack([padded, 2 * padded], axis=1), y=np.array([0, 1, 0, 1]))
    series, labels = read_series_file(tmp_path / "m.npz")
    assert series[0].shape == (2, 5) and labels.tolist() == ["0", "1", "0", "1"]

    dm = SeriesFiles(str(tmp_path / "m.npz"), str(tmp_path / "m.npz"), normalize="none")
    assert dm.info.name == "m" and dm.info.shape == (2, 0) and dm.info.num_classes == 2


@pytest.mark.parametrize(
    "writer, bad, line",
    [
        (lambda p, bad: write_ts(p / "bad.ts", bad_line=bad), "1.0,oops,3.0:a", 12),
        (lambda p, bad: write_delimited(p / "bad.tsv", "\t", bad_line=bad), "a\t1.0\toops", 3),
        (lambda p, bad: write_delimited(p / "bad.csv", ",", bad_line=bad), "a,1.0,oops", 3),
        (lambda p, bad: write_arff(p / "bad.arff", bad_line=bad), "1,2,oops,4,5,a", 12),
    ],
)
def test_a_malformed_file_names_the_file_and_the_line(tmp_path, writer, bad, line):
    path = writer(tmp_path, bad)
    with pytest.raises(DataError) as caught:
        read_series_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}:") and "'oops'" in message and "\n" not in message


def test_a_malformed_file_is_one_error_line_through_the_cli(tmp_path, cli_here):
    bad = write_ts(tmp_path / "bad.ts", bad_line="1.0,oops,3.0:a")
    code, err = cli_here(
        "fit",
        "-c",
        str(Path(__file__).resolve().parents[2] / "configs" / "simclr" / "gunpoint.yaml"),
        "--data",
        "contrastlab.datamodules.series.SeriesFiles",
        "--data.init_args.train",
        str(bad),
        "--data.init_args.test",
        str(bad),
        *in_process_store(tmp_path),
        cwd=tmp_path,
    )
    assert f"{bad}:12: 'oops' is not a number" in the_error_line(code, err)
