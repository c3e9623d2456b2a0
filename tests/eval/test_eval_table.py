"""`contrastlab eval --datasets ...`: tiny SimCLR runs on two UCR sets, then one accuracy table beside the
raw-series 1-NN baselines, in a run of its own, through the CLI as a user drives it."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import REPO, in_process_store, store_client, the_error_line

CONFIG = REPO / "configs" / "simclr" / "gunpoint.yaml"
TINY = [
    "--trainer.max_epochs",
    "1",
    "--trainer.check_val_every_n_epoch",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--test_after_fit",
    "false",
    "--model.init_args.backbone_kwargs",
    '{"widths": [8, 8, 8]}',
    "--model.init_args.proj_hidden_dim",
    "16",
    "--model.init_args.proj_dim",
    "8",
]


def test_eval_over_datasets_writes_one_table_with_the_raw_baselines(tmp_path, cli_here):
    for name in ("ItalyPowerDemand", "JapaneseVowels"):  # small sets shipped inside aeon; JV: unequal lengths
        code, err = cli_here(
            "fit", "-c", str(CONFIG), *TINY, "--data.init_args.name", name, *in_process_store(tmp_path), cwd=tmp_path
        )
        assert code == 0, err[-3000:]
    store = in_process_store(tmp_path)[:2]
    code, err = cli_here(
        "eval", "--datasets", "ItalyPowerDemand,JapaneseVowels", "--checkpoint", "last", "--tsne-points", "0", *store,
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err[-3000:]

    client = store_client(tmp_path)
    (table,) = client.search_runs([client.get_experiment_by_name("eval-tables").experiment_id])
    metrics = table.data.metrics
    # the archive's published 1-NN figures (timeseriesclassification.com): ItalyPowerDemand ED .955, DTW (full) .950
    assert round(metrics["ItalyPowerDemand/nn_euclidean/acc"], 3) == 0.955
    assert round(metrics["ItalyPowerDemand/nn_dtw/acc"], 3) == 0.950
    assert 0.5 <= metrics["ItalyPowerDemand/simclr_svm/acc"] <= 1 and "JapaneseVowels/simclr_svm/acc" in metrics
    assert table.data.params["protocols"] == "svm" and table.data.params["checkpoint"] == "last"
    folder = Path(client.download_artifacts(table.info.run_id, "", str(tmp_path / "table")))
    lines = (folder / "table.md").read_text().splitlines()
    assert "| dataset | simclr svm | 1-NN Euclidean (raw) | 1-NN DTW (raw) |" in lines
    assert any(line.startswith("| ItalyPowerDemand | ") and "| 0.9553 | 0.9504 |" in line for line in lines)
    rows = list(csv.DictReader(open(folder / "table.csv")))
    assert {(r["dataset"], r["column"]) for r in rows} >= {
        ("JapaneseVowels", "simclr svm"),
        ("JapaneseVowels", "1-NN DTW (raw)"),
    }
    # each run got its own results too, as `contrastlab eval --run` gives them
    trained = {r.data.tags["dataset"]: r for e in ("ItalyPowerDemand", "JapaneseVowels") for r in client.search_runs(
        [client.get_experiment_by_name(e).experiment_id])}  # fmt: skip
    # masked, unequal-length series through training, the SVM protocol and both baselines
    assert trained["JapaneseVowels"].data.metrics["eval/svm/acc"] == metrics["JapaneseVowels/simclr_svm/acc"]
    assert 0.5 < metrics["JapaneseVowels/nn_dtw/acc"] <= 1 and 0.5 < metrics["JapaneseVowels/nn_euclidean/acc"] <= 1

    code, err = cli_here("eval", "--datasets", "NoSuchSet", *store, cwd=tmp_path)
    assert "no finished run of 'NoSuchSet'" in the_error_line(code, err)
    code, err = cli_here("eval", "--runs", "0123abcd", *store, cwd=tmp_path)
    assert "--runs: no run 0123abcd in the store" in the_error_line(code, err)
