"""`contrastlab eval` on an audio run: the learned features beside the practitioner's baselines (MFCC mean+std with
1-NN and a tuned logistic probe, the same net trained supervised from random init), in the run's results."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, in_process_store, store_client, the_error_line
from tests.methods.test_clmr import tiny

CLMR = REPO / "configs" / "clmr" / "fsdd.yaml"


def test_eval_of_an_audio_run_puts_the_mfcc_and_supervised_baselines_beside_it(spoken_digits, tmp_path, cli_here):
    code, err = cli_here("fit", "-c", str(CLMR), *tiny(spoken_digits), *in_process_store(tmp_path), cwd=tmp_path)
    assert code == 0, err[-3000:]
    client = store_client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("fsdd").experiment_id])
    run_id, store = run.info.run_id, in_process_store(tmp_path)[:2]
    fast = ("--protocols", "knn,finetune", "--k", "1", "--tsne-points", "0", "--finetune-epochs", "1")
    code, err = cli_here("eval", "--run", run_id, *fast, "--finetune-fractions", "0.5", *store, cwd=tmp_path)
    assert code == 0, err[-3000:]

    metrics = client.get_run(run_id).data.metrics
    for key in (
        "eval/knn/top1_k1",
        "eval/baseline_mfcc_nn/acc",
        "eval/baseline_mfcc_logistic/acc",
        "eval/baseline_supervised_50pct/top1",
    ):
        assert 0 <= metrics[key] <= 1, (key, sorted(metrics))
    # 4 voices x 10 digits x take 0 is test: 40 clips, a tenth of a clip's worth of resolution per hit
    assert metrics["eval/baseline_mfcc_nn/acc"] * 40 == round(metrics["eval/baseline_mfcc_nn/acc"] * 40)
    # the same labelled subset as fine-tuning the pretrained net
    assert metrics["eval/baseline_supervised_50pct/labels"] == metrics["eval/finetune_50pct/labels"] > 0
    results = Path(client.download_artifacts(run_id, "eval/results.md", str(tmp_path))).read_text()
    for row in (
        "| learned | knn | top1_k1 |",
        "| MFCC mean+std, 1-NN | baseline_mfcc_nn | acc |",
        "| MFCC mean+std, logistic | baseline_mfcc_logistic | acc |",
        "| supervised from random init, 50% of labels | baseline_supervised_50pct | top1 |",
    ):
        assert row in results, results
    assert "raw" not in results  # audio declares MFCC, not its waveforms

    line = the_error_line(*cli_here("eval", "--run", run_id, "--baselines", "raw_nn", *store, cwd=tmp_path))
    assert line.endswith(
        "--baselines: fsdd declares no baseline 'raw_nn'; choose from mfcc_nn,mfcc_logistic,supervised or none"
    )
