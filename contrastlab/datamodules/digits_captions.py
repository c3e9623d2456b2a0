"""Paired examples: scikit-learn's digits as 8x8 PNGs with captions, and spoken digits (FSDD's layout) with captions.

    python -m contrastlab.datamodules.digits_captions data/digits_captions
    python -m contrastlab.datamodules.digits_captions data/fsdd_captions --spoken ../shared/data/fsdd/recordings

The first writes `images/<index>.png` and `captions.csv` (path, caption, label, split) there. A caption names the
digit and describes its stroke weight, slant and size, measured on the image ("a thick handwritten seven", "a thin
three leaning right"), in one of several phrasings. The split is the same seeded stratified 1257/180/360 split
as `contrastlab.datamodules.vision.Digits`. Configs: configs/convirt/digits_captions.yaml, configs/clip/....
The second writes `captions.csv` for the recordings `{digit}_{speaker}_{take}.wav` of a folder ("seven, spoken by
jackson"; split: FSDD's official one, takes 0-4 test, when the folder has later takes; else none, and the
DataModule splits by seed). Config: configs/clap/spoken_digits.yaml.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from contrastlab.datamodules.splits import stratified_counts

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PHRASINGS = (
    "a {weight} handwritten {name}{slant}",
    "the digit {name}, {weight} and {size}{slant}",
    "a {size} {name} drawn in {weight} strokes{slant}",
    "handwritten {name}: {weight}, {size}{slant}",
)


def _tertile(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0, 1, 2: the value's third within its own class (thin/regular/thick is relative to the digit)."""
    out = np.zeros(len(values), dtype=int)
    for c in np.unique(labels):
        idx = labels == c
        cuts = np.quantile(values[idx], [1 / 3, 2 / 3])
        out[idx] = np.searchsorted(cuts, values[idx])
    return out


def attributes(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, 3) stroke weight, size and slant of (N, 8, 8) images in [0, 16], each 0, 1 or 2 (a third of its class)."""
    ink = images.sum(axis=(1, 2))
    ys, xs = np.mgrid[0:8, 0:8]
    mass = images.sum(axis=(1, 2)).clip(min=1e-6)
    cx, cy = (images * xs).sum(axis=(1, 2)) / mass, (images * ys).sum(axis=(1, 2)) / mass
    # slant: the sign of the x-y covariance (image y grows downwards, so a positive one leans left)
    cov = (images * (xs - cx[:, None, None]) * (ys - cy[:, None, None])).sum(axis=(1, 2)) / mass
    extent = (images > 4).sum(axis=(1, 2))
    return np.stack([_tertile(ink, labels), _tertile(extent, labels), _tertile(-cov, labels)], axis=1)


def describe(images: np.ndarray, labels: np.ndarray, seed: int = 0) -> list[str]:
    """One caption per (N, 8, 8) image in [0, 16]: its name and `attributes`, in a random phrasing."""
    weight, size, slant = attributes(images, labels).T
    rng = np.random.default_rng(seed)
    captions = []
    for i, label in enumerate(labels):
        phrasing = PHRASINGS[rng.integers(len(PHRASINGS))]
        captions.append(
            phrasing.format(
                name=NAMES[label],
                weight=("thin", "regular", "thick")[weight[i]],
                size=("small", "medium", "large")[size[i]],
                slant=(" leaning left", "", " leaning right")[slant[i]],
            )
        )
    return captions


def write_digits_captions(out: Path, seed: int = 0, test_size: int = 360, val_size: int = 180) -> Path:
    """Write the PNGs and `captions.csv` into `out`; returns the CSV's path."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images, digits.target
    idx = np.arange(len(labels))
    split = np.empty(len(labels), dtype=object)
    for name, chosen in stratified_counts(labels, val_size, test_size, seed).items():  # the Digits DataModule's
        split[chosen] = name
    captions = describe(images, labels, seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pixels = np.round(images * (255.0 / 16.0)).astype(np.uint8)
    csv_path = out / "captions.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption", "label", "split"])
        for i in idx:
            name = f"images/{i:04d}.png"
            Image.fromarray(pixels[i]).save(out / name)
            writer.writerow([name, captions[i], NAMES[labels[i]], split[i]])
    return csv_path


SPOKEN_PHRASINGS = ("{name}, spoken by {speaker}", "a recording of {speaker} saying {name}", "the word {name}")


def write_spoken_captions(recordings: Path, out: Path, test_takes: int = 5, seed: int = 0) -> Path:
    """`out/captions.csv` (path, caption, label, speaker[, split]) for the FSDD-named WAVs of `recordings`."""
    import re

    found = []
    for path in sorted(Path(recordings).glob("*.wav")):
        match = re.fullmatch(r"(\d)_(\w+?)_(\d+)", path.stem)
        if match:
            found.append((path.resolve(), int(match.group(1)), match.group(2), int(match.group(3))))
    if not found:
        raise FileNotFoundError(f"no {{digit}}_{{speaker}}_{{take}}.wav files in {recordings}")
    official = any(take >= test_takes for *_, take in found)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "captions.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption", "label", "speaker", *(["split"] if official else [])])
        for path, digit, speaker, take in found:
            caption = SPOKEN_PHRASINGS[rng.integers(len(SPOKEN_PHRASINGS))].format(name=NAMES[digit], speaker=speaker)
            split = ["test" if take < test_takes else "train"] if official else []
            writer.writerow([str(path), caption, NAMES[digit], speaker, *split])
    return csv_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="data/digits_captions", help="folder to write (default %(default)s)")
    parser.add_argument("--spoken", metavar="RECORDINGS", help="caption these FSDD-named WAVs instead of the images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.spoken:
        print(write_spoken_captions(Path(args.spoken), Path(args.out), seed=args.seed))
    else:
        print(write_digits_captions(Path(args.out), args.seed))


if __name__ == "__main__":
    main()
