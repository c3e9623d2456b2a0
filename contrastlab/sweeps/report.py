"""What the parent run holds when a sweep ends: the best value and params, a table of every trial (CSV
and Markdown), the best config as a YAML ready for `contrastlab fit -c`, and Optuna's plots (HTML)."""

from __future__ import annotations

import copy
import csv
import logging
import tempfile
from pathlib import Path
from typing import Any

import yaml

from contrastlab.sweeps.config import SweepConfig
from contrastlab.sweeps.pruning import RUN_ATTR, STEP_ATTR
from contrastlab.sweeps.runs import TRIAL_TAG, child_runs
from contrastlab.sweeps.space import set_key
from contrastlab.sweeps.storage import REASON_ATTR, outcome, retried_numbers

log = logging.getLogger("contrastlab")
PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
}


def trial_rows(study, sweep: SweepConfig, run_ids: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """One row per trial; `run_ids` (trial number -> MLflow run) fills in runs a trial had no time to record."""
    run_ids = run_ids or {}
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    rows = []
    for t in trials:
        state = outcome(t, retried)
        if state == "surplus":
            continue
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append(
            {
                "trial": t.number,
                "state": state or t.state.name.lower(),
                sweep.metric: t.value,
                **{key: t.params.get(key) for key in sweep.space},
                "epochs": t.user_attrs.get(STEP_ATTR),
                "seconds": round(duration, 1) if duration is not None else None,
                "mlflow_run_id": t.user_attrs.get(RUN_ATTR) or run_ids.get(t.number),
                "fail_reason": t.user_attrs.get(REASON_ATTR),
            }
        )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No trials yet.\n"
    columns = list(rows[0])

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.6g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def best_config(sweep: SweepConfig, params: dict[str, Any]) -> str:
    """The base config with the fixed overrides and the best trial's params written in."""
    config = copy.deepcopy(sweep.base_config())
    for key, value in {**sweep.fixed, **params}.items():
        set_key(config, key, value)
    header = (
        f"# Best trial of sweep {sweep.name!r} ({sweep.metric}, {sweep.direction}); run it with\n"
        f"#   contrastlab fit -c best_config.yaml\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


def write_summary(client, parent_run_id: str, study, sweep: SweepConfig) -> Any:
    """Log the summary into the parent run; the best trial, or None when no trial completed."""
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    run_ids = {
        int(run.data.tags[TRIAL_TAG]): run.info.run_id for run in child_runs(client, experiment_id, study.study_name)
    }
    rows = trial_rows(study, sweep, run_ids)
    states = [row["state"] for row in rows]
    for state in ("complete", "pruned", "failed", "killed"):
        client.log_metric(parent_run_id, f"trials_{state}", states.count(state))
    best = _best_trial(study)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        with open(out / "trials.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
            writer.writeheader()
            writer.writerows(rows)
        (out / "trials.md").write_text(markdown_table(rows))
        files = [out / "trials.csv", out / "trials.md"]
        if best is not None:
            (out / "best_config.yaml").write_text(best_config(sweep, best.params))
            files.append(out / "best_config.yaml")
        for path in files:
            client.log_artifact(parent_run_id, str(path))
        if best is not None:
            plots = out / "plots"
            plots.mkdir()
            _write_plots(study, plots)
            client.log_artifacts(parent_run_id, str(plots), "plots")
    if best is not None:
        client.log_metric(parent_run_id, "best_value", best.value)
        client.set_tag(parent_run_id, "best.trial", str(best.number))
        client.set_tag(parent_run_id, "best.run_id", str(best.user_attrs.get(RUN_ATTR)))
        for key, value in best.params.items():
            client.set_tag(parent_run_id, f"best.{key}", str(value))
    return best


def _best_trial(study):
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def _write_plots(study, folder: Path) -> None:
    """Each plot as a self-contained HTML file (it opens in the MLflow UI, offline); one that cannot be
    drawn yet (parameter importances need two completed trials with different values) is skipped."""
    import optuna.visualization as vis

    for name, function in PLOTS.items():
        try:
            figure = getattr(vis, function)(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.warning("sweep: no %s plot yet (%s)", name, err)
            continue
        figure.write_html(str(folder / f"{name}.html"), include_plotlyjs=True)
