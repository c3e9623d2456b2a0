"""What `contrastlab eval` writes of one checkpoint's results: the markdown table it prints (the learned
features' protocols, the baselines beside), and the metrics (`eval/<protocol>/<metric>`,
`eval/baseline_<name>/<metric>`, at the checkpoint's step) and artifacts (`eval/results.md`,
`eval/results.csv`, `eval/tsne.png`) it logs into the run."""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
from pathlib import Path

from contrastlab.eval.targets import Target


def metric_rows(results: dict[str, dict[str, float]]) -> list[tuple[str, str, float]]:
    return [(protocol, name, value) for protocol, metrics in results.items() for name, value in metrics.items()]


def results_markdown(target: Target, results, skipped: dict[str, str], labels: dict[str, str] | None = None) -> str:
    """The results as one table: the learned features' protocols, then the baselines beside them (`labels`: what
    each baseline's features and classifier are)."""
    labels = labels or {}
    lines = [
        f"# Evaluation of {target.ckpt.name} (run {target.run_id}, step {target.step})",
        "",
        "| features | protocol | metric | value |",
        "|---|---|---|---|",
        *(f"| {labels.get(p, 'learned')} | {p} | {m} | {v:.4g} |" for p, m, v in metric_rows(results)),
    ]
    if skipped:
        lines += ["", *(f"- {p} skipped: {why}" for p, why in skipped.items())]
    return "\n".join(lines) + "\n"


def log_results(
    client, target: Target, results, skipped: dict[str, str], picture: Path | None, labels: dict[str, str] | None = None
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
        md.write_text(results_markdown(target, results, skipped, labels))
        with open(Path(folder) / "results.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["protocol", "metric", "value", "checkpoint", "step"])
            for row in metric_rows(results):
                writer.writerow([*row, target.ckpt.name, target.step])
        if picture is not None:
            shutil.copy(picture, Path(folder) / "tsne.png")
        for name in ("results.md", "results.csv", "tsne.png"):
            if (Path(folder) / name).is_file():
                client.log_artifact(target.run_id, str(Path(folder) / name), "eval")
    if picture is not None:
        shutil.rmtree(picture.parent, ignore_errors=True)
