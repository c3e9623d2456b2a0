"""A sweep's cost of starting its trials: warm trial processes (the default) against a new interpreter per trial.

    .venv/bin/python benchmarks/sweep_overhead.py [--config configs/sweeps/simclr_digits.yaml] [--workers 2]
                                                  [--write]

Runs the same sweep (`make demo`'s by default) twice through the `contrastlab sweep` command, in a fresh folder
each: with `--fresh-processes`, as every sweep ran before warm processes, and without. Each trial's overhead is its
wall time (study start to end) minus its own training and validation time (the `train_seconds` the trial
records); the first trial of each worker also pays for its worker's imports. It checks that both routes reach
the same objective in every trial, and prints the sweep's end-to-end time and the ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import optuna

from contrastlab.sweeps.config import load_sweep
from contrastlab.sweeps.storage import TRAIN_SECONDS_ATTR

REPO = Path(__file__).resolve().parent.parent


def run_sweep(config: Path, workers: int, fresh: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as folder:
        command = [sys.executable, "-m", "contrastlab", "sweep", "-c", str(config), "--workers", str(workers)]
        started = time.perf_counter()
        subprocess.run(command + ["--fresh-processes"] * fresh, cwd=folder, check=True, capture_output=True)
        wall = time.perf_counter() - started
        study = optuna.load_study(study_name=load_sweep(config).name, storage=f"sqlite:///{folder}/mlruns/optuna.db")
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.datetime_start)
    overheads = [
        (t.datetime_complete - t.datetime_start).total_seconds() - t.user_attrs[TRAIN_SECONDS_ATTR] for t in trials
    ]
    return {
        "wall": wall,
        "first": overheads[:workers],  # each worker's first trial
        "later": overheads[workers:],
        "values": {t.number: t.value if t.value is not None else t.user_attrs.get("objective") for t in trials},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "sweeps" / "simclr_digits.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="put the figures in docs/benchmarks/platform.md")
    args = parser.parse_args()
    config = args.config.resolve()
    fresh, warm = run_sweep(config, args.workers, fresh=True), run_sweep(config, args.workers, fresh=False)
    if fresh["values"] != warm["values"]:
        raise SystemExit(f"the two routes disagree on the trials' objectives: {fresh['values']} != {warm['values']}")

    def mean(values: list[float]) -> str:
        return f"{statistics.mean(values):.1f} s" if values else "-"

    rows = [
        f"| new interpreter per trial | {fresh['wall']:.0f} s | {mean(fresh['first'])} | {mean(fresh['later'])} |",
        f"| warm trial processes | {warm['wall']:.0f} s | {mean(warm['first'])} | {mean(warm['later'])} |",
    ]
    text = "\n".join([
        f"`benchmarks/sweep_overhead.py` on {date.today()}, {platform.machine()} with {os.cpu_count()} cores: "
        f"`{config.relative_to(REPO) if config.is_relative_to(REPO) else config}`, {args.workers} workers, "
        f"{len(warm['values'])} trials, the same objective in every trial by both routes.",
        "",
        "| trials start in | sweep, end to end | overhead, each worker's first trial | overhead, later trials |",
        "|---|---|---|---|",
        *rows,
        "",
        f"End to end {fresh['wall'] / warm['wall']:.2f}x faster; a later trial's overhead "
        f"{statistics.mean(fresh['later']) / statistics.mean(warm['later']):.1f}x smaller.",
    ])  # fmt: skip
    print(text)
    if args.write:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from figures import write_block

        write_block("sweep_overhead", text, "## Starting trials: warm processes")


if __name__ == "__main__":
    main()
