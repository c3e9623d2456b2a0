"""Which accelerators each sweep worker's trials use: a slice of their own, through CUDA_VISIBLE_DEVICES, so that
no two running trials share a device. Without accelerators (a CPU machine) nothing changes.

The accelerators are `--accelerators` when given, else the NVIDIA GPUs this process may use, counted from the
driver's listing (Linux) without initialising CUDA and narrowed by CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import os
from pathlib import Path

from contrastlab.errors import ConfigError

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def visible_accelerators() -> list[str]:
    """The CUDA devices of this machine that this process may use, as CUDA_VISIBLE_DEVICES would name them."""
    count = len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(count)]
    return [name.strip() for name in visible.split(",") if name.strip()][:count]


def trial_devices(devices) -> int | None:
    """A run config's `trainer.devices` as a count of devices, or None where Lightning chooses ("auto", -1)."""
    if isinstance(devices, list | tuple):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()):
        return int(devices) if int(devices) > 0 else None
    return None


def worker_slices(workers: int, per_trial: int | None, accelerators: list[str]) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each worker's trials: `per_trial` devices each (by default its share of them), or
    None for every worker when there are no accelerators."""
    if not accelerators:
        return [None] * workers
    per_trial = per_trial or len(accelerators) // workers
    if per_trial < 1 or workers * per_trial > len(accelerators):
        raise ConfigError(
            f"--workers {workers} with --devices-per-trial {per_trial or 1} needs {workers * max(per_trial, 1)} "
            f"devices, and this sweep has {len(accelerators)} ({','.join(accelerators)}): lower --workers or "
            "--devices-per-trial, or name more with --accelerators"
        )
    return [",".join(accelerators[i * per_trial : (i + 1) * per_trial]) for i in range(workers)]
