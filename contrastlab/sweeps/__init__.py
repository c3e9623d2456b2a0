"""Sweeps: Optuna studies whose every trial is one `contrastlab fit` in its own process, tracked in MLflow.

config.py reads and checks a sweep YAML; space.py turns its search space into Optuna distributions and
run-config overrides (checked by platform's `check_run_config`); study.py is the command, workers.py runs
the workers, trial.py one trial's process and outcome, summary.py the end of a command; pruning.py is the
callback inside each trial's fit; storage.py opens the Optuna storage and retries trials whose worker
died; runs.py keeps the MLflow parent and child runs in step with the study; report.py writes the sweep's
summary into the parent run.
"""
