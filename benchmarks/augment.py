"""Batched two-view augmentation on the device vs torchvision's per-sample CPU transforms, same ops.

    .venv/bin/python benchmarks/augment.py [--batch 256] [--size 32] [--batches 20]

Prints samples per second (two views each) and the ratio to our pipeline, side by side in one run:
- ours: contrastlab.augment.vision on a uint8 batch, on the CPU here (on the GPU when --device cuda);
- torchvision v2 per sample on uint8 tensors, in this process and in a DataLoader with one worker per core;
- torchvision per sample on PIL images (the classic worker pipeline), in this process.
Image content does not change the cost of these ops, so the input is random uint8 images.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
import torchvision.transforms as TV1
import torchvision.transforms.v2 as TV
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from contrastlab.augment.vision import BYOLViews, ImageViews


def simclr_torchvision(size: int, pil: bool):
    ops = [
        TV.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
        TV.RandomHorizontalFlip(),
        TV.RandomApply([TV.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        TV.RandomGrayscale(p=0.2),
    ]
    if pil:
        return TV1.Compose([*ops, TV1.ToTensor()])
    return TV.Compose([*ops, TV.ToDtype(torch.float32, scale=True)])


def byol_torchvision(size: int, view: int):
    kernel = max(3, round(size * 0.1)) | 1
    return TV.Compose(
        [
            TV.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True),
            TV.RandomHorizontalFlip(),
            TV.RandomApply([TV.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            TV.RandomGrayscale(p=0.2),
            TV.RandomApply([TV.GaussianBlur(kernel, (0.1, 2.0))], p=(1.0, 0.1)[view]),
            TV.ToDtype(torch.float32, scale=True),
            TV.RandomSolarize(0.5, p=(0.0, 0.2)[view]),
        ]
    )


class TwoViews(Dataset):
    def __init__(self, images: torch.Tensor, transforms):
        self.images, self.transforms = images, transforms

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return tuple(t(self.images[i]) for t in self.transforms)


def rate(fn, samples: int, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return samples * repeats / (time.perf_counter() - start)


def loader_rate(images: torch.Tensor, transforms, batch: int, workers: int) -> float:
    loader = DataLoader(TwoViews(images, transforms), batch_size=batch, num_workers=workers, persistent_workers=True)
    iterator = iter(loader)
    next(iterator)  # workers started and warm
    start, seen = time.perf_counter(), 0
    for views in iterator:
        seen += len(views[0])
    return seen / (time.perf_counter() - start)


def measure(recipe: str, ours, torchvision_views, images: torch.Tensor, args, cores: int):
    """(recipe, pipeline, samples/s) rows: ours on the device, torchvision per sample in and out of process."""
    batch = images[: args.batch]
    device_batch = batch.to(args.device)

    def run_ours():
        views = ours(device_batch)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return views

    def run_torchvision():
        return [torch.stack([t(x) for x in batch]) for t in torchvision_views]

    ours_name = f"contrastlab batched ({args.device}, {torch.get_num_threads()} threads)"
    return [
        (recipe, ours_name, rate(run_ours, args.batch, args.batches)),
        (recipe, "torchvision v2 per sample, 1 process", rate(run_torchvision, args.batch, max(1, args.batches // 4))),
        (
            recipe,
            f"torchvision v2 per sample, DataLoader {cores} workers",
            loader_rate(images, torchvision_views, args.batch, cores),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    cores = os.cpu_count() or 1
    images = (torch.rand(args.batch * args.batches, 3, args.size, args.size) * 255).to(torch.uint8)

    rows = measure(
        "SimCLR", ImageViews(size=args.size), [simclr_torchvision(args.size, pil=False)] * 2, images, args, cores
    )
    pil = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images[: args.batch]]
    pil_view = simclr_torchvision(args.size, pil=True)
    pil_rate = rate(
        lambda: [torch.stack([pil_view(im) for im in pil]) for _ in range(2)], args.batch, max(1, args.batches // 4)
    )
    rows.append(("SimCLR", "torchvision PIL per sample, 1 process", pil_rate))
    byol_tv = [byol_torchvision(args.size, view) for view in (0, 1)]
    rows += measure("BYOL", BYOLViews(size=args.size), byol_tv, images, args, cores)

    print(
        f"# {time.strftime('%Y-%m-%d')} {platform.processor() or platform.machine()}, {cores} cores, "
        f"torch {torch.__version__}, batch {args.batch}, {args.size}x{args.size} RGB, two views per sample\n"
    )
    print("| recipe | pipeline | samples/s | ours / this |")
    print("|---|---|---:|---:|")
    for recipe, name, value in rows:
        ours_rate = next(v for r, n, v in rows if r == recipe and n.startswith("contrastlab"))
        print(f"| {recipe} | {name} | {value:,.0f} | {ours_rate / value:.1f}x |")


if __name__ == "__main__":
    main()
