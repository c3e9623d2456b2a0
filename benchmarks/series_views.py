"""Series views: one batched call against the same ops applied one sample at a time, side by side.

    .venv/bin/python benchmarks/series_views.py [--batch 256 --length 150 --channels 1 --device cpu]

Each recipe is `contrastlab.augment.series.SeriesViews`; "per sample" calls the very same pipeline on
batches of one in a Python loop (what a per-sample Dataset transform costs), so the ratio is batching alone.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from contrastlab.augment.series import SeriesViews

RECIPES = {
    "generic (warps, scaling, jitter)": {},
    "TS-TCC-like (scaling | permutation + jitter)": {
        "time_warp_p": 0.0,
        "magnitude_warp_p": 0.0,
        "scaling": [0.1, 0.0],
        "permutation_p": [0.0, 1.0],
        "jitter": [0.0, 0.1],
    },
    "TS2Vec crops + masking": {"crop": True, "time_warp_p": 0.0, "magnitude_warp_p": 0.0, "mask_ratio": 0.1},
}


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.channels, args.length, device=args.device).cumsum(-1)
    x[::2, :, args.length * 2 // 3 :] = float("nan")  # half the series padded: masks on
    print(f"load average {os.getloadavg()[0]:.1f}, {torch.get_num_threads()} threads, {args.device}")
    print(f"{args.batch} series x {args.channels} channel(s) x {args.length} steps, two views each\n")
    print("| recipe | batched samples/s | per-sample loop samples/s | batched / loop |")
    print("|---|---:|---:|---:|")
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for name, kwargs in RECIPES.items():
        views = SeriesViews(**kwargs).to(args.device)
        batched = seconds(lambda views=views: (views.augment_batch({"x": x}), sync()), args.repeats)
        looped = seconds(
            lambda views=views: ([views.augment_batch({"x": x[i : i + 1]}) for i in range(len(x))], sync()),
            max(1, args.repeats // 2),
        )
        rate, loop_rate = args.batch / batched, args.batch / looped
        print(f"| {name} | {rate:,.0f} | {loop_rate:,.0f} | {rate / loop_rate:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
