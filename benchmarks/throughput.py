"""Training throughput: contrastlab against lightly on identical work, in one run, plus where a step's time goes,
GradCache's memory and gradients, and what precision, channels-last and compilation change.

    .venv/bin/python benchmarks/throughput.py --quick              # a few minutes on 2 CPU cores
    .venv/bin/python benchmarks/throughput.py --device cuda --quick # the same on a GPU (benchmarks/gpu.sh)
    .venv/bin/python benchmarks/throughput.py --quick --write       # also rewrite docs/benchmarks/speed.md

Sections (`--sections`, all by default):

- `peer`: SimCLR on scikit-learn's digits at 32 px, SimCLR's augmentation recipe, NT-Xent T=0.2, the same
  network on both sides (a 4-conv CNN, strides 1-2-2-1, which `small_cnn` expresses with per-stage strides;
  a ResNet-18 with the CIFAR stem: timm's on our side, torchvision's on lightly's; their multiply-adds are
  counted and printed), the same projector (Linear-BN-ReLU-Linear 512-128), AdamW 3e-3 with the same warm-up
  cosine, batch and epochs. Ours is the `contrastlab fit` command (batched augmentation on the device,
  MLflow tracking on a fresh SQLite store, checkpoints, the online probe); lightly's is its documented recipe,
  a plain loop over `SimCLRTransform` (per-sample torchvision transforms) in 2 DataLoader workers, its
  `SimCLRProjectionHead` and `NTXentLoss`. Each side is one process, timed whole; inside it a step is the
  time between two consecutive optimiser steps (data, augmentation, forward, backward, update), an epoch the
  training part of an epoch, and "time to target" the training time until the validation kNN top-1 (our
  weighted kNN, k=20, on both sides) first reaches `--target`.
- `profile`: one of our training steps split into data, augmentation, forward, projector + loss, probe and
  logging, backward and optimiser, by wrapping each part in `torch.profiler.record_function`, plus the
  profiler's top operators.
- `gradcache`: peak memory of one SimCLR step at batch 256, at 4096, and at 4096 with GradCache in chunks
  of 256 (each in a fresh process: peak RSS on CPU, `max_memory_allocated` on CUDA), and the relative
  error of GradCache's gradients against the full batch's for every supported loss.
- `precision`: our step in float32, `bf16-mixed`, `channels_last`, `compile_backbone` and all three.

lightly is not a dependency of contrastlab: `pip install -e .[bench]` (or `pip install lightly`). Without it
the `peer` section says so and the other sections run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from figures import mean_sd, write_block  # noqa: E402
from flops import conv_net_macs, count_flops, mfu, peak_tflops  # noqa: E402

SMALL_CNN = {"widths": [32, 64, 128, 256], "strides": [1, 2, 2, 1], "convs_per_stage": 1}
NETS = {"small_cnn": {"batch": 256}, "resnet18": {"batch": 64}}
SIZE, TEMPERATURE, LR, WEIGHT_DECAY, HIDDEN, PROJ = 32, 0.2, 3e-3, 1e-4, 512, 128


# -- timing inside a run ---------------------------------------------------------------------------------------


class StepTimer(L.Callback):
    """Per-step and per-epoch training times and each validation's kNN, written to `out` as JSON at the end.

    A step is the time between two consecutive `on_train_batch_end`s (the first step of an epoch also waits
    for the loader's workers, so step statistics leave it out); an epoch's training time runs from its start
    to its last batch's end, so validation is not in it.
    """

    def __init__(self, out: str = "", sync_cuda: bool = False, stop_after: int = 0):
        self.out, self.sync_cuda, self.stop_after = out, sync_cuda, stop_after
        self.steps: list[float] = []
        self.first_steps: list[float] = []
        self.epochs: list[float] = []
        self.knn: list[tuple[float, float]] = []  # (training seconds so far, val kNN top-1)

    def _now(self) -> float:
        if self.sync_cuda and torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, module):
        self.epoch_start = self.last = self._now()
        self.first = True

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        now = self._now()
        (self.first_steps if self.first else self.steps).append(now - self.last)
        self.first, self.last = False, now
        self.epoch_end = now
        if self.stop_after and len(self.steps) >= self.stop_after:
            trainer.should_stop = True

    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking or not hasattr(self, "epoch_start"):
            return
        self.epochs.append(self.epoch_end - self.epoch_start)
        knn = trainer.callback_metrics.get("val/knn_top1")
        if knn is not None:
            self.knn.append((sum(self.epochs), float(knn)))

    def on_fit_end(self, trainer, module):
        if not self.knn and hasattr(self, "epoch_end"):  # no validation ran
            self.epochs.append(self.epoch_end - self.epoch_start)
        if self.out:
            Path(self.out).write_text(json.dumps(self.summary()))

    def summary(self) -> dict:
        return {"steps": self.steps, "first_steps": self.first_steps, "epochs": self.epochs, "knn": self.knn}


@contextmanager
def stepping_alone(model):
    """The module's training_step callable without a Trainer: a stub trainer (training, one optimiser), no logging."""
    cls = type(model)
    stub = type("Attached", (), {"training": True, "optimizers": [torch.optim.SGD(model.parameters(), lr=0.1)]})()
    cls.trainer = property(lambda self: stub)
    cls.log = lambda self, *a, **k: None
    try:
        yield
    finally:
        del cls.trainer, cls.log


# -- the two sides -----------------------------------------------------------------------------------------------


def our_config(
    net: str, batch: int, epochs: int, steps: int | None, device: str, timer_out: str, seed: int = 0
) -> dict:
    """Our default recipe: precision and channels-last are left to their defaults (`trainer.precision: auto`)."""
    backbone = {"backbone": "small_cnn", "backbone_kwargs": SMALL_CNN} if net == "small_cnn" else {}
    if net == "resnet18":
        backbone = {"backbone": "resnet18", "backbone_kwargs": {"cifar_stem": True}}
    trainer = {
        "max_epochs": epochs,
        "accelerator": device,
        "devices": 1,
        "check_val_every_n_epoch": 1,
        "enable_progress_bar": False,
        "log_every_n_steps": 2,
        "num_sanity_val_steps": 0,
        "callbacks": [
            {"class_path": "throughput.StepTimer", "init_args": {"out": timer_out, "sync_cuda": device == "cuda"}}
        ],
    }
    if steps:
        trainer |= {"limit_train_batches": steps, "limit_val_batches": 0}
    return {
        "seed_everything": seed,
        "trainer": trainer,
        "model": {
            "class_path": "contrastlab.modules.SimCLR",
            "init_args": {
                **backbone,
                "temperature": TEMPERATURE,
                "proj_hidden_dim": HIDDEN,
                "proj_dim": PROJ,
                "optimizer": {"name": "adamw", "lr": LR, "weight_decay": WEIGHT_DECAY, "warmup_epochs": 1},
                "augment": {
                    "class_path": "contrastlab.augment.vision.ImageViews",
                    "init_args": {"size": SIZE},  # SimCLR's recipe: the defaults
                },
            },
        },
        "data": {"class_path": "contrastlab.datamodules.vision.Digits", "init_args": {"batch_size": batch}},
        "test_after_fit": False,
        "tracking": {"experiment": "throughput", "system_metrics_interval": 0, "log_checkpoints": False},
    }


def lightly_net(net: str) -> torch.nn.Module:
    """The same networks built from torch and torchvision only, as a lightly user would."""
    from torch import nn

    if net == "small_cnn":
        layers, channels = [], 1
        for width, stride in zip(SMALL_CNN["widths"], SMALL_CNN["strides"]):
            layers += [nn.Conv2d(channels, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
            channels = width
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    import torchvision

    resnet = torchvision.models.resnet18()
    resnet.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    resnet.maxpool, resnet.fc = nn.Identity(), nn.Identity()
    return resnet


def run_lightly(net: str, batch: int, epochs: int, steps: int | None, device: str, seed: int = 0) -> dict:
    """lightly's SimCLR recipe in a plain loop; validation kNN each epoch with contrastlab's evaluation."""
    import numpy as np
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from PIL import Image

    from contrastlab.augment.vision import ImageViews
    from contrastlab.datamodules.vision import Digits
    from contrastlab.metrics.knn import knn_accuracy
    from contrastlab.modules.core.optim import warmup_cosine

    torch.manual_seed(seed)
    data = Digits(batch_size=batch)
    train, val = data.split("train"), data.split("val")
    transform = SimCLRTransform(
        input_size=SIZE,
        cj_strength=0.5,  # x (0.8, 0.8, 0.8, 0.2) = our (0.4, 0.4, 0.4, 0.1)
        gaussian_blur=0.0,
        normalize={"mean": list(data.info.mean), "std": list(data.info.std)},
    )

    class Views(torch.utils.data.Dataset):
        def __init__(self, x):
            self.images = [Image.fromarray(img[0].numpy()) for img in x]

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return transform(self.images[i])

    loader = torch.utils.data.DataLoader(
        Views(train.x), batch_size=batch, shuffle=True, drop_last=True, num_workers=2, persistent_workers=True
    )
    backbone = lightly_net(net).to(device)
    head = SimCLRProjectionHead(feature_dim(backbone), HIDDEN, PROJ).to(device)
    model = torch.nn.Sequential(backbone, head)
    criterion = NTXentLoss(temperature=TEMPERATURE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    per_epoch = min(len(loader), steps or len(loader))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(per_epoch * epochs, per_epoch))
    mean = torch.tensor(data.info.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.info.std, device=device).view(1, -1, 1, 1)
    eval_view = ImageViews(size=SIZE).eval_view

    def features(x):
        model.eval()
        with torch.no_grad():
            out = torch.cat([backbone((eval_view(c.to(device)) - mean) / std) for c in x.split(512)])
        model.train()
        return out.cpu()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    timer = StepTimer()
    for _ in range(epochs):
        timer.on_train_epoch_start(None, None)
        for i, views in enumerate(loader):
            if i == per_epoch:
                break
            z0, z1 = (head(backbone(v.to(device, non_blocking=True))) for v in views)
            loss = criterion(z0, z1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            sync()
            timer.on_train_batch_end(None, None, None, None, i)
        timer.epochs.append(timer.epoch_end - timer.epoch_start)
        if not steps:
            acc = knn_accuracy(features(train.x), train.y, features(val.x), val.y, data.info.num_classes)
            timer.knn.append((sum(timer.epochs), acc))
        if not np.isfinite(loss.item()):
            raise RuntimeError("lightly side: non-finite loss")
    return timer.summary()


def feature_dim(backbone: torch.nn.Module) -> int:
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        dim = backbone(torch.zeros(2, 1, SIZE, SIZE, device=next(backbone.parameters()).device)).shape[1]
        backbone.train(was)
    return dim


def side_command(side: str, net: str, args, folder: Path, seed: int = 0) -> dict:
    """One side as its own process, timed whole; its per-step figures come back through a JSON file."""
    spec = NETS[net]
    epochs, steps = (args.resnet_epochs, args.resnet_steps) if net == "resnet18" else (args.epochs, None)
    timer_out = folder / f"{side}-{net}-{seed}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    if side == "ours":
        import yaml

        config = folder / f"ours-{net}-{seed}.yaml"
        recipe = our_config(net, spec["batch"], epochs, steps, args.device, str(timer_out), seed)
        config.write_text(yaml.safe_dump(recipe))
        command = [sys.executable, "-m", "contrastlab", "fit", "-c", str(config)]
    else:
        command = [sys.executable, str(Path(__file__)), "--side", "lightly", "--net", net, "--device", args.device]
        command += ["--seed", str(seed)]
        command += ["--epochs", str(epochs), "--out", str(timer_out)] + (["--steps", str(steps)] if steps else [])
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{side} {net} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(timer_out.read_text()), "command": wall, "epochs_run": epochs, "steps_limit": steps}


def time_to(knn: list, target: float) -> float | None:
    return next((seconds for seconds, acc in knn if acc >= target), None)


def shown(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def peer_section(args, out: list[str], record: dict) -> None:
    try:
        import lightly
    except ImportError:
        out.append("**peer**: lightly is not installed; `pip install -e .[bench]` (or `pip install lightly`).\n")
        return
    out.append(f"### Our default recipe against lightly {lightly.__version__}'s on identical nets\n")
    from contrastlab.contract import DataInfo
    from contrastlab.modules.core.backbones import create_backbone
    from contrastlab.platform.precision import resolve

    grey = DataInfo("digits", "image", (1, SIZE, SIZE))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.nets:
            ours_net = create_backbone(net, grey, **(SMALL_CNN if net == "small_cnn" else {"cifar_stem": True}))
            macs = (conv_net_macs(ours_net, (1, 1, SIZE, SIZE)), conv_net_macs(lightly_net(net), (1, 1, SIZE, SIZE)))
            results = {
                side: [side_command(side, net, args, Path(tmp), seed) for seed in args.seeds]
                for side in ("ours", "lightly")
            }
            record.setdefault("peer", {})[net] = {**results, "macs": macs}
            rows.append((net, macs, results))
    chosen, why = resolve("auto", args.device)
    out.append(
        f"digits at {SIZE} px, SimCLR recipe, AdamW {LR}, T={TEMPERATURE}, device {args.device}, seeds {args.seeds} "
        f"(mean ± sd). Ours is `contrastlab fit` with its defaults: precision {chosen} ({why}), channels-last "
        "on for these convolutional nets; lightly's is its documented recipe in float32. Multiply-adds per image "
        "counted by torch.utils.flop_counter (ours / lightly's net). Step: median over steps after each epoch's "
        "first. Ratio = lightly / ours of the means (above 1: ours is faster).\n"
    )
    out.append(
        "| net | batch | MMACs/img ours / lightly | side | s/step | s/epoch (train) | whole command s | "
        f"train s to val kNN {args.target} | last val kNN |"
    )
    out.append("|---|---:|---|---|---:|---:|---:|---:|---:|")
    for net, macs, results in rows:
        means = {}
        for side in ("ours", "lightly"):
            runs = results[side]
            step = [statistics.median(r["steps"]) for r in runs if r["steps"]]
            epoch = [statistics.mean(r["epochs"]) for r in runs if r["epochs"]]
            command = [r["command"] for r in runs]
            reach = [time_to(r["knn"], args.target) for r in runs]
            last = [r["knn"][-1][1] for r in runs if r["knn"]]
            limited = runs[0]["steps_limit"]
            epochs_note = f"{runs[0]['epochs_run']} ep" if not limited else f"{limited} steps"
            if limited:
                reach_text = "-"
            elif None in reach:
                reach_text = f"{sum(r is None for r in reach)} of {len(reach)} not in {epochs_note}"
            else:
                reach_text = shown(reach, 1)
            means[side] = {
                "step": statistics.fmean(step) if step else None,
                "epoch": statistics.fmean(epoch) if epoch else None,
                "command": statistics.fmean(command),
                "reach": statistics.fmean(reach) if reach and None not in reach else None,
            }
            out.append(
                f"| {net} | {NETS[net]['batch']} | {macs[0] / 1e6:.1f} / {macs[1] / 1e6:.1f} | {side} | "
                f"{shown(step)} | {shown(epoch, 2)} | {shown(command, 1)} ({epochs_note}) | {reach_text} | "
                f"{shown(last)} |"
            )
        o, t = means["ours"], means["lightly"]
        ratios = [f"{label} {t[key] / o[key]:.2f}x" for key, label in
                  (("step", "per step"), ("epoch", "per epoch"), ("command", "whole command"),
                   ("reach", f"time to kNN {args.target}")) if o[key] and t[key]]  # fmt: skip
        out.append(f"| {net} | | | **lightly / ours** | {' · '.join(ratios)} | | | | |")
    out.append("")


# -- where a step's time goes ------------------------------------------------------------------------------------


class Parts:
    """Inclusive and exclusive wall time of nested labelled parts, each also a torch.profiler record_function."""

    def __init__(self, sync_cuda: bool):
        self.sync = torch.cuda.synchronize if sync_cuda else (lambda: None)
        self.inclusive: dict[str, float] = defaultdict(float)
        self.children: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.active = False

    @contextmanager
    def part(self, label: str):
        if not self.active:
            yield
            return
        self.sync()
        start = time.perf_counter()
        self.stack.append(label)
        try:
            with torch.profiler.record_function(label):
                yield
        finally:
            self.sync()
            spent = time.perf_counter() - start
            self.stack.pop()
            self.inclusive[label] += spent
            if self.stack:
                self.children[self.stack[-1]] += spent

    def wrap(self, obj, name: str, label: str) -> None:
        original = getattr(obj, name)

        @functools.wraps(original)
        def wrapped(*a, **k):
            with self.part(label):
                return original(*a, **k)

        setattr(obj, name, wrapped)

    def exclusive(self, label: str) -> float:
        return self.inclusive[label] - self.children[label]


def build_our_module(net: str, device: str, size: int = SIZE, batch: int = 0, **options):
    from contrastlab.augment.vision import ImageViews
    from contrastlab.datamodules.vision import Digits
    from contrastlab.modules import SimCLR
    from contrastlab.modules.core.optim import OptimizerConfig

    data = Digits(batch_size=batch or NETS[net]["batch"])
    backbone = {"backbone": "small_cnn", "backbone_kwargs": SMALL_CNN} if net == "small_cnn" else {}
    if net == "resnet18":  # the small-image stem at CIFAR sizes, ImageNet's stride-4 stem above them, as recipes do
        backbone = {"backbone": "resnet18", "backbone_kwargs": {"cifar_stem": size <= 64}}
    model = SimCLR(
        temperature=TEMPERATURE,
        proj_hidden_dim=HIDDEN,
        proj_dim=PROJ,
        augment=ImageViews(size=size),
        data_info=data.info,
        optimizer=OptimizerConfig(name="adamw", lr=LR, weight_decay=WEIGHT_DECAY, warmup_epochs=1),
        **backbone,
        **options,
    )
    return model, data


def profile_section(args, out: list[str], record: dict) -> None:
    for net in args.profile_nets:
        profile_one(net, args, out, record)


def profile_one(net: str, args, out: list[str], record: dict) -> None:
    import torch.utils.data.dataloader as loader_module

    model, data = build_our_module(net, args.device)
    parts = Parts(args.device == "cuda")
    iterator = loader_module._BaseDataLoaderIter
    original_next = iterator.__next__

    def timed_next(self, _next=original_next):
        with parts.part("data"):
            return _next(self)

    iterator.__next__ = timed_next
    parts.wrap(model.augment, "forward", "augmentation")
    parts.wrap(model.backbone, "forward", "forward (backbone)")
    parts.wrap(model, "contrastive_loss", "projector + loss")
    parts.wrap(model, "training_step", "training_step")
    parts.wrap(model, "log", "logging")
    parts.wrap(model, "backward", "backward")
    parts.wrap(model, "optimizer_step", "optimiser")
    parts.wrap(model, "optimizer_zero_grad", "zero_grad")

    class Window(L.Callback):
        """Time steps 2..n only: the first step builds kernels and starts the loader."""

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            parts.sync()
            if batch_idx == 0:
                parts.active, self.start, self.steps = True, time.perf_counter(), 0
            elif parts.active:
                self.end, self.steps = time.perf_counter(), self.steps + 1
                parts.active = batch_idx < args.profile_steps

    window = Window()
    trainer = L.Trainer(
        accelerator=args.device,
        devices=1,
        max_epochs=1,
        limit_train_batches=args.profile_steps + 1,
        limit_val_batches=0,
        logger=L.pytorch.loggers.CSVLogger(tempfile.mkdtemp()),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[window],
    )
    activities = [torch.profiler.ProfilerActivity.CPU]
    if args.device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    try:
        with torch.profiler.profile(activities=activities, with_stack=True) as prof:
            trainer.fit(model, data)
    finally:
        iterator.__next__ = original_next
    n = window.steps  # at most the epoch's batches but the first
    total = (window.end - window.start) / n
    rows = [
        ("data (loader next)", parts.exclusive("data") / n),
        ("augmentation (on the device)", parts.exclusive("augmentation") / n),
        ("forward (backbone)", parts.exclusive("forward (backbone)") / n),
        ("projector + loss", parts.exclusive("projector + loss") / n),
        ("logging (self.log)", parts.exclusive("logging") / n),
        ("probe + rest of training_step", parts.exclusive("training_step") / n),
        ("backward", parts.exclusive("backward") / n),
        ("optimiser (update)", parts.exclusive("optimiser") / n),
        ("zero_grad", parts.exclusive("zero_grad") / n),
    ]
    rows.append(("Lightning loop, callbacks, logger, transfer (the rest)", total - sum(v for _, v in rows)))
    record.setdefault("profile", {})[net] = {"total": total, "parts": dict(rows)}
    out.append(f"### One training step, {net}, batch {NETS[net]['batch']}, mean of {n} steps: {total * 1e3:.1f} ms\n")
    out.append("| part | ms/step | share |")
    out.append("|---|---:|---:|")
    for label, seconds in rows:
        out.append(f"| {label} | {seconds * 1e3:.1f} | {seconds / total:.0%} |")
    sort = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=8, max_name_column_width=40)
    out.append(
        "\nTop operators by self time (torch.profiler, the whole short fit):\n\n```\n" + table.strip() + "\n```\n"
    )
    syncs = sync_points(prof)
    record["profile"][net]["syncs"] = syncs
    what = "copies from the device to the host" if args.device == "cuda" else f"`{SYNC_OPS[0]}` calls"
    out.append(f"Where the host waited on the device: {what} over the whole short fit, by caller:\n")
    out.append("| calls | caller (innermost frame outside torch; else the op and its parents) |")
    out.append("|---:|---|")
    out.extend(f"| {calls} | `{caller}` |" for caller, calls in syncs[:12])
    out.append("")


SYNC_OPS = ("aten::_local_scalar_dense",)  # .item(), bool(t), float(t): each waits for the device to finish


def sync_points(prof) -> list[tuple[str, int]]:
    """The callers that read the device's tensors on the host, most calls first: on a GPU each read waits.

    On a GPU they are the ops that launched a device-to-host copy (`.item()`, `.cpu()`, `.tolist()`, a boolean
    index); on a CPU, which has no such copies, the `.item()`-like reads, which would be those copies on a GPU.
    With `with_stack`, the profiler records Python calls as an op's ancestors ("file.py(12): name"); a caller is
    named by its innermost frame outside torch and, when that is not ours, the innermost of contrastlab's; with no
    Python frame (an op run by autograd's or a loader's thread) by the op's own chain."""
    events = prof.events()
    copies = [e for e in events if any("DtoH" in k.name for k in e.kernels)]
    callers: Counter = Counter()
    for event in copies if copies else [e for e in events if e.name in SYNC_OPS]:
        frames, ops, parent = [], [event.name], event.cpu_parent
        while parent is not None:
            if ".py(" in parent.name:
                if not parent.name.startswith("torch/") and "/torch/" not in parent.name:
                    frames.append(parent.name.replace(f"{REPO}/", ""))
            elif not frames:
                ops.append(parent.name)
            parent = parent.cpu_parent
        ours = next((f for f in frames if "contrastlab" in f), None)
        named = frames[0] if frames else f"{' <- '.join(ops[:5])} (thread {event.thread})"
        callers[named if ours in (None, named) else f"{named} <- {ours}"] += 1
    return callers.most_common()


# -- GradCache: memory and gradients -----------------------------------------------------------------------------


def memory_probe(batch: int, chunk: int, device: str, method: str = "simclr") -> dict:
    """One SimCLR (or DCLW) step on digits-sized input (8 px, the shipped small_cnn) in this fresh process: peak
    memory.

    chunk -1: only the projector and the loss on the full batch of features, the part GradCache cannot chunk
    (the loss's (2B)^2 similarity matrix and its gradient).
    """
    # chunk -1: the loss in one piece; -N: the loss by blocks of N rows, as GradCache in chunks of N computes it
    loss_only, chunk = chunk < 0, (0 if chunk == -1 else abs(chunk))
    import threading

    import psutil

    from contrastlab.augment.vision import ImageViews
    from contrastlab.datamodules.vision import Digits
    from contrastlab.modules import DCL, SimCLR

    info = Digits().info
    build = {"simclr": SimCLR, "dclw": functools.partial(DCL, sigma=0.5)}[method]
    model = build(
        backbone="small_cnn", proj_hidden_dim=512, data_info=info, augment=ImageViews(size=8), grad_cache_chunk=chunk
    ).to(device)
    alone = stepping_alone(model)  # this process ends after the probe
    alone.__enter__()

    def step(n: int) -> None:
        if loss_only:  # the projector and the loss on n features per view, as GradCache computes them
            feats = [torch.randn(n, model.feature_dim, device=device, requires_grad=True) for _ in range(2)]
            model.contrastive_loss(feats, {}).backward()
            return
        x = (torch.rand(n, 1, 8, 8) * 255).to(torch.uint8).to(device)
        b = model.on_after_batch_transfer({"x": x, "y": torch.arange(n, device=device) % 10, "idx": torch.arange(n)}, 0)
        model.training_step(b, 0).backward()
        model.zero_grad(set_to_none=False)

    step(64)  # kernels, allocator and gradients in place
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    process = psutil.Process()
    base_rss = process.memory_info().rss
    peak_rss, done = [base_rss], threading.Event()

    def sample() -> None:  # torch's kernels release the GIL, so a thread sees RSS during the step
        while not done.is_set():
            peak_rss.append(max(peak_rss[-1], process.memory_info().rss))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    step(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    result = {"seconds": seconds, "cpu_peak_mb": (max(peak_rss) - base_rss) / 2**20}
    if device == "cuda":
        result["cuda_peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    return result


def all_grads(model, batch) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.training_step(batch, 0).backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def gradient_errors(dtype: torch.dtype) -> dict[str, float]:
    """Relative error of GradCache's gradients against the full batch's, batch 64 in chunks of 16, per loss.

    BatchNorm layers run on running statistics (eval mode) so that the full batch and its chunks compute the
    same function; every other part (a narrow small_cnn, the projector's BatchNorm on the full batch, the
    loss) is as in training.
    """
    from contrastlab.augment.vision import ImageViews
    from contrastlab.datamodules.vision import Digits
    from contrastlab.modules import DCL, NCL, SimCLR, SupCon

    info = Digits().info
    small = {"widths": (16, 32, 64), "convs_per_stage": 1}
    common = dict(
        backbone="small_cnn", backbone_kwargs=small, proj_hidden_dim=64, data_info=info, augment=ImageViews(size=8)
    )
    builders = {
        "SimCLR": lambda: SimCLR(**common),
        "SupCon": lambda: SupCon(**common),
        "DCL": lambda: DCL(**common),
        "DCLW": lambda: DCL(sigma=0.5, **common),
        "NCL": lambda: NCL(**common),
    }
    errors = {}
    for name, build in builders.items():
        torch.manual_seed(0)
        model = build().to(dtype)
        model.backbone.eval()

        with stepping_alone(model):
            x = (torch.rand(64, 1, 8, 8) * 255).to(torch.uint8)
            batch = model.on_after_batch_transfer({"x": x, "y": torch.arange(64) % 10, "idx": torch.arange(64)}, 0)
            batch["views"] = [v.to(dtype) for v in batch["views"]]
            full = all_grads(model, batch)
            model.hparams.grad_cache_chunk = 16
            cached = all_grads(model, batch)
        diff = sum((a - b).pow(2).sum() for a, b in zip(cached, full)).sqrt()
        errors[name] = float(diff / sum(b.pow(2).sum() for b in full).sqrt())
    return errors


def gradcache_section(args, out: list[str], record: dict) -> None:
    cases = [
        ("plain", 256, 0, "simclr"),
        ("plain", 4096, 0, "simclr"),
        ("GradCache, chunks of 256", 4096, 256, "simclr"),
        ("projector + loss in one piece, on 4096 features", 4096, -1, "simclr"),
        ("projector + loss by blocks of 256 rows, on 4096 features", 4096, -256, "simclr"),
        ("DCLW: plain", 4096, 0, "dclw"),
        ("DCLW: GradCache, chunks of 256", 4096, 256, "dclw"),
    ]
    results = []
    for label, batch, chunk, method in cases:
        command = [
            sys.executable,
            str(Path(__file__)),
            "--side",
            "memory",
            "--batch",
            str(batch),
            "--chunk",
            str(chunk),
            "--method",
            method,
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(command + ["--device", args.device], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe {label} {batch} failed:\n{proc.stderr[-3000:]}")
        results.append((label, batch, json.loads(proc.stdout.strip().splitlines()[-1])))
    record["gradcache_memory"] = results
    key = "cuda_peak_mb" if args.device == "cuda" else "cpu_peak_mb"
    what = (
        "torch.cuda.max_memory_allocated"
        if args.device == "cuda"
        else "peak RSS (sampled every 2 ms) above the RSS before"
    )
    out.append(f"### GradCache: one SimCLR (or DCLW) step, small_cnn on 8 px digits, memory = {what} the step\n")
    out.append("| step | batch | peak MB | vs batch 256 | seconds | vs plain 4096 |")
    out.append("|---|---:|---:|---:|---:|---:|")
    base, plain_big, _, dense_loss, blocked_loss, dclw_plain, dclw_cached = (r for _, _, r in results)
    for label, batch, r in results:
        out.append(
            f"| {label} | {batch} | {r[key]:.0f} | {r[key] / base[key]:.2f}x | {r['seconds']:.2f} | "
            f"{r['seconds'] / plain_big['seconds']:.2f}x |"
        )
    out.append(
        "\nGradCache's peak is the larger of its two phases: the projector and loss on the full batch and one "
        f"chunk's encoder pass (about the plain 256 step, {base[key]:.0f} MB). With GradCache on, the loss runs "
        f"by blocks of one chunk's rows (`modules/losses/blocked.py`): {blocked_loss[key]:.0f} MB instead of the "
        f"{dense_loss[key]:.0f} MB of its (2B)^2 similarity matrices in one piece. The plain 4096 step holds the "
        f"loss and all 4096 samples' activations ({plain_big[key]:.0f} MB). DCLW's denominator leaves the positives "
        f"out and runs by the same blocks: {dclw_cached[key]:.0f} MB under GradCache, {dclw_plain[key]:.0f} MB plain."
    )
    errors = {"float64": gradient_errors(torch.float64), "float32": gradient_errors(torch.float32)}
    record["gradcache_gradients"] = errors
    out.append("\nRelative error ||g_cache - g_full|| / ||g_full|| over all parameters, batch 64 in chunks of 16:\n")
    out.append("| loss | float64 | float32 |")
    out.append("|---|---:|---:|")
    for name in errors["float64"]:
        out.append(f"| {name} | {errors['float64'][name]:.1e} | {errors['float32'][name]:.1e} |")
    out.append("")


# -- precision and compilation -----------------------------------------------------------------------------------


PRECISION_CASES = {
    "float32": ({}, "32-true"),
    "bf16-mixed": ({}, "bf16-mixed"),
    "channels_last": ({"channels_last": True}, "32-true"),
    "bf16 + channels_last": ({"channels_last": True}, "bf16-mixed"),
    "compile_backbone": ({"compile_backbone": True}, "32-true"),
    "bf16 + channels_last + compile": ({"channels_last": True, "compile_backbone": True}, "bf16-mixed"),
}


def precision_section(args, out: list[str], record: dict) -> None:
    size = args.precision_size or SIZE
    out.append(
        f"### Precision and compilation, our SimCLR step at {size} px, batch "
        f"{args.precision_batch or ' / '.join(str(NETS[n]['batch']) for n in args.precision_nets)}, "
        f"median of {args.precision_steps} steps (each epoch's first left out)\n"
    )
    out.append("| net | setting | first step s (compiles) | s/step | vs float32 | model TFLOP/s | MFU |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    record["precision"] = {}
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    for net in args.precision_nets:
        base = None
        flops = step_flops(net, args.device, size, args.precision_batch)
        for label in args.precision_cases:
            options, precision = PRECISION_CASES[label]
            model, data = build_our_module(net, args.device, size, args.precision_batch, **options)
            timer = StepTimer(sync_cuda=args.device == "cuda", stop_after=args.precision_steps)
            trainer = L.Trainer(
                accelerator=args.device,
                devices=1,
                precision=precision,
                max_epochs=1000,  # the timer stops it: big batches take several epochs of digits
                limit_val_batches=0,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                callbacks=[timer],
            )
            trainer.fit(model, data)
            step = statistics.median(timer.steps)
            base = base or step
            peak = (
                peak_tflops(device_name, "bf16" if precision.startswith("bf16") else float32_kind())
                if args.device == "cuda"
                else args.peak_tflops
            )
            utilisation = mfu(flops, step, peak)
            record["precision"][f"{net}/{label}"] = {
                "first": timer.first_steps[0],
                "step": step,
                "flops": flops,
                "mfu": utilisation,
            }
            out.append(
                f"| {net} | {label} | {timer.first_steps[0]:.2f} | {step:.3f} | {base / step:.2f}x | "
                f"{flops / step / 1e12:.3f} | {'-' if utilisation is None else f'{utilisation:.1%}'} |"
            )
    out.append("")


def float32_kind() -> str:
    """What a float32 step's convolutions run as: TF32 on tensor cores where cuDNN is allowed to (its default)."""
    return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"


def step_flops(net: str, device: str, size: int = SIZE, batch: int = 0) -> int:
    """Model FLOPs of one training step (both views, forward and backward, projector and loss) by FlopCounterMode."""
    model, data = build_our_module(net, device, size, batch)
    model.to(device)
    n = batch or NETS[net]["batch"]
    x = (torch.rand(n, 1, 8, 8) * 255).to(torch.uint8).to(device)
    with stepping_alone(model):
        views = model.on_after_batch_transfer({"x": x, "y": torch.zeros(n, dtype=torch.long, device=device)}, 0)
        return count_flops(lambda: model.training_step(views, 0).backward())


# -- main --------------------------------------------------------------------------------------------------------


def machine(device: str) -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if device == "cuda" else ", no GPU used"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()}-core {cpu}{gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {load:.1f} at the start"
    )


def write_readme(text: str) -> None:
    write_block("throughput", text, "## Training throughput, GradCache, precision: `benchmarks/throughput.py`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="few epochs and steps: minutes on 2 CPU cores")
    parser.add_argument("--sections", nargs="+", default=["peer", "profile", "gradcache", "precision"])
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--epochs", type=int, default=10, help="small_cnn epochs per side")
    parser.add_argument("--resnet-epochs", type=int, default=1)
    parser.add_argument("--resnet-steps", type=int, default=0, help="0: whole epochs")
    parser.add_argument("--target", type=float, default=0.85, help="validation kNN top-1 for time-to-target")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="peer: each side once per seed")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--profile-nets", nargs="+", default=["small_cnn"], choices=list(NETS))
    parser.add_argument("--profile-steps", type=int, default=6)
    parser.add_argument("--precision-nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--precision-steps", type=int, default=5)
    parser.add_argument("--precision-batch", type=int, default=0, help="the precision section's batch (0: the net's)")
    parser.add_argument("--precision-cases", nargs="+", default=list(PRECISION_CASES), choices=list(PRECISION_CASES))
    parser.add_argument(
        "--precision-size", type=int, default=0, help=f"the views' side in px for the precision section (0: {SIZE})"
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="the CPU's peak, for an MFU on CPU")
    parser.add_argument("--json", default="", help="also write every figure to this JSON file")
    parser.add_argument("--write", action="store_true", help="rewrite the figures in docs/benchmarks/speed.md")
    # internal: one side of the peer comparison, or one memory probe, in its own process
    parser.add_argument("--side", choices=["lightly", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--net", choices=list(NETS), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--method", default="simclr", choices=["simclr", "dclw"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible here")
    if args.side == "lightly":
        summary = run_lightly(
            args.net, NETS[args.net]["batch"], args.epochs, args.steps or None, args.device, args.seed
        )
        Path(args.out).write_text(json.dumps(summary))
        return
    if args.side == "memory":
        print(json.dumps(memory_probe(args.batch, args.chunk, args.device, args.method)))
        return
    if args.quick:
        args.epochs, args.resnet_steps = min(args.epochs, 5), args.resnet_steps or 4
        args.profile_steps, args.precision_steps = min(args.profile_steps, 4), min(args.precision_steps, 3)
        if args.device == "cpu":
            args.precision_nets = ["small_cnn"]
    if args.device == "cuda":  # a GPU takes the big batches the CPU cannot
        args.resnet_steps = args.resnet_steps or 0
    out = [
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {machine(args.device)}.",
        f"Command: `{' '.join(['benchmarks/throughput.py', *sys.argv[1:]])}`.\n",
    ]
    record: dict = {"machine": machine(args.device)}
    sections = {
        "peer": peer_section,
        "profile": profile_section,
        "gradcache": gradcache_section,
        "precision": precision_section,
    }
    print("\n".join(out), flush=True)
    for name in args.sections:
        start, printed = time.perf_counter(), len(out)
        sections[name](args, out, record)
        print("\n".join(out[printed:]), flush=True)  # each section as it ends
        print(f"[{name}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    text = "\n".join(out)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1, default=str))
    if args.write:
        write_readme(text)


if __name__ == "__main__":
    main()
