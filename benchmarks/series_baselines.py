"""Raw-series 1-NN baselines on UCR/UEA sets shipped inside aeon, and SimCLR on GunPoint through the CLI.

    .venv/bin/python benchmarks/series_baselines.py                  # 1-NN Euclidean and DTW, 5 sets
    .venv/bin/python benchmarks/series_baselines.py --simclr         # + SimCLR (configs/simclr/gunpoint.yaml)

The baselines are `contrastlab.evaluation.baselines` on each set's official split as the series DataModule
gives it (normalise "auto": per series for univariate sets, per dataset for multivariate ones), beside the
archive's published 1-NN figures where the archive lists them. `baseline_rows(datasets)` is the helper other
benchmarks (benchmarks/series.py) call for the same columns. SimCLR runs `contrastlab fit` and then
`contrastlab eval --protocols svm,linear,knn --checkpoint last` in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("GunPoint", "ArrowHead", "OSULeaf", "BasicMotions", "JapaneseVowels")
# timeseriesclassification.com's 1-NN accuracies (ED, DTW with no window) for the univariate sets; the UEA
# figures (BasicMotions, JapaneseVowels) are on unnormalised data, so they are not comparable here.
PUBLISHED = {"GunPoint": (0.913, 0.907), "ArrowHead": (0.800, 0.703), "OSULeaf": (0.521, 0.591)}


def baseline_rows(datasets=DATASETS, dtw_window: float | None = None) -> list[dict]:
    """One row per dataset: sizes, 1-NN Euclidean and DTW accuracy on the raw series, and seconds."""
    from contrastlab.datamodules.series import UCR
    from contrastlab.evaluation.baselines import nn_dtw, nn_euclidean, raw_samples

    rows = []
    for name in datasets:
        data = UCR(name, batch_size=64, val_size=0)  # the official train split, as the archive's figures
        info = data.info
        train, train_y = raw_samples(data.eval_loader("train"))
        test, test_y = raw_samples(data.eval_loader("test"))
        row = {"dataset": name, "train": len(train), "test": len(test), "channels": info.channels}
        row["length"] = info.shape[1] or f"{info.extra['min_length']}-{info.extra['max_length']}"
        for key, fn in (("nn_euclidean", nn_euclidean), ("nn_dtw", nn_dtw)):
            started = time.perf_counter()
            extra = {"window": dtw_window} if key == "nn_dtw" else {}
            row[key] = fn(train, train_y, test, test_y, **extra)["acc"]
            row[f"{key}_s"] = time.perf_counter() - started
        rows.append(row)
    return rows


def simclr_gunpoint(epochs: int) -> dict:
    """`contrastlab fit` of configs/simclr/gunpoint.yaml, then `contrastlab eval` of its last checkpoint."""
    import mlflow

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        fit = ["fit", "-c", str(REPO / "configs/simclr/gunpoint.yaml"), "--trainer.max_epochs", str(epochs)]
        fit += ["-c", str(REPO / "configs/shared/recipes/ucr_papers_protocol.yaml")]  # as recorded: all of train
        subprocess.run(
            [sys.executable, "-m", "contrastlab", *fit], cwd=folder, env=env, check=True, capture_output=True
        )
        fit_s = time.perf_counter() - started
        client = mlflow.MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db")
        (run,) = client.search_runs([client.get_experiment_by_name("GunPoint").experiment_id])
        evaluate = ["eval", "--run", run.info.run_id, "--protocols", "svm,linear,knn", "--checkpoint", "last"]
        subprocess.run(
            [sys.executable, "-m", "contrastlab", *evaluate, "--tsne-points", "0"],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        metrics = client.get_run(run.info.run_id).data.metrics
        return {
            "epochs": epochs,
            "fit_s": fit_s,
            "svm": metrics["eval/svm/acc"],
            "linear": metrics["eval/linear/top1"],
            "knn1": metrics["eval/knn/top1_k1"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--dtw-window", type=float, default=None)
    parser.add_argument("--simclr", action="store_true", help="also SimCLR on GunPoint (fit + eval)")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    rows = baseline_rows(args.datasets.split(","), args.dtw_window)
    print("| dataset | train | test | C | T | 1-NN ED | 1-NN DTW | published ED / DTW | ED s | DTW s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        published = "{:.3f} / {:.3f}".format(*PUBLISHED[r["dataset"]]) if r["dataset"] in PUBLISHED else "-"
        print(
            f"| {r['dataset']} | {r['train']} | {r['test']} | {r['channels']} | {r['length']} "
            f"| {r['nn_euclidean']:.3f} | {r['nn_dtw']:.3f} | {published} "
            f"| {r['nn_euclidean_s']:.2f} | {r['nn_dtw_s']:.2f} |",
            flush=True,
        )
    if args.simclr:
        s = simclr_gunpoint(args.epochs)
        print(
            f"\nSimCLR GunPoint ({s['epochs']} epochs, fit {s['fit_s']:.0f} s): SVM {s['svm']:.3f}, "
            f"linear {s['linear']:.3f}, 1-NN on features {s['knn1']:.3f}"
        )


if __name__ == "__main__":
    main()
