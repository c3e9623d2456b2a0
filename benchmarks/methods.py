"""Every method side by side on one budget: kNN, probe and embedding statistics on digits and Fashion-MNIST.

    .venv/bin/python benchmarks/methods.py [--datasets digits fashion_mnist] [--methods simclr supcon ...]
                                           [--epochs 20] [--fashion-epochs 5] [--seeds 3] [--msc-fashion-classes 1]
                                           [--no-write]

Methods are the folders of `configs/*/digits.yaml` (so a new method is benchmarked once it ships its digits
config; SwAV and DINO with their multi-crop), except `msc`, which is anomaly detection and is measured apart
(AUROC per normal digit, before and after adapting the SimCLR encoder of the same run; `--msc-fashion-classes`
adds the same one-vs-rest on Fashion-MNIST, held to AUROC >= 0.9 before and after). Every run goes through
`contrastlab fit` in this process (the CLI's own code path) on a temporary MLflow store, with the same epochs,
batch size and backbone for every method, once per seed (`--seed_everything` 0, 1, ...: the backbone's and heads'
initialisation and the views; the data split is the dataset's own, the same for every seed):

- digits: each method's digits config (its own batch size), small_cnn, `--epochs` epochs;
- fashion_mnist: the same configs on a 2,000-image Fashion-MNIST subset at 28 px with the recipe of
  configs/simclr/fashion_mnist.yaml and a narrower small_cnn (32-64-128, so a run takes seconds per
  epoch on 2 cores); skipped when Debian's files are absent.

Figures: test-split kNN top-1 (k=20), mean ± sd over the seeds; its gain over the same backbone at random
initialisation of the same seed (the `test` verb before any training), mean ± sd: the bar a method's mean gain must
clear by `--margin`; then the means of online probe accuracy, alignment, uniformity, effective rank, and seconds
per training epoch (median gap between `train/loss_epoch` timestamps; validation runs only after the last epoch).
The table replaces the one between the markers in docs/benchmarks/quality.md. Methods that miss the bar are
listed at the end and the script exits with status 1: this is where the test suite's former "trains past random
init" checks live.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from figures import mean_sd, write_block

REPO = Path(__file__).resolve().parents[1]
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
SEPARATE = {"msc"}  # anomaly detection: its own table
COMMON = ["--tracking.system_metrics_interval", "0", "--tracking.log_checkpoints", "false"]
FASHION = [
    "--data.class_path=contrastlab.datamodules.vision.FashionMNIST",
    f"--data.init_args.root={FASHION_ROOT}",
    "--data.init_args.max_train_samples=2000",
    "--data.init_args.val_size=1000",
    "--model.init_args.backbone_kwargs={widths: [32, 64, 128]}",
    "--model.init_args.augment.init_args.size=28",
    "--model.init_args.augment.init_args.crop_scale=[0.3, 1.0]",
    "--model.init_args.augment.init_args.hflip_p=0.5",
    "--model.init_args.augment.init_args.affine_p=0.0",
    "--model.init_args.augment.init_args.noise_p=0.3",
]
# The multi-crop methods (their digits configs: 2 global crops of 8 px + 4 local of 6 px) keep their local crops at
# about the digits' share of the global size on Fashion-MNIST's 28 px.
MULTI_CROP = {"swav", "dino"}
MULTI_CROP_FASHION = ["--model.init_args.augment.init_args.local_size=20"]
# Runs that are a shipped config plus options (named config-variant), benchmarked beside the configs.
VARIANTS = {
    "simsiam-directpred": (
        "simsiam",
        ["--model.init_args.predictor", "directpred", "--model.init_args.optimizer.lr", "0.001"]
        + ["--model.init_args.optimizer.predictor_lr_ratio", "1"],
    ),
}
# MSC one-vs-rest on Fashion-MNIST (the former test_adapting_a_simclr_encoder_to_one_fashion_class): SimCLR on a
# 2,000-image subset for 3 epochs at 28 px with a narrower small_cnn, then MSC on one normal class (5,000 images,
# 5 epochs). Measured when it was a test: AUROC 0.991 before, 0.971 after (trousers).
MSC_FASHION = [
    "--data.class_path=contrastlab.datamodules.vision.FashionMNIST",
    f"--data.init_args.root={FASHION_ROOT}",
    "--data.init_args.val_size=1000",
    "--model.init_args.backbone_kwargs={widths: [32, 64, 128]}",
    "--model.init_args.augment.init_args.size=28",
    "--model.init_args.augment.init_args.crop_scale=[0.3, 1.0]",
    "--model.init_args.augment.init_args.hflip_p=0.5",
]
MSC_FASHION_BAR = 0.9  # AUROC a working pipeline reaches before and after adaptation
COLUMNS = ("knn_top1", "probe_acc", "alignment", "uniformity", "effective_rank")


def discover() -> list[str]:
    configs = [p.parent.name for p in (REPO / "configs").glob("*/digits.yaml") if p.parent.name not in SEPARATE]
    return sorted([*configs, *VARIANTS])


def cli_run(args: list[str], cwd: Path, experiment: str, seed: int = 0):
    """`contrastlab <args>` in this process with `--seed_everything seed`, quiet; the MLflow run it made."""
    import mlflow

    from contrastlab.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            # An absolute store: MLflow caches one database engine per URI, and a relative one would follow
            # the first run's folder.
            store = f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"
            seeded = [*args, *COMMON, "--seed_everything", str(seed)]
            main([*seeded, "--tracking.experiment", experiment, "--tracking.uri", store])
    finally:
        os.chdir(here)
    client = mlflow.MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def seconds_per_epoch(client, run) -> float:
    stamps = sorted(m.timestamp for m in client.get_metric_history(run.info.run_id, "train/loss_epoch"))
    gaps = [(b - a) / 1000 for a, b in zip(stamps, stamps[1:])]
    return statistics.median(gaps) if gaps else float("nan")


def benchmark_method(method: str, dataset: str, epochs: int, work: Path, seed: int) -> dict[str, float]:
    folder, options = VARIANTS.get(method, (method, []))
    config = REPO / "configs" / folder / "digits.yaml"
    args = ["fit", "-c", str(config), "--trainer.max_epochs", str(epochs), "--trainer.check_val_every_n_epoch"]
    args += [str(epochs), "--model.init_args.backbone", "small_cnn", *options]
    if dataset == "fashion_mnist":
        args += FASHION + (MULTI_CROP_FASHION if folder in MULTI_CROP else [])
    cwd = Path(tempfile.mkdtemp(dir=work))
    client, run = cli_run(args, cwd, f"{method}-{dataset}-{seed}", seed)
    row = {name: run.data.metrics.get(f"test/{name}", float("nan")) for name in COLUMNS}
    row["s_per_epoch"] = seconds_per_epoch(client, run)
    return row


def random_init_knn(dataset: str, work: Path, seed: int) -> float:
    """Test-split kNN top-1 of the benchmark's backbone as built from `seed`, untrained: the bar every method of that
    seed must clear.

    Every method builds its backbone first from the same seed, so one untrained model stands for all of them;
    only the backbone's features enter kNN.
    """
    args = ["test", "-c", str(REPO / "configs" / "simclr" / "digits.yaml"), "--model.init_args.backbone", "small_cnn"]
    if dataset == "fashion_mnist":
        args += FASHION
    _, run = cli_run(args, Path(tempfile.mkdtemp(dir=work)), f"random-init-{dataset}-{seed}", seed)
    return run.data.metrics["test/knn_top1"]


def benchmark_msc(classes: list[int], simclr_epochs: int, work: Path) -> list[tuple[int, float, float]]:
    """(normal digit, AUROC of the SimCLR encoder, AUROC after mean-shifted adaptation) per digit."""
    cwd = Path(tempfile.mkdtemp(dir=work))
    simclr = REPO / "configs" / "simclr" / "digits.yaml"
    cli_run(
        ["fit", "-c", str(simclr), "--trainer.max_epochs", str(simclr_epochs), "--test_after_fit", "false"], cwd, "enc"
    )
    (ckpt,) = (cwd / "checkpoints").rglob("last.ckpt")
    msc = str(REPO / "configs" / "msc" / "digits.yaml")
    rows = []
    for digit in classes:
        start = ["-c", msc, "--data.init_args.normal_class", str(digit), "--model.init_args.init_from", str(ckpt)]
        _, before = cli_run(["test", *start], Path(tempfile.mkdtemp(dir=work)), f"before-{digit}")
        _, after = cli_run(["fit", *start], Path(tempfile.mkdtemp(dir=work)), f"after-{digit}")
        rows.append((digit, before.data.metrics["test/auroc"], after.data.metrics["test/auroc"]))
        print(f"msc digit {digit}: AUROC {rows[-1][1]:.4f} -> {rows[-1][2]:.4f}", flush=True)
    return rows


def benchmark_msc_fashion(classes: list[int], work: Path) -> list[tuple[int, float, float]]:
    """(normal Fashion-MNIST class, AUROC of the SimCLR encoder, AUROC after mean-shifted adaptation) per class."""
    cwd = Path(tempfile.mkdtemp(dir=work))
    simclr = ["fit", "-c", str(REPO / "configs" / "simclr" / "digits.yaml"), *MSC_FASHION]
    simclr += ["--data.init_args.max_train_samples", "2000", "--trainer.max_epochs", "3"]
    cli_run([*simclr, "--trainer.check_val_every_n_epoch", "3", "--test_after_fit", "false"], cwd, "enc-fashion")
    (ckpt,) = (cwd / "checkpoints").rglob("last.ckpt")
    msc = ["-c", str(REPO / "configs" / "msc" / "digits.yaml"), *MSC_FASHION, "--model.init_args.init_from", str(ckpt)]
    epochs = ["--trainer.max_epochs", "5", "--trainer.check_val_every_n_epoch", "5"]
    rows = []
    for cls in classes:
        start = [*msc, "--data.init_args.normal_class", str(cls), "--data.init_args.max_train_samples", "5000"]
        _, before = cli_run(["test", *start], Path(tempfile.mkdtemp(dir=work)), f"before-fashion-{cls}")
        _, after = cli_run(["fit", *start, *epochs], Path(tempfile.mkdtemp(dir=work)), f"after-fashion-{cls}")
        rows.append((cls, before.data.metrics["test/auroc"], after.data.metrics["test/auroc"]))
        print(f"msc fashion class {cls}: AUROC {rows[-1][1]:.4f} -> {rows[-1][2]:.4f}", flush=True)
    return rows


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = f"{os.cpu_count()}-core {names[0]}" if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {gpu}, torch {torch.__version__}"


def gains(runs: list[dict[str, float]], baselines: list[float]) -> list[float]:
    """Each seed's kNN top-1 minus the random-init backbone's of the same seed."""
    return [r["knn_top1"] - b for r, b in zip(runs, baselines)]


def below_bar(results, baselines: dict[str, list[float]], margin: float) -> list[str]:
    """`dataset/method` of every method whose mean kNN gain over random init (seed by seed) is under `margin`."""
    return [
        f"{dataset}/{method}"
        for dataset, rows in results.items()
        for method, runs in rows.items()
        if not mean_sd(gains(runs, baselines[dataset]))[0] >= margin
    ]


def markdown(
    results, baselines: dict[str, list[float]], margin: float, epochs: dict[str, int], msc, msc_epochs, msc_fashion=()
) -> str:
    lines = [f"{time.strftime('%Y-%m-%d')}, {machine()}."]
    lines += ["Same backbone (small_cnn) and epochs for every method; each method's batch size as in its config."]
    lines += [
        f"vs random: kNN top-1 minus the untrained backbone's of the same seed; the bar is a mean of +{margin:.3f}."
    ]
    for dataset, rows in results.items():
        base, base_sd = mean_sd(baselines[dataset])
        seeds = len(baselines[dataset])
        lines += [
            "",
            f"**{dataset}**, {epochs[dataset]} epochs, test split, mean ± sd over {seeds} seeds (0-{seeds - 1});",
        ]
        lines += [f"random-init kNN top-1 {base:.3f} ± {base_sd:.3f}:", ""]
        lines += [
            "| method | seeds | kNN top-1 | vs random | probe acc | alignment | uniformity | eff. rank | s/epoch |"
        ]
        lines += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ranked = sorted(rows.items(), key=lambda kv: -statistics.mean(r["knn_top1"] for r in kv[1]))
        for method, runs in ranked:
            knn, knn_sd = mean_sd([r["knn_top1"] for r in runs])
            gain, gain_sd = mean_sd(gains(runs, baselines[dataset]))
            means = {c: statistics.mean(r[c] for r in runs) for c in (*COLUMNS, "s_per_epoch")}
            flag = "" if gain >= margin else " (below bar)"
            lines.append(
                f"| {method} | {len(runs)} | {knn:.3f} ± {knn_sd:.3f} | {gain:+.3f} ± {gain_sd:.3f}{flag} | "
                f"{means['probe_acc']:.3f} | {means['alignment']:.3f} | {means['uniformity']:.2f} | "
                f"{means['effective_rank']:.1f} | {means['s_per_epoch']:.2f} |"
            )
    if msc:
        lines += ["", f"**msc**, digits one-vs-rest, encoder: SimCLR {msc_epochs} epochs; test AUROC:", ""]
        lines += ["| normal digit | SimCLR encoder | after MSC |", "|---|---:|---:|"]
        lines += [f"| {d} | {b:.4f} | {a:.4f} |" for d, b, a in msc]
        mean_b, mean_a = (statistics.mean(r[i] for r in msc) for i in (1, 2))
        lines.append(f"| mean | {mean_b:.4f} | {mean_a:.4f} |")
    if msc_fashion:
        lines += ["", "**msc**, Fashion-MNIST one-vs-rest, encoder: SimCLR 3 epochs on 2,000 images; test AUROC:", ""]
        lines += ["| normal class | SimCLR encoder | after MSC |", "|---|---:|---:|"]
        lines += [f"| {c} | {b:.4f} | {a:.4f} |" for c, b, a in msc_fashion]
    return "\n".join(lines)


def write_readme(table: str) -> None:
    write_block("methods", table, "## Methods: `benchmarks/methods.py`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=["digits", "fashion_mnist"], help="none: MSC only")
    parser.add_argument(
        "--methods", nargs="+", default=None, help=f"config folders or {', '.join(VARIANTS)} (default: all but msc)"
    )
    parser.add_argument("--epochs", type=int, default=20, help="digits epochs")
    parser.add_argument("--fashion-epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per method and for random init")
    parser.add_argument("--msc-classes", type=int, nargs="*", default=list(range(10)), help="none to skip")
    parser.add_argument(
        "--msc-fashion-classes",
        type=int,
        nargs="*",
        default=[],
        help=f"Fashion-MNIST normal classes for MSC one-vs-rest (1: trousers), each held to AUROC >= {MSC_FASHION_BAR} "
        "before and after adaptation (default: none)",
    )
    parser.add_argument(
        "--margin", type=float, default=0.015, help="mean kNN top-1 a method must gain over random init"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table without touching the README")
    args = parser.parse_args()
    if args.msc_fashion_classes and not (FASHION_ROOT / "train-images-idx3-ubyte.gz").is_file():
        parser.error(f"--msc-fashion-classes: {FASHION_ROOT} has no IDX files (apt-get install dataset-fashion-mnist)")
    methods = args.methods or discover()
    epochs = {"digits": args.epochs, "fashion_mnist": args.fashion_epochs}
    datasets = [
        d for d in args.datasets if d != "fashion_mnist" or (FASHION_ROOT / "t10k-labels-idx1-ubyte.gz").is_file()
    ]
    if datasets != args.datasets:
        print(f"skipping fashion_mnist: {FASHION_ROOT} has no IDX files", file=sys.stderr)
    seeds = range(args.seeds)
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    baselines: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in datasets:
            results[dataset] = {}
            baselines[dataset] = [random_init_knn(dataset, Path(tmp), seed) for seed in seeds]
            print(f"{dataset} random init: kNN {' '.join(f'{b:.4f}' for b in baselines[dataset])}", flush=True)
            for method in methods:
                # every seed of a method before the next method, so an interrupted benchmark has whole rows
                runs = results[dataset][method] = []
                for seed in seeds:
                    start = time.perf_counter()
                    runs.append(benchmark_method(method, dataset, epochs[dataset], Path(tmp), seed))
                    knn, took = runs[-1]["knn_top1"], time.perf_counter() - start
                    print(f"{dataset} {method} seed {seed}: kNN {knn:.4f} ({took:.0f} s)", flush=True)
                if not args.no_write:  # after every method, so an interrupted benchmark still leaves its figures
                    write_readme(markdown(results, baselines, args.margin, epochs, [], args.epochs))
        msc = benchmark_msc(args.msc_classes, args.epochs, Path(tmp)) if args.msc_classes else []
        msc_fashion = benchmark_msc_fashion(args.msc_fashion_classes, Path(tmp)) if args.msc_fashion_classes else []
    table = markdown(results, baselines, args.margin, epochs, msc, args.epochs, msc_fashion)
    print(table)
    if not args.no_write:
        write_readme(table)
    missed = below_bar(results, baselines, args.margin)
    if missed:
        print(f"below random init + {args.margin}: {', '.join(missed)}", file=sys.stderr)
    fashion_missed = [str(c) for c, before, after in msc_fashion if not min(before, after) >= MSC_FASHION_BAR]
    if fashion_missed:
        print(f"msc on Fashion-MNIST below AUROC {MSC_FASHION_BAR}: class {', '.join(fashion_missed)}", file=sys.stderr)
    if missed or fashion_missed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
