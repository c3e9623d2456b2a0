"""Device slices: each sweep worker's trials get accelerators of their own (tests/sweeps/test_sweep.py sees them
in the trials' runs, a retried trial's among them)."""

from __future__ import annotations

import pytest

from contrastlab.errors import ConfigError
from contrastlab.sweeps import devices
from tests.conftest import REPO, the_error_line

DEMO_SWEEP = REPO / "configs" / "sweeps" / "simclr_digits.yaml"


def test_each_worker_gets_its_own_slice_of_the_accelerators():
    gpus = [str(i) for i in range(8)]
    assert devices.worker_slices(4, 2, gpus) == ["0,1", "2,3", "4,5", "6,7"]
    assert devices.worker_slices(3, 1, gpus) == ["0", "1", "2"]  # the others stay free
    assert devices.worker_slices(2, None, gpus) == ["0,1,2,3", "4,5,6,7"]  # "auto": each worker's share
    assert devices.worker_slices(2, 1, ["GPU-a1", "GPU-b2"]) == ["GPU-a1", "GPU-b2"]  # names as given
    assert devices.worker_slices(3, 4, []) == [None, None, None]  # a CPU machine: nothing changes
    with pytest.raises(ConfigError, match="--workers 3 with --devices-per-trial 2 needs 6 devices.*has 4"):
        devices.worker_slices(3, 2, gpus[:4])
    with pytest.raises(ConfigError, match="--workers 5 with --devices-per-trial 1 needs 5 devices.*has 4"):
        devices.worker_slices(5, None, gpus[:4])


def test_a_trial_configs_devices_as_a_count():
    assert [devices.trial_devices(d) for d in (1, "2", [0, 3], "0,1,2", "auto", -1, None)] == [1, 2, 2, 3] + [None] * 3


def test_the_visible_accelerators_are_the_drivers_gpus_narrowed_by_cuda_visible_devices(tmp_path, monkeypatch):
    for address in ("0000:17:00.0", "0000:65:00.0", "0000:ca:00.0"):
        (tmp_path / address).mkdir()
    monkeypatch.setattr(devices, "NVIDIA_GPUS", tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert devices.visible_accelerators() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert devices.visible_accelerators() == ["2", "0"]
    monkeypatch.setattr(devices, "NVIDIA_GPUS", tmp_path / "absent")
    assert devices.visible_accelerators() == []


def test_a_sweep_asking_more_devices_than_it_has_is_refused_before_it_starts(cli_here, tmp_path):
    args = ["sweep", "-c", str(DEMO_SWEEP), "--workers", "3", "--accelerators", "0,1"]
    line = the_error_line(*cli_here(*args, cwd=tmp_path))
    assert "--workers 3 with --devices-per-trial 1 needs 3 devices, and this sweep has 2 (0,1)" in line
    assert not (tmp_path / "mlruns" / "optuna.db").exists()
