"""`contrastlab eval --runs A,B,...` or `--datasets X,Y,...`: many runs into one accuracy table.

    contrastlab fit -c configs/simclr/gunpoint.yaml --data.init_args.name ArrowHead    # a run per dataset
    contrastlab eval --datasets GunPoint,ArrowHead --protocols svm --checkpoint last

Each run is evaluated as `contrastlab eval --run` does (its results, and the data's baselines beside them,
logged into it; features cached; the baselines of the data alone computed once per data config). Runs whose
configs differ only by seed (`seed_everything`, the data's split `seed`) and by what does not change a result
(logging, workers, progress) are one configuration: the table has a row per dataset and configuration (the
run's `method` tag, and the settings that tell its configurations apart), `runs` in it, and a column per
protocol and baseline, each cell the mean ± sd over the configuration's runs. The table goes into a run of its
own in the experiment `--table-experiment` (default `eval-tables`): `table.md` and `table.csv` (one row per run
and cell) as artifacts, each cell as the metric `<dataset>/<configuration>_<protocol>/<metric>` (the mean; with
more than one run, `<metric>_sd` and `<metric>_n` too): `GunPoint/simclr_svm/acc`,
`GunPoint/simclr_baseline_raw_dtw/acc`.

Over two or more datasets the table also ranks its methods (each configuration's protocol, and each baseline,
is a method): each method's average rank over the datasets where every method has a value (1 = best), Friedman's
test and the Nemenyi critical difference (Demšar 2006, evaluation/ranks.py), as a section of `table.md`, the
metrics `rank/<method>` and `rank/cd`, and the critical-difference diagram `cd.png`.
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

import numpy as np
import torch

from contrastlab.errors import ConfigError
from contrastlab.eval.run import evaluate_target
from contrastlab.eval.targets import locate
from contrastlab.evaluation import registry
from contrastlab.evaluation.baselines import headline as baseline_headline
from contrastlab.evaluation.plots import cd_diagram
from contrastlab.evaluation.ranks import Ranking, rank_methods
from contrastlab.platform import stores

TABLE_PROTOCOLS = ["svm"]  # the papers' protocol, unless --protocols says otherwise


@dataclass
class Cell:
    """One headline value of one run."""

    dataset: str
    configuration: str  # the group of runs: "simclr", or "simclr (model.init_args.temperature=0.5)"
    column: str  # "svm", "raw, 1-NN DTW"
    key: str  # the column in metric names: "svm", "baseline_raw_dtw"
    run_id: str
    protocol: str
    metric: str
    value: float


def headline(protocol: str, metrics: dict[str, float], source: str | None = None) -> tuple[str, float] | None:
    """The (metric, value) a cell shows: the registered protocol's headline (kNN: its smallest k), a baseline's
    accuracy."""
    if source == "baseline":
        return baseline_headline(metrics)
    return registry.headline(protocol, metrics, source)


# Settings that change no result: two runs that differ only in these (and in seeds) are one configuration.
SEEDS = ("seed_everything", "data.init_args.seed")
INCIDENTAL = (
    "tracking",
    "resume",
    "resume_allow_changes",
    "test_after_fit",
    "ckpt_path",
    "trainer.logger",
    "trainer.callbacks",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "data.init_args.num_workers",
)


def settings(config: dict, prefix: str = "") -> dict[str, str]:
    """The run config as dotted keys -> values, without its seeds and incidental settings."""
    out = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if dotted in SEEDS or dotted in INCIDENTAL:
            continue
        if isinstance(value, dict) and value:
            out.update(settings(value, f"{dotted}."))
        else:
            out[dotted] = repr(value)
    return out


def configurations(runs: list[tuple[str, str, dict[str, str]]]) -> list[str]:
    """A name for each (dataset, method, settings) run: the method, and where a dataset has several configurations
    of that method, the settings in which they differ."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for dataset, method, values in runs:
        kinds = groups.setdefault((dataset, method), [])
        if values not in kinds:
            kinds.append(values)
    names = []
    for dataset, method, values in runs:
        kinds = groups[(dataset, method)]
        differing = sorted({k for other in kinds for k in {*values, *other} if values.get(k) != other.get(k)})
        shown = ", ".join(f"{k}={values.get(k, 'unset')}" for k in differing)
        names.append(f"{method} ({shown[:200]})" if shown else method)
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

    if args.protocols is None:
        args.protocols = list(TABLE_PROTOCOLS)
    client = MlflowClient(uri)
    runs = select_runs(args, client)
    found: list[tuple] = []
    notes: list[str] = []
    memo: dict = {}  # the baselines of the data alone, once per data config
    for run in runs:
        one = copy.copy(args)
        one.run, one.ckpt = run.info.run_id, None
        target, _ = locate(one, uri)
        evaluated = evaluate_target(one, target, client, uri, device, memo)
        dataset = evaluated.datamodule.info.name
        method = run.data.tags.get("method") or run.info.run_name or run.info.run_id[:8]
        found.append((run, dataset, method, settings(target.config), evaluated))
    names = configurations([(dataset, method, values) for _, dataset, method, values, _ in found])
    cells: list[Cell] = []
    for (run, dataset, _, _, evaluated), configuration in zip(found, names):
        for group, metrics in evaluated.results.items():
            shown = headline(group, metrics, evaluated.sources.get(group))
            if shown is not None:
                column = evaluated.labels.get(group, group)
                cells.append(Cell(dataset, configuration, column, group, run.info.run_id, group, *shown))
        notes += [f"{dataset} / {configuration}: {p} skipped: {why}" for p, why in evaluated.skipped.items()]
    notes = list(dict.fromkeys(notes))
    ranking, why_not = rank_cells(cells)
    markdown = table_markdown(cells, notes) + ("\n" + ranking_markdown(ranking) if ranking else "")
    if why_not:
        print(f"no ranks: {why_not}", flush=True)
    table_run = log_table(client, args, cells, markdown, runs, ranking)
    print(markdown, flush=True)
    print(f"table logged into run {table_run} of experiment {args.table_experiment!r} ({stores.redact(uri)})")
    return 0


@dataclass
class Summary:
    mean: float
    sd: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f}" if self.n == 1 else f"{self.mean:.4f} ± {self.sd:.4f}"


def grouped(cells: list[Cell]) -> dict[tuple[str, str], dict[str, Summary]]:
    """(dataset, configuration) -> column -> mean, sample sd and count over the configuration's runs."""
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    for c in cells:
        values.setdefault((c.dataset, c.configuration), {}).setdefault(c.column, []).append(c.value)
    return {
        row: {column: Summary(*_mean_sd(v), len(v)) for column, v in by_column.items()}
        for row, by_column in values.items()
    }


def _mean_sd(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, sd


def table_markdown(cells: list[Cell], notes: list[str]) -> str:
    rows = grouped(cells)
    learned = list(dict.fromkeys(c.column for c in cells if not c.key.startswith("baseline_")))
    columns = learned + list(dict.fromkeys(c.column for c in cells if c.key.startswith("baseline_")))
    runs = {row: len({c.run_id for c in cells if (c.dataset, c.configuration) == row}) for row in rows}
    lines = [
        "| dataset | configuration | runs | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for (dataset, configuration), by_column in rows.items():
        row = []
        for column in columns:
            summary = by_column.get(column)
            text = "-" if summary is None else str(summary)
            if summary is not None and summary.n != runs[(dataset, configuration)]:
                text += f" (n={summary.n})"
            row.append(text)
        lines.append(f"| {dataset} | {configuration} | {runs[(dataset, configuration)]} | " + " | ".join(row) + " |")
    footer = [""] + [f"- {n}" for n in notes] if notes else []
    title = "# Accuracy (test split): mean ± sd over the runs of each configuration"
    return "\n".join([title, "", *lines, *footer]) + "\n"


def method_name(cell: Cell) -> str:
    """A ranked method: a baseline alone (the data's, the same beside every configuration), else the
    configuration and its protocol."""
    return cell.column if cell.key.startswith("baseline_") else f"{cell.configuration}, {cell.column}"


def rank_cells(cells: list[Cell]) -> tuple[Ranking | None, str]:
    """The methods' ranking over the datasets where every method has a value (each dataset's value of a method:
    its mean over that dataset's runs), or None and why not."""
    values: dict[str, dict[str, list[float]]] = {}
    for c in cells:
        values.setdefault(method_name(c), {}).setdefault(c.dataset, []).append(c.value)
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    methods = [m for m, by_set in values.items() if len(by_set) == len(datasets)]
    if len(datasets) < 2 or len(methods) < 2:
        return None, f"{len(datasets)} dataset(s) and {len(methods)} method(s) with a value on every one; need 2+"
    scores = [[sum(values[m][d]) / len(values[m][d]) for m in methods] for d in datasets]
    return rank_methods(np.array(scores), methods, datasets), ""


def ranking_markdown(ranking: Ranking) -> str:
    n, k = len(ranking.datasets), len(ranking.methods)
    lines = [
        f"## Average rank over {n} datasets (1 = best; Demšar 2006)",
        "",
        "| method | average rank |",
        "|---|---:|",
        *(f"| {ranking.methods[j]} | {ranking.average[j]:.2f} |" for j in ranking.order()),
        "",
        f"Friedman chi2 = {ranking.chi2:.3f} (p = {ranking.p_value:.3g}), Iman-Davenport F = "
        f"{ranking.f_statistic:.3f} (p = {ranking.f_p_value:.3g}); Nemenyi CD = {ranking.cd:.3f} for {k} methods "
        f"at alpha {ranking.alpha} (the picture: cd.png).",
    ]
    return "\n".join(lines) + "\n"


def log_table(
    client, args: argparse.Namespace, cells: list[Cell], markdown: str, runs: list, ranking: Ranking | None = None
) -> str:
    """A run of its own for the table: artifacts `table.md`, `table.csv` (and `cd.png` with a ranking); a metric
    per cell (mean, sd, n), and per method its average rank."""
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
        "baselines": "all" if args.baselines is None else ",".join(args.baselines) or "none",
        "checkpoint": args.checkpoint,
    }
    metrics = []
    keys = {(c.dataset, c.configuration, c.column): (c.key, c.metric) for c in cells}
    for (dataset, configuration), by_column in grouped(cells).items():
        for column, summary in by_column.items():
            key, metric = keys[(dataset, configuration, column)]
            name = f"{slug(dataset)}/{slug(configuration + '_' + key)}/{metric}"
            metrics.append(Metric(name, summary.mean, now, 0))
            if summary.n > 1:
                metrics += [Metric(f"{name}_sd", summary.sd, now, 0), Metric(f"{name}_n", summary.n, now, 0)]
    if ranking is not None:
        metrics += [Metric(f"rank/{slug(m)}", float(r), now, 0) for m, r in zip(ranking.methods, ranking.average)]
        metrics += [Metric("rank/cd", ranking.cd, now, 0), Metric("rank/friedman_p", ranking.p_value, now, 0)]
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
            writer.writerow(["dataset", "configuration", "column", "run_id", "protocol", "metric", "value"])
            for c in cells:
                writer.writerow([c.dataset, c.configuration, c.column, c.run_id, c.protocol, c.metric, c.value])
        client.log_artifact(run_id, str(Path(folder) / "table.md"))
        client.log_artifact(run_id, str(Path(folder) / "table.csv"))
        if ranking is not None:
            client.log_artifact(run_id, str(cd_diagram(ranking, Path(folder) / "cd.png")))
    client.set_terminated(run_id, "FINISHED")
    return run_id
