"""What the parent run holds when a sweep ends: a description leading to the best trial, the best value
and params, a table of every trial (CSV, and Markdown with links to the trials' runs), the best config as
a YAML to train with (`contrastlab fit -c best_config.yaml`), and Optuna's plots on one offline page."""

from __future__ import annotations

import copy
import csv
import html
import json
import logging
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from contrastlab.sweeps.config import SweepConfig
from contrastlab.sweeps.runs import TRIAL_TAG, child_runs, method_of, run_link, trial_run_name
from contrastlab.sweeps.space import set_key
from contrastlab.sweeps.storage import REASON_ATTR, RUN_ATTR, SEED_VALUES_ATTR, STEP_ATTR, outcome, retried_numbers

log = logging.getLogger("contrastlab")
PLOTS = {
    "Optimisation history": "plot_optimization_history",
    "Parameter importances": "plot_param_importances",
    "Parallel coordinates": "plot_parallel_coordinate",
}
PLOTS_PAGE = "optuna_plots.html"


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
                **(_seed_columns(t, sweep) if sweep.seeds else {}),
                **{key: t.params.get(key) for key in sweep.space},
                "epochs": t.user_attrs.get(STEP_ATTR),
                "seconds": round(duration, 1) if duration is not None else None,
                "mlflow_run_id": t.user_attrs.get(RUN_ATTR) or run_ids.get(t.number),
                "fail_reason": t.user_attrs.get(REASON_ATTR),
            }
        )
    return rows


def _seed_columns(trial, sweep: SweepConfig) -> dict[str, Any]:
    """With seeds, the objective column is the seeds' mean: its sd beside it, and the seeds it is over."""
    values = list((trial.user_attrs.get(SEED_VALUES_ATTR) or {}).values())
    return {"sd": statistics.stdev(values) if len(values) > 1 else None, "seeds": len(values)}


def mean_sd(trial) -> str:
    """`0.9123 ± 0.0040 (3 seeds)` for a trial trained once per seed, else its value."""
    values = list((trial.user_attrs.get(SEED_VALUES_ATTR) or {}).values())
    if len(values) < 2:
        return f"{trial.value:.4f}"
    return f"{trial.value:.4f} ± {statistics.stdev(values):.4f} ({len(values)} seeds)"


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


def best_config(sweep: SweepConfig, params: dict[str, Any], best: Any = None) -> str:
    """The base config with the best trial's sampled values written in: a config to train with.

    The sweep's `fixed` keys made its trials short and light (fewer epochs, no checkpoints or system
    metrics); they are listed in a comment, not applied, so the config trains a full, tracked run.
    """
    config = copy.deepcopy(sweep.base_config(params))
    for key, value in sweep.run_keys(params).items():
        set_key(config, key, value)
    which = f"Best trial {best.number}" if best is not None else "Best trial"
    value = f": {sweep.metric} = {mean_sd(best)}" if best is not None and best.value is not None else ""
    base = sweep.base_of(params)
    base = base if isinstance(base, Path) else "the sweep's inline base"
    lines = [
        f"{which} of sweep {sweep.name!r}{value} ({sweep.direction}).",
        f"The base config ({base}) with the best sampled values of {', '.join(params) or 'none'}; train it with",
        "  contrastlab fit -c best_config.yaml",
    ]
    if sweep.fixed:
        lines += [
            "The sweep also fixed these for every trial (to keep its trials short); they are not applied here:",
            "add any of them to the command line (--key value) to repeat the trials' settings.",
            *(f"  {key}: {json.dumps(value)}" for key, value in sweep.fixed.items()),
        ]
    return "".join(f"# {line}\n" for line in lines) + yaml.safe_dump(config, sort_keys=False)


def linked_rows(rows: list[dict[str, Any]], experiment_id: str) -> list[dict[str, Any]]:
    """trials.md's rows: the run id as a link to the trial's run page."""
    linked = []
    for row in rows:
        row = dict(row)
        run_id = row.pop("mlflow_run_id")
        row["run"] = f"[{run_id[:8]}]({run_link(experiment_id, run_id)})" if run_id else None
        linked.append(row)
    return linked


def parent_note(
    sweep: SweepConfig, rows: list[dict[str, Any]], best: Any, experiment_id: str, tied: list[int] = ()
) -> str:
    """The parent run's description (markdown): the objective, the best value and a link to the best trial (and
    the trials `tied` with it)."""
    states = [row["state"] for row in rows]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "pruned", "failed", "killed") if s in states)
    goal = f"{sweep.direction} `{sweep.metric}`"
    lines = [f"**Sweep `{sweep.name}`**: {goal} over {len(rows)} trials ({counts or 'none'})."]
    if best is None:
        lines.append("No trial has completed yet.")
    else:
        run_id = best.user_attrs.get(RUN_ATTR) or next(
            (row["mlflow_run_id"] for row in rows if row["trial"] == best.number), None
        )
        name = trial_run_name(best.number, method_of(sweep.base_config(best.params)), "complete")
        target = f"[{name}]({run_link(experiment_id, run_id)})" if run_id else name
        lines.append(f"**Best**: `{sweep.metric}` = **{mean_sd(best)}** in {target}{ties(list(tied))}")
        lines.append(
            "Artifacts: `best_config.yaml` (the base config with these values: `contrastlab fit -c best_config.yaml`), "
            f"`trials.md` (every trial, linked), `{PLOTS_PAGE}` (Optuna's plots), `sweep.yaml` (the study's settings)."
        )
        table = ["| best param | value |", "|---|---|"]
        table += [f"| `{key}` | {value:.6g} |" if isinstance(value, float) else f"| `{key}` | {value} |"
                  for key, value in best.params.items()]  # fmt: skip
        lines.append("\n".join(table))
    return "\n\n".join(lines)


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
        (out / "trials.md").write_text(markdown_table(linked_rows(rows, experiment_id)))
        files = [out / "trials.csv", out / "trials.md"]
        if best is not None:
            (out / "best_config.yaml").write_text(best_config(sweep, best.params, best))
            files.append(out / "best_config.yaml")
            page = plots_page(study, sweep.name)
            if page is not None:
                (out / PLOTS_PAGE).write_text(page)
                files.append(out / PLOTS_PAGE)
        for path in files:
            client.log_artifact(parent_run_id, str(path))
    _once_more_if_raced(
        client.set_tag,
        parent_run_id,
        "mlflow.note.content",
        parent_note(sweep, rows, best, experiment_id, tied_with(study, best)),
    )
    _share_dataset_inputs(client, parent_run_id, best)
    if best is not None:
        client.log_metric(parent_run_id, "best_value", best.value)
        client.log_metric(parent_run_id, f"best/{sweep.metric}", best.value)  # says which metric it is
        seed_values = list((best.user_attrs.get(SEED_VALUES_ATTR) or {}).values())
        if len(seed_values) > 1:
            client.log_metric(parent_run_id, f"best/{sweep.metric}_sd", statistics.stdev(seed_values))
        _once_more_if_raced(client.set_tag, parent_run_id, "best.trial", str(best.number))
        _once_more_if_raced(client.set_tag, parent_run_id, "best.run_id", str(best.user_attrs.get(RUN_ATTR)))
        for key, value in best.params.items():
            _once_more_if_raced(client.set_tag, parent_run_id, f"best.{key}", str(value))
    return best


def _share_dataset_inputs(client, parent_run_id: str, best) -> None:
    """The parent shows the data its trials trained on (the best trial's dataset input)."""
    run_id = best.user_attrs.get(RUN_ATTR) if best is not None else None
    if run_id:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        if inputs:
            _once_more_if_raced(client.log_inputs, parent_run_id, datasets=inputs)


def _once_more_if_raced(write, *args, **kwargs) -> None:
    """A first write of a tag or input to the parent run, which another worker finishing at the same moment may
    be writing too: MLflow checks for the row, then inserts, and the later insert breaks a unique constraint.
    Written again, MLflow finds the row and updates it (a tag) or skips it (an input); other errors raise again."""
    from mlflow.exceptions import MlflowException

    try:
        write(*args, **kwargs)
    except MlflowException as err:
        log.info("sweep: writing the parent run again after %s", str(err).splitlines()[0])
        write(*args, **kwargs)


def _best_trial(study):
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def tied_with(study, best) -> list[int]:
    """The other complete trials whose objective equals the best's. Which of them Optuna names best is the
    storage's order, not a difference, so a researcher choosing settings is shown them all."""
    from optuna.trial import TrialState

    if best is None:
        return []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t.number for t in complete if t.value == best.value and t.number != best.number]


def ties(tied: list[int]) -> str:
    """`, tied with trials 3, 5` (empty without a tie)."""
    return f", tied with trial{'s' if len(tied) > 1 else ''} {', '.join(map(str, tied))}" if tied else ""


def plots_page(study, title: str) -> str | None:
    """Optuna's plots on one self-contained HTML page with plotly.js embedded once (it opens offline in
    the MLflow UI); a plot that cannot be drawn yet (parameter importances need two completed trials with
    different values) is left out; None when none can be drawn."""
    import optuna.visualization as vis
    from plotly.offline import get_plotlyjs

    sections = []
    for name, function in PLOTS.items():
        try:
            figure = getattr(vis, function)(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.warning("sweep: no %s plot yet (%s)", name.lower(), err)
            continue
        sections.append(f"<h2>{name}</h2>\n" + figure.to_html(full_html=False, include_plotlyjs=False))
    if not sections:
        return None
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}: Optuna plots</title>\n'
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>\n'
        f'<body style="font-family: sans-serif"><h1>{html.escape(title)}</h1>\n'
        + "\n".join(sections)
        + "</body></html>\n"
    )
