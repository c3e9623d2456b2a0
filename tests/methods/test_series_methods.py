"""TS2Vec, SoftCLT and TS-TCC through the CLI on real UCR/UEA sets shipped with aeon: a few steps each with
tiny nets, then evaluation (the fit's test pass, and `contrastlab eval` with the papers' SVM protocol).

How well they learn (GunPoint SVM accuracy and the multi-dataset table) is benchmarks/series.py's job.
The tests share one MLflow store (creating and migrating a SQLite store costs seconds), each test in its
own experiment.
"""

from __future__ import annotations

import aeon  # noqa: F401  (a dependency of contrastlab, which reads these sets with it: missing, it fails here)
import numpy as np
import pytest

from tests.conftest import REPO, give_store, in_process_store, store_client, the_error_line
from tests.learning import build, logged_finite, svm_accuracy, untrained_weights

# Tiny nets and a few steps: the checks are that each method runs end to end and trains its encoder, not how well it
# learns: 3 steps move the SVM accuracy by a test series or two (GunPoint: 0.960 after them, 0.953 untrained).
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
    return give_store(tmp_path_factory.mktemp("series_methods"))


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


def eval_svm(cli_here, store, run_id: str) -> float:
    args = ["eval", "--run", run_id, "--protocols", "svm", "--tsne-points", "0", "--baselines", "none"]
    args += in_process_store(store)[:2]
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
    assert logged_finite(metrics["train/loss_step"]), metrics["train/loss_step"]  # logged, neither nan nor inf
    # it trained the encoder: every weight of it moved from where the fit started (its config's model, same seed)
    untrained, data = build(fit_args(method, store, method, tmp_path / "dtw")[1:])
    still = untrained_weights(untrained, store / "checkpoints" / method / run.info.run_id / "last.ckpt")
    assert not still, f"{method}: encoder weights that did not train: {still}"
    assert 0 <= metrics["test/knn_top1"] <= 1 and "test/probe_acc" in metrics
    if method == "softclt":  # the DTW matrix of GunPoint's 40 training series (10 held out), cached by content
        (cached,) = (tmp_path / "dtw").glob("dtw-*.npy")
        assert np.load(cached).shape == (40, 40)
    if method == "ts2vec":  # the papers' protocol on the learned representations, no worse than on untrained ones
        accuracy, before = eval_svm(cli_here, store, run.info.run_id), svm_accuracy(untrained, data)
        assert accuracy >= before - 0.02, (accuracy, before)  # 3 of 150 test series; measured 0.960 and 0.953
        # TS2Vec's loss compares the encoder's own outputs: there is no projector to read features after
        args = ["eval", "--run", run.info.run_id, "--features", "projector", "--protocols", "svm"]
        line = the_error_line(*cli_here(*args, *in_process_store(store)[:2], cwd=store))
        assert "TS2Vec has no projector to read features after; evaluate its backbone's features" in line, line


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
    assert distances.shape == (216, 216) and np.isfinite(distances).all() and (np.diag(distances) == 0).all()
    written = cached.stat().st_mtime_ns

    longer = [*vowels, "--trainer.max_steps", "6", "--resume"]
    code, err = cli_here(*fit_args("softclt", store, "vowels", tmp_path / "dtw", *longer), cwd=store)
    assert code == 0, err[-3000:]
    resumed = only_run(store, "vowels")
    assert resumed.info.run_id == first.info.run_id and resumed.info.status == "FINISHED"
    steps = [m.step for m in store_client(store).get_metric_history(first.info.run_id, "train/loss_step")]
    assert sorted(steps) == list(range(6))  # six steps, each once
    assert cached.stat().st_mtime_ns == written  # read back, not computed again
    # the SVM on the max-pooled valid steps of the trained encoder, no worse than on the untrained one (measured
    # 0.905 and 0.897 over 370 test series; 6 steps do not separate them further)
    accuracy = eval_svm(cli_here, store, first.info.run_id)
    before = svm_accuracy(*build(fit_args("softclt", store, "vowels", tmp_path / "dtw", *vowels)[1:]))
    assert accuracy >= before - 0.02, (accuracy, before)


def test_bad_method_settings_are_one_line(store, tmp_path, cli_here):
    def error(method: str, *extra: str) -> str:
        return the_error_line(*cli_here(*fit_args(method, store, "bad", tmp_path / "dtw", *extra), cwd=store))

    assert "model.init_args.tau_inst must be >= 0" in error("softclt", "--model.init_args.tau_inst", "-1")
    # TS2Vec without crops: it names the pipeline to use
    assert "crop: true" in error("ts2vec", "--model.init_args.augment.init_args.crop", "false")
    # TS-TCC asked to predict more steps than its encoder gives for JapaneseVowels' shortest series
    vowels = ["--data.init_args.name", "JapaneseVowels", "--model.init_args.timesteps", "6"]
    assert "model.init_args.timesteps=6" in error("tstcc", *vowels)
