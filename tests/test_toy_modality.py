"""A fourth modality, defined entirely in this file, through the whole CLI: the modality contract's acceptance test.

Synthetic 1-D signals (sines, square and saw-tooth waves of random frequency, phase and amplitude), a
tiny 1-D conv net registered by decorator, and a jitter-and-scale view pipeline that owns its
normalisation. Nothing in platform/, modules/core/base.py or evaluation/ knows about any of them: the CLI finds
them by class path (`tests.test_toy_modality.ToySignals`; subprocesses get the repository on PYTHONPATH),
and SimCLR trains, validates, resumes and sweeps them.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor, nn

from contrastlab.augment.ops import ChannelNormalize
from contrastlab.contract import DataInfo, ViewPipeline
from contrastlab.datamodules.base import ContrastiveDataModule, TensorSamples
from contrastlab.modules.nets.registry import register_backbone
from tests.conftest import REPO, store_client
from tests.learning import untrained_loss

LENGTH = 64
CLASSES = 3
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def toy_signals(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """(n, 1, LENGTH) float signals and their class: 0 sine, 1 square wave, 2 saw-tooth."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    t = torch.linspace(0, 1, LENGTH)
    freq = torch.empty(n, 1).uniform_(2, 5, generator=g)
    phase = torch.rand(n, 1, generator=g)
    amplitude = torch.empty(n, 1).uniform_(0.5, 1.5, generator=g)
    cycle = (freq * t + phase) % 1
    waves = torch.stack([torch.sin(2 * torch.pi * cycle), torch.sign(cycle - 0.5), 2 * cycle - 1])
    x = amplitude * waves[y, torch.arange(n)] + 0.05 * torch.randn(n, LENGTH, generator=g)
    return x.unsqueeze(1), y


class ToySignals(ContrastiveDataModule):
    """Synthetic 1-D signals of three classes; each split drawn with its own seed."""

    def __init__(self, samples: int = 96, **kwargs):
        super().__init__(**kwargs)
        self.samples = samples

    @property
    def info(self) -> DataInfo:
        return DataInfo(
            "toy_signals",
            "series",
            (1, LENGTH),
            CLASSES,
            mean=(0.0,),
            std=(0.75,),
            sample_rate=float(LENGTH),
            views="tests.test_toy_modality.JitterScale",
        )

    def load_split(self, split: str) -> TensorSamples:
        return TensorSamples(*toy_signals(self.samples, SPLIT_SEEDS[split]))


class JitterScale(ViewPipeline):
    """Views of a (B, C, T) batch: each sample scaled by a random factor, plus Gaussian jitter; normalised."""

    def __init__(self, num_views: int = 2, jitter: float = 0.1, scale: tuple[float, float] = (0.7, 1.3)):
        super().__init__()
        self.num_views, self.jitter, self.scale = num_views, jitter, scale
        self.normalize: nn.Module = nn.Identity()

    def bind(self, info: DataInfo) -> None:
        self.normalize = ChannelNormalize(info.mean, info.std)

    @torch.no_grad()
    def forward(self, x: Tensor) -> list[Tensor]:
        x = x.float()
        views = []
        for _ in range(self.num_views):
            factor = torch.empty(x.shape[0], 1, 1, device=x.device).uniform_(*self.scale)
            views.append(self.normalize(x * factor + self.jitter * torch.randn_like(x)))
        return views

    @torch.no_grad()
    def eval_view(self, x: Tensor) -> Tensor:
        return self.normalize(x.float())


@register_backbone("toy_conv1d", dims=1)
class ToyConv1d(nn.Module):
    """Two conv-BN-ReLU layers over time, then global average pooling."""

    def __init__(self, in_chans: int = 1, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(in_chans, width, 7, padding=3, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Conv1d(width, width, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
        )
        self.num_features = width

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x).mean(dim=-1)


def run_config() -> dict:
    return {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 2,
            "accelerator": "cpu",
            "devices": 1,
            "check_val_every_n_epoch": 1,
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
        "model": {
            "class_path": "contrastlab.modules.SimCLR",
            "init_args": {
                "backbone": "toy_conv1d",
                "backbone_kwargs": {"width": 16},
                "proj_hidden_dim": 32,
                "proj_dim": 16,
                "optimizer": {"name": "adamw", "lr": 0.01, "warmup_epochs": 0},
            },
        },
        "data": {"class_path": "tests.test_toy_modality.ToySignals", "init_args": {"batch_size": 32}},
        "tracking": {"system_metrics_interval": 0},
    }


def cli_in_process(monkeypatch, cwd: Path, *args: str) -> None:
    """`contrastlab ARGS` inside this process (no interpreter start-up); fails the test on a non-zero exit."""
    from contrastlab.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(sys, "argv", ["contrastlab", *args])
    captured = (sys.stdout, sys.stderr)
    try:
        with warnings.catch_warnings():
            main(list(args))
    except SystemExit as stop:
        assert stop.code in (0, None), f"contrastlab {' '.join(args)} exited {stop.code}"
    finally:
        # loggers set up during the call hold this test's capture streams, which close with the test
        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            for handler in getattr(logger, "handlers", []):
                if isinstance(handler, logging.StreamHandler) and handler.stream in captured:
                    handler.setStream(sys.__stderr__)


def metric_steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_a_modality_defined_in_a_test_trains_validates_and_resumes_through_the_cli(tmp_path, monkeypatch):
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(run_config()))
    cli_in_process(monkeypatch, tmp_path, "fit", "-c", str(config))

    client = store_client(tmp_path)
    (experiment,) = [e for e in client.search_experiments() if e.name == "toy_signals"]
    (run,) = client.search_runs([experiment.experiment_id])
    run_id = run.info.run_id
    assert run.data.tags["modality"] == "series" and run.data.tags["backbone"] == "toy_conv1d"
    # It trains: the last epoch's mean loss is below the untrained model's on the same data, beyond one batch's noise
    # (measured 2.06 against 2.53, noise 0.12). kNN is no bar: the untrained toy_conv1d's val/knn_top1 is 0.958, and
    # two epochs of SimCLR on these signals bring it to 0.865.
    start, noise = untrained_loss(["-c", str(config)])
    last = max(client.get_metric_history(run_id, "train/loss_epoch"), key=lambda m: m.step).value
    assert last < start - 3 * noise, (last, start, noise)
    assert {"test/knn_top1", "val/probe_acc", "val/alignment", "val/effective_rank"} <= set(run.data.metrics)
    assert run.data.params["model.augment"] == "None"  # the data's proposal, not a config's pipeline
    # the run page knows no modality: the default draws (C, T) views as lines, the data is a dataset input
    assert {"views.png", "embeddings.png"} <= {a.path for a in client.list_artifacts(run_id)}
    assert run.inputs.dataset_inputs[0].dataset.name == "toy_signals"

    # the checkpoint is data: it loads with weights_only, DataInfo and all
    last = tmp_path / "checkpoints" / "toy_signals" / run_id / "last.ckpt"
    info = torch.load(last, weights_only=True)["hyper_parameters"]["data_info"]
    assert info.shape == (1, LENGTH) and info.views.endswith("JitterScale") and info.sample_rate == LENGTH

    cli_in_process(monkeypatch, tmp_path, "validate", "-c", str(config), "--ckpt_path", str(last))
    assert len(client.search_runs([experiment.experiment_id])) == 1  # validated into the run that trained

    epochs_before = metric_steps(client, run_id, "val/knn_top1")
    cli_in_process(monkeypatch, tmp_path, "fit", "-c", str(config), "--trainer.max_epochs", "3", "--resume")
    (resumed,) = client.search_runs([experiment.experiment_id])
    assert resumed.info.run_id == run_id and resumed.info.status == "FINISHED"
    epochs_after = metric_steps(client, run_id, "val/knn_top1")
    assert epochs_after[: len(epochs_before)] == epochs_before and len(set(epochs_after)) == len(epochs_before) + 1
    assert torch.load(last, weights_only=True)["epoch"] == 2


@pytest.mark.slow
def test_a_modality_defined_in_a_test_sweeps_through_the_cli(tmp_path, monkeypatch, capsys):
    base = run_config()
    base["model"]["init_args"]["augment"] = {
        "class_path": "tests.test_toy_modality.JitterScale",
        "init_args": {"jitter": 0.05},
    }
    sweep = {
        "name": "toy-sweep",
        "base": base,
        "fixed": {"trainer.max_epochs": 1},
        "space": {"model.temperature": {"type": "float", "low": 0.1, "high": 0.5}},
        "objective": {"metric": "val/knn_top1", "direction": "maximize"},
        "n_trials": 1,  # one trial's process importing this file is the point; sweeps run many in tests/sweeps
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    # the sweep command in this process; its trial is a process of its own, which imports this file
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    capsys.readouterr()
    cli_in_process(monkeypatch, tmp_path, "sweep", "-c", "sweep.yaml")
    assert "best trial" in capsys.readouterr().out
    client = store_client(tmp_path)
    (experiment,) = [e for e in client.search_experiments() if e.name == "toy-sweep"]
    trials = [r for r in client.search_runs([experiment.experiment_id]) if "sweep.trial" in r.data.tags]
    assert [r.data.tags["sweep.state"] for r in trials] == ["complete"]
    assert all(r.data.tags["modality"] == "series" and "val/knn_top1" in r.data.metrics for r in trials)


class JitterScaleImages(JitterScale):
    """Views that change the sample's shape: each (1, 64) signal becomes a (1, 8, 8) image, as a spectrogram
    front end turns waveforms into images. `view_info` says so, and the backbone is built for the views."""

    def view_info(self, info: DataInfo) -> DataInfo:
        return DataInfo(info.name, info.modality, (1, 8, 8), info.num_classes, sample_rate=info.sample_rate)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [view.reshape(-1, 1, 8, 8) for view in super().forward(x)]

    def eval_view(self, x: Tensor) -> Tensor:
        return super().eval_view(x).reshape(-1, 1, 8, 8)


def test_a_pipeline_whose_views_change_shape_gets_a_backbone_built_for_its_views():
    from contrastlab.errors import ConfigError
    from contrastlab.modules import SimCLR

    info = ToySignals().info
    small = {"proj_hidden_dim": 16, "proj_dim": 8, "data_info": info}
    with pytest.raises(ConfigError, match="small_cnn' takes 2-D samples"):
        SimCLR(backbone="small_cnn", augment=JitterScale(), **small)  # raw (1, 64) samples are 1-D
    model = SimCLR(backbone="small_cnn", backbone_kwargs={"widths": (8, 16)}, augment=JitterScaleImages(), **small)
    x, y = toy_signals(8, seed=0)
    batch = {"x": x, "y": y}
    views = model.augment(x)
    loss = model.contrastive_loss(model.encode(batch, views), batch)
    loss.backward()
    assert views[0].shape == (8, 1, 8, 8) and torch.isfinite(loss)
    assert model.backbone.features[0].weight.grad is not None and model.embed(batch).shape == (8, 16)
