"""`make demo`'s run, as it is configured: SimCLR on digits must beat kNN top-1 0.95 on the test split."""

import pytest

from tests.conftest import DIGITS_CONFIG, run_cli, store_client


@pytest.mark.slow
def test_demo_config_reaches_095_knn_on_the_digits_test_split(tmp_path):
    proc = run_cli("fit", "-c", str(DIGITS_CONFIG), cwd=tmp_path, timeout=600)
    client = store_client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert run.data.metrics["test/knn_top1"] >= 0.95
    assert run.data.metrics["test/probe_acc"] >= 0.85
    assert f"test/knn_top1    {run.data.metrics['test/knn_top1']:.4f}" in proc.stdout
