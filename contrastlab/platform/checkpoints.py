"""Where a run's checkpoints live and how a resume finds a usable one.

Layout: `<checkpoint_dir>/<experiment>/<run id>/last.ckpt` and `best-epoch=E-step=S.ckpt`. Each
checkpoint carries `checkpoint["contrastlab"]`: the MLflow run id and the method that wrote it, so a
resume continues the same MLflow run and refuses another method's checkpoint.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from contrastlab.errors import CheckpointError, ConfigError
from contrastlab.platform.tracking import safe_name

log = logging.getLogger(__name__)
META_KEY = "contrastlab"


@dataclass(frozen=True)
class ResumePoint:
    ckpt_path: Path
    run_id: str
    method: str


def read_meta(path: Path) -> dict[str, Any]:
    """The contrastlab metadata of a checkpoint; CheckpointError if the file is unreadable or foreign."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    meta = ckpt.get(META_KEY) if isinstance(ckpt, dict) else None
    if not meta or not meta.get("run_id"):
        raise CheckpointError(f"{path} was not written by a contrastlab run (no run id inside)")
    return meta


def slurm_job_id() -> str | None:
    """The SLURM job (or array task) this process runs in, if any."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def requeued_job_checkpoint(root: Path, experiment: str) -> ResumePoint | None:
    """After a SLURM requeue (SLURM_RESTART_COUNT >= 1), the checkpoint this job wrote before it was stopped."""
    job = slurm_job_id()
    if not job or int(os.environ.get("SLURM_RESTART_COUNT") or 0) < 1:
        return None
    exp_dir = experiment_dir(root, experiment)
    folders = [d for d in exp_dir.glob("*") if d.is_dir()] if exp_dir.is_dir() else []
    for folder in sorted(folders, key=lambda d: -d.stat().st_mtime):
        try:
            path, meta = _first_readable(_candidates(folder))
        except CheckpointError:
            continue
        if meta.get("slurm_job_id") == job:
            return ResumePoint(ckpt_path=path, run_id=meta["run_id"], method=meta.get("method", ""))
    return None


def experiment_dir(root: Path, experiment: str) -> Path:
    return root / safe_name(experiment)


def run_dir(root: Path, experiment: str, run_id: str) -> Path:
    return experiment_dir(root, experiment) / run_id


def _candidates(folder: Path) -> list[Path]:
    """A run folder's checkpoints, last.ckpt first, then the others newest first."""
    others = sorted((p for p in folder.glob("*.ckpt") if p.name != "last.ckpt"), key=lambda p: -p.stat().st_mtime)
    last = folder / "last.ckpt"
    return ([last] if last.is_file() else []) + others


def _first_readable(paths: list[Path]) -> tuple[Path, dict[str, Any]]:
    errors = []
    for path in paths:
        try:
            meta = read_meta(path)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        if errors:
            log.warning("skipped unusable checkpoints, resuming from %s: %s", path, "; ".join(errors))
        return path, meta
    raise CheckpointError("; ".join(errors) + "; no earlier checkpoint of this run is readable: start a new run")


def resolve_resume(resume: str, root: Path, experiment: str) -> ResumePoint:
    """The checkpoint and run a `--resume` value means.

    `last` (or `true`): the newest run of the experiment that has checkpoints; a run id: that run;
    a path: that checkpoint file. A corrupt last.ckpt falls back to the run's newest readable checkpoint.
    """
    exp_dir = experiment_dir(root, experiment)
    if resume.lower() in ("last", "true"):
        runs = [d for d in exp_dir.glob("*") if d.is_dir() and any(d.glob("*.ckpt"))] if exp_dir.is_dir() else []
        if not runs:
            raise ConfigError(
                f"--resume: no checkpoints of experiment {experiment!r} under {exp_dir}; "
                "train without --resume first, or pass a checkpoint path"
            )
        newest = max(runs, key=lambda d: max(p.stat().st_mtime for p in d.glob("*.ckpt")))
        path, meta = _first_readable(_candidates(newest))
    elif Path(resume).suffix == ".ckpt" or Path(resume).is_file():
        path = Path(resume)
        if not path.is_file():
            raise ConfigError(f"--resume: checkpoint {path} not found")
        try:
            meta = read_meta(path)
        except CheckpointError:
            path, meta = _first_readable(_candidates(path.parent))
    elif (exp_dir / resume).is_dir():
        path, meta = _first_readable(_candidates(exp_dir / resume))
    else:
        raise ConfigError(
            f"--resume={resume!r} is neither 'last', a run id with checkpoints under {exp_dir}, nor a checkpoint file"
        )
    return ResumePoint(ckpt_path=path, run_id=meta["run_id"], method=meta.get("method", ""))
