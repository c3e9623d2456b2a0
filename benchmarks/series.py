"""TS2Vec, SoftCLT and TS-TCC on UCR/UEA sets beside 1-NN Euclidean and 1-NN DTW on the raw series.

    .venv/bin/python benchmarks/series.py [--datasets GunPoint ArrowHead OSULeaf BasicMotions JapaneseVowels]
        [--methods ts2vec softclt tstcc] [--steps 150] [--paper-size] [--no-write]

Each method is its shipped config (`configs/<method>/ucr.yaml`) run through the CLI in this process, as a
user would: `contrastlab fit` with `--data.init_args.name <set>` (the archive's official split, z-normalised
per series), then `contrastlab eval --run <id> --protocols svm`, the protocol of TS2Vec and SoftCLT: an
RBF-SVM on the max-pooled representations with C chosen by 5-fold CV on train (hard margin when a class
has fewer than 5 training series), accuracy on test. The papers' protocol
(configs/shared/recipes/ucr_papers_protocol.yaml): all of train, no validation during fit, the last
checkpoint evaluated, so nothing is chosen on the test split. (benchmarks/quality.py's series recipes take the
DataModules' default instead: 20% of train held out for validation.)

By default the encoders are smaller than the papers' and train `--steps` steps of batch 8 (TS2Vec's 200
iterations at full size take minutes a set on a loaded 2-core CPU); `--paper-size` uses the configs' sizes
(TS2Vec/SoftCLT 64 hidden, 320 out, 10 blocks; TS-TCC 32-64-128) and 200/300 steps.

Baselines on the same z-normalised series: 1-NN with the Euclidean distance (unequal lengths zero-padded
to the longest) and with DTW (aeon's, full window, in a child process). Seconds are wall-clock per
dataset and method (fit + eval; for the baselines the distance matrices), on whatever else the machine
is running. The table replaces the one between the markers in docs/benchmarks/series.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from figures import write_block

REPO = Path(__file__).resolve().parents[1]
PAPERS = REPO / "configs" / "shared" / "recipes" / "ucr_papers_protocol.yaml"  # all of train, the last checkpoint
DATASETS = ["GunPoint", "ArrowHead", "OSULeaf", "BasicMotions", "JapaneseVowels"]
METHODS = ["ts2vec", "softclt", "tstcc"]
# SoftCLT's temperatures per set where its authors list them (hyperparameters/cls_hyperparams.csv of
# seunghan96/softclt, read as tau_inst-tau_temp); other sets keep the config's.
SOFTCLT_TAUS = {"GunPoint": (0.1, 1.0), "ArrowHead": (3.0, 2.5), "OSULeaf": (40.0, 1.5)}
COMMON = [
    *("--tracking.system_metrics_interval", "0", "--tracking.log_checkpoints", "false"),
    *("--test_after_fit", "false", "--trainer.check_val_every_n_epoch", "100000", "--seed_everything", "0"),
]


def method_args(method: str, dataset: str, steps: int | None, paper_size: bool, normalize: str) -> list[str]:
    args = [
        "fit",
        "-c",
        str(REPO / "configs" / method / "ucr.yaml"),
        "-c",
        str(PAPERS),
        "--data.init_args.name",
        dataset,
    ]
    args += ["--data.init_args.normalize", normalize]
    if method in ("ts2vec", "softclt") and not paper_size:
        args += ["--model.init_args.backbone_kwargs", "{hidden_dims: 32, output_dims: 64, depth: 6}"]
    if method == "tstcc":
        if not paper_size:
            args += [
                "--model.init_args.backbone_kwargs",
                "{widths: [16, 32, 64]}",
                "--model.init_args.context_dim",
                "64",
            ]
        if dataset == "JapaneseVowels":  # 7 to 29 steps: keep every step (TS2Vec's encoder), predict 4 ahead
            args += ["--model.init_args.backbone", "ts2vec", "--model.init_args.timesteps", "4"]
            args += [
                "--model.init_args.backbone_kwargs",
                "{hidden_dims: 32, output_dims: 64, depth: 4, mask_mode: none}",
            ]
    if method == "softclt" and dataset in SOFTCLT_TAUS:
        tau_inst, tau_temp = SOFTCLT_TAUS[dataset]
        args += ["--model.init_args.tau_inst", str(tau_inst), "--model.init_args.tau_temp", str(tau_temp)]
    if steps is not None:
        args += ["--trainer.max_steps", str(steps)]
    return args


def cli(args: list[str], cwd: Path) -> None:
    """`contrastlab <args>` in this process (the CLI's own code path), quiet, on the store of `cwd`."""
    from contrastlab.cli import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main([*args, "--tracking-uri", f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"])
    except SystemExit as stop:
        code = stop.code
    finally:
        os.chdir(here)
    if code not in (0, None):
        raise RuntimeError(f"contrastlab {' '.join(args)} exited {code}")


def run_method(
    method: str, dataset: str, steps: int | None, paper_size: bool, normalize: str, work: Path
) -> tuple[float, float]:
    """(SVM test accuracy, seconds) of one method on one set."""
    import mlflow

    cwd = Path(tempfile.mkdtemp(dir=work))
    experiment = f"{method}-{dataset}"
    start = time.perf_counter()
    fit = method_args(method, dataset, steps, paper_size, normalize)
    cli([*fit, *COMMON, "--tracking.experiment", experiment], cwd)
    client = mlflow.MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    cli(["eval", "--run", run.info.run_id, "--protocols", "svm", "--tsne-points", "0"], cwd)
    seconds = time.perf_counter() - start
    return client.get_run(run.info.run_id).data.metrics["eval/svm/acc"], seconds


def nearest_neighbour(dataset: str, normalize: str) -> dict[str, tuple[float, float]]:
    """1-NN test accuracy and seconds with the Euclidean distance and with DTW, on the DataModule's series.
    DTW runs in a child process (`contrastlab.metrics.dtw.pairwise_dtw`): aeon's numba pool would slow the
    next fits of this process."""
    import numpy as np

    from contrastlab.datamodules.series import UCR
    from contrastlab.metrics.dtw import pairwise_dtw

    data = UCR(name=dataset, normalize=normalize, val_size=0)  # the official train split, as the fits
    train, test = data.split("train"), data.split("test")
    series = [[s.nan_to_num().numpy().astype(np.float64) for s in split.x] for split in (train, test)]
    y_train, y_test = train.y.numpy(), test.y.numpy()
    longest = max(s.shape[-1] for split in series for s in split)
    padded = [np.stack([np.pad(s, ((0, 0), (0, longest - s.shape[-1]))) for s in split]) for split in series]
    out = {}
    start = time.perf_counter()
    euclidean = ((padded[1][:, None] - padded[0][None]) ** 2).sum(axis=(2, 3))  # test x train
    out["1-NN Euclidean"] = (float((y_train[euclidean.argmin(axis=1)] == y_test).mean()), time.perf_counter() - start)
    start = time.perf_counter()
    dtw = pairwise_dtw(series[1], series[0])  # test x train
    out["1-NN DTW"] = (float((y_train[dtw.argmin(axis=1)] == y_test).mean()), time.perf_counter() - start)
    return out


def markdown(results: dict[str, dict[str, tuple[float, float]]], columns: list[str], settings: str) -> str:
    lines = [
        f"Test accuracy (seconds); {settings}.",
        "",
        "| dataset | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for dataset, row in results.items():
        cells = [f"{row[c][0]:.3f} ({row[c][1]:.0f} s)" if c in row else "-" for c in columns]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme(table: str) -> None:
    write_block("series", table, "## Time series: `benchmarks/series.py`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS)
    parser.add_argument("--steps", type=int, default=150, help="training steps of each method (default 150)")
    parser.add_argument(
        "--normalize", default="series", choices=["series", "dataset", "none"], help="data.normalize (default series)"
    )
    parser.add_argument("--paper-size", action="store_true", help="the configs' encoders and steps (slow on CPU)")
    parser.add_argument("--no-write", action="store_true", help="print the table without touching the README")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    steps = None if args.paper_size else args.steps
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as work:
        for dataset in args.datasets:
            row = results.setdefault(dataset, {})
            for method in args.methods:
                row[method] = run_method(method, dataset, steps, args.paper_size, args.normalize, Path(work))
                print(f"{dataset} {method}: {row[method][0]:.3f} in {row[method][1]:.0f} s", flush=True)
            row.update(nearest_neighbour(dataset, args.normalize))
            print(f"{dataset} 1-NN: {row['1-NN Euclidean'][0]:.3f} / DTW {row['1-NN DTW'][0]:.3f}", flush=True)
    settings = "paper-size encoders" if args.paper_size else f"small encoders, {args.steps} steps"
    settings += f", data.normalize {args.normalize}"
    table = markdown(results, [*args.methods, "1-NN Euclidean", "1-NN DTW"], f"{settings}, SVM protocol")
    print(table)
    if not args.no_write:
        write_readme(table)


if __name__ == "__main__":
    main()
