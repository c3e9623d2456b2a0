"""MLflow for a sweep: one experiment per sweep, one parent run per study, one nested child run per trial.

Trials create their own child runs (their `fit` logs as any run does, with `mlflow.parentRunId` among its
tags); this module creates the parent and keeps every child's status and `sweep.state` tag in step with
its trial, including the runs of trials whose worker died, which nothing else would ever close.
"""

from __future__ import annotations

from typing import Any

from contrastlab.sweeps.storage import REASON_ATTR, SEED_VALUES_ATTR, STEP_ATTR, outcome, retried_numbers

STUDY_TAG, ROLE_TAG, TRIAL_TAG, STATE_TAG, REASON_TAG, SEED_TAG = (
    "sweep.study",
    "sweep.role",
    "sweep.trial",
    "sweep.state",
    "sweep.fail_reason",
    "sweep.seed",
)
# Pruned is an ordinary end (the pruner decided), so FINISHED; the tag and the note say "pruned".
STATUS = {"complete": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def client_for(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def ensure_experiment(client, uri: str, name: str) -> str:
    """The sweep's experiment, created with the artifact location a `fit` of that experiment would give it."""
    # here, not at the top: the run side imports Lightning, which sweep workers never need
    from contrastlab.platform import tracking
    from contrastlab.platform.runpage import mark_model_training

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        mark_model_training(client, experiment.experiment_id)
        return experiment.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        experiment_id = client.create_experiment(name, artifact_location=tracking.artifact_location(uri, name))
    except MlflowException:  # another worker created it a moment ago
        experiment_id = client.get_experiment_by_name(name).experiment_id
    mark_model_training(client, experiment_id)
    return experiment_id


def _parents(client, experiment_id: str, study: str) -> list:
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'parent'"
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def ensure_parent_run(client, experiment_id: str, study: str, tags: dict[str, str]) -> str:
    """The study's parent run: the oldest one tagged for it, or a new one. It logs no params (its runs
    table columns are the trials' hyper-parameters); the study's settings are its tags and `sweep.yaml`.

    Workers on several machines may start together; each one that creates a parent looks again and
    deletes its own if an older one exists, so they settle on one.
    """
    existing = _parents(client, experiment_id, study)
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    tags = {**tags, STUDY_TAG: study, ROLE_TAG: "parent", "mlflow.source.name": f"contrastlab sweep {study}"}
    run = client.create_run(experiment_id, run_name=f"{study} (sweep)", tags=tags)
    oldest = _parents(client, experiment_id, study)[0].info.run_id
    if oldest != run.info.run_id:
        client.delete_run(run.info.run_id)
    return oldest


def child_tags(parent_run_id: str, study: str, number: int, seed: int | None = None) -> dict[str, str]:
    return {
        "mlflow.parentRunId": parent_run_id,
        "mlflow.source.name": f"contrastlab sweep {study}",
        STUDY_TAG: study,
        ROLE_TAG: "trial",
        TRIAL_TAG: str(number),
        **({SEED_TAG: str(seed)} if seed is not None else {}),
    }


def method_of(run_config: dict[str, Any]) -> str:
    """The method a run config trains, as run names and tags say it (`contrastlab.modules.SimCLR` -> simclr)."""
    model = run_config.get("model") or {}
    path = model.get("class_path", "") if isinstance(model, dict) else str(model)
    return path.rsplit(".", 1)[-1].lower() or "model"


def trial_run_name(
    number: int, method: str, state: str, epochs: int | None = None, seed: int | str | None = None
) -> str:
    """`trial-5 simclr (pruned @ epoch 4)`, `trial-5 simclr seed 1 (complete)`: what the trial is and how it
    ended, where the runs table shows it."""
    if state == "pruned" and epochs:
        state = f"pruned @ epoch {epochs}"
    elif state == "killed":
        state = "killed, queued again"
    which = f" seed {seed}" if seed is not None else ""
    return f"trial-{number} {method}{which} ({state})"


def objective_metric(metric: str) -> str:
    """The metric only complete trials carry: the objective at the end of their full training."""
    return f"objective/{metric}"


def run_link(experiment_id: str, run_id: str) -> str:
    """A link to a run's page that works wherever the MLflow UI is served (markdown in notes, trials.md)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def child_runs(client, experiment_id: str, study: str) -> list:
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'trial'",
        max_results=50000,
    )


def close_child(
    client,
    run,
    state: str,
    reason: str | None = None,
    value: float | None = None,
    epochs: int | None = None,
    metric: str | None = None,
) -> None:
    """Say how a trial ended where the UI shows it: its run name, its description (`mlflow.note.content`,
    markdown), the `sweep.state` tag and its status (a pruned run is not shown as a failure). Only a
    complete trial gets the objective metric `objective/<metric>`, so no chart mixes in pruned trials."""
    if run.data.tags.get(STATE_TAG) == state and run.info.status == STATUS[state]:
        return
    run_id, tags = run.info.run_id, run.data.tags
    if reason:
        client.set_tag(run_id, REASON_TAG, reason[:5000])
    client.set_tag(run_id, STATE_TAG, state)
    client.set_tag(run_id, "mlflow.note.content", trial_note(run, state, reason, value, epochs, metric))
    number = tags.get(TRIAL_TAG)
    if number is not None:
        name = trial_run_name(int(number), tags.get("method", "trial"), state, epochs, tags.get(SEED_TAG))
        client.update_run(run_id, name=name)
    if state == "complete" and value is not None and metric:
        client.log_metric(run_id, objective_metric(metric), value, step=epochs or 0)
    if run.info.status != STATUS[state]:
        if run.info.end_time:
            client.update_run(run.info.run_id, status=STATUS[state])
        else:
            client.set_terminated(run.info.run_id, status=STATUS[state])


def trial_note(run, state: str, reason: str | None, value: float | None, epochs: int | None, metric: str | None) -> str:
    """The trial's description in markdown: how it ended, what its metrics mean, and its sweep's run."""
    params, tags = run.data.params, run.data.tags
    planned = params.get("trainer.max_epochs")
    of = f" of {planned}" if planned else ""
    objective = f"`{metric}`" if metric else "the objective"
    shown = f" = {value:.4f}" if value is not None else ""
    if state == "complete":
        lines = [f"**Complete**: {objective}{shown} after {epochs or planned or '?'} epochs."]
    elif state == "pruned":
        lines = [
            f"**Pruned** by the sweep's pruner after epoch {epochs or '?'}{of}: {objective}{shown} there.",
            f"Its metrics stop early: compare trials by `{objective_metric(metric or 'objective')}`, "
            "which only complete trials carry.",
        ]
    elif state == "failed":
        lines = [f"**Failed**: {reason or 'see trial.log among its artifacts'}"]
    else:
        lines = ["**Killed**: its worker died; the sweep queued the trial again as a new run."]
    parent = tags.get("mlflow.parentRunId")
    if parent:
        study = tags.get(STUDY_TAG, "the sweep")
        lines.append(f"Sweep: [{study}]({run_link(run.info.experiment_id, parent)}) (the best trial is linked there).")
    return "\n\n".join(lines)


def reconcile(client, experiment_id: str, study) -> int:
    """Bring every child run of `study` in step with its trial; the number of runs still RUNNING."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    retried = retried_numbers(trials.values())
    running = 0
    for run in child_runs(client, experiment_id, study.study_name):
        trial = trials.get(int(run.data.tags.get(TRIAL_TAG, -1)))
        state = outcome(trial, retried) if trial is not None else "killed"
        if state in STATUS:
            value = _value_of(trial, run.data.tags.get(SEED_TAG))
            epochs = trial.user_attrs.get(STEP_ATTR) if trial is not None else None
            close_child(client, run, state, _reason(trial), value, epochs, study.user_attrs.get("metric"))
        elif run.info.status == "RUNNING":
            running += 1
    return running


def _value_of(trial: Any, seed: str | None) -> float | None:
    """The objective a trial's run reached: its seed's own, else the trial's (the seeds' mean)."""
    if trial is None:
        return None
    if seed is not None:
        return (trial.user_attrs.get(SEED_VALUES_ATTR) or {}).get(seed)
    return trial.value


def _reason(trial: Any) -> str | None:
    return trial.user_attrs.get(REASON_ATTR) if trial is not None else None
