import os

import pytest

from contrastlab.platform import cpus


@pytest.mark.parametrize("processes, threads", [(1, 8), (2, 4), (3, 2), (8, 1), (16, 1)])
def test_concurrent_trainings_share_the_cores_this_process_may_use(processes, threads, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert cpus.threads_per_process(processes) == threads


def test_share_cores_sets_omp_num_threads_unless_the_user_did(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus.share_cores(4)
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    cpus.share_cores(4)
    assert os.environ["OMP_NUM_THREADS"] == "3"
