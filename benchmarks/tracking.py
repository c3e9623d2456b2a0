"""The cost of tracking: the same SimCLR fit on digits with and without MLflow, side by side in one run.

    .venv/bin/python benchmarks/tracking.py [--epochs 10] [--repeats 2]

"without": Lightning with no logger and no checkpoints. "with": what `contrastlab fit` adds: the MLflow
logger on an embedded SQLite store (metrics every 2 steps, as configs/simclr/digits.yaml), last/best
checkpoints each epoch, system metrics every 5 s, checkpoints copied into the run at the end.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from contrastlab.augment.vision import ImageViews
from contrastlab.datamodules.vision import Digits
from contrastlab.modules import SimCLR
from contrastlab.modules.core.optim import OptimizerConfig
from contrastlab.platform import tracking
from contrastlab.platform.callbacks import RunCheckpoint, SystemMetrics


def fit_seconds(epochs: int, tracked: bool, folder: Path) -> float:
    L.seed_everything(0, verbose=False)
    data = Digits(batch_size=256)
    augment = ImageViews(size=8, hflip_p=0.0, crop_scale=(0.5, 1.0), jitter=(0.4, 0.4, 0.0, 0.0), grayscale_p=0.0)
    model = SimCLR(
        backbone="small_cnn",
        augment=augment,
        data_info=data.info,
        proj_hidden_dim=512,
        optimizer=OptimizerConfig(lr=3e-3, warmup_epochs=1),
    )
    common = dict(
        max_epochs=epochs,
        check_val_every_n_epoch=5,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=2,
        num_sanity_val_steps=0,
    )
    if tracked:
        uri = tracking.resolve_uri(f"sqlite:///{folder / 'mlflow.db'}")
        logger = tracking.RunLogger(
            experiment_name="bench",
            tracking_uri=uri,
            log_model=True,
            artifact_location=tracking.artifact_location(uri, "bench"),
        )
        callbacks = [
            RunCheckpoint(str(folder / "ckpt"), "bench", "val/knn_top1", "max", "simclr"),
            SystemMetrics(5.0, uri, resumed=False),
        ]
        trainer = L.Trainer(logger=logger, callbacks=callbacks, **common)
    else:
        trainer = L.Trainer(logger=False, enable_checkpointing=False, **common)
    start = time.perf_counter()
    trainer.fit(model, data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"without tracking": [], "with MLflow tracking": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):  # interleaved, so drift in machine load hits both alike
            results["without tracking"].append(fit_seconds(args.epochs, False, Path(tmp)))
            results["with MLflow tracking"].append(fit_seconds(args.epochs, True, Path(tmp) / str(repeat)))
    base = min(results["without tracking"])
    print(
        f"# {time.strftime('%Y-%m-%d')} {platform.machine()}, {torch.get_num_threads()} threads, "
        f"SimCLR small_cnn on digits, {args.epochs} epochs, best of {args.repeats}\n"
    )
    print("| setting | seconds | s/epoch | ratio |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        best = min(values)
        print(f"| {name} | {best:.1f} | {best / args.epochs:.2f} | {best / base:.2f}x |")


if __name__ == "__main__":
    main()
