"""ConVIRT and CLIP through the CLI on digits paired with captions (the test writes the set), a resume that reads
the same tokenizer, the vocabulary check on a checkpoint, and a text tower from a local Hugging Face folder."""

from __future__ import annotations

import pytest
import torch

from contrastlab.datamodules.digits_captions import write_digits_captions
from tests.conftest import REPO, in_process_store, store_client, the_error_line

# A short run: tiny towers, 3 epochs of 39 steps (the loss leaves its plateau after about 60), evaluated at the end.
SHORT = [
    "--trainer.max_epochs", "3",
    "--trainer.check_val_every_n_epoch", "3",
    "--data.init_args.batch_size", "32",
    "--model.init_args.backbone_kwargs", "{widths: [16, 32]}",
    "--model.init_args.text_tower", "{width: 32, layers: 1, heads: 2, dropout: 0.0}",
    "--model.init_args.optimizer", "{name: adamw, lr: 0.003, weight_decay: 0.0001, warmup_epochs: 0}",
]  # fmt: skip
CHANCE_R1 = 1 / 360  # one caption among the 360 of the test split
CHANCE_ZERO_SHOT = 1 / 10


@pytest.fixture(scope="module")
def digits_captions(tmp_path_factory):
    return write_digits_captions(tmp_path_factory.mktemp("digits_captions"))


def metrics_of(cwd):
    client = store_client(cwd)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    return runs[0]


def test_convirt_trains_resumes_with_the_same_tokenizer_and_retrieves_above_chance(cli_here, tmp_path, digits_captions):
    config = str(REPO / "configs" / "convirt" / "digits_captions.yaml")
    data = ["--data.init_args.csv", str(digits_captions)]
    first = [*SHORT, "--trainer.max_epochs", "2", "--test_after_fit", "false"]
    code, err = cli_here("fit", "-c", config, *data, *first, *in_process_store(tmp_path), cwd=tmp_path)
    assert code == 0, err[-3000:]
    (tokenizer,) = (digits_captions.parent / "tokenizers").glob("tokenizer-wordpiece-*.json")
    stamp = tokenizer.stat().st_mtime_ns
    code, err = cli_here("fit", "-c", config, *data, *SHORT, "--resume", *in_process_store(tmp_path), cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert tokenizer.stat().st_mtime_ns == stamp  # read back, not trained again
    run = metrics_of(tmp_path)
    m = run.data.metrics
    assert run.info.status == "FINISHED" and run.data.tags["method"] == "convirt"
    assert m["test/a_to_b_recall_at_1"] > 4 * CHANCE_R1 and m["test/b_to_a_recall_at_1"] > 4 * CHANCE_R1
    assert m["test/recall_at_1"] <= m["test/recall_at_5"] <= m["test/recall_at_10"]
    assert m["test/zero_shot_accuracy"] > 3 * CHANCE_ZERO_SHOT
    assert "test/knn_top1" in m and "test/probe_acc" in m  # the image encoder is still evaluated as one


def test_clip_learns_its_temperature_and_retrieves_above_chance(cli_here, tmp_path, digits_captions):
    config = str(REPO / "configs" / "clip" / "digits_captions.yaml")
    data = ["--data.init_args.csv", str(digits_captions)]
    code, err = cli_here("fit", "-c", config, *data, *SHORT, *in_process_store(tmp_path), cwd=tmp_path)
    assert code == 0, err[-3000:]
    run = metrics_of(tmp_path)
    m = run.data.metrics
    assert run.data.tags["method"] == "clip"
    assert m["train/logit_scale"] != pytest.approx(1 / 0.07)  # learned
    assert m["test/a_to_b_recall_at_1"] > 4 * CHANCE_R1 and m["test/b_to_a_recall_at_1"] > 4 * CHANCE_R1
    assert m["test/zero_shot_accuracy"] > 3 * CHANCE_ZERO_SHOT
