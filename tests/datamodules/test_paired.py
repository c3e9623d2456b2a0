"""Paired data from a CSV: the generic form, CheXpert's and MIMIC-CXR's layouts, labels and their uncertain
cells, and a tokenizer trained on the training texts, cached and read back instead of trained again."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastlab.datamodules import text as text_module
from contrastlab.datamodules.paired import PairedCSV
from contrastlab.datamodules.radiology import MIMICCXR, CheXpert, report_sections
from contrastlab.errors import ConfigError, DataError

WORDS = ("cat", "dog", "bird")


def write_png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def pairs_csv(tmp_path) -> Path:
    """18 images of three classes with captions and a split column (12/3/3)."""
    rows = []
    for i in range(18):
        write_png(tmp_path / "img" / f"{i}.png", 40 * (i % 3))
        split = "train" if i < 12 else ("validate" if i < 15 else "test")
        rows.append([f"img/{i}.png", f"a small {WORDS[i % 3]} number {i}", WORDS[i % 3], split])
    return write_csv(tmp_path / "pairs.csv", ["path", "caption", "label", "split"], rows)


def test_a_csv_of_images_and_captions_gives_raw_samples_and_tokenised_batches(pairs_csv):
    data = PairedCSV(str(pairs_csv), text_column="caption", label_column="label", size=8, vocab_size=60, batch_size=4)
    info = data.info
    assert info.shape == (1, 8, 8) and info.num_classes == 3 and not info.multilabel
    assert info.extra["class_names"] == ["bird", "cat", "dog"]  # sorted when not given
    assert (
        info.extra["text"]["vocab_size"] <= 60
        and Path(info.extra["text"]["tokenizer"]).parent == pairs_csv.parent / "tokenizers"
    )
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [12, 3, 3]
    sample = data.split("train")[1]
    assert sample["x"].dtype == torch.uint8 and sample["x"].shape == (1, 8, 8)
    assert sample["text"] == "a small dog number 1" and sample["y"] == 2 and sample["idx"] == 1
    batch = data.collate([data.split("train")[i] for i in range(4)])
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["input_ids"].dtype == torch.long
    cls_id = data.tokenizer.backend.token_to_id("[CLS]")
    assert (batch["input_ids"][:, 0] == cls_id).all() and batch["attention_mask"][:, 0].all()
    assert batch["y"].tolist() == [1, 2, 0, 1] and "text" not in batch


def test_the_tokenizer_is_trained_once_and_read_back(pairs_csv, monkeypatch):
    first = PairedCSV(str(pairs_csv), text_column="caption", size=8, vocab_size=60, tokenizer="bpe")
    path = Path(first.info.extra["text"]["tokenizer"])
    stamp, ids = path.stat().st_mtime_ns, first.tokenizer(["a small bird"])["input_ids"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been read, not trained again")

    monkeypatch.setattr(text_module, "_train", no_training)
    again = PairedCSV(str(pairs_csv), text_column="caption", size=8, vocab_size=60, tokenizer="bpe")
    assert again.info.extra["text"] == first.info.extra["text"] and path.stat().st_mtime_ns == stamp
    assert torch.equal(again.tokenizer(["a small bird"])["input_ids"], ids)
    # other training texts are another vocabulary: trained, not the cached one
    monkeypatch.undo()
    other = PairedCSV(str(pairs_csv), text_column="path", size=8, vocab_size=60, tokenizer="bpe")
    assert other.info.extra["text"]["sha256"] != first.info.extra["text"]["sha256"]


def test_long_texts_are_cut_at_max_tokens_keeping_the_end_marker(pairs_csv):
    data = PairedCSV(str(pairs_csv), text_column="caption", size=8, vocab_size=60, max_tokens=5)
    ids = data.tokenizer(["a small cat number 1 and a small dog", "cat"])["input_ids"]
    sep = data.tokenizer.backend.token_to_id("[SEP]")
    assert ids.shape == (2, 5) and ids[0, -1] == sep


@pytest.mark.parametrize(("uncertain", "expected"), [("zeros", [1, 0, 0]), ("ones", [1, 1, 0]), ("ignore", [1, -1, 0])])
def test_chexpert_layout_reads_observations_with_an_uncertain_policy(tmp_path, uncertain, expected):
    root = tmp_path / "CheXpert-v1.0-small"
    rows = []
    for i in range(10):
        name = f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg"
        write_png(tmp_path / name, 10 * i)
        # Cardiomegaly 1.0, Edema -1.0 (uncertain), Pneumonia blank (not mentioned)
        rows.append([name, f"heart is enlarged {i}", "no acute process", "1.0", "-1.0", ""])
    header = ["Path", "section_findings", "section_impression", "Cardiomegaly", "Edema", "Pneumonia"]
    csv_path = write_csv(root / "plus.csv", header, rows)
    data = CheXpert(str(csv_path), uncertain=uncertain, size=8, vocab_size=60, val_fraction=0.2, test_fraction=0.2)
    info = data.info
    assert info.multilabel and info.extra["class_names"] == ["Cardiomegaly", "Edema", "Pneumonia"]
    sample = data.split("train")[0]
    assert sample["y"].tolist() == expected
    assert sample["text"].startswith("heart is enlarged") and sample["text"].endswith("no acute process")


def test_mimic_cxr_layout_pairs_each_image_with_its_reports_sections(tmp_path):
    split_rows, label_rows = [], []
    for i in range(8):
        subject, study, dicom = f"1000000{i}", f"5000000{i}", f"d{i}"
        folder = tmp_path / "files" / "p10" / f"p{subject}"
        write_png(folder / f"s{study}" / f"{dicom}.jpg", 20 * i)
        report = f"EXAMINATION: CHEST\n\nFINDINGS: Lungs are clear {i}.\n\nIMPRESSION: No acute\n process.\n"
        (folder / f"s{study}.txt").write_text(report)
        split_rows.append(
            [dicom, study, subject, ["train", "train", "train", "train", "validate", "validate", "test", "test"][i]]
        )
        label_rows.append([subject, study, "1.0" if i % 2 else "", "-1.0"])
    write_csv(tmp_path / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    write_csv(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", ["subject_id", "study_id", "Edema", "Pneumonia"], label_rows)
    data = MIMICCXR(str(tmp_path), label_columns=["Edema", "Pneumonia"], uncertain="ones", size=8, vocab_size=60)
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [4, 2, 2]
    sample = data.split("train")[1]
    assert sample["text"] == "Lungs are clear 1. No acute process."
    assert sample["y"].tolist() == [1, 1] and data.info.extra["class_names"] == ["Edema", "Pneumonia"]


def test_report_sections_fall_back_to_the_whole_report():
    assert report_sections("FINDINGS: a.\nIMPRESSION: b.") == "a. b."
    assert report_sections("  no headings\nat all ") == "no headings at all"


def test_bad_columns_and_missing_files_are_named(pairs_csv):
    with pytest.raises(
        ConfigError, match=r"data.text_column: 'report' is not a column of .*pairs.csv \(its columns: path"
    ):
        _ = PairedCSV(str(pairs_csv), text_column="report", size=8).info
    with pytest.raises(ConfigError, match="data.label_columns: 'Edema'"):
        _ = PairedCSV(str(pairs_csv), text_column="caption", label_columns=["Edema"], size=8).info
    (pairs_csv.parent / "img" / "3.png").unlink()
    with pytest.raises(
        DataError, match=r"1 of the 18 files pairs.csv lists are missing, the first .*img/3.png; fix data.root"
    ):
        _ = PairedCSV(str(pairs_csv), text_column="caption", size=8).info
    with pytest.raises(DataError, match="not found"):
        _ = PairedCSV(str(pairs_csv.parent / "nope.csv")).info


def test_sentences_are_tokenised_once_and_one_per_text_is_drawn_on_the_device(pairs_csv):
    from contrastlab.augment.text import random_sentence

    data = PairedCSV(str(pairs_csv), text_column="caption", size=8, vocab_size=60, sentences=True)
    texts = ["a cat.", "a dog. a bird!", "small cat. small dog? small bird."]
    samples = [
        {"x": torch.zeros(1, 8, 8, dtype=torch.uint8), "text": t, "y": -1, "idx": i} for i, t in enumerate(texts)
    ]
    batch = data.collate(samples)
    assert batch["sentence_of"].tolist() == [[0, -1, -1], [1, 2, -1], [3, 4, 5]]
    single = data.tokenizer(["a dog.", "a bird!"])["input_ids"]
    assert torch.equal(batch["sentence_ids"][1, : single.shape[1]], single[0])
    drawn = [set() for _ in texts]
    torch.manual_seed(0)
    for _ in range(60):
        out = random_sentence(batch["sentence_ids"], batch["sentence_mask"], batch["sentence_of"])
        for row in range(3):
            ids = out["input_ids"][row][out["attention_mask"][row]]
            drawn[row].add(data.tokenizer.backend.decode(ids.tolist()))
    assert [len(d) for d in drawn] == [1, 2, 3]  # every sentence of a text is drawn, and only its own
    assert all(s.startswith("small") for s in drawn[2]) and not any(s.startswith("small") for s in drawn[1])
