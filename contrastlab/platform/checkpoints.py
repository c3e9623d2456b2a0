"""Where a run's checkpoints live and how a resume finds a usable one.

Layout: `<checkpoint_dir>/<experiment>/<run id>/last.ckpt` and `best-epoch=E-step=S.ckpt`. Each
checkpoint carries `checkpoint["contrastlab"]`: the MLflow run id and the method that wrote it, so a
resume continues the same MLflow run and refuses another method's checkpoint.

A checkpoint is data, never code: every read is `torch.load(weights_only=True)`, which refuses a file
whose unpickling would call anything but the tensor and container types it allows (ours are registered
as safe globals where they are defined).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import contrastlab.modules.core.base  # noqa: F401  (registers the types our checkpoints hold as safe globals)
from contrastlab.errors import CheckpointError, ConfigError
from contrastlab.platform.tracking import safe_name

log = logging.getLogger(__name__)
META_KEY = "contrastlab"


@dataclass(frozen=True)
class ResumePoint:
    ckpt_path: Path
    run_id: str
    method: str


def load_weights_only(path: str | Path, key: str = "") -> Any:
    """The checkpoint at `path`, read as data only; CheckpointError (one line) if it cannot be read that way.

    `key` names the option the path came from, for the message.
    """
    where = f"{key}: {path}" if key else str(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page of advice; what matters is what the file asked to load
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f"it asks to call {found.group(1)}" if found else str(err).strip().splitlines()[0][:200]
        raise CheckpointError(
            f"{where} holds more than weights ({what}); contrastlab loads checkpoints as weights only and never "
            "runs code from them: use a checkpoint written by `contrastlab fit`"
        ) from err
    except Exception as err:  # torch raises many types for a truncated or foreign file
        text = str(err)
        foreign = "zip" in text.lower() or "mmap" in text
        detail = "truncated, corrupt, or not a file written by torch.save" if foreign else text[:200]
        raise CheckpointError(
            f"{where} is not a readable checkpoint ({detail.splitlines()[0] if detail else type(err).__name__})"
        ) from err


def read_meta(path: Path) -> dict[str, Any]:
    """The contrastlab metadata of a checkpoint; CheckpointError if the file is unreadable or foreign."""
    ckpt = load_weights_only(path)
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
    return _last_then_newest(list(folder.glob("*.ckpt")))


def _last_then_newest(paths: list[Path]) -> list[Path]:
    """`last.ckpt` first (in the order given), then the others newest first by modification time (a path that
    is not here, such as an artifact's, counts as oldest), a tie broken by the greater name."""

    def age(path: Path) -> tuple[float, str]:
        return (path.stat().st_mtime if path.exists() else 0, path.name)

    last = [p for p in paths if p.name == "last.ckpt"]
    return last + sorted((p for p in paths if p.name != "last.ckpt"), key=age, reverse=True)


def best_or_last(paths: list[Path], prefer: str = "best") -> Path | None:
    """Which checkpoint `contrastlab eval --run` evaluates: the newest `best-*.ckpt`, else `last.ckpt`;
    `prefer` "last": `last.ckpt` where there is one, else the newest best."""
    ordered = _last_then_newest(paths)
    best = [p for p in ordered if p.name.startswith("best")][:1]
    last = [p for p in ordered if p.name == "last.ckpt"][-1:]
    choice = last + best if prefer == "last" else best + last
    return choice[0] if choice else None


def _first_readable(paths: list[Path], set_aside: bool = False) -> tuple[Path, dict[str, Any]]:
    """The first of `paths` that is a readable contrastlab checkpoint, and its metadata.

    With `set_aside` (a resumed fit, which writes `last.ckpt` again) an unusable `last.ckpt` skipped on the
    way is renamed `last.ckpt.corrupt`, so that the resumed run's own `last.ckpt` keeps its name.
    """
    errors, unusable = [], []
    for path in paths:
        try:
            meta = read_meta(path)
        except CheckpointError as err:
            errors.append(str(err))
            unusable.append(path)
            continue
        if errors:
            log.warning("skipped unusable checkpoints, resuming from %s: %s", path, "; ".join(errors))
        for bad in unusable:
            if set_aside and bad.name == "last.ckpt":
                os.replace(bad, bad.with_name("last.ckpt.corrupt"))
                log.warning("moved the unusable %s aside as last.ckpt.corrupt", bad)
        return path, meta
    raise CheckpointError("; ".join(errors) + "; no earlier checkpoint of this run is readable: start a new run")


def resolve_resume(resume: str, root: Path, experiment: str, set_aside: bool = False) -> ResumePoint:
    """The checkpoint and run a `--resume` value means.

    `last` (or `true`): the newest run of the experiment that has checkpoints; a run id: that run;
    a path: that checkpoint file. A corrupt last.ckpt falls back to the run's newest readable checkpoint
    (and with `set_aside` is renamed, see `_first_readable`).
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
        path, meta = _first_readable(_candidates(newest), set_aside)
    elif Path(resume).suffix == ".ckpt" or Path(resume).is_file():
        path = Path(resume)
        if not path.is_file():
            raise ConfigError(f"--resume: checkpoint {path} not found")
        try:
            meta = read_meta(path)
        except CheckpointError:
            path, meta = _first_readable(_candidates(path.parent), set_aside)
    elif (exp_dir / resume).is_dir():
        path, meta = _first_readable(_candidates(exp_dir / resume), set_aside)
    else:
        raise ConfigError(
            f"--resume={resume!r} is neither 'last', a run id with checkpoints under {exp_dir}, nor a checkpoint file"
        )
    return ResumePoint(ckpt_path=path, run_id=meta["run_id"], method=meta.get("method", ""))
