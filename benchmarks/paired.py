"""ConVIRT and CLIP on digits paired with captions: cross-modal retrieval and zero-shot accuracy against chance.

    .venv/bin/python benchmarks/paired.py [--methods convirt clip] [--epochs 8] [--seeds 0]

Writes the paired set (`python -m contrastlab.datamodules.digits_captions`) to a temporary folder, then runs
`contrastlab fit -c configs/<method>/digits_captions.yaml` in this process (the CLI's own code path) on a
temporary MLflow store for `--epochs` epochs, and reads the test split's figures from the run:

- Recall@1 and @5, image-to-text and text-to-image, over the 360 test pairs (chance: K/360). A caption names the
  digit and one of 27 stroke-weight/size/slant descriptions in one of four phrasings, so many captions say
  the same thing in other words: Recall@1 is bounded below 1 by design (the script prints that ceiling);
- zero-shot accuracy from the config's class prompts ("a handwritten {label}", "the digit {label}"; chance 1/10);
- kNN top-1 of the image encoder (k=20) beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEST_PAIRS = 360
KEYS = [
    ("a_to_b_recall_at_1", "img->txt R@1"),
    ("b_to_a_recall_at_1", "txt->img R@1"),
    ("a_to_b_recall_at_5", "img->txt R@5"),
    ("b_to_a_recall_at_5", "txt->img R@5"),
    ("zero_shot_accuracy", "zero-shot acc"),
    ("knn_top1", "image kNN top-1"),
]


def fit(method: str, csv: Path, epochs: int, seed: int, folder: Path) -> tuple[dict[str, float], float]:
    """Test metrics of one `contrastlab fit` of the method's digits_captions config, and its seconds."""
    import mlflow

    from contrastlab.cli import main

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    args = [
        "fit", "-c", str(REPO / "configs" / method / "digits_captions.yaml"),
        "--data.init_args.csv", str(csv), "--trainer.max_epochs", str(epochs),
        "--trainer.check_val_every_n_epoch", str(epochs), "--seed_everything", str(seed),
        "--tracking-uri", uri, "--tracking.system_metrics_interval", "0", "--tracking.log_checkpoints", "false",
        "--tracking.checkpoint_dir", str(folder / "checkpoints"),
    ]  # fmt: skip
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        main(args)
    seconds = time.perf_counter() - start
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], order_by=["start_time DESC"])
    metrics = runs[0].data.metrics
    return {key: metrics[f"test/{key}"] for key, _ in KEYS}, seconds


def retrieval_ceiling(seed: int = 0, test_size: int = TEST_PAIRS) -> float:
    """Expected Recall@1 of an oracle that reads each caption's meaning (digit, weight, size, slant) but not its
    phrasing: a query ties with every test caption of the same meaning, broken at random (mean of 1/ties)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from contrastlab.datamodules.digits_captions import attributes

    digits = load_digits()
    meaning = np.column_stack([digits.target, attributes(digits.images, digits.target)])
    _, test = train_test_split(np.arange(len(meaning)), test_size=test_size, stratify=digits.target, random_state=seed)
    _, inverse, counts = np.unique(meaning[test], axis=0, return_inverse=True, return_counts=True)
    return float(np.mean(1.0 / counts[inverse.ravel()]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["convirt", "clip"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)

    from contrastlab.datamodules.digits_captions import write_digits_captions

    with tempfile.TemporaryDirectory() as tmp:
        csv = write_digits_captions(Path(tmp) / "digits_captions")
        chance = {
            "a_to_b_recall_at_1": 1 / TEST_PAIRS,
            "b_to_a_recall_at_1": 1 / TEST_PAIRS,
            "a_to_b_recall_at_5": 5 / TEST_PAIRS,
            "b_to_a_recall_at_5": 5 / TEST_PAIRS,
            "zero_shot_accuracy": 0.1,
            "knn_top1": 0.1,
        }
        header = "| method | seed | " + " | ".join(name for _, name in KEYS) + " | seconds |"
        lines = [header, "|" + "---|" * (len(KEYS) + 3)]
        lines.append("| chance | | " + " | ".join(f"{chance[k]:.3f}" for k, _ in KEYS) + " | |")
        for method in args.methods:
            for seed in args.seeds:
                run_dir = Path(tmp) / f"{method}-{seed}"
                run_dir.mkdir()
                figures, seconds = fit(method, csv, args.epochs, seed, run_dir)
                lines.append(
                    f"| {method} | {seed} | " + " | ".join(f"{figures[k]:.3f}" for k, _ in KEYS) + f" | {seconds:.0f} |"
                )
                print(lines[-1], file=sys.stderr, flush=True)
    ceiling = retrieval_ceiling()
    print(f"digits captions, {args.epochs} epochs, test split ({TEST_PAIRS} pairs)")
    print(f"Recall@1 ceiling (captions of the same meaning tie): {ceiling:.3f}\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
