"""`make demo`, as it is configured: the SimCLR sweep on digits, cut to one round of its two workers."""

import pytest

from tests.conftest import REPO, run_cli, store_client

DEMO_SWEEP = REPO / "configs" / "sweeps" / "simclr_digits.yaml"


@pytest.mark.slow
def test_demo_sweep_prints_its_best_trial_and_where_to_browse_it(tmp_path):
    proc = run_cli("sweep", "-c", str(DEMO_SWEEP), "--n-trials", "2", "--workers", "2", cwd=tmp_path, timeout=900)
    client = store_client(tmp_path)
    experiment = client.get_experiment_by_name("simclr-digits")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    trials = [r for r in runs if r.data.tags.get("sweep.role") == "trial"]
    assert len(trials) == 2 and all(r.data.tags["sweep.state"] == "complete" for r in trials)
    best = parent.data.metrics["best_value"]
    assert best == max(r.data.metrics["val/knn_top1"] for r in trials)
    assert best >= 0.9  # 10 epochs of the digits recipe; 30 epochs reach about 0.97 on the test split
    assert f"val/knn_top1 = {best:.4f}" in proc.stdout and "contrastlab ui" in proc.stdout
