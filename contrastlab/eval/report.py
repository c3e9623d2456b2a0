"""What `contrastlab eval` writes of one checkpoint's results: the markdown table it prints (the learned
features' protocols, the baselines beside, the options that shaped them), and the metrics
(`eval/<protocol>/<metric>`, `eval/baseline_<name>/<metric>`, at the checkpoint's step) and artifacts
(`eval/results.md`, `eval/results.csv`, `eval/options.json`, `eval/tsne.png`, and `eval/history/<time>.md`, one per
eval) it logs into the run. A second eval with other options logs its metrics over the first's; the history keeps
what each eval gave and with which options."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

from contrastlab.eval.targets import Target

# What `eval_options` leaves out: where the checkpoint, the store and the caches are, and where the work runs, which
# change no figure (the store's URI may hold a password).
NOT_OPTIONS = {"ckpt", "run", "runs", "datasets", "filter", "table_experiment", "tracking_uri", "register", "device"}
NOT_OPTIONS |= {"cache_dir", "tsne_points"}


def eval_options(args: argparse.Namespace) -> dict:
    """The options of an eval that shape its figures (protocols, k, the probe's and fine-tuning's settings, the
    baselines, the seed, ...), as given or defaulted."""
    return {key: value for key, value in sorted(vars(args).items()) if key not in NOT_OPTIONS}


def metric_rows(results: dict[str, dict[str, float]]) -> list[tuple[str, str, float]]:
    return [(protocol, name, value) for protocol, metrics in results.items() for name, value in metrics.items()]


def results_markdown(
    target: Target,
    results,
    skipped: dict[str, str],
    labels: dict[str, str] | None = None,
    options: dict | None = None,
) -> str:
    """The results as one table: the learned features' protocols, then the baselines beside them (`labels`: what
    each baseline's features and classifier are), under the `options` they were computed with."""
    labels = labels or {}
    lines = [f"# Evaluation of {target.ckpt.name} (run {target.run_id}, step {target.step})", ""]
    if options:
        lines += ["Options: " + ", ".join(f"`{key}={json.dumps(value)}`" for key, value in options.items()), ""]
    lines += [
        "| features | protocol | metric | value |",
        "|---|---|---|---|",
        *(f"| {labels.get(p, 'learned')} | {p} | {m} | {v:.4g} |" for p, m, v in metric_rows(results)),
    ]
    if skipped:
        lines += ["", *(f"- {p} skipped: {why}" for p, why in skipped.items())]
    return "\n".join(lines) + "\n"


def log_results(
    client,
    target: Target,
    results,
    skipped: dict[str, str],
    picture: Path | None,
    labels: dict[str, str] | None = None,
    options: dict | None = None,
) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [
        Metric(f"eval/{p}/{m}", float(v), now, target.step)
        for p, m, v in metric_rows(results)
        if v == v and abs(v) != float("inf")  # MLflow stores no inf; the SVM's hard margin is C = inf
    ]
    for start in range(0, len(metrics), 1000):
        client.log_batch(target.run_id, metrics=metrics[start : start + 1000])
    with tempfile.TemporaryDirectory() as folder:
        md = Path(folder) / "results.md"
        md.write_text(results_markdown(target, results, skipped, labels, options))
        (Path(folder) / "options.json").write_text(json.dumps(options or {}, indent=1) + "\n")
        with open(Path(folder) / "results.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["protocol", "metric", "value", "checkpoint", "step"])
            for row in metric_rows(results):
                writer.writerow([*row, target.ckpt.name, target.step])
        if picture is not None:
            shutil.copy(picture, Path(folder) / "tsne.png")
        for name in ("results.md", "results.csv", "options.json", "tsne.png"):
            if (Path(folder) / name).is_file():
                client.log_artifact(target.run_id, str(Path(folder) / name), "eval")
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now / 1000)) + f"{now % 1000:03d}Z"
        history = Path(folder) / "history" / f"{stamp}.md"
        history.parent.mkdir()
        shutil.copy(md, history)
        client.log_artifact(target.run_id, str(history), "eval/history")
    if picture is not None:
        shutil.rmtree(picture.parent, ignore_errors=True)
