"""CLMR (SimCLR on waveforms with CLMR's chain and a SampleCNN) through the CLI on espeak-ng spoken digits: it trains,
resumes into the same run and sweeps; and other zoo methods run on audio by config alone."""

from __future__ import annotations

import sys
import warnings

import lightning as L
import pytest
import torch

from tests.conftest import REPO, in_process_store, store_client, the_error_line

CLMR = REPO / "configs" / "clmr" / "fsdd.yaml"
TINY_NET = "{widths: [8, 8, 8, 8, 16]}"  # stem and 3 pooled blocks: 3200 samples -> 40 steps


def tiny(spoken_digits) -> list[str]:
    """Spoken digits in FSDD's layout (take 0 is test), half-second clips, a tiny SampleCNN, 2 steps an epoch."""
    return [
        *("--data.root", str(spoken_digits), "--data.test_takes", "1", "--data.duration", "0.5"),
        *("--data.batch_size", "16", "--data.num_workers", "0", "--data.val_fraction", "0.2"),
        *("--model.init_args.backbone_kwargs", TINY_NET, "--model.init_args.proj_hidden_dim", "32"),
        *("--model.init_args.augment.init_args.crop_seconds", "0.4"),
        *("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.check_val_every_n_epoch", "1"),
        *("--trainer.accelerator", "cpu"),
    ]


def test_clmr_trains_and_resumes_through_the_cli(spoken_digits, tmp_path, cli_here):
    args = ["fit", "-c", str(CLMR), *tiny(spoken_digits), *in_process_store(tmp_path)]
    code, err = cli_here(*args, cwd=tmp_path)
    assert code == 0, err[-3000:]
    client = store_client(tmp_path)
    (experiment,) = [e for e in client.search_experiments() if e.name == "fsdd"]
    (run,) = client.search_runs([experiment.experiment_id])
    tags, metrics = run.data.tags, run.data.metrics
    assert (tags["modality"], tags["backbone"], tags["method"].lower()) == ("audio", "samplecnn", "simclr")
    assert {"val/knn_top1", "test/knn_top1", "train/loss_epoch"} <= set(metrics)
    last = tmp_path / "checkpoints" / "fsdd" / run.info.run_id / "last.ckpt"
    info = torch.load(last, weights_only=True)["hyper_parameters"]["data_info"]
    assert info.shape == (1, 4000) and info.sample_rate == 8000 and info.views.endswith("CLMRViews")

    code, err = cli_here(*args, "--trainer.max_epochs", "2", "--resume", cwd=tmp_path)
    assert code == 0, err[-3000:]
    (resumed,) = client.search_runs([experiment.experiment_id])
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/knn_top1")] == [1, 3]
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_a_bad_audio_file_stops_the_run_naming_it(spoken_digits, tmp_path, cli_here):
    folder = tmp_path / "digits"
    folder.mkdir()
    for path in sorted(spoken_digits.iterdir())[:40]:
        (folder / path.name).symlink_to(path)
    (folder / "3_9_7.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    args = ["fit", "-c", str(CLMR), *tiny(spoken_digits), "--data.root", str(folder), "--data.on_bad_file", "stop"]
    line = the_error_line(*cli_here(*args, *in_process_store(tmp_path), cwd=tmp_path))
    assert "3_9_7.wav: unreadable audio" in line and "data.on_bad_file: skip" in line


@pytest.mark.parametrize("method", ["byol", "vicreg"])
def test_other_methods_run_on_audio_by_config(method, spoken_digits, tmp_path, monkeypatch):
    """A zoo method's shipped config, pointed at audio data by options alone: the data proposes its views."""
    from contrastlab.platform.cli import ContrastlabCLI

    class BuildOnly(ContrastlabCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["contrastlab"])
    args = [
        *("-c", str(REPO / "configs" / method / "digits.yaml"), "--model.init_args.augment", "null"),
        *("--data", "contrastlab.datamodules.audio.FSDD", "--data.root", str(spoken_digits), "--data.test_takes", "1"),
        *("--data.duration", "0.4", "--data.batch_size", "16"),
        *("--model.init_args.backbone", "samplecnn", "--model.init_args.backbone_kwargs", TINY_NET),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = BuildOnly(run=False, args=args)
        model, data = cli.model, cli.datamodule
        assert type(model.augment).__name__ == "CLMRViews" and model.data_info.modality == "audio"
        before = {k: v.clone() for k, v in model.backbone.named_parameters()}
        trainer = L.Trainer(
            accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(model, data)
    assert torch.isfinite(torch.tensor(float(trainer.callback_metrics["train/loss_step"])))
    assert all(not torch.equal(v, before[k]) for k, v in model.backbone.named_parameters())
