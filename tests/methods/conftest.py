"""Helpers of the per-method tests: the shipped config of a method, and the one run a test's store holds."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, store_client


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
