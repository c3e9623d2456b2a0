"""Sharing this machine's cores between trainings that run side by side."""

from __future__ import annotations

import os


def threads_per_process(processes: int) -> int:
    """Intra-op threads for each of `processes` concurrent trainings: the cores this process may use, shared.

    PyTorch starts as many threads as there are cores in every process, so N trainings side by side on
    C cores would run N*C threads and spend their time switching (two digits runs side by
    side ran several times slower than with one thread each).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, processes))


def share_cores(processes: int) -> None:
    """Give child processes started from here their share of the cores, unless OMP_NUM_THREADS is set."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_process(processes)))
