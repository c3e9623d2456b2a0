"""Where `contrastlab eval` finds what it evaluates: the checkpoint (`--ckpt`, or a run's best or last, see
`checkpoints.best_or_last`), the MLflow run that wrote it, the run's config, and the model and data rebuilt
from that config with the checkpoint's weights."""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contrastlab.contract import MOVED_CLASSES
from contrastlab.errors import CheckpointError, ConfigError
from contrastlab.platform import checkpoints, stores

# The top-level keys of a run's config.yaml that building the model and data needs.
BUILD_KEYS = ("seed_everything", "model", "data")


@dataclass
class Target:
    ckpt: Path
    run_id: str
    config: dict[str, Any]
    status: str
    step: int = 0


def locate(args: argparse.Namespace, uri: str) -> tuple[Target, Any]:
    """The checkpoint, its run and the run's config; and a client of the store that holds the run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if args.ckpt:
        ckpt = Path(args.ckpt)
        if not ckpt.is_file():
            raise ConfigError(
                f"--ckpt: checkpoint {ckpt} not found; pass a file written by contrastlab fit "
                "(checkpoints/<experiment>/<run id>/last.ckpt) or --run RUN_ID"
            )
        run_id = checkpoints.read_meta(ckpt)["run_id"]
        where = f"{ckpt} belongs to MLflow run {run_id}, which {stores.redact(uri)} does not hold"
        fix = "pass the --tracking-uri the run was logged to"
    else:
        run_id, ckpt = args.run, None
        where = f"--run {run_id}: no such run in {stores.redact(uri)}"
        fix = "copy the run id from `contrastlab ui`, pass --tracking-uri of the store it was logged to, or --ckpt PATH"
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise ConfigError(f"{where}; {fix}") from err
    config = run_config(client, run_id)
    if ckpt is None:
        experiment = client.get_experiment(run.info.experiment_id).name
        ckpt = run_checkpoint(client, run_id, experiment, config, getattr(args, "checkpoint", "best"))
    return Target(ckpt=ckpt, run_id=run_id, config=config, status=run.info.status), client


def run_config(client, run_id: str) -> dict[str, Any]:
    """The run's resolved config: its newest `resumes/<time>-config.yaml`, else `config.yaml`."""
    names = ["config.yaml"]
    try:
        resumes = sorted(a.path for a in client.list_artifacts(run_id, "resumes") if a.path.endswith("-config.yaml"))
        names = resumes[-1:] + names
    except Exception:  # a store without that folder
        pass
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            try:
                path = client.download_artifacts(run_id, name, folder)
            except Exception:
                continue
            return moved_classes_renamed(yaml.safe_load(Path(path).read_text()) or {})
    raise CheckpointError(
        f"run {run_id} has no config.yaml artifact, so its model cannot be rebuilt; "
        "evaluate a run trained by contrastlab fit"
    )


def moved_classes_renamed(config: Any) -> Any:
    """`config` with every class path of a class that moved since the run (`contract.MOVED_CLASSES`) renamed."""
    if isinstance(config, dict):
        return {key: moved_classes_renamed(value) for key, value in config.items()}
    if isinstance(config, list):
        return [moved_classes_renamed(value) for value in config]
    return MOVED_CLASSES.get(config, config) if isinstance(config, str) else config


def run_checkpoint(client, run_id: str, experiment: str, config: dict[str, Any], prefer: str = "best") -> Path:
    """The run's best checkpoint, else its last (`prefer` "last": its last): from its checkpoint folder, else
    from its artifacts (downloaded into that folder, so a second eval finds it and its cached features)."""
    root = Path((config.get("tracking") or {}).get("checkpoint_dir") or "checkpoints")
    folder = checkpoints.run_dir(root, experiment, run_id)
    local = checkpoints.best_or_last(list(folder.glob("*.ckpt")) if folder.is_dir() else [], prefer)
    if local is not None:
        return local
    logged = [
        f.path
        for d in client.list_artifacts(run_id)
        if d.is_dir
        for f in client.list_artifacts(run_id, d.path)
        if f.path.endswith(".ckpt")
    ]
    chosen = checkpoints.best_or_last([Path(p) for p in logged], prefer)
    if chosen is None:
        raise CheckpointError(
            f"--run {run_id}: no checkpoint under {folder} nor among the run's artifacts; "
            "pass --ckpt PATH to a checkpoint of that run"
        )
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(client.download_artifacts(run_id, chosen.as_posix(), tmp))
        shutil.move(str(path), folder / path.name)
    return folder / path.name


def build(config: dict[str, Any], ckpt: Path):
    """The model and DataModule of `config` (through the run CLI's parser), with `ckpt`'s weights, the
    checkpoint's step, and the model's weights as the run initialised them (its seed's random init: the
    supervised baseline's start)."""
    from contrastlab.platform.cli import ContrastlabCLI

    class Build(ContrastlabCLI):
        def instantiate_trainer(self, **kwargs):
            return None

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump({k: config[k] for k in BUILD_KEYS if k in config}))
        cli = Build(run=False, args=["-c", str(path)])
    model, datamodule = cli.model, cli.datamodule
    initial = copy.deepcopy(model.state_dict())
    state = checkpoints.load_weights_only(ckpt, "--ckpt")
    try:
        model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{ckpt} does not fit its run's config.yaml ({first}); pass a checkpoint of that run"
        ) from err
    return model, datamodule, int(state.get("global_step", 0)), initial
