"""Runs that read well in the MLflow UI, checked through the MLflow client on a tiny real sweep: one
complete trial and one the median pruner stops after its first epoch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import DIGITS_CONFIG, run_on_terminal, store_client

NAME = "ui-tiny"
FIXED = {
    "trainer.max_epochs": 2,
    "trainer.check_val_every_n_epoch": 1,
    "model.proj_hidden_dim": 128,
    "tracking.system_metrics_interval": 0,
    "tracking.log_checkpoints": False,
}


def tiny_sweep(folder: Path) -> Path:
    """Trial 0 trains on 600 digits; trial 1 on 20, whose kNN score the median pruner cuts at epoch 1."""
    config = {
        "name": NAME,
        "base": str(DIGITS_CONFIG),
        "fixed": FIXED,
        "space": {
            "model.temperature": {"type": "categorical", "choices": [0.2, 0.5]},
            "data.max_train_samples": {"type": "categorical", "choices": [600, 20]},
            "data.batch_size": {"type": "categorical", "choices": [256, 20]},
        },
        "enqueue": [
            {"model.temperature": 0.2, "data.max_train_samples": 600, "data.batch_size": 256},
            {"model.temperature": 0.5, "data.max_train_samples": 20, "data.batch_size": 20},
        ],
        "objective": {"metric": "val/knn_top1", "direction": "maximize"},
        "n_trials": 2,
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    }
    path = folder / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The tiny sweep, run as from a terminal (what it showed there: `test_a_sweep_on_a_terminal_...`)."""
    folder = tmp_path_factory.mktemp("ui")
    proc = run_on_terminal("sweep", "-c", str(tiny_sweep(folder)), cwd=folder, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    (folder / "terminal.txt").write_text(proc.stdout)
    client = store_client(folder)
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    trials = {int(r.data.tags["sweep.trial"]): r for r in runs if r.data.tags.get("sweep.role") == "trial"}
    assert sorted(trials) == [0, 1]
    return folder, client, experiment, parent, trials


def test_a_sweep_on_a_terminal_keeps_a_live_table_below_its_lines(swept):
    shown = (swept[0] / "terminal.txt").read_text()
    header = re.compile(r"running +complete +pruned +failed +finished +best val/knn_top1 +time left\r?\n")
    tables = [shown[m.end() :].splitlines()[0].split() for m in header.finditer(shown)]
    assert len(tables) >= 3, shown[-3000:]  # drawn at the start, at each trial's lines and every second
    assert "\x1b[2F\x1b[J" in shown  # each redraw in place of the last table
    assert tables[0][1:5] == ["0", "0", "0", "0/2"], tables[0]  # nothing finished, the time left unknown
    assert tables[0][-2:] == ["-", "-"], tables[0]
    final = tables[-1]  # one trial complete, one pruned, the best the complete one, nothing left to run
    assert final[:5] == ["0", "1", "1", "0", "2/2"] and final[6:] == ["(trial", "0)", "~0", "s"], final
    best = float(final[5])
    # the workers' lines, whole, above the table
    assert re.search(r"trial 0 started: .*model.temperature=0.2\r?\n", shown)
    assert re.search(rf"trial 0 complete in \d+ s \(\d+ s of it training\): val/knn_top1={best:.4f}\r?\n", shown)
    assert re.search(r"trial 1 pruned in \d+ s", shown)
    assert shown.rstrip().splitlines()[-1].startswith("study dashboard: optuna-dashboard")  # the summary after it


def test_the_sweep_and_contrastlab_ui_name_the_trials_page_best_first(swept):
    from contrastlab.sweeps.summary import sweep_pages

    folder, _, experiment, _, _ = swept
    trials = (
        f"/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
        "&orderByKey=metrics.%60objective%2Fval%2Fknn_top1%60&orderByAsc=false"
    )
    assert f"then open http://127.0.0.1:5000{trials}: its trials, best first" in (folder / "terminal.txt").read_text()
    store = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    assert sweep_pages(store, "http://127.0.0.1:5001") == [
        f"  sweep 'ui-tiny', its trials best first: http://127.0.0.1:5001{trials}"
    ]


def test_pruned_trials_carry_their_state_in_run_name_and_description(swept):
    _, client, experiment, parent, trials = swept
    complete, pruned = trials[0], trials[1]
    assert pruned.data.tags["sweep.state"] == "pruned"
    assert pruned.info.run_name == "trial-1 simclr (pruned @ epoch 1)"
    note = pruned.data.tags["mlflow.note.content"]
    assert note.startswith("**Pruned** by the sweep's pruner after epoch 1 of 2")
    assert "objective/val/knn_top1" in note
    assert f"(#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id})" in note
    # the objective metric only complete trials carry, so no chart mixes pruned trials' early scores in
    assert "objective/val/knn_top1" not in pruned.data.metrics
    assert complete.info.run_name == "trial-0 simclr (complete)"
    assert complete.data.tags["mlflow.note.content"].startswith("**Complete**: `val/knn_top1` = ")
    assert complete.data.metrics["objective/val/knn_top1"] == complete.data.metrics["val/knn_top1"]
    for run in trials.values():
        assert run.data.tags["mlflow.source.name"] == f"contrastlab sweep {NAME}"


def test_the_parent_leads_to_the_best_trial_and_logs_no_space_or_fixed_params(swept, tmp_path):
    _, client, experiment, parent, trials = swept
    best = trials[0]
    note = parent.data.tags["mlflow.note.content"]
    link = f"#/experiments/{experiment.experiment_id}/runs/{best.info.run_id}"
    assert f"[trial-0 simclr (complete)]({link})" in note
    assert "`val/knn_top1`" in note and f"**{best.data.metrics['val/knn_top1']:.4f}**" in note
    assert parent.data.metrics["best/val/knn_top1"] == best.data.metrics["val/knn_top1"]
    assert not [k for k in parent.data.params if k.startswith(("space.", "fixed."))]
    assert parent.inputs.dataset_inputs[0].dataset.name == "digits"  # the data its trials trained on
    assert parent.data.tags["sweep.objective"] == "val/knn_top1 (maximize)"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.md", "trials.csv", "best_config.yaml", "optuna_plots.html", "sweep.yaml"} <= artifacts
    table = Path(client.download_artifacts(parent.info.run_id, "trials.md", str(tmp_path))).read_text()
    for run in trials.values():
        assert f"(#/experiments/{experiment.experiment_id}/runs/{run.info.run_id})" in table
    page = Path(client.download_artifacts(parent.info.run_id, "optuna_plots.html", str(tmp_path))).read_text()
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()) == 1 and page.count("Plotly.newPlot") >= 2
    assert len(page) < len(get_plotlyjs()) + 500_000


def test_every_trial_has_a_dataset_input_a_views_picture_and_an_embedding_picture(swept):
    _, client, experiment, _, trials = swept
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    for run in trials.values():
        (dataset_input,) = run.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert dataset.name == "digits" and dataset.digest
        assert '"datamodule": "contrastlab.datamodules.vision.Digits"' in dataset.source
        assert '"train": ' in dataset.profile and '"shape": [1, 8, 8]' in dataset.schema
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"views.png", "embeddings.png"} <= artifacts, artifacts


def test_best_config_trains_a_full_run_with_checkpoints(swept, tmp_path, cli_here):
    folder, client, _, parent, trials = swept
    best_yaml = Path(client.download_artifacts(parent.info.run_id, "best_config.yaml", str(tmp_path)))
    text = best_yaml.read_text()
    ready = yaml.safe_load(text)
    # the best sampled values, on the base config; the sweep's speed settings only in a comment
    assert ready["model"]["init_args"]["temperature"] == 0.2 and ready["data"]["init_args"]["max_train_samples"] == 600
    assert ready["trainer"]["max_epochs"] == yaml.safe_load(DIGITS_CONFIG.read_text())["trainer"]["max_epochs"]
    assert "log_checkpoints" not in str(ready.get("tracking")) and "system_metrics_interval" not in str(ready)
    assert "#   trainer.max_epochs: 2\n" in text and "#   tracking.log_checkpoints: false\n" in text

    # shortened on the command line as a user might, but otherwise the config as written (in this process: the
    # sweep's trials were real ones); the store named by its absolute path, as a process here must
    store = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    code, err = cli_here("fit", "-c", str(best_yaml), "--trainer.max_epochs", "1", "--trainer.check_val_every_n_epoch",
                         "1", "--test_after_fit", "false", "--tracking-uri", store, cwd=folder)  # fmt: skip
    assert code == 0, err[-3000:]
    experiment = client.get_experiment_by_name("digits")  # a fit's experiment is its dataset
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.source.name"] == "contrastlab fit"
    assert run.data.params["tracking.log_checkpoints"] == "True"
    assert run.data.params["tracking.system_metrics_interval"] == "5.0"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "last" in artifacts and any(a.startswith("best-") for a in artifacts), artifacts
    assert {"views.png", "embeddings.png", "config.yaml"} <= artifacts
    assert run.inputs.dataset_inputs[0].dataset.name == "digits"
