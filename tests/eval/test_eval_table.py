"""`contrastlab eval --datasets ...`: tiny SimCLR runs on two UCR sets (two seeds of one), then one accuracy table,
a row per configuration with its seeds as mean ± sd, beside the series baselines (1-NN Euclidean and DTW,
MiniRocket with ridge; the supervised one is tested on digits and audio), in a run of its own, through the CLI as
a user drives it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import REPO, in_process_store, store_client, the_error_line

CONFIG = REPO / "configs" / "simclr" / "gunpoint.yaml"
PAPERS = REPO / "configs" / "shared" / "recipes" / "ucr_papers_protocol.yaml"
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


def test_eval_over_datasets_writes_one_table_with_the_baselines_and_seeds_grouped(tmp_path, cli_here):
    fits = [("ItalyPowerDemand", "0"), ("ItalyPowerDemand", "1"), ("JapaneseVowels", "0")]
    for name, seed in fits:  # small sets shipped inside aeon; JV: unequal lengths
        # ItalyPowerDemand on the papers' protocol (all of train, no validation), so that the baselines are the
        # archive's published figures; JapaneseVowels holds out 20% of train for validation (the default)
        protocol = ["-c", str(PAPERS)] if name == "ItalyPowerDemand" else []
        code, err = cli_here(
            "fit", "-c", str(CONFIG), *protocol, *TINY, "--data.init_args.name", name, "--seed_everything", seed,
            *in_process_store(tmp_path), cwd=tmp_path,
        )  # fmt: skip
        assert code == 0, err[-3000:]
    store = in_process_store(tmp_path)[:2]
    code, err = cli_here(
        "eval", "--datasets", "ItalyPowerDemand,JapaneseVowels", "--checkpoint", "last", "--tsne-points", "0",
        "--baselines", "raw_nn,raw_dtw,minirocket_ridge", *store, cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, err[-3000:]

    client = store_client(tmp_path)
    (table,) = client.search_runs([client.get_experiment_by_name("eval-tables").experiment_id])
    metrics = table.data.metrics
    # the archive's published 1-NN figures (timeseriesclassification.com): ItalyPowerDemand ED .955, DTW (full) .950
    assert round(metrics["ItalyPowerDemand/simclr_baseline_raw_nn/acc"], 3) == 0.955
    assert round(metrics["ItalyPowerDemand/simclr_baseline_raw_dtw/acc"], 3) == 0.950
    assert metrics["ItalyPowerDemand/simclr_baseline_minirocket_ridge/acc"] > 0.9
    assert table.data.params["protocols"] == "svm" and table.data.params["checkpoint"] == "last"
    # each run got its own results too, as `contrastlab eval --run` gives them, baselines beside
    trained = [r for e in ("ItalyPowerDemand", "JapaneseVowels") for r in client.search_runs(
        [client.get_experiment_by_name(e).experiment_id], order_by=["attributes.start_time ASC"])]  # fmt: skip
    svm = [r.data.metrics["eval/svm/acc"] for r in trained]
    assert all("eval/baseline_minirocket_ridge/acc" in r.data.metrics for r in trained)
    # two seeds of one configuration: their mean, sample sd and count
    mean, sd = sum(svm[:2]) / 2, abs(svm[0] - svm[1]) / 2**0.5
    assert metrics["ItalyPowerDemand/simclr_svm/acc"] == pytest.approx(mean)
    assert metrics["ItalyPowerDemand/simclr_svm/acc_sd"] == pytest.approx(sd)
    assert metrics["ItalyPowerDemand/simclr_svm/acc_n"] == 2
    assert metrics["ItalyPowerDemand/simclr_baseline_raw_nn/acc_sd"] == 0  # the data's own: the same for both seeds
    # masked, unequal-length series through training, the SVM protocol and every baseline
    assert metrics["JapaneseVowels/simclr_svm/acc"] == svm[2] and "JapaneseVowels/simclr_svm/acc_n" not in metrics
    for baseline in ("raw_nn", "raw_dtw", "minirocket_ridge"):
        assert 0.5 < metrics[f"JapaneseVowels/simclr_baseline_{baseline}/acc"] <= 1, baseline

    folder = Path(client.download_artifacts(table.info.run_id, "", str(tmp_path / "table")))
    lines = (folder / "table.md").read_text().splitlines()
    header = "| dataset | configuration | runs | svm | raw, 1-NN | raw, 1-NN DTW | MiniRocket, ridge |"
    assert any(line.startswith(header) for line in lines), lines
    italy = next(line for line in lines if line.startswith("| ItalyPowerDemand | simclr | 2 | "))
    assert f"| {mean:.4f} ± {sd:.4f} | 0.9553 ± 0.0000 | 0.9504 ± 0.0000 |" in italy, italy
    assert any(line.startswith("| JapaneseVowels | simclr | 1 | ") for line in lines)
    rows = list(csv.DictReader(open(folder / "table.csv")))
    assert len({r["run_id"] for r in rows if r["dataset"] == "ItalyPowerDemand"}) == 2  # every run, not only means

    # every method ranked on each dataset by its mean there (1 = best), the ranks averaged over the two sets
    methods = {
        "simclr, svm": "simclr_svm",
        "raw, 1-NN": "simclr_baseline_raw_nn",
        "raw, 1-NN DTW": "simclr_baseline_raw_dtw",
        "MiniRocket, ridge": "simclr_baseline_minirocket_ridge",
    }
    expected = dict.fromkeys(methods, 0.0)
    for dataset in ("ItalyPowerDemand", "JapaneseVowels"):
        acc = {m: metrics[f"{dataset}/{key}/acc"] for m, key in methods.items()}
        for m, value in acc.items():  # 1 + the methods above it + half of those tied with it
            above, tied = sum(v > value for v in acc.values()), sum(v == value for v in acc.values()) - 1
            expected[m] += (1 + above + tied / 2) / 2
    for m, rank in expected.items():
        assert metrics[f"rank/{m.replace(', ', '_').replace(' ', '_')}"] == pytest.approx(rank), m
    assert metrics["rank/cd"] == pytest.approx(2.569 * (4 * 5 / (6 * 2)) ** 0.5, abs=2e-3)  # Nemenyi, k 4, N 2
    text = (folder / "table.md").read_text()
    assert "## Average rank over 2 datasets (1 = best; Demšar 2006)" in text and "Nemenyi CD = " in text
    best = min(expected, key=expected.get)
    assert f"| {best} | {expected[best]:.2f} |" in text
    assert (folder / "cd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the critical-difference picture

    code, err = cli_here("eval", "--datasets", "NoSuchSet", *store, cwd=tmp_path)
    assert "no finished run of 'NoSuchSet'" in the_error_line(code, err)
    code, err = cli_here("eval", "--runs", "0123abcd", *store, cwd=tmp_path)
    assert "--runs: no run 0123abcd in the store" in the_error_line(code, err)


def test_runs_that_differ_only_by_seed_are_one_configuration():
    from contrastlab.eval.table import configurations, settings

    def config(seed: int, temperature: float, workers: int = 0) -> dict:
        return {
            "seed_everything": seed,
            "model": {"class_path": "SimCLR", "init_args": {"temperature": temperature}},
            "data": {"init_args": {"name": "GunPoint", "seed": seed, "num_workers": workers}},
            "trainer": {"max_epochs": 5, "logger": {"run_name": f"r{seed}"}},
            "tracking": {"run_name": f"r{seed}"},
        }

    runs = [config(0, 0.1), config(1, 0.1, workers=4), config(0, 0.5)]
    assert settings(runs[0]) == settings(runs[1]) != settings(runs[2])
    found = [("GunPoint", "simclr", settings(c)) for c in runs] + [("ArrowHead", "simclr", settings(runs[2]))]
    assert configurations(found) == [
        "simclr (model.init_args.temperature=0.1)",
        "simclr (model.init_args.temperature=0.1)",
        "simclr (model.init_args.temperature=0.5)",
        "simclr",  # the one configuration of its dataset
    ]
