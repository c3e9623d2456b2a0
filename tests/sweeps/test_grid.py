"""A grid x seeds sweep as a user runs it: two methods' configs as one axis of the grid, each trained with two
seeds, and the parent run reporting each configuration's mean ± sd."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import yaml

from tests.conftest import DIGITS_CONFIG, REPO, run_cli, store_client
from tests.sweeps.test_sweep import load_trials

BYOL = REPO / "configs" / "byol" / "digits.yaml"


@pytest.mark.slow
def test_a_grid_of_methods_times_seeds_reports_mean_and_sd_per_configuration(tmp_path):
    name = "methods-by-seed"
    sweep = {
        "name": name,
        "grid": {"base": [str(DIGITS_CONFIG), str(BYOL)]},
        "seeds": [0, 1],
        "fixed": {
            "trainer.max_epochs": 1,
            "trainer.check_val_every_n_epoch": 1,
            "data.max_train_samples": 200,
            "data.batch_size": 100,
            "model.proj_hidden_dim": 64,
            "tracking.system_metrics_interval": 0,
            "tracking.log_checkpoints": False,
        },
        "objective": {"metric": "val/knn_top1", "direction": "maximize"},
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    done = run_cli("sweep", "-c", "sweep.yaml", cwd=tmp_path, timeout=600)
    assert "seed 1 complete" in done.stdout and " ± " in done.stdout.split("best trial")[1], done.stdout

    trials = load_trials(f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}", name)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert {t.params["base"] for t in trials} == {str(DIGITS_CONFIG), str(BYOL)}  # every combination, once

    client = store_client(tmp_path)
    experiment = client.get_experiment_by_name(name).experiment_id
    every = client.search_runs([experiment])
    fits = [r for r in every if r.data.tags.get("sweep.role") == "trial"]
    assert len(fits) == 4  # a run per configuration and seed
    for trial in trials:
        runs = [r for r in fits if r.data.tags["sweep.trial"] == str(trial.number)]
        assert sorted(r.data.tags["sweep.seed"] for r in runs) == ["0", "1"]
        assert sorted(r.data.params["seed_everything"] for r in runs) == ["0", "1"]
        assert all(r.info.status == "FINISHED" and r.data.tags["sweep.state"] == "complete" for r in runs)
        method = "BYOL" if trial.params["base"] == str(BYOL) else "SimCLR"
        assert all(r.data.tags["method"].lower() == method.lower() for r in runs), [r.data.tags for r in runs]
        finals = [r.data.metrics["val/knn_top1"] for r in runs]
        assert trial.value == pytest.approx(statistics.fmean(finals))  # the objective is the seeds' mean

    (parent,) = [r for r in every if r.data.tags.get("sweep.role") == "parent"]
    header, _, *rows = (
        Path(client.download_artifacts(parent.info.run_id, "trials.md", str(tmp_path))).read_text().splitlines()
    )
    assert "| val/knn_top1 | sd | seeds | base |" in header and len(rows) == 2
    best = max(trials, key=lambda t: t.value)
    best_seeds = list(best.user_attrs["seed_values"].values())
    assert parent.data.metrics["best/val/knn_top1_sd"] == pytest.approx(statistics.stdev(best_seeds))
    assert "± " in parent.data.tags["mlflow.note.content"] and "(2 seeds)" in parent.data.tags["mlflow.note.content"]
