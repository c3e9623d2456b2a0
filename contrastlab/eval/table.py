"""`contrastlab eval --runs A,B,...` or `--datasets X,Y,...`: many runs into one accuracy table.

    contrastlab fit -c configs/simclr/gunpoint.yaml --data.init_args.name ArrowHead    # a run per dataset
    contrastlab eval --datasets GunPoint,ArrowHead --protocols svm --checkpoint last

Each run is evaluated as `contrastlab eval --run` does (its results logged into it, features cached). The
table has a row per dataset and a column per method and protocol (the run's `method` tag; where one dataset
has several runs of a method, the newest fills the cell and every run is in the CSV), with the data's
raw-feature baselines beside (`evaluation/baselines.py`: 1-NN Euclidean, 1-NN DTW where samples have a
time axis), computed once per dataset. The table goes into a run of its own in the experiment
`--table-experiment` (default `eval-tables`): `table.md` and `table.csv` as artifacts, each cell as the
metric `<dataset>/<method>_<protocol>/<metric>` or `<dataset>/<baseline>/acc` (`GunPoint/simclr_svm/acc`,
`GunPoint/nn_dtw/acc`).
"""

from __future__ import annotations

import argparse
import copy
import csv
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from contrastlab.errors import ConfigError
from contrastlab.eval.run import evaluate_target
from contrastlab.eval.targets import locate
from contrastlab.evaluation import registry
from contrastlab.evaluation.baselines import BASELINES, LABELS, run_baselines
from contrastlab.platform import stores

TABLE_PROTOCOLS = ["svm"]  # the papers' protocol, unless --protocols says otherwise


@dataclass
class Cell:
    dataset: str
    column: str  # "SimCLR svm", "1-NN DTW (raw)"
    key: str  # the column in metric names: "SimCLR_svm", "nn_dtw"
    run_id: str  # "" for a baseline
    protocol: str
    metric: str
    value: float


def headline(protocol: str, metrics: dict[str, float], source: str | None = None) -> tuple[str, float] | None:
    """The (metric, value) a cell shows: the registered protocol's headline (kNN: its smallest k)."""
    return registry.headline(protocol, metrics, source)


def parse_baselines(text: str | None) -> list[str]:
    if text is None:
        return list(BASELINES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return []
    for name in names:
        if name not in BASELINES:
            raise ConfigError(f"--baselines: unknown baseline {name!r}; choose from {','.join(BASELINES)} or none")
    return names


def select_runs(args: argparse.Namespace, client) -> list:
    """The runs to tabulate, oldest first: `--runs` as given, or the finished runs of `--datasets`."""
    from mlflow.exceptions import MlflowException

    if args.runs:
        runs = []
        for run_id in args.runs:
            try:
                runs.append(client.get_run(run_id))
            except MlflowException:
                raise ConfigError(f"--runs: no run {run_id} in the store; copy run ids from `contrastlab ui`") from None
        return runs
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = []
    for dataset in args.datasets:
        query = f"tags.dataset = '{dataset}' and attributes.status = 'FINISHED'"
        if args.filter:
            query += f" and {args.filter}"
        try:
            found = client.search_runs(experiments, query, order_by=["attributes.start_time ASC"], max_results=1000)
        except MlflowException as err:
            raise ConfigError(f"--filter {args.filter!r}: {str(err).splitlines()[0]}") from None
        if not found:
            raise ConfigError(
                f"--datasets: no finished run of {dataset!r} (a run's `dataset` tag) in the store"
                f"{' that --filter keeps' if args.filter else ''}; train one with contrastlab fit first"
            )
        runs += found
    return runs


def slug(text: str) -> str:
    """A name MLflow accepts inside a metric key."""
    return re.sub(r"[^\w.\-]+", "_", text).strip("_") or "_"


def evaluate_table(args: argparse.Namespace, uri: str, device: torch.device) -> int:
    from mlflow import MlflowClient

    baselines = parse_baselines(args.baselines)
    if args.protocols is None:
        args.protocols = list(TABLE_PROTOCOLS)
    client = MlflowClient(uri)
    runs = select_runs(args, client)
    cells: list[Cell] = []
    notes: list[str] = []
    baselined: set[str] = set()
    for run in runs:
        one = copy.copy(args)
        one.run, one.ckpt = run.info.run_id, None
        target, _ = locate(one, uri)
        evaluated = evaluate_target(one, target, client, uri, device)
        dataset = evaluated.datamodule.info.name
        method = run.data.tags.get("method") or run.info.run_name or run.info.run_id[:8]
        for protocol, metrics in evaluated.results.items():
            shown = headline(protocol, metrics, evaluated.sources.get(protocol))
            if shown is not None:
                column, key = f"{method} {protocol}", slug(f"{method}_{protocol}")
                cells.append(Cell(dataset, column, key, run.info.run_id, protocol, *shown))
        notes += [f"{dataset} / {method}: {p} skipped: {why}" for p, why in evaluated.skipped.items()]
        if baselines and dataset not in baselined:
            baselined.add(dataset)
            started = time.monotonic()
            data = evaluated.datamodule
            results, skipped = run_baselines(
                baselines, data.eval_loader("train"), data.eval_loader("test"), args.dtw_window
            )
            print(f"baselines of {dataset}: {time.monotonic() - started:.1f} s", flush=True)
            cells += [Cell(dataset, LABELS[n], n, "", n, "acc", r["acc"]) for n, r in results.items()]
            notes += [f"{dataset}: {name} skipped: {why}" for name, why in skipped.items()]
    markdown = table_markdown(cells, notes)
    table_run = log_table(client, args, cells, markdown, runs)
    print(markdown, flush=True)
    print(f"table logged into run {table_run} of experiment {args.table_experiment!r} ({stores.redact(uri)})")
    return 0


def wide(cells: list[Cell]) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """(datasets, columns, value of each (dataset, column)): the newest run wins a cell; baselines last."""
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    learned = list(dict.fromkeys(c.column for c in cells if c.run_id))
    raw = [LABELS[n] for n in BASELINES if any(c.column == LABELS[n] for c in cells)]
    values = {(c.dataset, c.column): c.value for c in cells}  # runs come oldest first
    return datasets, learned + raw, values


def table_markdown(cells: list[Cell], notes: list[str]) -> str:
    datasets, columns, values = wide(cells)
    lines = ["| dataset | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for dataset in datasets:
        row = [f"{values[(dataset, c)]:.4f}" if (dataset, c) in values else "-" for c in columns]
        lines.append(f"| {dataset} | " + " | ".join(row) + " |")
    footer = [""] + [f"- {n}" for n in notes] if notes else []
    return "\n".join(["# Accuracy (test split)", "", *lines, *footer]) + "\n"


def log_table(client, args: argparse.Namespace, cells: list[Cell], markdown: str, runs: list) -> str:
    """A run of its own for the table: artifacts `table.md`, `table.csv`; a metric per cell."""
    from mlflow.entities import Metric, Param, RunTag

    experiment = client.get_experiment_by_name(args.table_experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(args.table_experiment)
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    run = client.create_run(experiment_id, run_name=f"table: {', '.join(datasets)}"[:250], tags={"eval.table": "1"})
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = {
        "datasets": ",".join(datasets),
        "runs": ",".join(r.info.run_id for r in runs)[:6000],
        "protocols": ",".join(args.protocols),
        "baselines": args.baselines or ",".join(BASELINES),
        "checkpoint": args.checkpoint,
    }
    metrics = [Metric(f"{slug(c.dataset)}/{c.key}/{c.metric}", c.value, now, 0) for c in cells]
    client.log_batch(
        run_id,
        metrics=metrics[:1000],
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag("eval.runs", params["runs"][:5000])],
    )
    for start in range(1000, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "table.md").write_text(markdown)
        with open(Path(folder) / "table.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["dataset", "column", "run_id", "protocol", "metric", "value"])
            for c in cells:
                writer.writerow([c.dataset, c.column, c.run_id, c.protocol, c.metric, c.value])
        client.log_artifact(run_id, str(Path(folder) / "table.md"))
        client.log_artifact(run_id, str(Path(folder) / "table.csv"))
    client.set_terminated(run_id, "FINISHED")
    return run_id
