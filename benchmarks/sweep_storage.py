"""The default sweep storage: SQLite vs Optuna's journal file, each under two worker processes at once.

    .venv/bin/python benchmarks/sweep_storage.py [--cycles 100] [--reports 5]

Each worker runs `cycles` trial lifecycles as `contrastlab sweep` does them: ask with three parameters,
record the worker, report `reports` intermediate values with a pruning check, store the objective, tell.
Both workers start together on a fresh study. The script checks that every trial is complete and none
is lost or duplicated, counts errors (a locked database, a failed write), and prints seconds per cycle.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import tempfile
import time
import traceback
from pathlib import Path

import optuna

from contrastlab.sweeps.storage import open_storage, this_worker

SPACE = {
    "model.temperature": optuna.distributions.FloatDistribution(0.05, 0.5, log=True),
    "model.optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    "model.proj_dim": optuna.distributions.CategoricalDistribution([32, 64, 128]),
}


def worker(url: str, cycles: int, reports: int, start, results) -> None:
    study = optuna.load_study(study_name="bench", storage=open_storage(url), pruner=optuna.pruners.MedianPruner())
    errors: list[str] = []
    start.wait()
    began = time.perf_counter()
    for _ in range(cycles):
        try:
            trial = study.ask(SPACE)
            trial.set_user_attr("worker", this_worker())
            for step in range(1, reports + 1):
                trial.report(trial.params["model.temperature"] * step, step)
                trial.should_prune()
            trial.set_user_attr("objective", trial.params["model.temperature"])
            study.tell(trial, trial.params["model.temperature"])
        except Exception as err:  # counted, not fatal: the point is to see whether any happen
            errors.append("".join(traceback.format_exception_only(err)).strip())
    results.put((time.perf_counter() - began, errors))


def measure(url: str, cycles: int, reports: int, workers: int = 2) -> dict:
    optuna.create_study(study_name="bench", storage=open_storage(url), direction="maximize")
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=worker, args=(url, cycles, reports, start, results)) for _ in range(workers)]
    for p in processes:
        p.start()
    time.sleep(3)  # both workers imported and connected before the clock starts
    began = time.perf_counter()
    start.set()
    outcomes = [results.get() for _ in processes]
    wall = time.perf_counter() - began
    for p in processes:
        p.join()
    trials = optuna.load_study(study_name="bench", storage=open_storage(url)).get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    return {
        "wall": wall,
        "errors": [e for _, errs in outcomes for e in errs],
        "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
        "unique": len(set(numbers)) == len(numbers) == len(trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=100, help="trial lifecycles per worker")
    parser.add_argument("--reports", type=int, default=5, help="intermediate values per trial")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"{platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} CPUs, optuna {optuna.__version__}"
    )
    print(f"2 workers x {args.cycles} trials, {args.reports} reports each")
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, url in (
            ("sqlite (RDBStorage)", f"sqlite:///{Path(folder) / 'optuna.db'}"),
            ("journal file", f"journal:{Path(folder) / 'optuna.journal'}"),
        ):
            rows[label] = measure(url, args.cycles, args.reports)
    fastest = min(r["wall"] for r in rows.values())
    print(f"{'storage':<22}{'seconds':>9}{'ms/trial':>10}{'vs fastest':>12}{'complete':>10}{'errors':>8}  unique")
    for label, r in rows.items():
        per_trial = 1000 * r["wall"] / (2 * args.cycles)
        print(
            f"{label:<22}{r['wall']:>9.2f}{per_trial:>10.1f}{r['wall'] / fastest:>11.2f}x"
            f"{r['complete']:>10}{len(r['errors']):>8}  {r['unique']}"
        )
        for error in r["errors"][:3]:
            print(f"    {error}")


if __name__ == "__main__":
    main()
