"""Medical data: BreastMNIST quality after self-supervised pretraining, and 3-D view throughput.

    .venv/bin/python benchmarks/medical.py [--epochs 20] [--widths "[16, 32, 64]"] [--skip-quality] [--skip-views]

1. Quality (skipped when ../shared/data/medmnist/breastmnist.npz is absent): `contrastlab fit` of
   configs/simclr/breastmnist.yaml (SimCLR, small CNN, the grey medical recipe) for --epochs epochs, then
   `contrastlab eval` of its last checkpoint: the linear probe's ACC and AUROC and fine-tuning on 10% of the
   labels, beside MedMNIST's ResNet-18 (28) reference (Yang et al. 2023: AUC .901, ACC .863) and raw-pixel
   baselines computed here (1-NN and the same L2-tuned logistic probe on the pixels).
2. 3-D views, a (32, 1, 64, 64, 64) float batch on the CPU (--device cuda for a GPU), two views each:
   ours (`VolumeViews`: crop, flips and rotation in one grid_sample for both views; and with the intensity
   ops), Kornia's 3-D augmentations on the batch (affine, three flips, crop, resize), and MONAI's per-sample
   dictionary-free transforms (random-size crop, resize, flips, affine) in a loop over the samples.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
BREAST = REPO.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"
REFERENCE = {"auc": 0.901, "acc": 0.863}  # MedMNIST v2, ResNet-18 (28), BreastMNIST test split


# -- 1. quality ---------------------------------------------------------------------------------


def raw_pixel_baselines() -> dict[str, dict[str, float]]:
    from contrastlab.datamodules.medical import MedMNIST
    from contrastlab.evaluation import protocols as P

    data = MedMNIST(path=str(BREAST))
    split = {s: data.split(s) for s in ("train", "val", "test")}
    x = {s: d.x.flatten(1).float() / 255 for s, d in split.items()}
    y = {s: d.y for s, d in split.items()}
    # 1-NN by Euclidean distance on the pixels
    nearest = torch.cdist(x["test"], x["train"]).argmin(dim=1)
    one_nn = float((y["train"][nearest] == y["test"]).float().mean())
    probe = P.linear_probe(x["train"], y["train"], x["val"], y["val"], x["test"], y["test"], 2)
    auc = P.auroc_ap(probe.test_scores, y["test"], 2)["auroc"]
    return {"pixels, 1-NN": {"acc": one_nn}, "pixels, logistic": {"acc": probe.metrics["top1"], "auc": auc}}


def contrastlab(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "contrastlab", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"contrastlab {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def pretrain_and_evaluate(epochs: int, widths: str, ckpt: Path | None) -> tuple[dict[str, dict[str, float]], float]:
    """Fit the config in a fresh folder (or take `ckpt`, a checkpoint such a fit wrote), then evaluate it."""
    with tempfile.TemporaryDirectory() as folder:
        seconds = float("nan")
        if ckpt is None:
            cwd = Path(folder)
            started = time.monotonic()
            out = contrastlab(
                "fit",
                "-c",
                str(REPO / "configs" / "simclr" / "breastmnist.yaml"),
                "--data.init_args.path",
                str(BREAST),
                "--trainer.max_epochs",
                str(epochs),
                "--trainer.check_val_every_n_epoch",
                str(epochs),
                "--model.init_args.backbone_kwargs.widths",
                widths,
                "--tracking.system_metrics_interval",
                "0",
                cwd=cwd,
            )
            seconds = time.monotonic() - started
            run_id = re.search(r"run ([0-9a-f]{32})", out).group(1)
            ckpt = cwd / "checkpoints" / "breastmnist" / run_id / "last.ckpt"
        table = contrastlab(
            "eval",
            "--ckpt",
            str(ckpt),
            "--protocols",
            "linear,auroc,finetune",
            "--finetune-fractions",
            "0.1,1.0",
            "--tsne-points",
            "0",
            "--baselines",
            "none",  # computed here, raw_pixel_baselines
            cwd=ckpt.parents[3],  # the folder whose mlruns/ holds the checkpoint's run
        )
    found = re.findall(r"^\| [^|]+ \| (\w+) \| (\w+) \| ([-0-9.e]+) \|$", table, re.MULTILINE)  # features, protocol
    value = {(p, m): float(v) for p, m, v in found}
    rows = {
        "SimCLR + linear probe": {"acc": value[("linear", "top1")], "auc": value[("auroc", "auroc")]},
        "SimCLR + fine-tune 10% labels": {
            "acc": value[("finetune_10pct", "top1")],
            "auc": value[("finetune_10pct", "auroc")],
        },
        "SimCLR + fine-tune 100% labels": {
            "acc": value[("finetune_100pct", "top1")],
            "auc": value[("finetune_100pct", "auroc")],
        },
    }
    return rows, seconds


def quality(epochs: int, widths: str, ckpt: Path | None) -> None:
    if not BREAST.is_file():
        print(f"quality: skipped, {BREAST} is absent")
        return
    rows = {"MedMNIST ResNet-18 (28), supervised [reference]": dict(REFERENCE)}
    rows.update(raw_pixel_baselines())
    learned, seconds = pretrain_and_evaluate(epochs, widths, ckpt)
    rows.update(learned)
    print(f"\nBreastMNIST test split (156 images); SimCLR, small_cnn {widths}: {epochs} epochs, fit {seconds:.0f} s\n")
    print("| model | ACC | AUC |\n|---|---|---|")
    for name, metrics in rows.items():
        auc = f"{metrics['auc']:.3f}" if "auc" in metrics else "-"
        print(f"| {name} | {metrics['acc']:.3f} | {auc} |")


# -- 2. 3-D views -----------------------------------------------------------------------------------------


def kornia_views(size: int):
    import kornia.augmentation as K

    crop = int(size * 0.75)
    pipeline = torch.nn.Sequential(
        K.RandomAffine3D(degrees=10.0, p=0.5),
        K.RandomHorizontalFlip3D(p=0.5),
        K.RandomVerticalFlip3D(p=0.5),
        K.RandomDepthicalFlip3D(p=0.5),
        K.RandomCrop3D((crop, crop, crop), p=1.0),
    )

    def views(x: torch.Tensor) -> list[torch.Tensor]:
        return [F.interpolate(pipeline(x), size=(size,) * 3, mode="trilinear") for _ in range(2)]

    return views


def monai_views(size: int):
    import monai.transforms as M

    pipeline = M.Compose(
        [
            M.RandSpatialCrop(roi_size=(int(size * 0.74),) * 3, random_size=True),
            M.Resize((size,) * 3),
            M.RandFlip(prob=0.5, spatial_axis=0),
            M.RandFlip(prob=0.5, spatial_axis=1),
            M.RandFlip(prob=0.5, spatial_axis=2),
            M.RandAffine(prob=0.5, rotate_range=(0.17, 0.17, 0.17), padding_mode="zeros"),
        ]
    )

    def views(x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.stack([torch.as_tensor(pipeline(sample)) for sample in x]) for _ in range(2)]

    return views


def ours(size: int, intensity: bool):
    from contrastlab.augment.volume import VolumeViews

    off = {} if intensity else {"contrast_p": 0.0, "gamma_p": 0.0, "noise_p": 0.0, "blur_p": 0.0}
    return VolumeViews(size=size, crop_scale=(0.4, 1.0), rotate_degrees=10.0, **off)


def timed(views, x: torch.Tensor, batches: int) -> float:
    views(x)  # warm-up
    if x.is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(batches):
        views(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / batches * 1000


def view_throughput(batch: int, size: int, batches: int, device: str) -> None:
    x = torch.rand(batch, 1, size, size, size, device=device)
    rows = {
        "ours: VolumeViews, crop + flips + rotation (one grid_sample)": timed(ours(size, False).to(device), x, batches),
        "ours: VolumeViews, with contrast, gamma, blur, noise": timed(ours(size, True).to(device), x, batches),
        "Kornia 3-D: affine, 3 flips, crop, resize (batched)": timed(kornia_views(size), x, batches),
    }
    if device == "cpu":  # MONAI's array transforms run per sample
        rows["MONAI: random-size crop, resize, 3 flips, affine (per sample)"] = timed(
            monai_views(size), x, max(1, batches // 2)
        )
    base = next(iter(rows.values()))
    print(f"\n3-D views: two views of a ({batch}, 1, {size}, {size}, {size}) float batch on {device}, ms per batch\n")
    print("| pipeline | ms / batch | x ours |\n|---|---|---|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.0f} | {ms / base:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--widths", default="[16, 32, 64]", help="small_cnn's stage widths (the config's: 32, 64, 128)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--ckpt", help="evaluate this checkpoint of an earlier fit of the config instead of fitting")
    parser.add_argument("--skip-views", action="store_true")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"{platform.node()}: torch {torch.__version__}, {threads} threads, {time.strftime('%Y-%m-%d')}")
    if not args.skip_views:
        view_throughput(args.batch, args.size, args.batches, args.device)
    if not args.skip_quality:
        quality(args.epochs, args.widths, Path(args.ckpt).resolve() if args.ckpt else None)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
