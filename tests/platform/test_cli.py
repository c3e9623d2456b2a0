"""The CLI as a user drives it: YAML config, overrides, a real MLflow store in a temporary folder."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from contrastlab.platform.checkpoints import load_weights_only
from contrastlab.platform.precision import resolve
from tests.conftest import (
    DIGITS_CONFIG,
    QUICK,
    REPO,
    fit,
    free_port,
    in_process_store,
    store_client,
    the_error_line,
    warm_contrastlab,
)
from tests.learning import build, untrained, untrained_weights


def only_run(cwd: Path, experiment: str = "digits"):
    client = store_client(cwd)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short SimCLR run on digits, shared by the tests that read it back."""
    cwd = tmp_path_factory.mktemp("fit")
    proc = fit(cwd)
    return cwd, proc


def test_fit_logs_params_metrics_tags_and_artifacts(trained):
    cwd, proc = trained
    client, run = only_run(cwd)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model"] == "contrastlab.modules.SimCLR"
    assert params["model.temperature"] == "0.2" and params["model.optimizer.lr"] == "0.003"
    assert params["model.proj_hidden_dim"] == "128"  # the command-line override, not the YAML value
    assert params["data"] == "contrastlab.datamodules.vision.Digits" and params["trainer.max_epochs"] == "2"
    tags = run.data.tags
    assert (tags["method"], tags["modality"], tags["dataset"], tags["backbone"]) == (
        "simclr",
        "image",
        "digits",
        "small_cnn",
    )
    assert re.fullmatch(r"[0-9a-f]{40}", tags["git_commit"]) and tags["version.torch"] == torch.__version__
    # the fast defaults, as this machine resolves them, and why: a small CNN over images runs channels-last
    assert tags["precision"] == "{} ({})".format(*resolve("auto", "auto")) and params["trainer.precision"] == "auto"
    assert tags["channels_last"] == "true" and params["model.channels_last"] == "None"
    metrics = run.data.metrics
    for key in (
        "val/knn_top1",
        "val/probe_acc",
        "val/alignment",
        "val/uniformity",
        "val/effective_rank",
        "test/knn_top1",
        "train/loss_epoch",
        "train/loss_step",
    ):
        assert key in metrics, key
    assert 0.5 < metrics["test/knn_top1"] <= 1.0
    assert any(k.startswith("system/cpu_utilization") for k in metrics)
    assert steps(client, run.info.run_id, "train/loss_step") == [1, 3, 5, 7]
    assert steps(client, run.info.run_id, "val/knn_top1") == [3, 7]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "config.yaml" in artifacts and "last" in artifacts
    config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(cwd)))
    assert "class_path: contrastlab.modules.SimCLR" in config.read_text()
    ckpt_dir = cwd / "checkpoints" / "digits" / run.info.run_id
    assert (ckpt_dir / "last.ckpt").is_file() and list(ckpt_dir.glob("best-*.ckpt"))
    assert run.info.run_id in proc.stdout and "test/knn_top1" in proc.stdout and "contrastlab ui" in proc.stdout


def test_test_and_predict_verbs_use_the_trained_checkpoint(trained, cli_here):
    cwd, _ = trained
    client, run = only_run(cwd)
    last = cwd / "checkpoints" / "digits" / run.info.run_id / "last.ckpt"
    before = [m.step for m in client.get_metric_history(run.info.run_id, "test/knn_top1")]
    # in this process: the verbs' own logic is the point here; `trained` is the real process
    code, err = cli_here("test", "-c", str(DIGITS_CONFIG), "--ckpt_path", str(last), *in_process_store(cwd), cwd=cwd)
    assert code == 0, err[-3000:]
    client, again = only_run(cwd)  # logged into the run that wrote the checkpoint, not a new one
    history = client.get_metric_history(run.info.run_id, "test/knn_top1")
    assert len(history) == len(before) + 1 and history[-1].value == pytest.approx(history[0].value)
    code, err = cli_here("predict", "-c", str(DIGITS_CONFIG), "--ckpt_path", str(last), *in_process_store(cwd), cwd=cwd)
    assert code == 0, err[-3000:]
    only_run(cwd)


def fit_here(cli_here, cwd: Path, *args: str) -> tuple[int, str]:
    """`fit` as `tests.conftest.fit` runs it, inside this process, on the same store."""
    return cli_here("fit", "-c", str(DIGITS_CONFIG), *QUICK, *args, *in_process_store(cwd), cwd=cwd)


@pytest.mark.slow
def test_resume_continues_the_same_run_without_duplicate_steps(tmp_path, cli_here):
    # in this process: real processes resuming, and what they print, are tests/platform/test_resume.py's
    code, err = fit_here(cli_here, tmp_path)
    assert code == 0, err[-3000:]
    client, first = only_run(tmp_path)
    code, err = fit_here(cli_here, tmp_path, "--trainer.max_epochs", "4", "--resume")
    assert code == 0, err[-3000:]
    client, resumed = only_run(tmp_path)  # still one run
    run_id = resumed.info.run_id
    assert run_id == first.info.run_id and resumed.info.status == "FINISHED"
    assert steps(client, run_id, "train/loss_step") == [1, 3, 5, 7, 9, 11, 13, 15]
    assert steps(client, run_id, "val/knn_top1") == [3, 7, 11, 15]
    assert steps(client, run_id, "epoch") == sorted(set(steps(client, run_id, "epoch")))
    resumes = [a.path for a in client.list_artifacts(run_id, "resumes")]
    assert len(resumes) == 1 and resumes[0].endswith("-config.yaml")
    last = torch.load(tmp_path / "checkpoints" / "digits" / run_id / "last.ckpt", weights_only=False)
    assert last["global_step"] == 16 and last["contrastlab"]["run_id"] == run_id

    # --ckpt_path last means the same; a changed hyper-parameter is refused and leaves the run as it was
    bad = fit_here(cli_here, tmp_path, "--trainer.max_epochs", "5", "--ckpt_path", "last", "--model.temperature", "0.5")
    assert "model.temperature: 0.2 -> 0.5" in the_error_line(*bad)
    assert store_client(tmp_path).get_run(run_id).info.status == "FINISHED"
    code, err = fit_here(
        cli_here, tmp_path, "--trainer.max_epochs", "5", "--ckpt_path", "last", "--test_after_fit", "false"
    )
    assert code == 0, err[-3000:]
    client, again = only_run(tmp_path)
    assert steps(client, run_id, "val/knn_top1") == [3, 7, 11, 15, 19]

    # ... unless the change is asked for: then the run records it next to its first params
    changes = ["--model.temperature", "0.5", "--resume_allow_changes", "true"]
    code, err = fit_here(cli_here, tmp_path, "--trainer.max_epochs", "6", "--resume", *changes)
    assert code == 0, err[-3000:]
    client, changed = only_run(tmp_path)
    assert changed.data.params["model.temperature"] == "0.2"
    notes = [v for k, v in changed.data.tags.items() if k.startswith("contrastlab.resume_changes.")]
    assert notes == ["model.temperature: 0.2 -> 0.5"]


@pytest.mark.slow
def test_truncated_last_checkpoint_falls_back_then_fails_clearly(tmp_path, cli_here):
    # in this process: the fallback is the point, not the interpreter (the resume test above runs real ones)
    code, err = fit_here(cli_here, tmp_path, "--trainer.max_epochs", "1", "--test_after_fit", "false")
    assert code == 0, err[-3000:]
    run_dir = next((tmp_path / "checkpoints" / "digits").iterdir())
    last = run_dir / "last.ckpt"
    last.write_bytes(last.read_bytes()[:2000])
    code, err = fit_here(cli_here, tmp_path, "--test_after_fit", "false", "--resume")
    assert code == 0, err[-3000:]
    client, run = only_run(tmp_path)
    assert steps(client, run.info.run_id, "val/knn_top1") == [3, 7]  # resumed from best-epoch=0 at step 4
    # the bad file is set aside and the resumed run's own last.ckpt keeps the name a later --resume looks for
    assert (run_dir / "last.ckpt.corrupt").is_file() and not list(run_dir.glob("last-v*.ckpt"))
    assert load_weights_only(last)["global_step"] == 8

    for ckpt in run_dir.glob("*.ckpt"):
        ckpt.write_bytes(b"garbage")
    line = the_error_line(
        *cli_here("fit", "-c", str(DIGITS_CONFIG), "--resume", str(run_dir / "last.ckpt"), cwd=tmp_path)
    )
    assert "last.ckpt is not a readable checkpoint" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.init_args.backbone", "resnet81"], "model.backbone: unknown backbone 'resnet81'; did you mean"),
        (
            ["--data.class_path", "contrastlab.datamodules.vision.FashionMNIST", "--data.init_args.root", "/nope"],
            "data.root: /nope/train-images-idx3-ubyte",
        ),
        (["--model.init_args.temprature", "0.5"], "Option 'temprature' is not accepted"),
        (["--trainer.max_epochs", "many"], "Parser key \"trainer.max_epochs\": Expected a <class 'int'>"),
        (["--resume", "0123456789abcdef"], "--resume='0123456789abcdef' is neither"),
        (["--tracking-uri", "file:./mlruns"], "MLflow's file store is no longer supported"),
        (["--trainer.max_epochs", "-1"], "the fit has no end (trainer.max_epochs=-1 and trainer.max_steps=-1"),
    ],
    ids=["backbone", "data-path", "config-key", "value-type", "resume-target", "file-store", "endless"],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message, cli_here):
    assert message in the_error_line(*cli_here("fit", "-c", str(DIGITS_CONFIG), *args, cwd=tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_print_config_shows_overrides(tmp_path, monkeypatch, capsys):
    from contrastlab.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["contrastlab"])  # main() rewrites sys.argv for DDP launchers
    with pytest.raises(SystemExit) as done:
        main(["fit", "-c", str(DIGITS_CONFIG), "--model.temperature", "0.5", "--print_config"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert "temperature: 0.5" in out and "class_path: contrastlab.modules.SimCLR" in out
    assert not (tmp_path / "mlruns").exists()


def test_tracking_uri_points_runs_at_another_store(tmp_path, cli_here):
    uri = f"sqlite:///{tmp_path / 'team' / 'store.db'}"
    options = "--trainer.max_epochs 1 --test_after_fit false --tracking.experiment shared".split()
    options += ["--tracking.system_metrics_interval", "0"]
    code, err = cli_here("fit", "-c", str(DIGITS_CONFIG), *QUICK, *options, "--tracking-uri", uri, cwd=tmp_path)
    assert code == 0, err[-3000:]
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    assert len(runs) == 1 and "val/knn_top1" in runs[0].data.metrics
    assert runs[0].info.artifact_uri.startswith((tmp_path / "team" / "artifacts").as_uri())
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_ui_serves_the_default_store(trained):
    cwd, _ = trained
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "contrastlab", "ui", "--port", str(port)],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},  # ./mlruns, as in a new shell
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the UI's server workers go with it
    )
    try:
        assert f"http://127.0.0.1:{port}/#/experiments?workflowType=machine_learning" in proc.stdout.readline()
        body, deadline = None, time.time() + 150  # the UI starts slowly on a loaded machine
        while body is None and time.time() < deadline:
            try:
                url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=10"
                body = urllib.request.urlopen(url, timeout=2).read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None and '"name": "digits"' in body.replace('":"', '": "')
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_readme_quick_start_commands_exist():
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    makefile = (REPO / "Makefile").read_text()
    assert "contrastlab sweep -c configs/sweeps/simclr_digits.yaml" in makefile
    sweep = (REPO / "configs" / "sweeps" / "simclr_digits.yaml").read_text()
    assert "base: configs/simclr/digits.yaml" in sweep


@pytest.mark.slow
def test_two_process_ddp_fit_is_one_run(tmp_path, cli_here):
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    fit(tmp_path, *ddp, "--trainer.callbacks+=tests.platform.warm.ranks.RankOrigin")
    # both ranks forked from the warm server the command came from: rank 1 did not pay a new interpreter's imports
    origins = [json.loads((tmp_path / "ranks" / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert [origin["ppid"] for origin in origins] == [warm_contrastlab().server_pid] * 2
    client, run = only_run(tmp_path)
    assert run.info.status == "FINISHED" and run.data.params["trainer.devices"] == "2"
    # global batch 2 x 256 over 1,257 samples: 2 steps an epoch, each logged once by rank 0
    assert steps(client, run.info.run_id, "train/loss_step") == [1, 3]
    # The two ranks trained one model: every backbone weight moved from where the fit started. Four steps in warm-up
    # do not move kNN past the untrained backbone's, so the test pass, gathered from both ranks' shards, is held to
    # that of the untrained backbone in one process on the same split (measured 0.953 against 0.933); features and
    # labels out of step across ranks would give about 0.1.
    args = ["-c", str(DIGITS_CONFIG), *QUICK]
    still = untrained_weights(build(args)[0], tmp_path / "checkpoints" / "digits" / run.info.run_id / "last.ckpt")
    assert not still, f"backbone weights that did not train: {still}"
    before = untrained(cli_here, "test", [*args, *in_process_store(tmp_path)], tmp_path, "test/knn_top1")
    assert run.data.metrics["test/knn_top1"] >= before - 0.03, (run.data.metrics["test/knn_top1"], before)
    assert [d.name for d in (tmp_path / "checkpoints" / "digits").iterdir()] == [run.info.run_id]


def test_unlabelled_image_folder_trains_and_tracks(tmp_path, cli_here):
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path / "scans"
    folder.mkdir()
    for i, image in enumerate(load_digits().images[:200]):
        Image.fromarray((image * 255 / 16).astype("uint8")).save(folder / f"{i}.png")
    data = "--data.class_path contrastlab.datamodules.vision.ImageFolder --data.init_args.root scans"
    options = f"{data} --data.init_args.size 8 --data.init_args.channels 1 --data.init_args.batch_size 64"
    code, err = cli_here(
        "fit", "-c", str(DIGITS_CONFIG), *QUICK, *options.split(), *in_process_store(tmp_path), cwd=tmp_path
    )
    assert code == 0, err[-3000:]
    client, run = only_run(tmp_path, experiment="scans")
    metrics = run.data.metrics
    assert "val/effective_rank" in metrics and "train/loss_epoch" in metrics
    assert "val/knn_top1" not in metrics and "val/probe_acc" not in metrics  # no labels, no label metrics
    assert (tmp_path / "checkpoints" / "scans" / run.info.run_id / "last.ckpt").is_file()
