"""MLflow for a sweep: one experiment per sweep, one parent run per study, one nested child run per trial.

Trials create their own child runs (their `fit` logs as any run does, with `mlflow.parentRunId` among its
tags); this module creates the parent and keeps every child's status and `sweep.state` tag in step with
its trial, including the runs of trials whose worker died, which nothing else would ever close.
"""

from __future__ import annotations

from typing import Any

from contrastlab.platform import tracking
from contrastlab.sweeps.storage import REASON_ATTR, outcome, retried_numbers

STUDY_TAG, ROLE_TAG, TRIAL_TAG, STATE_TAG, REASON_TAG = (
    "sweep.study",
    "sweep.role",
    "sweep.trial",
    "sweep.state",
    "sweep.fail_reason",
)
# Pruned is an ordinary end (the pruner decided), so FINISHED; the tag and the note say "pruned".
STATUS = {"complete": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def client_for(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri)


def ensure_experiment(client, uri: str, name: str) -> str:
    """The sweep's experiment, created with the artifact location a `fit` of that experiment would give it."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, artifact_location=tracking.artifact_location(uri, name))
    except MlflowException:  # another worker created it a moment ago
        return client.get_experiment_by_name(name).experiment_id


def _parents(client, experiment_id: str, study: str) -> list:
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'parent'"
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def ensure_parent_run(client, experiment_id: str, study: str, params: dict[str, str], tags: dict[str, str]) -> str:
    """The study's parent run: the oldest one tagged for it, or a new one.

    Workers on several machines may start together; each one that creates a parent looks again and
    deletes its own if an older one exists, so they settle on one.
    """
    existing = _parents(client, experiment_id, study)
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(experiment_id, run_name=study, tags={**tags, STUDY_TAG: study, ROLE_TAG: "parent"})
    from mlflow.entities import Param

    client.log_batch(run.info.run_id, params=[Param(k, v[: tracking.MAX_PARAM_LENGTH]) for k, v in params.items()])
    oldest = _parents(client, experiment_id, study)[0].info.run_id
    if oldest != run.info.run_id:
        client.delete_run(run.info.run_id)
    return oldest


def child_tags(parent_run_id: str, study: str, number: int) -> dict[str, str]:
    return {"mlflow.parentRunId": parent_run_id, STUDY_TAG: study, ROLE_TAG: "trial", TRIAL_TAG: str(number)}


def child_runs(client, experiment_id: str, study: str) -> list:
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{ROLE_TAG}` = 'trial'",
        max_results=50000,
    )


def close_child(client, run, state: str, reason: str | None = None, value: float | None = None) -> None:
    """Set a child run's state tag, note and status (a pruned run is not shown as a failure)."""
    if run.data.tags.get(STATE_TAG) == state and run.info.status == STATUS[state]:
        return
    note = {
        "complete": "Trial complete",
        "pruned": "Pruned by the sweep's pruner",
        "failed": "Trial failed",
        "killed": "Its worker died; the trial was queued again",
    }[state]
    if value is not None:
        note += f"; objective {value:.6g}"
    if reason:
        note += f": {reason}"
        client.set_tag(run.info.run_id, REASON_TAG, reason[:5000])
    client.set_tag(run.info.run_id, STATE_TAG, state)
    client.set_tag(run.info.run_id, "mlflow.note.content", note)
    if run.info.status != STATUS[state]:
        if run.info.end_time:
            client.update_run(run.info.run_id, status=STATUS[state])
        else:
            client.set_terminated(run.info.run_id, status=STATUS[state])


def reconcile(client, experiment_id: str, study) -> int:
    """Bring every child run of `study` in step with its trial; the number of runs still RUNNING."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    retried = retried_numbers(trials.values())
    running = 0
    for run in child_runs(client, experiment_id, study.study_name):
        trial = trials.get(int(run.data.tags.get(TRIAL_TAG, -1)))
        state = outcome(trial, retried) if trial is not None else "killed"
        if state in STATUS:
            close_child(client, run, state, _reason(trial), trial.value if trial is not None else None)
        elif run.info.status == "RUNNING":
            running += 1
    return running


def _reason(trial: Any) -> str | None:
    return trial.user_attrs.get(REASON_ATTR) if trial is not None else None
