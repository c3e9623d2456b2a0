"""TS2Vec, SoftCLT and TS-TCC through the CLI on real UCR/UEA sets shipped with aeon: a few steps each with
tiny nets, then evaluation (the fit's test pass, and `contrastlab eval` with the papers' SVM protocol).

How well they learn (GunPoint SVM accuracy and the multi-dataset table) is benchmarks/series.py's job.
The tests share one MLflow store (creating and migrating a SQLite store costs seconds), each test in its
own experiment.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, in_process_store, store_client, the_error_line

pytest.importorskip("aeon")

# Tiny nets and a few steps: the checks are that each method runs end to end, not how well it learns.
TINY = {
    "ts2vec": ["--model.init_args.backbone_kwargs", "{hidden_dims: 8, output_dims: 16, depth: 3}"],
    "softclt": ["--model.init_args.backbone_kwargs", "{hidden_dims: 8, output_dims: 16, depth: 3}"],
    "tstcc": [
        *("--model.init_args.backbone_kwargs", "{widths: [8, 8, 16]}"),
        *("--model.init_args.context_dim", "16", "--model.init_args.depth", "1", "--model.init_args.heads", "2"),
        *("--model.init_args.timesteps", "3"),
    ],
}
STEPS = [
    *("--trainer.max_steps", "3", "--trainer.log_every_n_steps", "1"),  # no validation: the test pass evaluates
    *("--trainer.num_sanity_val_steps", "0", "--data.init_args.batch_size", "16"),
    *("--tracking.log_checkpoints", "false"),
]
NO_TEST = ["--test_after_fit", "false"]  # where the fit's test pass adds nothing the test checks


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One folder and MLflow store for this module's runs."""
    return tmp_path_factory.mktemp("series_methods")


def fit_args(method: str, store, experiment: str, dtw_dir, *extra: str) -> list[str]:
    args = ["fit", "-c", str(REPO / "configs" / method / "ucr.yaml"), *TINY[method], *STEPS]
    if method == "softclt":
        args += ["--model.init_args.dtw_cache_dir", str(dtw_dir)]
    return [*args, *in_process_store(store), "--tracking.experiment", experiment, *extra]


def only_run(store, experiment: str):
    """The one run of `experiment` in the shared store."""
    client = store_client(store)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def svm_accuracy(cli_here, store, run_id: str) -> float:
    args = ["eval", "--run", run_id, "--protocols", "svm", "--tsne-points", "0", *in_process_store(store)[:2]]
    code, err = cli_here(*args, cwd=store)
    assert code == 0, err[-3000:]
    return store_client(store).get_run(run_id).data.metrics["eval/svm/acc"]


@pytest.mark.parametrize("method", ["ts2vec", "softclt", "tstcc"])
def test_each_method_trains_a_few_steps_on_gunpoint_and_evaluates(method, store, tmp_path, cli_here):
    code, err = cli_here(*fit_args(method, store, method, tmp_path / "dtw"), cwd=store)
    assert code == 0, err[-3000:]
    run = only_run(store, method)
    assert run.info.status == "FINISHED" and run.data.tags["modality"] == "series"
    metrics = run.data.metrics
    assert metrics["train/loss_step"] == metrics["train/loss_step"]  # finite, logged
    assert 0 <= metrics["test/knn_top1"] <= 1 and "test/probe_acc" in metrics
    if method == "softclt":  # the DTW matrix of GunPoint's 50 training series, cached by content
        (cached,) = (tmp_path / "dtw").glob("dtw-*.npy")
        assert np.load(cached).shape == (50, 50)
    if method == "ts2vec":  # the papers' protocol on the learned representations
        assert 0.4 <= svm_accuracy(cli_here, store, run.info.run_id) <= 1  # two classes


def test_softclt_on_unequal_length_series_resumes_and_evaluates_with_masks(store, tmp_path, cli_here):
    """JapaneseVowels: 12 channels, 7 to 29 steps, NaN-padded batches with masks. SoftCLT computes the DTW
    matrix of the unequal-length training series once and caches it; a resume continues the run mid-epoch
    and reads the matrix back; the SVM protocol then evaluates the max-pooled valid steps."""
    vowels = ["--data.init_args.name", "JapaneseVowels", "--data.init_args.batch_size", "32", *NO_TEST]
    vowels += ["--tracking.checkpoint_every_n_steps", "3"]
    code, err = cli_here(*fit_args("softclt", store, "vowels", tmp_path / "dtw", *vowels), cwd=store)
    assert code == 0, err[-3000:]
    first = only_run(store, "vowels")
    assert first.info.status == "FINISHED" and first.data.tags["dataset"] == "JapaneseVowels"
    (cached,) = (tmp_path / "dtw").glob("dtw-*.npy")
    distances = np.load(cached)
    assert distances.shape == (270, 270) and np.isfinite(distances).all() and (np.diag(distances) == 0).all()
    written = cached.stat().st_mtime_ns

    longer = [*vowels, "--trainer.max_steps", "6", "--resume"]
    code, err = cli_here(*fit_args("softclt", store, "vowels", tmp_path / "dtw", *longer), cwd=store)
    assert code == 0, err[-3000:]
    resumed = only_run(store, "vowels")
    assert resumed.info.run_id == first.info.run_id and resumed.info.status == "FINISHED"
    steps = [m.step for m in store_client(store).get_metric_history(first.info.run_id, "train/loss_step")]
    assert sorted(steps) == list(range(6))  # six steps, each once
    assert cached.stat().st_mtime_ns == written  # read back, not computed again
    assert svm_accuracy(cli_here, store, first.info.run_id) > 1 / 9  # nine speakers


def test_bad_method_settings_are_one_line(store, tmp_path, cli_here):
    def error(method: str, *extra: str) -> str:
        return the_error_line(*cli_here(*fit_args(method, store, "bad", tmp_path / "dtw", *extra), cwd=store))

    assert "model.init_args.tau_inst must be >= 0" in error("softclt", "--model.init_args.tau_inst", "-1")
    # TS2Vec without crops: it names the pipeline to use
    assert "crop: true" in error("ts2vec", "--model.init_args.augment.init_args.crop", "false")
    # TS-TCC asked to predict more steps than its encoder gives for JapaneseVowels' shortest series
    vowels = ["--data.init_args.name", "JapaneseVowels", "--model.init_args.timesteps", "6"]
    assert "model.init_args.timesteps=6" in error("tstcc", *vowels)


@pytest.mark.slow
def test_the_softclt_sweep_runs_two_tiny_trials(tmp_path):
    sweep = yaml.safe_load((REPO / "configs" / "sweeps" / "softclt_ucr.yaml").read_text())
    sweep["base"] = str(REPO / sweep["base"])
    sweep["n_trials"] = 2
    sweep["fixed"].update(
        {
            "trainer.max_steps": 3,
            "trainer.check_val_every_n_epoch": 1,  # the objective, measured on the 30% of train held out
            "data.init_args.batch_size": 16,
            "model.init_args.backbone_kwargs": {"hidden_dims": 8, "output_dims": 16, "depth": 3},
            "model.init_args.dtw_cache_dir": str(tmp_path / "dtw"),
        }
    )
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "contrastlab", "sweep", "-c", "sweep.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    client = store_client(tmp_path)
    (experiment,) = [e for e in client.search_experiments() if e.name == sweep["name"]]
    trials = [r for r in client.search_runs([experiment.experiment_id]) if "sweep.trial" in r.data.tags]
    assert sorted(r.data.tags["sweep.state"] for r in trials) == ["complete", "complete"]
    taus = {(r.data.params["model.tau_inst"], r.data.params["model.tau_temp"]) for r in trials}
    assert len(taus) == 2  # each trial its own temperatures
    assert len(list((tmp_path / "dtw").glob("dtw-*.npy"))) == 1  # one matrix for both trials
