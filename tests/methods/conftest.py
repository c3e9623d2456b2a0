"""Shared fixtures for the per-method tests: every method is judged against the same random-init baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, store_client


def method_config(method: str, dataset: str = "digits") -> Path:
    """`configs/<method>/<dataset>.yaml`, which every method ships."""
    path = REPO / "configs" / method / f"{dataset}.yaml"
    assert path.is_file(), f"{path} is missing"
    return path


def only_run(cwd: Path):
    """The one run a test's store holds."""
    client = store_client(cwd)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


@pytest.fixture(scope="session")
def random_init_knn(tmp_path_factory) -> float:
    """Test-split kNN top-1 of digits' `small_cnn` at random initialisation (seed 0): the bar methods must clear.

    The `test` verb without a checkpoint evaluates the freshly built model, exactly as `fit` would see it at
    step 0. Only the backbone's features enter kNN, so the projector of the config used here does not matter.
    """
    cwd = tmp_path_factory.mktemp("random_init")
    run_cli("test", "-c", str(method_config("simclr")), cwd=cwd)
    return only_run(cwd).data.metrics["test/knn_top1"]
